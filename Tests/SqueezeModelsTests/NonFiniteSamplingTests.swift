import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeTestSupport
import Testing

/// NaN and infinite logits: the sampler never traps, and `checkFinite` names the broken token.
/// The reference for a NaN logit is the same logits with that entry at -infinity (a token that can
/// never be drawn): with the same seed both must draw the same tokens.
@Suite struct NonFiniteSamplingTests {
    static let settings: [SamplingParameters] = [
        SamplingParameters(temperature: 0),
        SamplingParameters(temperature: 1),
        SamplingParameters(temperature: 1, minP: 0.05),
        SamplingParameters(temperature: 0.7, topK: 20, minP: 0.1),
        SamplingParameters(temperature: 1, topP: 0.9, minP: 0.02),
        SamplingParameters(temperature: 1.2, topK: 5),
    ]

    static func draws(_ logits: [Float], _ p: SamplingParameters, count: Int) -> [Int] {
        var s = Sampler(p)
        return (0..<count).map { _ in
            var b = logits
            return b.withUnsafeMutableBufferPointer { s.sample($0.baseAddress!, vocab: $0.count) }
        }
    }

    @Test(arguments: 0..<settings.count)
    func nanLogitsDrawLikeMinusInfinity(index: Int) {
        var p = Self.settings[index]
        p.seed = 7
        var g = Xoshiro256(seed: 3)
        let clean = (0..<300).map { _ in (g.nextUnit() - 0.5) * 6 }
        // NaN on the best token, on the first token and on a few others.
        let best = clean.indices.max { clean[$0] < clean[$1] }!
        var withNaN = clean, reference = clean
        for i in [0, best, 17, 250] {
            withNaN[i] = .nan
            reference[i] = -.infinity
        }
        let got = Self.draws(withNaN, p, count: 500)
        #expect(got == Self.draws(reference, p, count: 500))
        #expect(!got.contains { [0, best, 17, 250].contains($0) })
    }

    @Test func everyLogitNaNOrMinusInfinityGivesTokenZero() {
        for p in Self.settings {
            #expect(Self.draws([Float](repeating: .nan, count: 50), p, count: 3) == [0, 0, 0])
            #expect(Self.draws([Float](repeating: -.infinity, count: 50), p, count: 3) == [0, 0, 0])
        }
    }

    @Test func plusInfinityIsPickedOutright() {
        var l = [Float](repeating: 0, count: 64)
        l[40] = .infinity
        l[50] = .infinity
        l[3] = .nan
        for p in Self.settings { #expect(Self.draws(l, p, count: 3) == [40, 40, 40]) }
    }

    @Test func checkFiniteNamesTheFirstBadToken() throws {
        var l: [Float] = [0, 1, -.infinity, 2]
        #expect(l.withUnsafeBufferPointer { Sampler.checkFinite($0.baseAddress!, vocab: 4) } == nil)
        l[3] = .nan
        let e = l.withUnsafeBufferPointer { Sampler.checkFinite($0.baseAddress!, vocab: 4) }
        guard case let .nonFiniteLogit(i, _)? = e else { Issue.record("no error"); return }
        #expect(i == 3)
        #expect(e!.description.contains("token 3"))
        l = [1, .infinity, 0, 0]
        var s = Sampler(SamplingParameters(temperature: 1, minP: 0.1, seed: 1))
        #expect(throws: SamplingError.self) {
            try l.withUnsafeMutableBufferPointer { try s.sampleChecked($0.baseAddress!, vocab: 4) }
        }
        let allMinusInf = [Float](repeating: -.infinity, count: 4)
        #expect(allMinusInf.withUnsafeBufferPointer { Sampler.checkFinite($0.baseAddress!, vocab: 4) } != nil)
    }

    /// A tiny Llama written by the test whose token embedding row 5 is NaN: a prompt with token 5 makes
    /// every logit NaN, which `checkFinite` reports and `sample` survives; other prompts stay finite.
    @Test func modelWithANaNRowGivesNonFiniteLogitsOnlyForThatToken() throws {
        let d = temporaryDirectory("nan-model")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try NaNModel.write(to: d, vocab: 16, nanToken: 5)
        let m = try ModelLoader.load(path: d)
        let c = KVCache(config: m.config, capacity: 8), w = Workspace(model: m, maxTokens: 8)
        try m.forward(tokens: [1, 5], cache: c, workspace: w, logits: .last)
        #expect(Sampler.checkFinite(w.logits.pointer, vocab: 16) != nil)
        var s = Sampler(SamplingParameters(temperature: 0.8, minP: 0.1, seed: 2))
        #expect((0..<16).contains(s.sample(w.logits.pointer, vocab: 16)))
        c.reset()
        try m.forward(tokens: [1, 2, 3], cache: c, workspace: w, logits: .last)
        #expect(Sampler.checkFinite(w.logits.pointer, vocab: 16) == nil)
    }

    /// `Generator` (what `squeeze generate` runs) refuses non-finite logits with an error naming
    /// the token, and generates normally from the same model on a prompt without the NaN row.
    @Test func generatorThrowsOnNonFiniteLogits() throws {
        let d = temporaryDirectory("nan-generate")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try NaNModel.write(to: d, vocab: 16, nanToken: 5)
        let g = Generator(model: try ModelLoader.load(path: d), context: 16)
        for temperature: Float in [0, 0.8] {
            let p = SamplingParameters(temperature: temperature, minP: 0.1, seed: 3)
            #expect(throws: SamplingError.self) {
                _ = try g.generate(prompt: [1, 5], maxTokens: 4, sampling: p, stopTokens: []) { _ in .continue }
            }
            let stats = try g.generate(prompt: [1, 2, 3], maxTokens: 4, sampling: p, stopTokens: []) { _ in .continue }
            #expect(stats.generatedTokens == 4)
        }
    }
}
