import Foundation
import SqueezeFormats

/// The decoder families Squeeze runs, keyed by Hugging Face `model_type`.
///
/// One decoder (`DecoderModel`) runs them all; a family only decides the block's pieces (see
/// `ModelConfig.normKind`, `activation`, `learnedPositionOffset`, `preNorm`, ...) and the tensor names.
/// LLaMA, LLaMA-2, Vicuna, SmolLM and XGen checkpoints all say `model_type: llama`.
public enum ModelFamily: String, Sendable, CaseIterable, Equatable {
    /// LLaMA, LLaMA-2, Vicuna, SmolLM, XGen: RMSNorm, SwiGLU, RoPE (with `rope_scaling`).
    case llama
    /// Mistral: the Llama block with grouped-query attention limited to a sliding window.
    case mistral
    /// Qwen2: the Llama block with biases on q, k and v.
    case qwen2
    /// Qwen3: the Llama block with a per-head RMSNorm of queries and keys before RoPE, no q/k/v biases.
    case qwen3
    /// Gemma 2: (1 + w) RMSNorms before and after attention and the MLP, GeGLU (tanh), embeddings
    /// times sqrt(hidden), `query_pre_attn_scalar`, alternating sliding-window and global layers,
    /// attention-logit and final-logit soft-capping, tied head.
    case gemma2
    /// Gemma 3 (`gemma3_text`, and the text part of `gemma3` checkpoints): Gemma 2's block with
    /// per-head q/k norms, a local RoPE base on sliding-window layers, and no attention soft-capping.
    case gemma3 = "gemma3_text"
    /// Phi-3 (Phi-3 mini/medium, Phi-3.5 mini): the Llama block with q, k and v fused in `qkv_proj` and
    /// gate and up fused in `gate_up_proj`, no biases, LongRoPE (`longrope`/`su`) scaling.
    case phi3
    /// OPT: LayerNorm with bias, ReLU fc1/fc2, learned positions (offset 2), biases everywhere,
    /// pre- or post-LN, optional project_in/project_out (`word_embed_proj_dim`).
    case opt
    /// GPT-2: LayerNorm, fused `c_attn` in Conv1D orientation [in, out], learned positions, GELU (tanh).
    case gpt2

    /// The `model_type` values served, sorted.
    public static var supportedModelTypes: [String] { allCases.map(\.rawValue).sorted() }

    /// The family of a Hugging Face `model_type`; throws `ModelError.unsupportedModelType` naming it
    /// and listing the supported ones.
    public static func `for`(modelType: String, file: String = "config.json") throws -> ModelFamily {
        // A multimodal Gemma 3 checkpoint: its language model is a gemma3_text decoder (`text_config`).
        if modelType == "gemma3" { return .gemma3 }
        guard let f = ModelFamily(rawValue: modelType) else {
            throw ModelError.unsupportedModelType(file: file, modelType: modelType, supported: supportedModelTypes)
        }
        return f
    }

    /// Whether blocks use the Llama layout (RMSNorm, SwiGLU, RoPE, `model.layers.N.*` names).
    public var isLlamaLike: Bool {
        [.llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3].contains(self)
    }

    /// Whether blocks are Gemma's (norms around attention and the MLP, (1 + w) RMSNorm weights).
    public var isGemma: Bool { self == .gemma2 || self == .gemma3 }

    /// The prefix of every tensor name in a `save_pretrained` checkpoint of the `*ForCausalLM` class.
    var defaultTensorPrefix: String {
        switch self {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3: return "model."
        case .opt: return "model.decoder."
        case .gpt2: return "transformer."
        }
    }
}

/// The normalisation of a family's blocks.
public enum NormKind: String, Sendable, Equatable {
    /// x / rms(x) * w.
    case rms
    /// (x - mean) / std * w + b.
    case layerNorm
}

/// The MLP of a family's blocks.
public enum MLPActivation: String, Sendable, Equatable {
    /// down(silu(gate(x)) * up(x)).
    case swiglu
    /// down(relu(up(x))) (OPT's fc1/fc2).
    case relu
    /// down(gelu_tanh(up(x))) (GPT-2's `gelu_new`).
    case geluTanh
    /// down(gelu_tanh(gate(x)) * up(x)) (GeGLU: Gemma's `gelu_pytorch_tanh`).
    case gegluTanh

    /// Whether the MLP has a gate projection.
    public var isGated: Bool { self == .swiglu || self == .gegluTanh }
}

