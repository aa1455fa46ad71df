import Foundation
import SqueezeCore
import SqueezeKernels

/// Options for loading weights.
public struct LoadOptions: Sendable {
    /// Convert dense weights to this dtype at load (nil: keep F32/F16/BF16 as stored, dequantize others to F32).
    public var weightDType: DType?
    /// Kernel path for look-up-table (quantized) layers: `.int8` (fast; activations and tables in int8)
    /// or `.float` (exact float tables).
    public var lutMode: LUTMode
    /// Storage of a dense LM head (tied embeddings or an unquantized `lm_head`).
    public var head: HeadFormat
    /// Storage of the KV caches made for this model (`DecoderModel.makeCache`).
    public var kvCache: KVCachePrecision
    public init(
        weightDType: DType? = nil, lutMode: LUTMode = .int8, head: HeadFormat = .stored,
        kvCache: KVCachePrecision = .f32
    ) {
        self.weightDType = weightDType
        self.lutMode = lutMode
        self.head = head
        self.kvCache = kvCache
    }
}

/// How a dense LM head is held in memory.
public enum HeadFormat: String, Sendable, CaseIterable {
    /// As the other dense weights (the file's dtype, or `weightDType`).
    case stored
    /// 8-bit integers with a scale per 32 values (`Q8Matrix`), quantized at load: about half the
    /// bytes of F16, read with integer dot products. The LM head is a large share of a small
    /// quantized model's bytes per token.
    case q8
}

/// Builds the operator for one linear layer given where its weight is stored (`slot.prefix`, e.g.
/// `model.layers.0.mlp.up_proj`, and for a fused QKV the rows it takes); returns nil to fall back to the
/// dense `.weight` tensor.
public typealias LinearFactory = (_ slot: LinearSlot) throws -> LinearOperator?

/// The decoder of every supported family (`ModelFamily`: LLaMA, LLaMA-2, Vicuna, SmolLM, XGen, Mistral,
/// Qwen2, OPT, GPT-2) with F32 activations; the config says which pieces its blocks have.
public final class DecoderModel: @unchecked Sendable {
    public let config: ModelConfig
    public let ropeLayout: RopeLayout
    /// Token embeddings [vocab, embeddingWidth] (F32, F16 or BF16).
    public let embedding: Tensor
    /// Learned positions [positions, hidden] in F32 (OPT, GPT-2).
    public let positionEmbedding: AlignedBuffer<Float>?
    /// OPT's project_in [hidden, embeddingWidth] and project_out [embeddingWidth, hidden].
    public let projectIn: LinearOperator?
    public let projectOut: LinearOperator?
    public let layers: [DecoderLayer]
    /// The norm after the last block (nil when the family has none: OPT-350m).
    public let finalNorm: Norm?
    public let lmHead: LinearOperator
    /// The pool all kernels run on.
    public let pool: WorkerPool
    /// Storage of the caches that `makeCache` makes (from `LoadOptions.kvCache`; settable).
    public var kvCachePrecision: KVCachePrecision = .f32
    let invFreq: [Float]
    /// RoPE inverse frequencies of sliding-window layers when their base differs (Gemma 3); empty otherwise.
    let invFreqLocal: [Float]

