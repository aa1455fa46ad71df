import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeTokenizer
import Testing

/// One family's GGUF fixture (Fixtures/families_gguf/, made by scripts/fixtures/make_family_gguf_fixtures.py):
/// a tiny random Hugging Face model converted by llama.cpp's own convert_hf_to_gguf.py (F16 weights,
/// F16-exact, so the GGUF holds exactly the reference's weights), and transformers' float32 logits
/// and tokenizer ids.
struct FamilyGGUFFixture {
    static let reference: [String: Any] = try! Fixtures.json("families_gguf/reference.json")

    let family: String
    let path: String
    let entry: [String: Any]
    let ids: [Int]
    var logits: [Float]
    let vocab: Int

    init(_ family: String) {
        self.family = family
        path = Fixtures.url("families_gguf/\(family).gguf").path
        entry = (Self.reference["families"] as! [String: Any])[family] as! [String: Any]
        ids = entry["ids"] as! [Int]
        logits = (entry["logits"] as! [Double]).map(Float.init)
        vocab = entry["vocab_size"] as! Int
    }

    var config: [String: Any] { entry["config"] as! [String: Any] }
    /// Largest |logit| of the reference, the scale the tolerance is relative to.
    var scale: Float { logits.map(abs).max() ?? 1 }

    /// Max |got - want| and the positions whose argmax differs.
    func compare(_ got: [Float]) -> (worst: Float, badPositions: [Int]) {
        var worst: Float = 0
        var bad: [Int] = []
        for t in 0..<ids.count {
            let g = got[(t * vocab)..<((t + 1) * vocab)], w = logits[(t * vocab)..<((t + 1) * vocab)]
            for (a, b) in zip(g, w) { worst = max(worst, abs(a - b)) }
            if g.indices.max(by: { g[$0] < g[$1] }) != w.indices.max(by: { w[$0] < w[$1] }) { bad.append(t) }
        }
        return (worst, bad)
    }
}

/// GGUF files of the qwen2, qwen3 and gpt2 architectures as llama.cpp's convert_hf_to_gguf.py writes them
/// (qwen2: separate q/k/v with biases, unpermuted Q/K rows for NEOX RoPE, untied `output.weight`,
/// vocabulary padded past the tokenizer; gpt2: fused `attn_qkv` transposed to [out, in],
/// `position_embd`, LayerNorm biases, tied head; qwen3: `attn_q_norm`/`attn_k_norm`, head_dim 16
/// independent of the hidden size, tied head; phi3: fused `attn_qkv` and `ffn_up` ([gate; up]),
/// LongRoPE from `rope_factors_long`/`rope_factors_short`, a sliding window), against transformers.
///
/// Tolerance for logits: 2e-5 of the largest |logit| (about 1e-4 for qwen2, 4e-4 for gpt2): the
/// weights are identical, both sides compute in float32 and differ only in summation order and
/// exp/tanh/sin/cos.
@Suite(.serialized)
struct FamilyGGUFTests {
    static let families = ["qwen2", "gpt2", "qwen3", "gemma2", "gemma3", "phi3"]
    static let relativeTolerance: Float = 2e-5

    func prefill(_ m: DecoderModel, _ ids: [Int]) throws -> [Float] {
        let c = KVCache(config: m.config, capacity: ids.count), w = Workspace(model: m, maxTokens: ids.count)
        try m.forward(tokens: ids, cache: c, workspace: w, logits: .all)
        return Array(w.logits.buffer.prefix(ids.count * m.config.vocabSize))
    }