/// One linear operator of a block and where its weight is stored.
public struct LinearSlot: Sendable, Equatable {
    /// Its role in the block (nil: the LM head).
    public let kind: LinearKind?
    /// Name of the stored tensor without `.weight` (`model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`).
    public let prefix: String
    /// The operator's rows [rowOffset, rowOffset + rows) of the stored tensor's [out, in] view (a slice
    /// of a fused QKV tensor; 0 otherwise).
    public let rowOffset: Int
    public let rows: Int
    public let columns: Int
    /// Rows of the whole stored tensor in its [out, in] view.
    public let tensorRows: Int
    /// The stored tensor is [in, out] (GPT-2's Conv1D) rather than [out, in].
    public let transposed: Bool

    public init(
        kind: LinearKind?, prefix: String, rowOffset: Int = 0, rows: Int, columns: Int, tensorRows: Int? = nil,
        transposed: Bool = false
    ) {
        self.kind = kind; self.prefix = prefix; self.rowOffset = rowOffset; self.rows = rows; self.columns = columns
        self.tensorRows = tensorRows ?? rows; self.transposed = transposed
    }

    /// Whether the operator is the whole stored tensor.
    public var isWhole: Bool { rowOffset == 0 && rows == tensorRows }
}

/// One stored linear weight of a block, as the quantizer and sensitivity files see it.
public struct LinearTensor: Sendable, Equatable {
    /// Name without `.weight`.
    public let prefix: String
    /// [out, in] rows and columns.
    public let rows: Int
    public let columns: Int
    /// Stored [in, out] (Conv1D).
    public let transposed: Bool
    /// The block operators it holds, with their row offsets (several for a fused QKV).
    public let parts: [LinearSlot]

    /// The name of the weight tensor.
    public var weightName: String { prefix + ".weight" }
    /// The shape of the stored weight (Hugging Face orientation).
    public var storedShape: [Int] { transposed ? [columns, rows] : [rows, columns] }
}

extension ModelConfig {
    /// Prefix of block `layer`'s tensor names.
    public func layerPrefix(_ layer: Int) -> String { family.layerPrefix(layer, tensorPrefix: tensorPrefix) }

    /// The linear kinds a block of this family has (no gate outside SwiGLU families), in backward order.
    public var linearKinds: [LinearKind] {
        activation.isGated ? LinearKind.allCases : [.q, .k, .v, .o, .up, .down]
    }

    /// Where the weight of `kind` in block `layer` is stored (named by `ModelFamily.linearSuffix`);
    /// nil when the family has no such layer.
    public func linearSlot(layer: Int, kind: LinearKind) -> LinearSlot? {
        guard let suffix = family.linearSuffix(kind) else { return nil }
        let prefix = layerPrefix(layer) + suffix
        let h = hiddenSize, qd = numHeads * headDim, kvd = numKVHeads * headDim, f = intermediateSize
        let (r, c): (Int, Int)
        switch kind {
        case .q: (r, c) = (qd, h)
        case .k, .v: (r, c) = (kvd, h)
        case .o: (r, c) = (h, qd)
        case .gate, .up: (r, c) = (f, h)
        case .down: (r, c) = (h, f)
        }
        if family == .phi3 {
            // qkv_proj holds [q; k; v] rows, gate_up_proj [gate; up] (transformers splits them in that order).
            switch kind {
            case .q, .k, .v:
                let offset = kind == .q ? 0 : (kind == .k ? qd : qd + kvd)
                return LinearSlot(
                    kind: kind, prefix: prefix, rowOffset: offset, rows: r, columns: c, tensorRows: qd + 2 * kvd)
            case .gate, .up:
                return LinearSlot(
                    kind: kind, prefix: prefix, rowOffset: kind == .gate ? 0 : f, rows: r, columns: c,
                    tensorRows: 2 * f)
            default: return LinearSlot(kind: kind, prefix: prefix, rows: r, columns: c)
            }
        }
        guard family == .gpt2 else { return LinearSlot(kind: kind, prefix: prefix, rows: r, columns: c) }
        // Conv1D weights [in, out]; q, k and v are row ranges of the fused c_attn.
        switch kind {
        case .q, .k, .v:
            let offset = kind == .q ? 0 : (kind == .k ? qd : qd + kvd)
            return LinearSlot(
                kind: kind, prefix: prefix, rowOffset: offset, rows: r, columns: c, tensorRows: qd + 2 * kvd,
                transposed: true)
        default:
            return LinearSlot(kind: kind, prefix: prefix, rows: r, columns: c, transposed: true)
        }
    }

