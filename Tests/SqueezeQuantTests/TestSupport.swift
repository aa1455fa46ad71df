import Foundation

/// A small seeded generator (SplitMix64) so that tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}

/// Weighted squared error of a labelling with each cluster at its weighted mean (Float64).
func clusteringCost(_ x: [Float], _ w: [Float], _ labels: [Int], _ k: Int) -> Double {
    var W = [Double](repeating: 0, count: k), S = W, Q = W
    for i in 0..<x.count {
        let f = Double(w[i]), v = Double(x[i])
        W[labels[i]] += f; S[labels[i]] += f * v; Q[labels[i]] += f * v * v
    }
    var c = 0.0
    for j in 0..<k where W[j] > 0 { c += Q[j] - S[j] * S[j] / W[j] }
    return c
}

/// The exact optimum over all k^n labellings (small n only).
func bruteForceCost(_ x: [Float], _ w: [Float], _ k: Int) -> Double {
    let n = x.count
    var labels = [Int](repeating: 0, count: n)
    var best = Double.infinity
    var total = 1
    for _ in 0..<n { total *= k }
    for code in 0..<total {
        var c = code
        for i in 0..<n { labels[i] = c % k; c /= k }
        best = min(best, clusteringCost(x, w, labels, k))
    }
    return best
}

/// Loads a JSON fixture from the test bundle.
func loadFixture(_ name: String) throws -> Any {
    guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
        throw CocoaError(.fileNoSuchFile)
    }
    return try JSONSerialization.jsonObject(with: Data(contentsOf: url))
}

/// The optimal cost by a plain O(k n^2) dynamic programme over the sorted points (no monotonicity
/// assumptions), an independent check for medium rows.
func plainDPCost(_ x: [Float], _ w: [Float], _ k: Int) -> Double {
    let order = x.indices.sorted { x[$0] < x[$1] }
    let xs = order.map { Double(x[$0]) }, ws = order.map { Double(w[$0]) }
    let n = xs.count
    func cost(_ a: Int, _ b: Int) -> Double {  // points a..<b, direct two-pass formula
        var W = 0.0, S = 0.0
        for i in a..<b { W += ws[i]; S += ws[i] * xs[i] }
        if W == 0 { return 0 }
        let mu = S / W
        var c = 0.0
        for i in a..<b { c += ws[i] * (xs[i] - mu) * (xs[i] - mu) }
        return c
    }
    var C = [[Double]](repeating: [Double](repeating: 0, count: n + 1), count: n + 1)
    for a in 0..<n { for b in (a + 1)...n { C[a][b] = cost(a, b) } }
    var D = [Double](repeating: .infinity, count: n + 1)
    D[0] = 0
    for _ in 0..<k {
        var E = [Double](repeating: .infinity, count: n + 1)
        E[0] = 0
        for i in 1...n { for j in 0..<i where D[j] < .infinity { E[i] = min(E[i], D[j] + C[j][i]) } }
        D = E
    }
    return D[n]
}