    /// Prefill logits of the GGUF loaded by Squeeze equal transformers' at every position.
    @Test(arguments: families)
    func prefillLogitsMatchTransformers(_ family: String) throws {
        let fx = FamilyGGUFFixture(family)
        let m = try ModelLoader.load(path: fx.path)
        #expect(m.config.vocabSize == fx.vocab)
        let (worst, bad) = fx.compare(try prefill(m, fx.ids))
        #expect(bad.isEmpty, "\(family): argmax differs at positions \(bad)")
        #expect(
            worst <= Self.relativeTolerance * fx.scale, "\(family): max |logit difference| \(worst), scale \(fx.scale)")
        print("\(family) GGUF: max |logit difference| \(worst) (largest |logit| \(fx.scale))")
    }

    /// One token at a time through the KV cache gives the same logits (RoPE or learned positions at
    /// each step); phi3's against transformers' own token-by-token logits (LongRoPE picks its factors
    /// per forward call, so they differ from the whole window's).
    @Test(arguments: families)
    func decodeLogitsMatchTransformers(_ family: String) throws {
        var fx = FamilyGGUFFixture(family)
        if let d = fx.entry["decode_logits"] as? [Double] { fx.logits = d.map(Float.init) }
        let m = try ModelLoader.load(path: fx.path)
        let V = fx.vocab
        let cache = KVCache(config: m.config, capacity: fx.ids.count)
        let ws = Workspace(model: m, maxTokens: 1)
        var got = [Float](repeating: 0, count: fx.ids.count * V)
        for (t, id) in fx.ids.enumerated() {
            try m.forward(tokens: [id], cache: cache, workspace: ws, logits: .last)
            for i in 0..<V { got[t * V + i] = ws.logits[i] }
        }
        let (worst, bad) = fx.compare(got)
        #expect(bad.isEmpty, "\(family): argmax differs at positions \(bad)")
        #expect(worst <= Self.relativeTolerance * fx.scale, "\(family): max |logit difference| \(worst)")
    }

    /// The config read from the GGUF metadata has the Hugging Face config's fields, the family's
    /// block pieces and the right RoPE row layout.
    @Test(arguments: families)
    func configMatchesTransformers(_ family: String) throws {
        let fx = FamilyGGUFFixture(family)
        let g = try GGUFFile(path: fx.path)
        let c = try ModelConfig(gguf: g)
        let want = fx.config
        #expect(c.modelType == (family == "gemma3" ? "gemma3_text" : family))
        #expect(try c.family == ModelFamily.for(modelType: family))
        #expect(c.vocabSize == want["vocab_size"] as? Int)
        #expect(c.tieWordEmbeddings == want["tie_word_embeddings"] as? Bool)
        #expect(c.bosTokenId == want["bos_token_id"] as? Int)
        #expect(c.eosTokenIds == [want["eos_token_id"] as! Int])
        if family == "gpt2" {
            #expect(c.hiddenSize == want["n_embd"] as? Int)
            #expect(c.numLayers == want["n_layer"] as? Int)
            #expect(c.numHeads == want["n_head"] as? Int && c.numKVHeads == c.numHeads)
            #expect(c.maxPositionEmbeddings == want["n_positions"] as? Int)
            #expect(c.intermediateSize == 4 * c.hiddenSize)
            #expect(abs(c.rmsNormEps - (want["layer_norm_epsilon"] as! Double)) < 1e-9)
            #expect(c.normKind == .layerNorm && c.activation == .geluTanh && c.learnedPositionOffset == 0)
            #expect(c.tensorPrefix == "transformer.")
        } else {
            #expect(c.hiddenSize == want["hidden_size"] as? Int)
            #expect(c.intermediateSize == want["intermediate_size"] as? Int)
            #expect(c.numLayers == want["num_hidden_layers"] as? Int)
            #expect(c.numHeads == want["num_attention_heads"] as? Int)
            #expect(c.numKVHeads == want["num_key_value_heads"] as? Int)
            #expect(c.maxPositionEmbeddings == want["max_position_embeddings"] as? Int)
            #expect(abs(c.rmsNormEps - (want["rms_norm_eps"] as! Double)) < 1e-12)
            #expect(c.ropeTheta == fx.entry["rope_theta"] as? Double)
            let gemma = family.hasPrefix("gemma")
            #expect(c.normKind == .rms && c.learnedPositionOffset == nil)
            #expect(c.activation == (gemma ? .gegluTanh : .swiglu))
            #expect(c.sandwichNorms == gemma && c.normWeightOffset == (gemma ? 1 : 0))
            if gemma {
                #expect(c.slidingWindow == want["sliding_window"] as? Int)
                #expect(c.slidingWindowLayers == (family == "gemma2" ? [true, false] : [true, true]))
                #expect(c.attentionSoftcap == want["attn_logit_softcapping"] as? Double)
                #expect(c.finalLogitSoftcap == want["final_logit_softcapping"] as? Double)
                #expect(c.localRopeTheta == (family == "gemma3" ? 10000 : nil))
            }
            if family == "phi3" {
                // Fused attn_qkv and ffn_up under Hugging Face's fused names; LongRoPE from the
                // rope_factors tensors; the window on every layer.
                let rope = fx.entry["rope"] as! [String: Any]
                let attention = (1 + log(128.0 / 8) / log(8.0)).squareRoot()
                guard case let .longrope(short, long, orig, a) = c.ropeScaling else {
                    Issue.record("phi3: RoPE scaling \(c.ropeScaling)")
                    return
                }
                #expect(short.map(Float.init) == (rope["short_factor"] as! [Double]).map(Float.init))
                #expect(long.map(Float.init) == (rope["long_factor"] as! [Double]).map(Float.init))
                #expect(orig == rope["original_max_position_embeddings"] as? Int)
                #expect(abs(a - attention) < 1e-6)
                #expect(c.slidingWindow == want["sliding_window"] as? Int && c.slidingWindowLayers == nil)
                let src = GGUFTensorSource(g)
                #expect(src.contains("model.layers.1.self_attn.qkv_proj.weight"))
                #expect(src.contains("model.layers.1.mlp.gate_up_proj.weight"))
            }
        }
        // llama.cpp runs qwen2 with NEOX (rotate-half) RoPE on rows its converter leaves unpermuted.
        #expect(GGUFTensorSource(g).ropeLayout == .halves)
        #expect(try ModelLoader.load(path: fx.path).usesRope == (family != "gpt2"))
        #expect(c.qkNorm == (family == "qwen3" || family == "gemma3"))
        if let hd = want["head_dim"] as? Int { #expect(c.headDim == hd) }
    }

    /// The GGUF's tokenizer (`tokenizer.ggml.*`, pre-tokenizer `qwen2` / `gpt-2`) encodes like the
    /// Hugging Face tokenizer the GGUF was made from, with and without special tokens, and decodes back.
    @Test(arguments: families)
    func tokenizerMatchesTransformers(_ family: String) throws {
        let fx = FamilyGGUFFixture(family)
        let tok = try Tokenizer(gguf: try GGUFFile(path: fx.path))
        for case let t as [String: Any] in fx.entry["tokenizer"] as! [Any] {
            let text = t["text"] as! String
            #expect(tok.encode(text) == t["ids"] as! [Int], "\(family): \(text.debugDescription)")
            #expect(
                tok.encode(text, addSpecialTokens: false) == t["ids_no_special"] as! [Int],
                "\(family): \(text.debugDescription)")
            #expect(tok.decode(t["ids_no_special"] as! [Int]) == text, "\(family): decode \(text.debugDescription)")
        }
    }

    /// `GGUFConverter` writes the Hugging Face checkpoint back (qwen2: Q/K not un-permuted; gpt2:
    /// Hugging Face names, Conv1D weights [in, out]), and that directory gives the same logits.
    @Test(arguments: families)
    func convertedToSafetensorsMatchesTransformers(_ family: String) throws {
        let fx = FamilyGGUFFixture(family)
        let out = NSTemporaryDirectory() + "squeeze-family-gguf-\(getpid())-\(family)-\(UUID().uuidString)"
        try GGUFConverter.convert(gguf: fx.path, to: out, dtype: .f32)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let st = try SafeTensorsModel(path: out)
        if family == "gpt2" {
            // Conv1D orientation, as transformers' GPT2LMHeadModel stores it.
            let h = fx.config["n_embd"] as! Int
            #expect(try st.tensor("transformer.h.0.attn.c_attn.weight").shape == [h, 3 * h])
            #expect(try st.tensor("transformer.h.0.mlp.c_fc.weight").shape == [h, 4 * h])
            #expect(try st.tensor("transformer.wpe.weight").shape == [fx.config["n_positions"] as! Int, h])
        }
        let m = try ModelLoader.load(path: out)
        #expect(try m.config.family == ModelFamily.for(modelType: family))
        let (worst, bad) = fx.compare(try prefill(m, fx.ids))
        #expect(bad.isEmpty, "\(family): argmax differs at positions \(bad)")
        #expect(worst <= Self.relativeTolerance * fx.scale, "\(family): max |logit difference| \(worst)")
    }

    /// GGUF and Hugging Face names map both ways for each architecture.
    @Test func namesRoundTrip() {
        #expect(
            GGUFNames.gguf(fromHF: "transformer.h.3.attn.c_attn.weight", architecture: "gpt2")
                == "blk.3.attn_qkv.weight")
        #expect(GGUFNames.hf(fromGGUF: "position_embd.weight", architecture: "gpt2") == "transformer.wpe.weight")
        #expect(
            GGUFNames.hf(fromGGUF: "blk.1.ffn_down.bias", architecture: "gpt2") == "transformer.h.1.mlp.c_proj.bias")
        #expect(
            GGUFNames.hf(fromGGUF: "blk.1.attn_k.bias", architecture: "qwen2") == "model.layers.1.self_attn.k_proj.bias"
        )
        #expect(GGUFNames.isTransposed(hf: "transformer.h.0.mlp.c_proj.weight", architecture: "gpt2"))
        #expect(!GGUFNames.isTransposed(hf: "transformer.wpe.weight", architecture: "gpt2"))
        #expect(!GGUFNames.isTransposed(hf: "model.layers.0.mlp.down_proj.weight", architecture: "qwen2"))
        #expect(
            GGUFNames.hf(fromGGUF: "blk.2.attn_qkv.weight", architecture: "phi3")
                == "model.layers.2.self_attn.qkv_proj.weight")
        #expect(
            GGUFNames.gguf(fromHF: "model.layers.2.mlp.gate_up_proj.weight", architecture: "phi3")
                == "blk.2.ffn_up.weight")
        #expect(GGUFNames.hf(fromGGUF: "rope_factors_long.weight", architecture: "phi3") == nil)
    }
    /// A copy of a fixture with metadata and tensors edited, in a temporary file.
    func edited(
        _ family: String, metadata edit: ([(String, GGUFValue)]) -> [(String, GGUFValue)],
        tensors editTensors: ([Tensor]) -> [Tensor] = { $0 }
    ) throws -> String {
        let g = try GGUFFile(path: FamilyGGUFFixture(family).path)
        let md = edit(g.metadataKeys.map { ($0, g.metadata[$0]!) })
        let ts = editTensors(try g.tensors.map { try g.tensor($0.name) })
        let out = NSTemporaryDirectory() + "squeeze-family-gguf-bad-\(getpid())-\(UUID().uuidString).gguf"
        try GGUFWriter.write(metadata: md, tensors: ts, to: out)
        return out
    }

    /// Files llama.cpp would not load, or that Squeeze does not run, fail with errors naming the
    /// file and the field or tensor.
    @Test func badFilesGiveClearErrors() throws {
        let noEps = try edited("gpt2", metadata: { $0.filter { $0.0 != "gpt2.attention.layer_norm_epsilon" } })
        defer { try? FileManager.default.removeItem(atPath: noEps) }
        #expect(throws: ModelError.missingConfigField(file: noEps, field: "gpt2.attention.layer_norm_epsilon")) {
            try ModelConfig(gguf: try GGUFFile(path: noEps))
        }
        let noPos = try edited("gpt2", metadata: { $0 }, tensors: { $0.filter { $0.name != "position_embd.weight" } })
        defer { try? FileManager.default.removeItem(atPath: noPos) }
        #expect(throws: ModelError.missingTensor(file: noPos, tensor: "position_embd.weight")) {
            try ModelLoader.load(path: noPos)
        }
        let otherArch = try edited(
            "qwen2", metadata: { $0.map { $0.0 == "general.architecture" ? ($0.0, .string("phi2")) : $0 } })
        defer { try? FileManager.default.removeItem(atPath: otherArch) }
        #expect(throws: ModelError.unsupportedArchitecture(file: otherArch, name: "phi2")) {
            try ModelLoader.load(path: otherArch)
        }
        // convert_hf_to_gguf.py --fuse-qkv: one attn_qkv per block instead of attn_q/k/v.
        let fused = try edited(
            "qwen2", metadata: { $0 },
            tensors: { ts in
                ts.map { t in
                    guard t.name.hasPrefix("blk.0.attn_q.") else { return t }
                    return Tensor(
                        name: t.name.replacingOccurrences(of: "attn_q", with: "attn_qkv"), dtype: t.dtype,
                        shape: t.shape, data: t.data, owner: t.owner)
                }
            })
        defer { try? FileManager.default.removeItem(atPath: fused) }
        #expect(
            throws: ModelError.unsupportedWeight(
                file: fused, tensor: "blk.0.attn_qkv.weight",
                detail: "fused QKV in a 'qwen2' GGUF is not supported (convert without --fuse-qkv)")
        ) {
            try ModelLoader.load(path: fused)
        }
        // Phi-3: a LongRoPE factor tensor of the wrong length, and no original context length.
        let shortFactors = try edited(
            "phi3", metadata: { $0 },
            tensors: { ts in
                ts.map { t in
                    guard t.name == "rope_factors_long.weight" else { return t }
                    return Tensor(name: t.name, dtype: t.dtype, shape: [4], data: t.data, owner: t.owner)
                }
            })
        defer { try? FileManager.default.removeItem(atPath: shortFactors) }
        #expect(
            throws: ModelError.invalidConfig(
                file: shortFactors, field: "rope_factors_long.weight",
                detail: "expected 8 positive factors (one per rotary pair), got 4 values")
        ) {
            try ModelConfig(gguf: try GGUFFile(path: shortFactors))
        }
        let noOriginal = try edited(
            "phi3", metadata: { $0.filter { $0.0 != "phi3.rope.scaling.original_context_length" } })
        defer { try? FileManager.default.removeItem(atPath: noOriginal) }
        #expect(
            throws: ModelError.missingConfigField(file: noOriginal, field: "phi3.rope.scaling.original_context_length")
        ) {
            try ModelConfig(gguf: try GGUFFile(path: noOriginal))
        }
    }
}
