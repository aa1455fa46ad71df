import Foundation
import SqueezeCore
import SqueezeFormats

/// Where a model's tensors come from, under Hugging Face names (`model.layers.0.self_attn.q_proj.weight`).
public protocol TensorSource: AnyObject {
    /// The file or directory the tensors come from (for error messages).
    var path: String { get }
    /// All tensor names, Hugging Face naming.
    var tensorNames: [String] { get }
    /// Whether a tensor exists.
    func contains(_ name: String) -> Bool
    /// The tensor (a view over mapped memory when stored plainly; dequantized to F32 otherwise).
    func tensor(_ name: String) throws -> Tensor
    /// The row layout of q_proj/k_proj in this source.
    var ropeLayout: RopeLayout { get }
}

/// Maps Hugging Face tensor names to llama.cpp's GGUF names and back, per GGUF architecture
/// (`general.architecture`): `llama`, `mistral` and `qwen2` use the Llama names
/// (`model.layers.N.self_attn.q_proj.weight` = `blk.N.attn_q.weight`); `gpt2` uses GPT-2's
/// (`transformer.h.N.attn.c_attn.weight` = `blk.N.attn_qkv.weight`).
public enum GGUFNames {
    static let layerMap: [(hf: String, gguf: String)] = [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
        ("self_attn.q_proj.bias", "attn_q.bias"),
        ("self_attn.k_proj.bias", "attn_k.bias"),
        ("self_attn.v_proj.bias", "attn_v.bias"),
        ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ]
    /// Gemma 2 and 3: norms around attention and the MLP (`ffn_norm` is the one before the MLP).
    static let gemmaLayerMap: [(hf: String, gguf: String)] = [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("self_attn.k_norm.weight", "attn_k_norm.weight"),
        ("post_attention_layernorm.weight", "post_attention_norm.weight"),
        ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
        ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ]
    /// Phi-3: fused `attn_qkv` ([q; k; v]) and `ffn_up` ([gate; up], llama.cpp keeps the fused tensor).
    static let phi3LayerMap: [(hf: String, gguf: String)] = [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.qkv_proj.weight", "attn_qkv.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ]
    static let globalMap: [(hf: String, gguf: String)] = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ]
    /// GPT-2 (llama.cpp's `convert_hf_to_gguf.py` GPT2Model and `MODEL_ARCH.GPT2` tensor list).
    static let gpt2LayerMap: [(hf: String, gguf: String)] = [
        ("ln_1.weight", "attn_norm.weight"), ("ln_1.bias", "attn_norm.bias"),
        ("attn.c_attn.weight", "attn_qkv.weight"), ("attn.c_attn.bias", "attn_qkv.bias"),
        ("attn.c_proj.weight", "attn_output.weight"), ("attn.c_proj.bias", "attn_output.bias"),
        ("ln_2.weight", "ffn_norm.weight"), ("ln_2.bias", "ffn_norm.bias"),
        ("mlp.c_fc.weight", "ffn_up.weight"), ("mlp.c_fc.bias", "ffn_up.bias"),
        ("mlp.c_proj.weight", "ffn_down.weight"), ("mlp.c_proj.bias", "ffn_down.bias"),
    ]
    static let gpt2GlobalMap: [(hf: String, gguf: String)] = [
        ("transformer.wte.weight", "token_embd.weight"),
        ("transformer.wpe.weight", "position_embd.weight"),
        ("transformer.ln_f.weight", "output_norm.weight"),
        ("transformer.ln_f.bias", "output_norm.bias"),
        ("lm_head.weight", "output.weight"),
    ]

    /// The `general.architecture` values whose tensors have Hugging Face names here.
    public static let architectures = ["llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2"]

    static func tables(
        _ architecture: String
    ) -> (global: [(hf: String, gguf: String)], layer: [(hf: String, gguf: String)], prefix: [String]) {
        if architecture == "gpt2" { return (gpt2GlobalMap, gpt2LayerMap, ["transformer", "h"]) }
        if architecture == "gemma2" || architecture == "gemma3" {
            return (globalMap, gemmaLayerMap, ["model", "layers"])
        }
        if architecture == "phi3" { return (globalMap, phi3LayerMap, ["model", "layers"]) }
        return (globalMap, layerMap, ["model", "layers"])
    }

    /// The GGUF name of a Hugging Face tensor name, or nil when it has none.
    public static func gguf(fromHF name: String, architecture: String = "llama") -> String? {
        let (global, layer, prefix) = tables(architecture)
        if let g = global.first(where: { $0.hf == name }) { return g.gguf }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
        guard parts.count == 4, parts[0] == prefix[0], parts[1] == prefix[1], let n = Int(parts[2]) else { return nil }
        guard let m = layer.first(where: { $0.hf == parts[3] }) else { return nil }
        return "blk.\(n).\(m.gguf)"
    }

    /// The Hugging Face name of a GGUF tensor name, or nil when it has none.
    public static func hf(fromGGUF name: String, architecture: String = "llama") -> String? {
        let (global, layer, prefix) = tables(architecture)
        if let g = global.first(where: { $0.gguf == name }) { return g.hf }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk", let n = Int(parts[1]) else { return nil }
        guard let m = layer.first(where: { $0.gguf == parts[2] }) else { return nil }
        return "\(prefix[0]).\(prefix[1]).\(n).\(m.hf)"
    }

    /// Whether the Hugging Face tensor is stored transposed in the GGUF: GPT-2's Conv1D weights are
    /// [in, out] in Hugging Face checkpoints and [out, in] in GGUF (transposed at conversion).
    public static func isTransposed(hf name: String, architecture: String) -> Bool {
        architecture == "gpt2" && name.hasPrefix("transformer.h.")
            && (name.hasSuffix(".c_attn.weight") || name.hasSuffix(".c_proj.weight") || name.hasSuffix(".c_fc.weight"))
    }
}