    /// The full weight name of `kind` in block `layer` (the stored tensor; GPT-2's q, k and v share
    /// `c_attn`, Phi-3's `qkv_proj`).
    public func weightName(layer: Int, kind: LinearKind) -> String? {
        family.weightName(layer: layer, kind: kind, tensorPrefix: tensorPrefix)
    }

    /// The stored linear weights of block `layer` (what the quantizer quantizes and sensitivity files hold),
    /// in file order of the family.
    public func linearTensors(layer: Int) -> [LinearTensor] {
        var out: [LinearTensor] = []
        for kind in LinearKind.allCases {
            guard let s = linearSlot(layer: layer, kind: kind) else { continue }
            if let i = out.firstIndex(where: { $0.prefix == s.prefix }) {
                let t = out[i]
                out[i] = LinearTensor(
                    prefix: t.prefix, rows: t.rows, columns: t.columns, transposed: t.transposed, parts: t.parts + [s])
            } else {
                out.append(
                    LinearTensor(
                        prefix: s.prefix, rows: s.tensorRows, columns: s.columns, transposed: s.transposed, parts: [s]))
            }
        }
        return out
    }

    /// Every block's stored linear weights.
    public var allLinearTensors: [LinearTensor] { (0..<numLayers).flatMap { linearTensors(layer: $0) } }

