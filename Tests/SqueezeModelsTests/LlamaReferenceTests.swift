import Foundation
import SqueezeCore
import SqueezeModels
import Testing

/// The real model against Hugging Face transformers (reference outputs in Fixtures/, copied from
/// ../shared/reference/, made with transformers 5.24 in float32 from the same GGUF).
@Suite(.serialized, .enabled(if: TestModel.available, TestModel.skipNote))
struct LlamaReferenceTests {
    static let model: DecoderModel? = TestModel.path.flatMap { try? ModelLoader.load(path: $0) }

    /// Top-5 logits at every position of the 4 prompts. Tolerance: 2e-3 absolute on logits whose
    /// range is about 40: the reference dequantizes the same Q4_1 weights, so the only differences
    /// are float32 summation order and the exp/sin/cos implementations (observed below 1e-3).
    @Test func logitsMatchTransformersAtEveryPosition() throws {
        let model = try #require(Self.model)
        let fx = try Fixtures.json("logits_fixtures.json")
        let prompts = fx["prompts"] as! [[String: Any]]
        #expect(prompts.count == 4)
        var worst: Float = 0
        for p in prompts {
            let ids = (p["ids"] as! [NSNumber]).map { $0.intValue }
            let top5 = p["top5_ids"] as! [[NSNumber]]
            let top5l = p["top5_logits"] as! [[NSNumber]]
            let cache = KVCache(config: model.config, capacity: ids.count)
            let ws = Workspace(model: model, maxTokens: ids.count)
            try model.forward(tokens: ids, cache: cache, workspace: ws, logits: .all)
            let V = model.config.vocabSize
            for t in 0..<ids.count {
                let row = ws.logits.pointer + t * V
                var best = 0
                for i in 1..<V where row[i] > row[best] { best = i }
                #expect(best == top5[t][0].intValue, "argmax at position \(t) of \(p["name"]!)")
                for j in 0..<5 {
                    let d = abs(row[top5[t][j].intValue] - top5l[t][j].floatValue)
                    worst = max(worst, d)
                }
            }
        }
        #expect(worst < 2e-3, "max |logit difference| on top-5 entries: \(worst)")
    }

    /// With the LM head held as 8-bit blocks (`--head q8`), decoding the fixture prompts token by token
    /// keeps transformers' argmax at nearly every position and the top-5 logits close. Observed (AVX2):
    /// argmax agrees at 103 of 105 positions, worst top-5 difference 0.150 on logits spanning about
    /// 40. Asserted: argmax agreement >= 95% and worst top-5 difference < 0.3.
    @Test func q8HeadStaysCloseToTransformers() throws {
        let path = try #require(TestModel.path)
        let model = try ModelLoader.load(path: path, options: LoadOptions(head: .q8))
        #expect(model.lmHead.kind == "q8")
        let fx = try Fixtures.json("logits_fixtures.json")
        var agree = 0, total = 0
        var worst: Float = 0
        for p in fx["prompts"] as! [[String: Any]] {
            let ids = (p["ids"] as! [NSNumber]).map { $0.intValue }
            let top5 = p["top5_ids"] as! [[NSNumber]]
            let top5l = p["top5_logits"] as! [[NSNumber]]
            let cache = KVCache(config: model.config, capacity: ids.count)
            let ws = Workspace(model: model, maxTokens: 1)
            for (t, id) in ids.enumerated() {
                try model.forward(tokens: [id], cache: cache, workspace: ws, logits: .last)
                let row = ws.logits.pointer
                var best = 0
                for i in 1..<model.config.vocabSize where row[i] > row[best] { best = i }
                if best == top5[t][0].intValue { agree += 1 }
                total += 1
                for j in 0..<5 { worst = max(worst, abs(row[top5[t][j].intValue] - top5l[t][j].floatValue)) }
            }
        }
        #expect(Double(agree) >= 0.95 * Double(total), "argmax agreement \(agree)/\(total)")
        #expect(worst < 0.3, "max |logit difference| on top-5 entries: \(worst)")
    }