/// Tensors of a llama.cpp GGUF file under Hugging Face names, as the Hugging Face checkpoint of the
/// same model has them (GPT-2's Conv1D weights transposed back to [in, out]; Llama's Q/K rows stay
/// in llama.cpp's interleaved order, see `ropeLayout`). Plain F32/F16/BF16 tensors are views over the
/// mapping; block-quantized ones are dequantized to F32 when asked for.
public final class GGUFTensorSource: TensorSource {
    public let gguf: GGUFFile
    public var path: String { gguf.path }
    public let tensorNames: [String]
    /// `general.architecture` (`llama` when absent).
    public let architecture: String
    /// Interleaved for `llama`/`mistral` (llama.cpp's converter permutes their Q/K rows for its
    /// normal RoPE); rotate-half for the others (`qwen2` runs NEOX RoPE on unpermuted rows).
    public var ropeLayout: RopeLayout { architecture == "llama" || architecture == "mistral" ? .interleaved : .halves }

    public init(_ gguf: GGUFFile) {
        self.gguf = gguf
        let arch = gguf.metadata["general.architecture"]?.string ?? "llama"
        architecture = arch
        tensorNames = gguf.tensors.compactMap { GGUFNames.hf(fromGGUF: $0.name, architecture: arch) }
    }

    /// The GGUF entry holding a Hugging Face tensor and the tensor's shape under that name
    /// (the Hugging Face orientation); nil when absent.
    public func storedInfo(_ name: String) -> (info: GGUFTensorInfo, shape: [Int])? {
        guard let g = GGUFNames.gguf(fromHF: name, architecture: architecture), let info = gguf.info(g) else {
            return nil
        }
        let transposed = GGUFNames.isTransposed(hf: name, architecture: architecture) && info.shape.count == 2
        return (info, transposed ? [info.shape[1], info.shape[0]] : info.shape)
    }

    public func contains(_ name: String) -> Bool { storedInfo(name) != nil }

