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
    public init(weightDType: DType? = nil, lutMode: LUTMode = .int8) {
        self.weightDType = weightDType
        self.lutMode = lutMode
    }
}

/// Builds the operator for one linear layer given its name prefix (e.g. `model.layers.0.mlp.up_proj`);
/// returns nil to fall back to the dense `.weight` tensor.
public typealias LinearFactory = (_ prefix: String, _ rows: Int, _ columns: Int) throws -> LinearOperator?

/// One transformer block's weights.
public struct LlamaLayer {
    public let attnNorm: AlignedBuffer<Float>
    public let q: LinearOperator, k: LinearOperator, v: LinearOperator, o: LinearOperator
    public let qBias: AlignedBuffer<Float>?, kBias: AlignedBuffer<Float>?, vBias: AlignedBuffer<Float>?
    public let ffnNorm: AlignedBuffer<Float>
    public let gate: LinearOperator, up: LinearOperator, down: LinearOperator

    /// The seven linear operators with their Hugging Face names (suffix after `model.layers.N.`).
    public var linears: [(String, LinearOperator)] {
        [("self_attn.q_proj", q), ("self_attn.k_proj", k), ("self_attn.v_proj", v), ("self_attn.o_proj", o),
         ("mlp.gate_proj", gate), ("mlp.up_proj", up), ("mlp.down_proj", down)]
    }
}

/// A Llama-family decoder (LLaMA, LLaMA-2, Vicuna, SmolLM, Mistral) with F32 activations.
public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    public let ropeLayout: RopeLayout
    /// Token embeddings [vocab, hidden] (F32, F16 or BF16).
    public let embedding: Tensor
    public let layers: [LlamaLayer]
    public let norm: AlignedBuffer<Float>
    public let lmHead: LinearOperator
    /// The pool all kernels run on.
    public let pool: WorkerPool
    let invFreq: [Float]

    /// Loads the weights named by the config from `source`, checking every shape.
    public init(config: LlamaConfig, source: TensorSource, options: LoadOptions = LoadOptions(),
                linearFactory: LinearFactory? = nil, pool: WorkerPool = .shared) throws {
        self.config = config
        self.ropeLayout = source.ropeLayout
        self.pool = pool
        let h = config.hiddenSize, hd = config.headDim
        let file = source.path

        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            guard source.contains(name) else { throw ModelError.missingTensor(file: file, tensor: name) }
            let t = try source.tensor(name)
            guard t.shape == shape else {
                throw ModelError.shapeMismatch(file: file, tensor: name, expected: shape, got: t.shape)
            }
            return t
        }
        func vector(_ name: String, _ n: Int) throws -> AlignedBuffer<Float> {
            let t = try load(name, [n])
            let b = AlignedBuffer<Float>(count: n)
            t.convertToFloat(into: b.pointer, offset: 0, count: n)
            return b
        }
        func optionalVector(_ name: String, _ n: Int) throws -> AlignedBuffer<Float>? {
            source.contains(name) ? try vector(name, n) : nil
        }
        func dense(_ t: Tensor) throws -> DenseMatrix {
            var t = t
            if let want = options.weightDType, want != t.dtype { t = try t.converted(to: want) }
            else if ![.f32, .f16, .bf16].contains(t.dtype) { t = t.toF32() }
            return try DenseMatrix(t)
        }
        func linear(_ prefix: String, _ rows: Int, _ cols: Int) throws -> LinearOperator {
            if let f = linearFactory, let op = try f(prefix, rows, cols) {
                guard op.rows == rows, op.columns == cols else {
                    throw ModelError.shapeMismatch(file: file, tensor: prefix, expected: [rows, cols], got: [op.rows, op.columns])
                }
                return op
            }
            return try dense(try load(prefix + ".weight", [rows, cols]))
        }

        let emb = try load("model.embed_tokens.weight", [config.vocabSize, h])
        embedding = [.f32, .f16, .bf16].contains(emb.dtype) ? emb : emb.toF32()
        var ls: [LlamaLayer] = []
        for i in 0..<config.numLayers {
            let p = "model.layers.\(i)."
            let qd = config.numHeads * hd, kvd = config.numKVHeads * hd
            ls.append(LlamaLayer(
                attnNorm: try vector(p + "input_layernorm.weight", h),
                q: try linear(p + "self_attn.q_proj", qd, h),
                k: try linear(p + "self_attn.k_proj", kvd, h),
                v: try linear(p + "self_attn.v_proj", kvd, h),
                o: try linear(p + "self_attn.o_proj", h, qd),
                qBias: try optionalVector(p + "self_attn.q_proj.bias", qd),
                kBias: try optionalVector(p + "self_attn.k_proj.bias", kvd),
                vBias: try optionalVector(p + "self_attn.v_proj.bias", kvd),
                ffnNorm: try vector(p + "post_attention_layernorm.weight", h),
                gate: try linear(p + "mlp.gate_proj", config.intermediateSize, h),
                up: try linear(p + "mlp.up_proj", config.intermediateSize, h),
                down: try linear(p + "mlp.down_proj", h, config.intermediateSize)))
        }
        layers = ls
        norm = try vector("model.norm.weight", h)
        if source.contains("lm_head.weight") || linearFactory != nil && !config.tieWordEmbeddings {
            lmHead = try linear("lm_head", config.vocabSize, h)
        } else if config.tieWordEmbeddings {
            lmHead = try dense(embedding)
        } else {
            throw ModelError.missingTensor(file: file, tensor: "lm_head.weight")
        }
        invFreq = LlamaModel.inverseFrequencies(config)
    }

    /// RoPE inverse frequencies (Float32, as Hugging Face computes them), with `rope_scaling` applied.
    static func inverseFrequencies(_ c: LlamaConfig) -> [Float] {
        let d = c.headDim
        var inv = (0..<(d / 2)).map { i -> Float in 1.0 / Float(powf(Float(c.ropeTheta), Float(2 * i) / Float(d))) }
        switch c.ropeScaling {
        case .none, .dynamic: break
        case let .linear(f): inv = inv.map { $0 / Float(f) }
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

    /// Inverse frequencies for a sequence reaching `length` tokens (dynamic NTK scaling depends on it).
    func frequencies(forLength length: Int) -> [Float] {
        guard case let .dynamic(f, orig) = config.ropeScaling, length > orig else { return invFreq }
        let d = Double(config.headDim)
        let base = config.ropeTheta * pow(f * Double(length) / Double(orig) - (f - 1), d / (d - 2))
        return (0..<(config.headDim / 2)).map { i in 1.0 / Float(powf(Float(base), Float(2 * i) / Float(d))) }
    }

    /// Bytes of weights read per decoded token (all linear layers plus the LM head).
    public var weightBytesPerToken: Int {
        layers.reduce(0) { acc, l in acc + l.linears.reduce(0) { $0 + $1.1.weightBytes } } + lmHead.weightBytes
    }

    /// Number of parameters in linear layers, embeddings and norms.
    public var parameterCount: Int {
        let c = config
        let lin = layers.reduce(0) { acc, l in acc + l.linears.reduce(0) { $0 + $1.1.rows * $1.1.columns } }
        return lin + c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2) + c.hiddenSize * (2 * c.numLayers + 1)
    }
}

