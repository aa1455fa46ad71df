import Foundation
import SqueezeFormats

/// RoPE frequency scaling (Hugging Face `rope_scaling`).
public enum RopeScaling: Sendable, Equatable {
    case none
    /// Positions divided by `factor`.
    case linear(factor: Double)
    /// Dynamic NTK scaling (transformers' `dynamic` rope type): once a forward pass reaches a length
    /// L > `originalContext` (transformers: `max_position_embeddings`), the RoPE base becomes
    /// theta * (factor * L / originalContext - (factor - 1))^(d / (d - 2)); see
    /// `DecoderModel.frequencies(forLength:)` for how this follows transformers call by call.
    case dynamic(factor: Double, originalContext: Int)
    /// Llama 3.1 wavelength-dependent scaling.
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalContext: Int)
    /// LongRoPE (Phi-3's `longrope`, formerly `su`): frequency i divided by `shortFactors[i]`, or by
    /// `longFactors[i]` in a forward pass whose positions reach past `originalContext` (chosen per call
    /// as for `dynamic`, see `DecoderModel.frequencies(forLength:)`); cos and sin times `attentionFactor`.
    case longrope(shortFactors: [Double], longFactors: [Double], originalContext: Int, attentionFactor: Double)
}

extension RopeScaling {
    /// The context past which dynamic NTK scaling rescales or LongRoPE takes its long factors
    /// (`Int.max` for the other kinds).
    var dynamicOriginalContext: Int {
        switch self {
        case let .dynamic(_, o), let .longrope(_, _, o, _): return o
        default: return Int.max
        }
    }

    /// The factor on RoPE's cos and sin (LongRoPE's attention factor; 1 otherwise).
    public var attentionFactor: Double {
        if case let .longrope(_, _, _, a) = self { return a }
        return 1
    }
}

/// The layout of the Q and K rows, which decides how RoPE pairs dimensions.
public enum RopeLayout: String, Sendable {
    /// Hugging Face: dimension i pairs with i + headDim/2 (rotate-half).
    case halves
    /// GGUF/llama.cpp: dimension 2i pairs with 2i+1 (Q/K rows permuted at conversion).
    case interleaved
}

