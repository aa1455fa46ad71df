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

/// Maps Hugging Face Llama tensor names to llama.cpp's GGUF names and back.
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
    ]
    static let globalMap: [(hf: String, gguf: String)] = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ]

    /// The GGUF name of a Hugging Face tensor name, or nil when it has none.
    public static func gguf(fromHF name: String) -> String? {
        if let g = globalMap.first(where: { $0.hf == name }) { return g.gguf }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let n = Int(parts[2]) else { return nil }
        guard let m = layerMap.first(where: { $0.hf == parts[3] }) else { return nil }
        return "blk.\(n).\(m.gguf)"
    }

    /// The Hugging Face name of a GGUF tensor name, or nil when it has none.
    public static func hf(fromGGUF name: String) -> String? {
        if let g = globalMap.first(where: { $0.gguf == name }) { return g.hf }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk", let n = Int(parts[1]) else { return nil }
        guard let m = layerMap.first(where: { $0.gguf == parts[2] }) else { return nil }
        return "model.layers.\(n).\(m.hf)"
    }
}

/// Tensors of a llama.cpp GGUF file under Hugging Face names. Plain F32/F16/BF16 tensors are views
/// over the mapping; block-quantized ones are dequantized to F32 when asked for.
public final class GGUFTensorSource: TensorSource {
    public let gguf: GGUFFile
    public var path: String { gguf.path }
    public let tensorNames: [String]
    public var ropeLayout: RopeLayout { .interleaved }

    public init(_ gguf: GGUFFile) {
        self.gguf = gguf
        tensorNames = gguf.tensors.compactMap { GGUFNames.hf(fromGGUF: $0.name) }
    }

    public func contains(_ name: String) -> Bool {
        guard let g = GGUFNames.gguf(fromHF: name) else { return false }
        return gguf.info(g) != nil
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let g = GGUFNames.gguf(fromHF: name), gguf.info(g) != nil else {
            throw ModelError.missingTensor(file: path, tensor: name)
        }
        let t = try gguf.tensor(g)
        return Tensor(name: name, dtype: t.dtype, shape: t.shape, data: t.data, owner: t.owner)
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
