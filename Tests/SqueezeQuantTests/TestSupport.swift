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
