import Foundation
import SqueezeModels
import Testing

/// The sampler's filters (temperature, top-k, min-p, top-p) against a direct reference: the expected
/// distribution computed by sorting every token in Double; 20,000 draws must put every token's
/// frequency within 6 standard deviations (plus 3) of its expected probability, and never draw a token the
/// filters remove.
@Suite struct SamplerTests {
    /// Expected probabilities: sort all tokens by logit (ties by id), keep the top k, drop those under
    /// minP times the best, keep the shortest prefix reaching topP of the top-k mass, renormalize.
    static func expected(_ logits: [Float], _ p: SamplingParameters) -> [Double] {
        let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        let k = p.topK > 0 ? min(p.topK, logits.count) : logits.count
        let top = Array(order.prefix(k))
        let m = Double(logits[top[0]])
        let w = top.map { exp((Double(logits[$0]) - m) / Double(p.temperature)) }
        let total = w.reduce(0, +)
        var n = w.count
        if p.minP > 0 { while n > 1 && w[n - 1] < Double(p.minP) * w[0] { n -= 1 } }
        if p.topP < 1 {
            var acc = 0.0
            for i in 0..<n { acc += w[i] / total; if acc >= Double(p.topP) { n = i + 1; break } }
        }
        let kept = w[0..<n].reduce(0, +)
        var out = [Double](repeating: 0, count: logits.count)
        for i in 0..<n { out[top[i]] = w[i] / kept }
        return out
    }

    static func logits(vocab: Int, seed: UInt64) -> [Float] {
        var g = Xoshiro256(seed: seed)
        // A few strong tokens over a long flat tail, like a language model's output.
        return (0..<vocab).map { i in (g.nextUnit() - 0.5) * 4 + (i % 97 == 0 ? 6 : 0) }
    }

    static let settings: [SamplingParameters] = [
        SamplingParameters(temperature: 1),
        SamplingParameters(temperature: 0.7, topK: 40),
        SamplingParameters(temperature: 1, topP: 0.9),
        SamplingParameters(temperature: 1.3, topP: 0.5),
        SamplingParameters(temperature: 1, minP: 0.05),
        SamplingParameters(temperature: 0.8, topK: 200, topP: 0.95, minP: 0.02),
        SamplingParameters(temperature: 2, topP: 0.999),
    ]

    @Test(arguments: 0..<settings.count)
    func drawsFollowTheFilteredDistribution(index: Int) {
        var p = Self.settings[index]
        p.seed = UInt64(100 + index)
        let vocab = 1000
        let logits = Self.logits(vocab: vocab, seed: UInt64(index))
        let want = Self.expected(logits, p)
        var sampler = Sampler(p)
        var counts = [Int](repeating: 0, count: vocab)
        let draws = 20_000
        var buf = logits
        for _ in 0..<draws {
            for i in 0..<vocab { buf[i] = logits[i] }
            let t = buf.withUnsafeMutableBufferPointer { sampler.sample($0.baseAddress!, vocab: vocab) }
            counts[t] += 1
        }
        for i in 0..<vocab {
            let q = want[i]
            if q == 0 {
                #expect(counts[i] == 0, "setting \(index): token \(i) was filtered out but drawn \(counts[i]) times");
                continue
            }
            let sd = (Double(draws) * q * (1 - q)).squareRoot()
            #expect(
                abs(Double(counts[i]) - Double(draws) * q) <= 6 * sd + 3,
                "setting \(index): token \(i) drawn \(counts[i]) times, expected \(Double(draws) * q)")
        }
    }

    @Test func greedyAndSeededDrawsAreReproducible() {
        let logits = Self.logits(vocab: 500, seed: 9)
        var g = Sampler(SamplingParameters(temperature: 0))
        var b = logits
        #expect(
            b.withUnsafeMutableBufferPointer { g.sample($0.baseAddress!, vocab: 500) } == logits.indices.max {
                logits[$0] < logits[$1]
            }!)
        func run() -> [Int] {
            var s = Sampler(SamplingParameters(temperature: 1, topP: 0.9, seed: 5))
            return (0..<50).map { _ in
                var c = logits; return c.withUnsafeMutableBufferPointer { s.sample($0.baseAddress!, vocab: 500) }
            }
        }
        #expect(run() == run())
    }
}