    /// Loads the weights named by the config from `source`, checking every shape.
    public init(
        config: ModelConfig, source: TensorSource, options: LoadOptions = LoadOptions(),
        linearFactory: LinearFactory? = nil, pool: WorkerPool = .shared
    ) throws {
        var config = config
        if source is SafeTensorsSource { config.resolveTensorPrefix(names: Set(source.tensorNames)) }
        try config.checkDecoderShapes(file: source.path)
        self.config = config
        self.ropeLayout = source.ropeLayout
        self.pool = pool
        let h = config.hiddenSize
        let file = source.path

        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard source.contains(name) else { throw ModelError.missingTensor(file: file, tensor: name) }
            let t = try source.tensor(name)
            guard t.shape == shape else {
                throw ModelError.shapeMismatch(file: file, tensor: name, expected: shape, got: t.shape)
            }
            return t
        }
        func vector(_ name: String, _ n: Int, offset: Int = 0, total: Int? = nil) throws -> AlignedBuffer<Float> {
            let t = try load(name, [total ?? n])
            let b = AlignedBuffer<Float>(count: n)
            t.convertToFloat(into: b.pointer, offset: offset, count: n)
            return b
        }
        func dense(_ t: Tensor) throws -> DenseMatrix {
            var t = t
            if let want = options.weightDType, want != t.dtype {
                t = try t.converted(to: want)
            } else if ![.f32, .f16, .bf16].contains(t.dtype) {
                t = t.toF32()
            }
            return try DenseMatrix(t)
        }
        // Conv1D ([in, out]) weights transposed once to [out, in] F32, shared by the slices of a fused QKV.
        var transposedCache: [String: Tensor] = [:]
        func storedWeight(_ s: LinearSlot) throws -> Tensor {
            let name = s.prefix + ".weight"
            guard s.transposed else { return try load(name, [s.tensorRows, s.columns]) }
            if let t = transposedCache[name] { return t }
            let t = try load(name, [s.columns, s.tensorRows])
            let src = t.toFloatArray()
            let buf = AlignedBuffer<Float>(count: s.tensorRows * s.columns)
            for i in 0..<s.columns { for o in 0..<s.tensorRows { buf[o * s.columns + i] = src[i * s.tensorRows + o] } }
            let out = Tensor.owning(buf, name: name, dtype: .f32, shape: [s.tensorRows, s.columns])
            transposedCache[name] = out
            return out
        }
        func linear(_ s: LinearSlot) throws -> LinearOperator {
            if let f = linearFactory, let op = try f(s) {
                guard op.rows == s.rows, op.columns == s.columns else {
                    throw ModelError.shapeMismatch(
                        file: file, tensor: s.prefix, expected: [s.rows, s.columns], got: [op.rows, op.columns])
                }
                return op
            }
            let full = try storedWeight(s)
            if s.isWhole { return try dense(full) }
            let sz = full.dtype.byteSize
            let slice = Tensor(
                name: full.name, dtype: full.dtype, shape: [s.rows, s.columns],
                data: full.data + s.rowOffset * s.columns * sz, owner: full.owner)
            return try dense(slice)
        }
        func linearWithBias(_ s: LinearSlot) throws -> Linear {
            let name = s.prefix + ".bias"
            let b = source.contains(name) ? try vector(name, s.rows, offset: s.rowOffset, total: s.tensorRows) : nil
            return Linear(try linear(s), bias: b)
        }
        func blockLinear(_ layer: Int, _ kind: LinearKind) throws -> Linear {
            guard let s = config.linearSlot(layer: layer, kind: kind) else {
                throw ModelError.invalidConfig(
                    file: file, field: "model_type",
                    detail: "family '\(config.family.rawValue)' has no \(kind) projection")
            }
            return try linearWithBias(s)
        }
        let eps = Float(config.rmsNormEps)
        func normLayer(_ prefix: String, width: Int? = nil) throws -> Norm {
            let w = try vector(prefix + ".weight", width ?? h)
            if config.normWeightOffset != 0 {
                let off = Float(config.normWeightOffset)
                for i in 0..<w.count { w[i] += off }
            }
            switch config.normKind {
            case .rms: return .rms(weight: w, eps: eps)
            case .layerNorm: return .layerNorm(weight: w, bias: try vector(prefix + ".bias", width ?? h), eps: eps)
            }
        }