    /// With an F16 or Q8 KV cache, the fixture prompts' top-5 logits stay close to transformers'
    /// (float32 cache) in one prefill (attention over cache rows converted to F32) and token by token
    /// (grouped-head kernels over the cache). Observed (AVX2) on logits spanning about 40 (float32
    /// cache: below 2e-3): F16 worst top-5 difference 0.020 (prefill) and 0.024 (decode), argmax equal
    /// at every position (asserted: below 0.05, every position); Q8 0.90 and 1.05, argmax different at
    /// 2 positions of the 4 prompts' in both paths, near-ties (asserted: below 1.5, at most 5% of
    /// positions). Q8's cost in perplexity is measured in README ("KV cache").
    @Test(arguments: [KVCachePrecision.f16, .q8])
    func reducedCacheStaysCloseToTransformers(precision: KVCachePrecision) throws {
        let model = try #require(Self.model)
        let fx = try Fixtures.json("logits_fixtures.json")
        let V = model.config.vocabSize
        var worstPrefill: Float = 0, worstDecode: Float = 0, positions = 0, flips = 0
        for p in fx["prompts"] as! [[String: Any]] {
            let ids = (p["ids"] as! [NSNumber]).map { $0.intValue }
            let top5 = p["top5_ids"] as! [[NSNumber]]
            let top5l = p["top5_logits"] as! [[NSNumber]]
            let c1 = KVCache(config: model.config, capacity: ids.count, precision: precision)
            // Half or a quarter of F32's bytes per position (plus, for Q8, a scale per position and KV
            // head for keys and values); keys are held in whole tiles of 32 positions.
            let c = model.config, tiles = (ids.count + 31) / 32, perPosition = c.numLayers * c.numKVHeads * c.headDim
            let scales = precision == .q8 ? c.numLayers * c.numKVHeads * 4 * (ids.count + 32 * tiles) : 0
            #expect(c1.byteCount == perPosition * precision.bytes * (ids.count + 32 * tiles) + scales)
            #expect(KVCache(config: c, capacity: ids.count).byteCount == perPosition * 4 * 2 * ids.count)
            let w1 = Workspace(model: model, maxTokens: ids.count)
            try model.forward(tokens: ids, cache: c1, workspace: w1, logits: .all)
            let c2 = KVCache(config: model.config, capacity: ids.count, precision: precision)
            let w2 = Workspace(model: model, maxTokens: 1)
            for (t, id) in ids.enumerated() {
                try model.forward(tokens: [id], cache: c2, workspace: w2, logits: .last)
                for (row, isPrefill) in [(w1.logits.pointer + t * V, true), (w2.logits.pointer, false)] {
                    var best = 0
                    for i in 1..<V where row[i] > row[best] { best = i }
                    positions += 1
                    if best != top5[t][0].intValue { flips += 1 }
                    if precision == .f16 {
                        #expect(best == top5[t][0].intValue, "argmax at position \(t), prefill \(isPrefill)")
                    }
                    for j in 0..<5 {
                        let d = abs(row[top5[t][j].intValue] - top5l[t][j].floatValue)
                        if isPrefill { worstPrefill = max(worstPrefill, d) } else { worstDecode = max(worstDecode, d) }
                    }
                }
            }
        }
        let bound: Float = precision == .f16 ? 0.05 : 1.5
        #expect(
            worstPrefill < bound && worstDecode < bound, "\(precision): prefill \(worstPrefill), decode \(worstDecode)")
        #expect(Double(flips) <= 0.05 * Double(positions), "\(precision): argmax differs at \(flips) of \(positions)")
        print(
            "\(precision) cache: worst top-5 difference prefill \(worstPrefill), decode \(worstDecode); argmax differs at \(flips) of \(positions)"
        )
    }

    /// With an F16 or Q8 KV cache, a 40-token prompt in one prefill (the packed GEMM over converted
    /// cache rows) and token by token (grouped-head kernels) give the same last logits. The paths sum
    /// in different orders, and a last-bit difference can round a key or value to the neighbouring
    /// half or 8-bit step, so the bound is looser than the float32 cache's 1e-3: observed 0.0067 (F16)
    /// and 0.12 (Q8), asserted below 0.02 and 0.3 (a wrong row or stride would be off by whole units).
    @Test(arguments: [KVCachePrecision.f16, .q8])
    func reducedCacheDecodeEqualsPrefill(precision: KVCachePrecision) throws {
        let model = try #require(Self.model)
        let ids = (0..<40).map { (($0 * 7919) % 40000) + 100 }
        let c1 = KVCache(config: model.config, capacity: 48, precision: precision),
            w1 = Workspace(model: model, maxTokens: 40)
        try model.forward(tokens: ids, cache: c1, workspace: w1, logits: .last)
        let c2 = KVCache(config: model.config, capacity: 48, precision: precision),
            w2 = Workspace(model: model, maxTokens: 1)
        for id in ids { try model.forward(tokens: [id], cache: c2, workspace: w2, logits: .last) }
        var worst: Float = 0
        for i in 0..<model.config.vocabSize { worst = max(worst, abs(w1.logits[i] - w2.logits[i])) }
        print("\(precision) cache: decode vs prefill \(worst)")
        #expect(worst < (precision == .f16 ? 0.02 : 0.3), "\(precision): max |difference| \(worst)")
    }

    /// The same prompts token by token (decode path) give the prefill path's logits.
    @Test func decodeEqualsPrefill() throws {
        let model = try #require(Self.model)
        let ids = [504, 414, 46682, 18669, 314, 3807, 281, 260, 2240, 282]
        let c1 = KVCache(config: model.config, capacity: 16), w1 = Workspace(model: model, maxTokens: 16)
        try model.forward(tokens: ids, cache: c1, workspace: w1, logits: .last)
        let c2 = KVCache(config: model.config, capacity: 16), w2 = Workspace(model: model, maxTokens: 1)
        for id in ids { try model.forward(tokens: [id], cache: c2, workspace: w2, logits: .last) }
        var worst: Float = 0
        for i in 0..<model.config.vocabSize { worst = max(worst, abs(w1.logits[i] - w2.logits[i])) }
        #expect(worst < 1e-3)
    }

    /// One batched decode step over three sequences of different lengths equals three separate steps,
    /// with float32 caches (within 1e-3), F16 and Q8 caches (within 0.02 and 0.1, see
    /// `reducedCacheDecodeEqualsPrefill`; observed 0.0038 and 0.0065).
    @Test(arguments: KVCachePrecision.allCases)
    func batchedDecodeEqualsSeparateDecodes(precision: KVCachePrecision) throws {
        let model = try #require(Self.model)
        let prompts = [[504, 414, 46682], [1604, 3987, 46477, 24, 94, 727], [260]]
        let next = [18669, 472, 2240]
        let V = model.config.vocabSize
        var separate: [[Float]] = []
        var caches: [KVCache] = []
        let ws1 = Workspace(model: model, maxTokens: 8)
        for (p, n) in zip(prompts, next) {
            let c = KVCache(config: model.config, capacity: 16, precision: precision)
            try model.forward(tokens: p + [n], cache: c, workspace: ws1, logits: .last)
            separate.append(Array(ws1.logits.buffer.prefix(V)))
            let c2 = KVCache(config: model.config, capacity: 16, precision: precision)
            try model.forward(tokens: p, cache: c2, workspace: ws1, logits: .none)
            caches.append(c2)
        }
        let wsb = Workspace(model: model, maxTokens: 4)
        try model.forwardBatch(tokens: next, caches: caches, workspace: wsb)
        var worst: Float = 0
        for i in 0..<3 {
            for j in 0..<V { worst = max(worst, abs(wsb.logits[i * V + j] - separate[i][j])) }
            #expect(caches[i].length == prompts[i].count + 1)
        }
        print("\(precision) cache: batched vs separate \(worst)")
        #expect(worst < [.f32: 1e-3, .f16: 0.02, .q8: 0.1][precision]!, "\(precision): max |difference| \(worst)")
    }

    /// Greedy continuations (up to 32 tokens, stop at EOS) equal transformers' `generate`.
    @Test func greedyGenerationMatchesTransformers() throws {
        let model = try #require(Self.model)
        let fx = try Fixtures.json("greedy_fixtures.json")
        for c in fx["cases"] as! [[String: Any]] {
            let prompt = (c["prompt_ids"] as! [NSNumber]).map { $0.intValue }
            let expected = (c["continuation_ids"] as! [NSNumber]).map { $0.intValue }
            let out = try greedy(model, prompt, maxNew: 32, eos: 2)
            #expect(out == expected, "\(c["name"]!)")
        }
    }

    func greedy(_ model: DecoderModel, _ prompt: [Int], maxNew: Int, eos: Int) throws -> [Int] {
        let cache = KVCache(config: model.config, capacity: prompt.count + maxNew)
        let ws = Workspace(model: model, maxTokens: prompt.count)
        var sampler = Sampler(SamplingParameters(temperature: 0))
        try model.forward(tokens: prompt, cache: cache, workspace: ws, logits: .last)
        var out: [Int] = []
        while out.count < maxNew {
            let t = sampler.sample(ws.logits.pointer, vocab: model.config.vocabSize)
            out.append(t)
            if t == eos { break }
            try model.forward(tokens: [t], cache: cache, workspace: ws, logits: .last)
        }
        return out
    }
}