/// Hyper-parameters of a decoder of any supported family (`ModelFamily`: LLaMA, LLaMA-2, Vicuna,
/// SmolLM, XGen, Mistral, Qwen2, OPT, GPT-2).
public struct ModelConfig: Sendable, Equatable {
    public var modelType: String = "llama"
    /// The family (decides the block's pieces and the tensor names).
    public var family: ModelFamily = .llama
    /// RMSNorm (Llama families) or LayerNorm with bias (OPT, GPT-2); `rmsNormEps` is its epsilon.
    public var normKind: NormKind = .rms
    /// The MLP: SwiGLU (gate, up, down) or a plain two-layer MLP with ReLU or GELU.
    public var activation: MLPActivation = .swiglu
    /// Learned absolute positions, row `position + offset` of the table (OPT: 2, GPT-2: 0); nil: RoPE.
    public var learnedPositionOffset: Int?
    /// Norms before attention and MLP (true) or after each residual add (OPT-350m: false).
    public var preNorm = true
    /// A norm after the last block (absent in post-LN OPT).
    public var hasFinalNorm = true
    /// Token embedding width when it differs from the hidden size (OPT's project_in/project_out).
    public var embeddingDim: Int?
    /// Prefix of the checkpoint's tensor names (`model.`, `model.decoder.`, `transformer.`).
    public var tensorPrefix = "model."
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling = .none
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int] = []
    /// The attention window: a query at position p sees keys p - window + 1 ... p (nil: all earlier keys).
    public var slidingWindow: Int?
    /// Which layers use `slidingWindow` (Qwen2's `layer_types`: "sliding_attention" or
    /// "full_attention"); nil: every layer does (Mistral).
    public var slidingWindowLayers: [Bool]?
    /// Queries and keys go through a per-head RMSNorm (width `headDim`) before RoPE (Qwen3, Gemma 3).
    public var qkNorm = false
    /// Added to every norm weight at load: Gemma's RMSNorm scales by (1 + w) (its GGUF files store 1 + w).
    public var normWeightOffset: Double = 0
    /// Token embeddings are multiplied by this (Gemma: sqrt(hidden_size)); nil: not scaled.
    public var embeddingMultiplier: Double?
    /// The attention scores' scale (Gemma: `query_pre_attn_scalar`^-1/2); nil: 1/sqrt(headDim).
    public var attentionMultiplier: Double?
    /// Attention scores become cap * tanh(score / cap) before the softmax (Gemma 2).
    public var attentionSoftcap: Double?
    /// Logits become cap * tanh(logit / cap) (Gemma 2).
    public var finalLogitSoftcap: Double?
    /// Norms of the attention output and of the MLP output before their residual adds (Gemma).
    public var sandwichNorms = false
    /// The RoPE base of sliding-window layers (Gemma 3's local base); nil: `ropeTheta` everywhere.
    public var localRopeTheta: Double?

    /// The longest sequence the model is made for: `maxPositionEmbeddings`, or nil (no fixed limit)
    /// with dynamic NTK RoPE, which rescales its frequencies to run past it.
    public var contextLimit: Int? {
        if case .dynamic = ropeScaling, learnedPositionOffset == nil { return nil }
        return maxPositionEmbeddings
    }

    /// The attention window of layer `layer`: `slidingWindow` if that layer slides, nil (full causal
    /// attention) otherwise.
    @inlinable
    public func slidingWindow(forLayer layer: Int) -> Int? {
        guard let w = slidingWindow else { return nil }
        if let l = slidingWindowLayers, layer < l.count, !l[layer] { return nil }
        return w
    }

    public init(
        vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int, numHeads: Int,
        numKVHeads: Int, headDim: Int? = nil, rmsNormEps: Double = 1e-5, ropeTheta: Double = 10000,
        maxPositionEmbeddings: Int = 2048, tieWordEmbeddings: Bool = false
    ) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim ?? hiddenSize / numHeads
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
    }

    /// Model types served (see `ModelFamily`).
    public static var supportedModelTypes: Set<String> { Set(ModelFamily.supportedModelTypes) }

    /// Reads a Hugging Face `config.json` (and `generation_config.json` beside it, when present).
    public init(configFile path: String) throws {
        self = try ModelError.mappingConfigErrors { try ModelConfig(readingConfigFile: path) }
    }

    private init(readingConfigFile path: String) throws {
        var obj = try JSONConfig(path: path)
        var mt = try obj.string("model_type")
        var family = try ModelFamily.for(modelType: mt, file: path)
        if mt == "gemma3" {
            // The language model of a multimodal Gemma 3 checkpoint.
            obj = obj.nested("text_config")
            mt = try obj.optionalString("model_type") ?? "gemma3_text"
            family = try ModelFamily.for(modelType: mt, file: path)
            guard family == .gemma3 else {
                throw ModelError.invalidConfig(
                    file: path, field: "text_config.model_type", detail: "expected gemma3_text, got '\(mt)'")
            }
        }
        if family == .gpt2 {
            self = try ModelConfig.gpt2(obj, path: path)
            try readGenerationConfig(path)
            try validate(file: path)
            return
        }
        let hidden = try obj.int("hidden_size")
        let heads = try obj.int("num_attention_heads")
        self.init(
            vocabSize: try obj.int("vocab_size"), hiddenSize: hidden,
            intermediateSize: try obj.int(family == .opt ? "ffn_dim" : "intermediate_size"),
            numLayers: try obj.int("num_hidden_layers"),
            numHeads: heads, numKVHeads: try obj.optionalInt("num_key_value_heads") ?? heads,
            headDim: try obj.optionalInt("head_dim"),
            rmsNormEps: try obj.optionalDouble("rms_norm_eps") ?? 1e-6,
            ropeTheta: try obj.optionalDouble("rope_theta")
                ?? JSONConfig(path: path, object: obj.object("rope_parameters") ?? [:], prefix: "rope_parameters.")
                .optionalDouble("rope_theta")
                ?? 10000,
            maxPositionEmbeddings: try obj.optionalInt("max_position_embeddings") ?? 2048,
            tieWordEmbeddings: try obj.optionalBool("tie_word_embeddings") ?? (family == .opt))
        modelType = mt
        self.family = family
        tensorPrefix = family.defaultTensorPrefix
        bosTokenId = try obj.optionalInt("bos_token_id")
        eosTokenIds = try obj.intOrIntArray("eos_token_id")
        if family == .mistral || family == .phi3 { slidingWindow = try obj.optionalInt("sliding_window") }
        if family == .phi3 { try checkFullRotary(obj, path: path) }
        if family == .qwen2 || family == .qwen3 { try readQwen2SlidingWindow(obj, path: path) }
        if family == .qwen3 { qkNorm = true }
        if family.isGemma { try readGemma(obj, path: path) }
        if family == .opt { try readOPT(obj, path: path) }
        // transformers 5 writes `rope_parameters` (type, factors and rope_theta) instead of `rope_scaling`;
        // Gemma 3's has one entry per layer type (the global layers' is the model's scaling).
        var ropeKey = obj.object("rope_scaling") != nil ? "rope_scaling" : "rope_parameters"
        if family == .gemma3, ropeKey == "rope_parameters", obj.nested(ropeKey).object("full_attention") != nil {
            ropeKey = "rope_parameters.full_attention"
            ropeTheta =
                try obj.nested("rope_parameters").nested("full_attention").optionalDouble("rope_theta") ?? ropeTheta
        }
        let ropeObject =
            ropeKey == "rope_parameters.full_attention"
            ? obj.nested("rope_parameters").object("full_attention") : obj.object(ropeKey)
        if let rs = ropeObject {
            let sub = JSONConfig(path: path, object: rs, prefix: ropeKey + ".")
            let rt = try sub.optionalString("rope_type")
            let tt = try sub.optionalString("type")
            var type = rt ?? tt ?? "default"
            // transformers' Phi3Config renames the older `su` and `yarn` types to `longrope`.
            if family == .phi3 && type == "yarn" { type = "longrope" }
            switch type {
            case "default": ropeScaling = .none
            case "linear": ropeScaling = .linear(factor: try sub.double("factor"))
            case "dynamic":
                // transformers scales from max_position_embeddings (an original_max_position_embeddings
                // here is not read by its dynamic NTK code, so it is not read here either).
                ropeScaling = .dynamic(factor: try sub.double("factor"), originalContext: maxPositionEmbeddings)
            case "llama3":
                ropeScaling = .llama3(
                    factor: try sub.double("factor"), lowFreqFactor: try sub.double("low_freq_factor"),
                    highFreqFactor: try sub.double("high_freq_factor"),
                    originalContext: try sub.int("original_max_position_embeddings"))
            case "longrope", "su":
                ropeScaling = try readLongRope(obj, sub, path: path, key: ropeKey)
            default:
                throw ModelError.invalidConfig(
                    file: path, field: ropeKey + ".rope_type", detail: "unsupported RoPE scaling '\(type)'")
            }
        }
        try readGenerationConfig(path)
        try validate(file: path)
    }

    /// LongRoPE's fields as transformers 5.24 reads them (`_compute_longrope_parameters`): one short and
    /// one long factor per rotary pair; the original context from the top-level
    /// `original_max_position_embeddings` (Phi3Config's field, default 4096, which transformers prefers
    /// to the one in the rope dict), else the rope dict's, else `max_position_embeddings`; the
    /// attention factor `attention_factor`, else sqrt(1 + ln(s) / ln(original)) for s = `factor` (or
    /// max_position_embeddings / original) > 1, else 1.
    func readLongRope(_ obj: JSONConfig, _ sub: JSONConfig, path: String, key: String) throws -> RopeScaling {
        let orig: Int
        if let o = try obj.optionalInt("original_max_position_embeddings") {
            orig = o
        } else if family == .phi3 {
            orig = 4096
        } else {
            orig = try sub.optionalInt("original_max_position_embeddings") ?? maxPositionEmbeddings
        }
        guard orig > 1 else {
            throw ModelError.invalidConfig(
                file: path, field: "original_max_position_embeddings", detail: "must be at least 2, got \(orig)")
        }
        func factors(_ name: String) throws -> [Double] {
            let field = key + "." + name
            guard let raw = sub.object[name] as? [Any] else {
                throw ModelError.invalidConfig(file: path, field: field, detail: "expected a list of numbers")
            }
            let values = try raw.map { v -> Double in
                guard let n = v as? NSNumber, n.doubleValue.isFinite, n.doubleValue > 0 else {
                    throw ModelError.invalidConfig(
                        file: path, field: field, detail: "expected positive finite numbers, got \(v)")
                }
                return n.doubleValue
            }
            guard values.count == headDim / 2 else {
                throw ModelError.invalidConfig(
                    file: path, field: field,
                    detail:
                        "expected \(headDim / 2) factors (one per rotary pair of head_dim \(headDim)), got \(values.count)"
                )
            }
            return values
        }
        let short = try factors("short_factor"), long = try factors("long_factor")
        let scale = try sub.optionalDouble("factor") ?? Double(maxPositionEmbeddings) / Double(orig)
        let attention =
            try sub.optionalDouble("attention_factor")
            ?? Self.longRopeAttentionFactor(scale: scale, originalContext: orig)
        guard attention.isFinite && attention > 0 else {
            throw ModelError.invalidConfig(
                file: path, field: key + ".attention_factor", detail: "must be positive, got \(attention)")
        }
        return .longrope(shortFactors: short, longFactors: long, originalContext: orig, attentionFactor: attention)
    }

    /// LongRoPE's default attention factor: sqrt(1 + ln(scale) / ln(original)) for scale > 1, else 1.
    static func longRopeAttentionFactor(scale: Double, originalContext orig: Int) -> Double {
        scale <= 1 ? 1 : (1 + log(scale) / log(Double(orig))).squareRoot()
    }

    /// Refuses partial RoPE (`partial_rotary_factor` < 1, e.g. Phi-4-mini): Squeeze rotates whole heads.
    func checkFullRotary(_ obj: JSONConfig, path: String) throws {
        let key = obj.object("rope_scaling") != nil ? "rope_scaling" : "rope_parameters"
        let rope = JSONConfig(path: path, object: obj.object(key) ?? [:], prefix: key + ".")
        for (c, field) in [(obj, "partial_rotary_factor"), (rope, key + ".partial_rotary_factor")] {
            if let f = try c.optionalDouble("partial_rotary_factor"), f != 1 {
                throw ModelError.invalidConfig(
                    file: path, field: field, detail: "partial RoPE (\(f) of each head) is not supported")
            }
        }
    }

    /// Qwen2's sliding window as transformers 5 reads it: only with `use_sliding_window: true`; then
    /// `layer_types` names each layer's attention, or (when absent) layers with index >=
    /// `max_window_layers` slide.
    mutating func readQwen2SlidingWindow(_ obj: JSONConfig, path: String) throws {
        guard try obj.optionalBool("use_sliding_window") == true, let w = try obj.optionalInt("sliding_window") else {
            return
        }
        let numLayers = numLayers
        try readSlidingWindow(obj, path: path, window: w) {
            let first = try obj.optionalInt("max_window_layers") ?? 28  // Qwen2Config's default
            return (0..<numLayers).map { $0 >= first }
        }
    }

    /// Sets the window `w` and which layers slide: from `layer_types` when present, else from
    /// `defaultLayers` (the family's rule when the config names no layer types).
    mutating func readSlidingWindow(
        _ obj: JSONConfig, path: String, window w: Int, defaultLayers: () throws -> [Bool]
    ) throws {
        guard w > 0 else {
            throw ModelError.invalidConfig(file: path, field: "sliding_window", detail: "must be positive, got \(w)")
        }
        slidingWindow = w
        guard let types = obj.object["layer_types"], !(types is NSNull) else {
            slidingWindowLayers = try defaultLayers()
            return
        }
        guard let names = types as? [String], names.count == numLayers else {
            throw ModelError.invalidConfig(
                file: path, field: "layer_types",
                detail: "expected \(numLayers) strings (one per layer), got \(String(describing: types))")
        }
        slidingWindowLayers = try names.map { n in
            switch n {
            case "sliding_attention": return true
            case "full_attention": return false
            default:
                throw ModelError.invalidConfig(
                    file: path, field: "layer_types", detail: "unsupported layer type '\(n)'")
            }
        }
    }

    /// Takes BOS and EOS from `generation_config.json` beside `configPath`, when present.
    mutating func readGenerationConfig(_ configPath: String) throws {
        let genPath = URL(fileURLWithPath: configPath).deletingLastPathComponent().appendingPathComponent(
            "generation_config.json"
        ).path
        if FileManager.default.fileExists(atPath: genPath) {
            let gen = try JSONConfig(path: genPath)
            if let b = try gen.optionalInt("bos_token_id") { bosTokenId = b }
            let e = try gen.intOrIntArray("eos_token_id")
            if !e.isEmpty { eosTokenIds = e }
        }
    }

    /// Reads the hyper-parameters of a GGUF file from its `<arch>.*` metadata, for the architectures
    /// llama.cpp's `convert_hf_to_gguf.py` writes for the supported families (`general.architecture`
    /// `llama`, `mistral`, `qwen2`, `gpt2`).
    public init(gguf: GGUFFile) throws {
        let path = gguf.path
        let arch = try gguf.require("general.architecture").string ?? ""
        guard GGUFNames.architectures.contains(arch) else {
            throw ModelError.unsupportedArchitecture(file: path, name: arch)
        }
        func int(_ k: String) throws -> Int {
            guard let v = gguf.metadata["\(arch).\(k)"] else {
                throw ModelError.missingConfigField(file: path, field: "\(arch).\(k)")
            }
            guard let i = v.int else {
                throw ModelError.invalidConfig(file: path, field: "\(arch).\(k)", detail: "not an integer: \(v)")
            }
            return i
        }
        func dbl(_ k: String) -> Double? { gguf.metadata["\(arch).\(k)"]?.double }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let kvHeads = (try? int("attention.head_count_kv")) ?? heads
        var vocab = gguf.metadata["\(arch).vocab_size"]?.int
        if vocab == nil { vocab = gguf.metadata["tokenizer.ggml.tokens"]?.array?.count }
        if vocab == nil, let emb = gguf.info("token_embd.weight") { vocab = emb.shape[0] }
        guard let vocabSize = vocab else {
            throw ModelError.missingConfigField(file: path, field: "\(arch).vocab_size")
        }
        let eps: Double
        if arch == "gpt2" {
            guard let e = dbl("attention.layer_norm_epsilon") else {
                throw ModelError.missingConfigField(file: path, field: "gpt2.attention.layer_norm_epsilon")
            }
            eps = e
        } else {
            eps = dbl("attention.layer_norm_rms_epsilon") ?? 1e-5
        }
        self.init(
            vocabSize: vocabSize, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
            numLayers: try int("block_count"), numHeads: heads, numKVHeads: kvHeads,
            headDim: gguf.metadata["\(arch).attention.key_length"]?.int,
            rmsNormEps: eps,
            ropeTheta: dbl("rope.freq_base") ?? 10000,
            maxPositionEmbeddings: (try? int("context_length")) ?? 2048,
            tieWordEmbeddings: gguf.info("output.weight") == nil)
        modelType = arch == "gemma3" ? "gemma3_text" : arch
        family = try ModelFamily.for(modelType: arch, file: path)
        tensorPrefix = family.defaultTensorPrefix
        bosTokenId = gguf.metadata["tokenizer.ggml.bos_token_id"]?.int
        if let e = gguf.metadata["tokenizer.ggml.eos_token_id"]?.int { eosTokenIds = [e] }
        if arch == "gpt2" {
            try readGGUFGPT2(gguf)
        } else {
            // Squeeze reads separate q/k/v (convert_hf_to_gguf.py's default; --fuse-qkv writes attn_qkv).
            if arch != "phi3", gguf.info("blk.0.attn_qkv.weight") != nil {
                throw ModelError.unsupportedWeight(
                    file: path, tensor: "blk.0.attn_qkv.weight",
                    detail: "fused QKV in a '\(arch)' GGUF is not supported (convert without --fuse-qkv)")
            }
            if let rd = gguf.metadata["\(arch).rope.dimension_count"]?.int, rd != headDim {
                throw ModelError.invalidConfig(
                    file: path, field: "\(arch).rope.dimension_count",
                    detail: "partial RoPE (\(rd) of \(headDim) dimensions) is not supported")
            }
        }
        if let st = gguf.metadata["\(arch).rope.scaling.type"]?.string, st != "none" {
            let f = dbl("rope.scaling.factor") ?? 1
            switch st {
            case "linear": ropeScaling = .linear(factor: f)
            default:
                throw ModelError.invalidConfig(
                    file: path, field: "\(arch).rope.scaling.type", detail: "unsupported '\(st)'")
            }
        }
        if let sw = gguf.metadata["\(arch).attention.sliding_window"]?.int { slidingWindow = sw }
        if arch == "qwen3" { qkNorm = true }
        if arch == "phi3" { try readGGUFPhi3(gguf) }
        if family.isGemma { try readGGUFGemma(gguf, arch: arch) }
        try validate(file: path)
    }

    /// Phi-3 as llama.cpp's converter writes it: fused `attn_qkv` and `ffn_up` ([gate; up]) under
    /// the Hugging Face fused names; LongRoPE as the `rope_factors_short`/`rope_factors_long` tensors
    /// with `rope.scaling.original_context_length` and `rope.scaling.attn_factor`; a sliding window
    /// of 0 meaning none (the converter writes 0 for configs without one).
    mutating func readGGUFPhi3(_ gguf: GGUFFile) throws {
        if slidingWindow == 0 { slidingWindow = nil }
        let long = "rope_factors_long.weight", short = "rope_factors_short.weight"
        guard gguf.info(long) != nil || gguf.info(short) != nil else { return }
        func factors(_ name: String) throws -> [Double] {
            guard gguf.info(name) != nil else { throw ModelError.missingTensor(file: gguf.path, tensor: name) }
            let v = try gguf.tensor(name).toFloatArray().map(Double.init)
            guard v.count == headDim / 2, v.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw ModelError.invalidConfig(
                    file: gguf.path, field: name,
                    detail: "expected \(headDim / 2) positive factors (one per rotary pair), got \(v.count) values")
            }
            return v
        }
        guard let orig = gguf.metadata["phi3.rope.scaling.original_context_length"]?.int, orig > 1 else {
            throw ModelError.missingConfigField(file: gguf.path, field: "phi3.rope.scaling.original_context_length")
        }
        let attention = gguf.metadata["phi3.rope.scaling.attn_factor"]?.double ?? 1
        guard attention.isFinite && attention > 0 else {
            throw ModelError.invalidConfig(
                file: gguf.path, field: "phi3.rope.scaling.attn_factor", detail: "must be positive, got \(attention)")
        }
        ropeScaling = .longrope(
            shortFactors: try factors(short), longFactors: try factors(long), originalContext: orig,
            attentionFactor: attention)
    }

    /// GPT-2's block as llama.cpp runs it (`gpt2` architecture): LayerNorm with bias, learned
    /// positions (`position_embd`, offset 0), a GELU (tanh) MLP, fused `attn_qkv`, no RoPE.
    mutating func readGGUFGPT2(_ gguf: GGUFFile) throws {
        normKind = .layerNorm
        activation = .geluTanh
        learnedPositionOffset = 0
        guard numKVHeads == numHeads else {
            throw ModelError.invalidConfig(
                file: gguf.path, field: "gpt2.attention.head_count_kv",
                detail: "\(numKVHeads) differs from head_count \(numHeads); GPT-2 has no grouped-query attention")
        }
        guard gguf.info("position_embd.weight") != nil else {
            throw ModelError.missingTensor(file: gguf.path, tensor: "position_embd.weight")
        }
    }

    /// Gemma 2 and 3 as llama.cpp reads their GGUF files: norm weights stored as 1 + w (the converter
    /// adds the 1; `GGUFTensorSource` hands out w under the Hugging Face names), embeddings times sqrt(hidden), GeGLU, norms after attention and the MLP; the
    /// sliding-window layers from `attention.sliding_window_pattern` (else every 2nd layer global for
    /// Gemma 2, every 6th for Gemma 3); the local RoPE base `rope.freq_base_swa` (Gemma 3 default
    /// 10000); scores scaled by 1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B models (46
    /// layers for Gemma 2, 62 for Gemma 3), as llama.cpp does (GGUF has no query_pre_attn_scalar).
    mutating func readGGUFGemma(_ gguf: GGUFFile, arch: String) throws {
        func meta(_ k: String) -> GGUFValue? { gguf.metadata["\(arch).\(k)"] }
        normWeightOffset = 1
        sandwichNorms = true
        embeddingMultiplier = Double(hiddenSize).squareRoot()
        activation = .gegluTanh
        qkNorm = arch == "gemma3"
        let big = (arch == "gemma2" && numLayers == 46) || (arch == "gemma3" && numLayers == 62)
        attentionMultiplier = 1 / Double(big ? hiddenSize / numHeads : headDim).squareRoot()
        if let c = meta("attn_logit_softcapping")?.double, c > 0, arch == "gemma2" { attentionSoftcap = c }
        if let c = meta("final_logit_softcapping")?.double, c > 0 { finalLogitSoftcap = c }
        if arch == "gemma3" { localRopeTheta = meta("rope.freq_base_swa")?.double ?? 10000 }
        guard let w = meta("attention.sliding_window")?.int, w > 0 else {
            slidingWindow = nil
            return
        }
        slidingWindow = w
        if let a = meta("attention.sliding_window_pattern")?.array {
            let flags = a.compactMap { v -> Bool? in v.bool ?? v.int.map { $0 != 0 } }
            guard flags.count == numLayers else {
                throw ModelError.invalidConfig(
                    file: gguf.path, field: "\(arch).attention.sliding_window_pattern",
                    detail: "expected \(numLayers) entries, got \(a.count)")
            }
            slidingWindowLayers = flags
        } else {
            let n = meta("attention.sliding_window_pattern")?.int ?? (arch == "gemma2" ? 2 : 6)
            guard n >= 0 else {
                throw ModelError.invalidConfig(
                    file: gguf.path, field: "\(arch).attention.sliding_window_pattern", detail: "negative")
            }
            slidingWindowLayers = (0..<numLayers).map { n == 0 || $0 % n < n - 1 }
        }
    }

    func validate(file: String) throws {
        func check(_ ok: Bool, _ field: String, _ detail: String) throws {
            if !ok { throw ModelError.invalidConfig(file: file, field: field, detail: detail) }
        }
        try check(hiddenSize > 0, "hidden_size", "must be positive")
        try check(numHeads > 0, "num_attention_heads", "must be positive")
        try check(
            numKVHeads > 0 && numHeads % numKVHeads == 0, "num_key_value_heads",
            "\(numKVHeads) does not divide num_attention_heads \(numHeads)")
        try check(
            headDim > 0 && (headDim % 2 == 0 || learnedPositionOffset != nil), "head_dim",
            "must be even and positive, got \(headDim)")
        try check(numLayers > 0, "num_hidden_layers", "must be positive")
        try check(vocabSize > 0, "vocab_size", "must be positive")
        try check(intermediateSize > 0, "intermediate_size", "must be positive")
        try check((slidingWindow ?? 1) > 0, "sliding_window", "must be positive")
        try check((slidingWindowLayers?.count ?? numLayers) == numLayers, "layer_types", "needs one entry per layer")
        try checkSizeProducts(file: file)
    }

    /// Checks that the products of sizes the decoder computes (weight and cache element counts, and
    /// their bytes) fit in an `Int`, so a crafted config is an error naming its field, not a trap.
    func checkSizeProducts(file: String) throws {
        func product(_ a: Int, _ b: Int, _ field: String) throws -> Int {
            // Negative sizes are refused by the positivity checks.
            guard a >= 0, b >= 0 else { return 0 }
            let (p, overflow) = a.multipliedReportingOverflow(by: b)
            guard !overflow else {
                throw ModelError.invalidConfig(
                    file: file, field: field, detail: "\(a) x \(b) overflows the sizes Squeeze can hold")
            }
            return p
        }
        func sum(_ a: Int, _ b: Int, _ field: String) throws -> Int {
            let (p, overflow) = a.addingReportingOverflow(b)
            guard !overflow else {
                throw ModelError.invalidConfig(
                    file: file, field: field, detail: "\(a) + \(b) overflows the sizes Squeeze can hold")
            }
            return p
        }
        let qd = try product(numHeads, headDim, "num_attention_heads")
        let kvd = try product(numKVHeads, headDim, "num_key_value_heads")
        let qkv = try sum(qd, try product(kvd, 2, "num_key_value_heads"), "num_key_value_heads")
        // Element counts times 8 (bytes of the widest buffer element and headroom for offsets).
        _ = try product(try product(qkv, hiddenSize, "hidden_size"), 8, "hidden_size")
        _ = try product(try product(intermediateSize, hiddenSize, "intermediate_size"), 16, "intermediate_size")
        _ = try product(try product(vocabSize, max(embeddingWidth, hiddenSize), "vocab_size"), 8, "vocab_size")
        if let o = learnedPositionOffset {
            let rows = try sum(maxPositionEmbeddings, o, "max_position_embeddings")
            _ = try product(try product(rows, hiddenSize, "max_position_embeddings"), 8, "max_position_embeddings")
        }
        _ = try product(try product(numLayers, hiddenSize, "num_hidden_layers"), 8, "num_hidden_layers")
    }

    /// The fields as a Hugging Face `config.json` object.
    public func huggingFaceJSON() -> [String: Any] {
        if !family.isLlamaLike { return familyJSON() }
        var d: [String: Any] = [
            "architectures": [
                modelType == "mistral"
                    ? "MistralForCausalLM"
                    : modelType == "qwen2"
                        ? "Qwen2ForCausalLM"
                        : modelType == "qwen3"
                            ? "Qwen3ForCausalLM" : modelType == "phi3" ? "Phi3ForCausalLM" : "LlamaForCausalLM"
            ],
            "model_type": modelType, "vocab_size": vocabSize, "hidden_size": hiddenSize,
            "intermediate_size": intermediateSize, "num_hidden_layers": numLayers,
            "num_attention_heads": numHeads, "num_key_value_heads": numKVHeads, "head_dim": headDim,
            "rms_norm_eps": rmsNormEps, "rope_theta": ropeTheta, "max_position_embeddings": maxPositionEmbeddings,
            "tie_word_embeddings": tieWordEmbeddings, "hidden_act": "silu",
        ]
        if let b = bosTokenId { d["bos_token_id"] = b }
        if eosTokenIds.count == 1 {
            d["eos_token_id"] = eosTokenIds[0]
        } else if !eosTokenIds.isEmpty {
            d["eos_token_id"] = eosTokenIds
        }
        if family.isGemma {
            d.merge(gemmaJSON()) { $1 }
        } else if let s = slidingWindow {
            d["sliding_window"] = s
            if let l = slidingWindowLayers {
                d["use_sliding_window"] = true
                d["layer_types"] = l.map { $0 ? "sliding_attention" : "full_attention" }
                d["max_window_layers"] = l.firstIndex(of: true) ?? numLayers
            }
        }
        switch ropeScaling {
        case .none: break
        case let .linear(f): d["rope_scaling"] = ["rope_type": "linear", "factor": f]
        case let .dynamic(f, o):
            d["rope_scaling"] = ["rope_type": "dynamic", "factor": f, "original_max_position_embeddings": o]
        case let .llama3(f, l, h, o):
            d["rope_scaling"] = [
                "rope_type": "llama3", "factor": f, "low_freq_factor": l, "high_freq_factor": h,
                "original_max_position_embeddings": o,
            ]
        case let .longrope(short, long, o, a):
            var r: [String: Any] = [
                "rope_type": "longrope", "short_factor": short, "long_factor": long,
                "original_max_position_embeddings": o,
            ]
            // Only a non-default factor: JSON's decimal digits may not keep the computed one exactly.
            let scale = Double(maxPositionEmbeddings) / Double(o)
            if a != Self.longRopeAttentionFactor(scale: scale, originalContext: o) { r["attention_factor"] = a }
            d["rope_scaling"] = r
            // Phi3Config reads the original context from the top level (its default 4096 otherwise).
            d["original_max_position_embeddings"] = o
        }
        return d
    }
}