        let ew = config.embeddingWidth
        let emb = try load(config.embeddingName, [config.vocabSize, ew])
        embedding = [.f32, .f16, .bf16].contains(emb.dtype) ? emb : emb.toF32()
        if let pn = config.positionEmbeddingName {
            let rows = config.maxPositionEmbeddings + (config.learnedPositionOffset ?? 0)
            let pt = try load(pn, [rows, h])
            let pb = AlignedBuffer<Float>(count: rows * h)
            pt.convertToFloat(into: pb.pointer, offset: 0, count: rows * h)
            positionEmbedding = pb
        } else {
            positionEmbedding = nil
        }
        if config.embeddingDim != nil {
            projectIn = try dense(try load(config.tensorPrefix + "project_in.weight", [h, ew]))
            projectOut = try dense(try load(config.tensorPrefix + "project_out.weight", [ew, h]))
        } else {
            projectIn = nil
            projectOut = nil
        }
        var ls: [DecoderLayer] = []
        for i in 0..<config.numLayers {
            let attention = Attention(
                q: try blockLinear(i, .q), k: try blockLinear(i, .k), v: try blockLinear(i, .v),
                o: try blockLinear(i, .o), window: config.slidingWindow(forLayer: i),
                qNorm: config.qkNorm ? try normLayer(config.qNormName(layer: i), width: config.headDim) : nil,
                kNorm: config.qkNorm ? try normLayer(config.kNormName(layer: i), width: config.headDim) : nil)
            let mlp: MLP
            switch config.activation {
            case .swiglu, .gegluTanh:
                mlp = .gated(
                    gate: try blockLinear(i, .gate), up: try blockLinear(i, .up), down: try blockLinear(i, .down))
            case .relu: mlp = .plain(up: try blockLinear(i, .up), down: try blockLinear(i, .down), activation: .relu)
            case .geluTanh:
                mlp = .plain(up: try blockLinear(i, .up), down: try blockLinear(i, .down), activation: .geluTanh)
            }
            var layer = DecoderLayer(
                attentionNorm: try normLayer(config.attentionNormName(layer: i)), attention: attention,
                mlpNorm: try normLayer(config.mlpNormName(layer: i)), mlp: mlp)
            if config.sandwichNorms {
                layer.postAttentionNorm = try normLayer(config.postAttentionNormName(layer: i))
                layer.postMLPNorm = try normLayer(config.postMLPNormName(layer: i))
            }
            ls.append(layer)
        }
        layers = ls
        finalNorm = config.hasFinalNorm ? try normLayer(config.finalNormName) : nil
        let head = LinearSlot(kind: nil, prefix: "lm_head", rows: config.vocabSize, columns: ew)
        var lm: LinearOperator
        if source.contains("lm_head.weight") || linearFactory != nil && !config.tieWordEmbeddings {
            lm = try linear(head)
        } else if config.tieWordEmbeddings {
            lm = try dense(embedding)
        } else {
            throw ModelError.missingTensor(file: file, tensor: "lm_head.weight")
        }
        if options.head == .q8, let d = lm as? DenseMatrix { lm = try Q8Matrix(d.tensor, pool: pool) }
        lmHead = lm
        invFreq = config.learnedPositionOffset == nil ? DecoderModel.inverseFrequencies(config) : []
        if let local = config.localRopeTheta, config.learnedPositionOffset == nil {
            var plain = config
            plain.ropeTheta = local
            plain.ropeScaling = .none
            invFreqLocal = DecoderModel.inverseFrequencies(plain)
        } else {
            invFreqLocal = []
        }
        kvCachePrecision = options.kvCache
    }

    /// A KV cache for `capacity` positions of this model, stored as `kvCachePrecision` says.
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(config: config, capacity: capacity, precision: kvCachePrecision)
    }

    private init(sharing m: DecoderModel, pool: WorkerPool) {
        config = m.config; ropeLayout = m.ropeLayout; embedding = m.embedding; positionEmbedding = m.positionEmbedding
        projectIn = m.projectIn; projectOut = m.projectOut; layers = m.layers; finalNorm = m.finalNorm
        lmHead = m.lmHead; invFreq = m.invFreq; invFreqLocal = m.invFreqLocal; kvCachePrecision = m.kvCachePrecision
        self.pool = pool
    }

    /// The same model (its weights shared, not copied) running its kernels on `pool`: for example a
    /// one-thread pool per window when several windows run at once (`Sensitivity.compute`).
    public func sharingWeights(pool: WorkerPool) -> DecoderModel {
        DecoderModel(sharing: self, pool: pool)
    }

    /// Whether positions are rotary (false: learned absolute positions).
    public var usesRope: Bool { config.learnedPositionOffset == nil }

    /// RoPE inverse frequencies (Float32, as Hugging Face computes them), with `rope_scaling` applied.
    static func inverseFrequencies(_ c: ModelConfig) -> [Float] {
        let d = c.headDim
        var inv = (0..<(d / 2)).map { i -> Float in 1.0 / Float(powf(Float(c.ropeTheta), Float(2 * i) / Float(d))) }
        switch c.ropeScaling {
        case .none, .dynamic: break
        case let .linear(f): inv = inv.map { $0 / Float(f) }
        case let .longrope(short, _, _, _): inv = longRopeFrequencies(c, factors: short)
        case let .llama3(f, lo, hi, orig):
            let lowWave = Double(orig) / lo, highWave = Double(orig) / hi
            inv = inv.map { fr in
                let wave = 2 * Double.pi / Double(fr)
                if wave < highWave { return fr }
                if wave > lowWave { return Float(Double(fr) / f) }
                let s = (Double(orig) / wave - lo) / (hi - lo)
                return Float((1 - s) * Double(fr) / f + s * Double(fr))
            }
        }
        return inv
    }

    /// LongRoPE's inverse frequencies for `factors` as transformers computes them in float32:
    /// 1 / (factor_i * theta^(2i / d)).
    static func longRopeFrequencies(_ c: ModelConfig, factors: [Double]) -> [Float] {
        let d = c.headDim
        return (0..<(d / 2)).map { i in 1 / (Float(factors[i]) * powf(Float(c.ropeTheta), Float(2 * i) / Float(d))) }
    }

    /// The RoPE inverse frequencies of a forward pass whose positions reach `length` (its last
    /// position is length - 1); only dynamic NTK scaling depends on `length`.
    ///
    /// Dynamic NTK, as transformers 5.24 computes it (`_compute_dynamic_ntk_parameters`, in float32):
    /// for length L > originalContext (`max_position_embeddings`) the base becomes
    /// theta * (factor * L / originalContext - (factor - 1))^(d / (d - 2)); up to originalContext the
    /// frequencies are the plain ones.
    ///
    /// Which L each pass uses: Squeeze takes, per sequence and per forward call, L = the cache's length
    /// plus the call's tokens, and RoPEs that call's queries and new keys with it; keys already in the
    /// cache keep the rotation they were stored with. transformers' `dynamic_rope_update` does the same
    /// for one forward call (L = max position id + 1), so
    /// - a whole-sequence forward (prefill, the training forward behind the Fisher sensitivity) matches
    ///   it exactly;
    /// - token-by-token decode (and chunked prefill) match transformers' step-by-step forward through
    ///   its KV cache (e.g. `generate`) on a model whose lengths have only grown: each step past
    ///   originalContext rescales for its own length, the cached keys keep earlier rotations, so the
    ///   logits differ from a whole-sequence forward of the same tokens (in both libraries).
    /// transformers keeps state across calls that Squeeze does not: its frequencies only grow
    /// (`max_seq_len_cached`) until a call shorter than originalContext resets them, so after it has
    /// seen a long sequence, a later call of length originalContext < L < that maximum uses the
    /// maximum's frequencies, where Squeeze uses L's. Batched decoding rescales each sequence for its
    /// own length (transformers: the batch's longest).
    ///
    /// LongRoPE follows the same per-call rule (transformers' `longrope_frequency_update`, which keeps
    /// no state): the long factors for a call with L > originalContext, the short ones otherwise.
    public func frequencies(forLength length: Int) -> [Float] {
        guard length > config.ropeScaling.dynamicOriginalContext else {
            return invFreq
        }
        var out = [Float](repeating: 0, count: config.headDim / 2)
        out.withUnsafeMutableBufferPointer { frequencies(forLength: length, into: $0.baseAddress!) }
        return out
    }

    /// `frequencies(forLength:)` written into `out` (headDim / 2 values), without allocating.
    func frequencies(forLength length: Int, into out: UnsafeMutablePointer<Float>) {
        let half = config.headDim / 2
        if case let .longrope(_, long, orig, _) = config.ropeScaling, length > orig {
            let d = config.headDim
            for i in 0..<half { out[i] = 1 / (Float(long[i]) * powf(Float(config.ropeTheta), Float(2 * i) / Float(d))) }
            return
        }
        guard case let .dynamic(factor, orig) = config.ropeScaling, length > orig else {
            invFreq.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: half) }
            return
        }
        // Float32 throughout, in transformers' order of operations.
        let d = config.headDim, f = Float(factor)
        let scaled = f * Float(length) / Float(orig) - (f - 1)
        let base = Float(config.ropeTheta) * powf(scaled, Float(Double(d) / Double(d - 2)))
        for i in 0..<half { out[i] = 1 / powf(base, Float(2 * i) / Float(d)) }
    }

    /// Bytes of weights read per decoded token (all linear layers plus the LM head).
    public var weightBytesPerToken: Int {
        layers.reduce(0) { acc, l in acc + l.linears.reduce(0) { $0 + $1.1.weightBytes } } + lmHead.weightBytes
    }

    /// Number of parameters in linear layers, embeddings and norms.
    public var parameterCount: Int {
        let c = config
        let lin = layers.reduce(0) { acc, l in acc + l.linears.reduce(0) { $0 + $1.1.rows * $1.1.columns } }
        return lin + c.vocabSize * c.embeddingWidth * (c.tieWordEmbeddings ? 1 : 2) + c.hiddenSize
            * (2 * c.numLayers + 1)
    }
}