    /// Names of the non-linear tensors of the family.
    public var embeddingName: String {
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3, .opt:
            return tensorPrefix + "embed_tokens.weight"
        case .gpt2: return tensorPrefix + "wte.weight"
        }
    }
    /// Learned position table (OPT, GPT-2); nil for RoPE families.
    public var positionEmbeddingName: String? {
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3: return nil
        case .opt: return tensorPrefix + "embed_positions.weight"
        case .gpt2: return tensorPrefix + "wpe.weight"
        }
    }
    /// The norm before attention (pre-LN) or after it (post-LN), without `.weight`.
    public func attentionNormName(layer: Int) -> String {
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3: return layerPrefix(layer) + "input_layernorm"
        case .opt: return layerPrefix(layer) + "self_attn_layer_norm"
        case .gpt2: return layerPrefix(layer) + "ln_1"
        }
    }
    /// The norm before the MLP (pre-LN) or after it (post-LN), without `.weight`.
    public func mlpNormName(layer: Int) -> String {
        if family.isGemma { return layerPrefix(layer) + "pre_feedforward_layernorm" }
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3:
            return layerPrefix(layer) + "post_attention_layernorm"
        case .opt: return layerPrefix(layer) + "final_layer_norm"
        case .gpt2: return layerPrefix(layer) + "ln_2"
        }
    }
    /// Gemma's norm of the attention output before its residual add, without `.weight`.
    public func postAttentionNormName(layer: Int) -> String { layerPrefix(layer) + "post_attention_layernorm" }
    /// Gemma's norm of the MLP output before its residual add, without `.weight`.
    public func postMLPNormName(layer: Int) -> String { layerPrefix(layer) + "post_feedforward_layernorm" }
    /// The per-head RMSNorm of the queries (Qwen3, Gemma 3), without `.weight`.
    public func qNormName(layer: Int) -> String { layerPrefix(layer) + "self_attn.q_norm" }
    /// The per-head RMSNorm of the keys (Qwen3, Gemma 3), without `.weight`.
    public func kNormName(layer: Int) -> String { layerPrefix(layer) + "self_attn.k_norm" }
    /// The final norm, without `.weight`.
    public var finalNormName: String {
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3: return tensorPrefix + "norm"
        case .opt: return tensorPrefix + "final_layer_norm"
        case .gpt2: return tensorPrefix + "ln_f"
        }
    }
    /// The LM head weight (absent when tied in the checkpoint).
    public var lmHeadName: String { "lm_head.weight" }

    /// Width of the token embeddings (OPT's `word_embed_proj_dim`; the hidden size otherwise).
    public var embeddingWidth: Int { embeddingDim ?? hiddenSize }

    /// Adapts `tensorPrefix` to a checkpoint saved from the base model class (e.g. `h.0.attn.c_attn.weight`
    /// in the original GPT-2 files, `decoder.layers.0...` in OPT's) when the default names are absent.
    public mutating func resolveTensorPrefix(names: Set<String>) {
        let base = family.defaultTensorPrefix
        tensorPrefix = base
        if names.contains(embeddingName) { return }
        // Multimodal Gemma 3: transformers 5 names the text decoder `model.language_model.`, 4.x
        // `language_model.model.`.
        for candidate in ["model.language_model.", "language_model.model."] where family == .gemma3 {
            tensorPrefix = candidate
            if names.contains(embeddingName) { return }
        }
        for candidate in [String(base.drop(while: { $0 != "." }).dropFirst()), ""] where candidate != base {
            tensorPrefix = candidate
            if names.contains(embeddingName) { return }
        }
        tensorPrefix = base
    }

    // MARK: - Reading the non-Llama configs

    /// Gemma 2's and Gemma 3's `config.json` fields (a multimodal Gemma 3's `text_config`), as
    /// transformers 5.24 reads them.
    mutating func readGemma(_ obj: JSONConfig, path: String) throws {
        normWeightOffset = 1
        sandwichNorms = true
        embeddingMultiplier = Double(hiddenSize).squareRoot()
        tieWordEmbeddings = try obj.optionalBool("tie_word_embeddings") ?? true
        let act = try obj.optionalString("hidden_activation") ?? obj.optionalString("hidden_act") ?? "gelu_pytorch_tanh"
        guard ["gelu_pytorch_tanh", "gelu_new"].contains(act) else {
            throw ModelError.invalidConfig(
                file: path, field: "hidden_activation", detail: "unsupported '\(act)' (gelu_pytorch_tanh)")
        }
        activation = .gegluTanh
        let scalar = try obj.optionalDouble("query_pre_attn_scalar") ?? Double(headDim)
        guard scalar > 0 else {
            throw ModelError.invalidConfig(file: path, field: "query_pre_attn_scalar", detail: "must be positive")
        }
        attentionMultiplier = 1 / scalar.squareRoot()
        for (field, cap) in [
            ("attn_logit_softcapping", try obj.optionalDouble("attn_logit_softcapping")),
            ("final_logit_softcapping", try obj.optionalDouble("final_logit_softcapping")),
        ] {
            if let c = cap, !(c > 0 && c.isFinite) {
                throw ModelError.invalidConfig(file: path, field: field, detail: "must be positive, got \(c)")
            }
        }
        attentionSoftcap = try obj.optionalDouble("attn_logit_softcapping")
        finalLogitSoftcap = try obj.optionalDouble("final_logit_softcapping")
        if try obj.optionalBool("use_bidirectional_attention") == true {
            throw ModelError.invalidConfig(
                file: path, field: "use_bidirectional_attention", detail: "bidirectional attention is not supported")
        }
        if family == .gemma3 {
            qkNorm = true
            localRopeTheta =
                try obj.nested("rope_parameters").nested("sliding_attention").optionalDouble("rope_theta")
                ?? obj.optionalDouble("rope_local_base_freq") ?? 10000
        }
        guard let w = try obj.optionalInt("sliding_window") else { return }
        let family = family, numLayers = numLayers
        try readSlidingWindow(obj, path: path, window: w) {
            // transformers' defaults: Gemma 2 alternates (even layers slide); Gemma 3 has one global
            // layer in every `sliding_window_pattern` (6).
            let pattern =
                family == .gemma2
                ? 2
                : try obj.optionalInt("sliding_window_pattern") ?? obj.optionalInt("_sliding_window_pattern") ?? 6
            guard pattern > 0 else {
                throw ModelError.invalidConfig(file: path, field: "sliding_window_pattern", detail: "must be positive")
            }
            return (0..<numLayers).map { ($0 + 1) % pattern != 0 }
        }
    }

    /// Gemma's fields of a Hugging Face `config.json` (added to the Llama ones).
    func gemmaJSON() -> [String: Any] {
        var d: [String: Any] = [
            "architectures": [family == .gemma2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM"],
            "hidden_activation": "gelu_pytorch_tanh",
            "query_pre_attn_scalar": attentionMultiplier.map { 1 / ($0 * $0) } ?? Double(headDim),
        ]
        d["attn_logit_softcapping"] = attentionSoftcap ?? NSNull()
        d["final_logit_softcapping"] = finalLogitSoftcap ?? NSNull()
        if let l = localRopeTheta { d["rope_local_base_freq"] = l }
        if let w = slidingWindow {
            d["sliding_window"] = w
            d["layer_types"] = (0..<numLayers).map {
                slidingWindow(forLayer: $0) != nil ? "sliding_attention" : "full_attention"
            }
        }
        return d
    }

    /// OPT's `config.json`.
    mutating func readOPT(_ obj: JSONConfig, path: String) throws {
        let pre = try obj.optionalBool("do_layer_norm_before") ?? true
        preNorm = pre
        let removed = try obj.optionalBool("_remove_final_layer_norm") ?? false
        hasFinalNorm = pre && !removed
        normKind = .layerNorm
        rmsNormEps = 1e-5
        let act = try obj.optionalString("activation_function") ?? "relu"
        guard act == "relu" else {
            throw ModelError.invalidConfig(
                file: path, field: "activation_function", detail: "unsupported '\(act)' for OPT (relu)")
        }
        activation = .relu
        learnedPositionOffset = 2
        if try obj.optionalBool("enable_bias") == false {
            throw ModelError.invalidConfig(
                file: path, field: "enable_bias", detail: "OPT without biases is not supported")
        }
        if try obj.optionalBool("layer_norm_elementwise_affine") == false {
            throw ModelError.invalidConfig(
                file: path, field: "layer_norm_elementwise_affine", detail: "LayerNorm without weights is not supported"
            )
        }
        let wepd = try obj.optionalInt("word_embed_proj_dim") ?? hiddenSize
        embeddingDim = wepd == hiddenSize ? nil : wepd
    }

    /// GPT-2's `config.json` (its own field names: n_embd, n_layer, n_head, n_positions, n_inner).
    static func gpt2(_ obj: JSONConfig, path: String) throws -> ModelConfig {
        let h = try obj.int("n_embd")
        let heads = try obj.int("n_head")
        var c = ModelConfig(
            vocabSize: try obj.int("vocab_size"), hiddenSize: h,
            intermediateSize: try obj.optionalInt("n_inner") ?? 4 * h, numLayers: try obj.int("n_layer"),
            numHeads: heads, numKVHeads: heads, headDim: nil,
            rmsNormEps: try obj.optionalDouble("layer_norm_epsilon") ?? 1e-5,
            maxPositionEmbeddings: try obj.optionalInt("n_positions") ?? 1024,
            tieWordEmbeddings: try obj.optionalBool("tie_word_embeddings") ?? true)
        c.modelType = "gpt2"
        c.family = .gpt2
        c.tensorPrefix = ModelFamily.gpt2.defaultTensorPrefix
        c.normKind = .layerNorm
        c.learnedPositionOffset = 0
        let act = try obj.optionalString("activation_function") ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(act) else {
            throw ModelError.invalidConfig(
                file: path, field: "activation_function", detail: "unsupported '\(act)' for GPT-2 (gelu_new)")
        }
        c.activation = .geluTanh
        if try obj.optionalBool("scale_attn_by_inverse_layer_idx") == true {
            throw ModelError.invalidConfig(
                file: path, field: "scale_attn_by_inverse_layer_idx", detail: "not supported")
        }
        if try obj.optionalBool("scale_attn_weights") == false {
            throw ModelError.invalidConfig(
                file: path, field: "scale_attn_weights", detail: "unscaled attention is not supported")
        }
        return c
    }

    /// The family-specific part of the Hugging Face `config.json` object.
    func familyJSON() -> [String: Any] {
        var d: [String: Any] = [
            "model_type": modelType, "vocab_size": vocabSize,
            "tie_word_embeddings": tieWordEmbeddings,
        ]
        switch family {
        case .llama, .mistral, .qwen2, .qwen3, .gemma2, .gemma3, .phi3: break
        case .opt:
            d["architectures"] = ["OPTForCausalLM"]
            d["hidden_size"] = hiddenSize; d["ffn_dim"] = intermediateSize; d["num_hidden_layers"] = numLayers
            d["num_attention_heads"] = numHeads; d["max_position_embeddings"] = maxPositionEmbeddings
            d["do_layer_norm_before"] = preNorm; d["word_embed_proj_dim"] = embeddingWidth
            d["activation_function"] = "relu"; d["enable_bias"] = true
            d["_remove_final_layer_norm"] = preNorm && !hasFinalNorm
        case .gpt2:
            d["architectures"] = ["GPT2LMHeadModel"]
            d["n_embd"] = hiddenSize; d["n_inner"] = intermediateSize; d["n_layer"] = numLayers; d["n_head"] = numHeads
            d["n_positions"] = maxPositionEmbeddings; d["layer_norm_epsilon"] = rmsNormEps
            d["activation_function"] = "gelu_new"
        }
        if let b = bosTokenId { d["bos_token_id"] = b }
        if eosTokenIds.count == 1 {
            d["eos_token_id"] = eosTokenIds[0]
        } else if !eosTokenIds.isEmpty {
            d["eos_token_id"] = eosTokenIds
        }
        return d
    }
}