    public func tensor(_ name: String) throws -> Tensor {
        guard let g = GGUFNames.gguf(fromHF: name, architecture: architecture), gguf.info(g) != nil else {
            throw ModelError.missingTensor(file: path, tensor: name)
        }
        let t = try gguf.tensor(g)
        if GGUFNames.isTransposed(hf: name, architecture: architecture) {
            guard t.shape.count == 2 else {
                throw ModelError.unsupportedWeight(
                    file: path, tensor: g, detail: "expected a matrix, got shape \(t.shape)")
            }
            return GGUFTensorSource.transposed(t, name: name)
        }
        if (architecture == "gemma2" || architecture == "gemma3") && name.hasSuffix("norm.weight") {
            // llama.cpp's converter stores Gemma's norm weights as 1 + w; the Hugging Face name holds w.
            let f = t.toF32()
            let buf = AlignedBuffer<Float>(count: f.elementCount)
            let src = f.data.assumingMemoryBound(to: Float.self)
            for i in 0..<buf.count { buf[i] = src[i] - 1 }
            return .owning(buf, name: name, dtype: .f32, shape: t.shape)
        }
        return Tensor(name: name, dtype: t.dtype, shape: t.shape, data: t.data, owner: t.owner)
    }

    /// A copy of a [rows, cols] tensor as [cols, rows], in the same dtype.
    static func transposed(_ t: Tensor, name: String) -> Tensor {
        let rows = t.shape[0], cols = t.shape[1]
        func run<T>(_: T.Type) -> Tensor {
            let buf = AlignedBuffer<T>(count: rows * cols)
            let src = t.data.assumingMemoryBound(to: T.self)
            for r in 0..<rows { for c in 0..<cols { buf.pointer[c * rows + r] = src[r * cols + c] } }
            return .owning(buf, name: name, dtype: t.dtype, shape: [cols, rows])
        }
        switch t.dtype.byteSize {
        case 1: return run(UInt8.self)
        case 2: return run(UInt16.self)
        case 4: return run(UInt32.self)
        default: return run(UInt64.self)
        }
    }
}

/// Reorders the rows of a Q or K projection between llama.cpp's interleaved-pair layout and
/// Hugging Face's rotate-half layout. Row `h*d + 2i + j` (GGUF) is row `h*d + j*d/2 + i` (HF).
public enum RopePermutation {
    /// The source row (GGUF order) of each destination row (HF order), for `heads` heads of `headDim`.
    public static func ggufRowForHFRow(heads: Int, headDim: Int) -> [Int] {
        var map = [Int](repeating: 0, count: heads * headDim)
        let half = headDim / 2
        for h in 0..<heads {
            for j in 0..<2 {
                for i in 0..<half { map[h * headDim + j * half + i] = h * headDim + 2 * i + j }
            }
        }
        return map
    }

    /// Copies a [rows, cols] F32 tensor with rows reordered from GGUF to HF order.
    public static func toHF(_ t: Tensor, heads: Int) -> Tensor {
        let f = t.toF32()
        let rows = f.shape[0], cols = f.shape[1]
        let map = ggufRowForHFRow(heads: heads, headDim: rows / heads)
        let buf = AlignedBuffer<Float>(count: rows * cols)
        let src = f.data.assumingMemoryBound(to: Float.self)
        for r in 0..<rows { (buf.pointer + r * cols).update(from: src + map[r] * cols, count: cols) }
        return .owning(buf, name: t.name, dtype: .f32, shape: t.shape)
    }
}

/// Tensors of a Hugging Face checkpoint (one safetensors file or a sharded directory), as views.
public final class SafeTensorsSource: TensorSource {
    public let model: SafeTensorsModel
    public var path: String { model.path }
    public var tensorNames: [String] { model.tensorNames }
    public var ropeLayout: RopeLayout { .halves }

    public init(_ model: SafeTensorsModel) { self.model = model }
    public func contains(_ name: String) -> Bool { model.contains(name) }
    public func tensor(_ name: String) throws -> Tensor {
        guard model.contains(name) else { throw ModelError.missingTensor(file: path, tensor: name) }
        return try model.tensor(name)
    }
}