extension ModelConfig {
    /// Checks the sizes the decoder divides by or indexes with, so that a bad config is a typed error
    /// naming its field rather than a crash.
    public func checkDecoderShapes(file: String) throws {
        func positive(_ v: Int, _ field: String) throws {
            guard v > 0 else {
                throw ModelError.invalidConfig(file: file, field: field, detail: "must be positive, got \(v)")
            }
        }
        try positive(vocabSize, "vocab_size")
        try positive(hiddenSize, "hidden_size")
        try positive(intermediateSize, "intermediate_size")
        try positive(numLayers, "num_hidden_layers")
        try positive(numHeads, "num_attention_heads")
        try positive(numKVHeads, "num_key_value_heads")
        try positive(headDim, "head_dim")
        guard numHeads % numKVHeads == 0 else {
            throw ModelError.invalidConfig(
                file: file, field: "num_key_value_heads",
                detail: "\(numKVHeads) does not divide num_attention_heads (\(numHeads))")
        }
        if learnedPositionOffset == nil && headDim % 2 != 0 {
            throw ModelError.invalidConfig(
                file: file, field: "head_dim", detail: "RoPE needs an even head dimension, got \(headDim)")
        }
        if let o = learnedPositionOffset {
            guard o >= 0 else {
                throw ModelError.invalidConfig(file: file, field: "learned position offset", detail: "negative (\(o))")
            }
            try positive(maxPositionEmbeddings, "max_position_embeddings")
        }
        if let e = embeddingDim { try positive(e, "word_embed_proj_dim") }
        for layer in 0..<numLayers {
            if let w = slidingWindow(forLayer: layer) { try positive(w, "sliding_window") }
        }
        try checkSizeProducts(file: file)
        guard rmsNormEps.isFinite && rmsNormEps >= 0 else {
            throw ModelError.invalidConfig(
                file: file, field: "rms_norm_eps", detail: "must be finite and >= 0, got \(rmsNormEps)")
        }
    }
}
