import Foundation
import SqueezeCore
import SqueezeFormats

/// Storage of a model's linear layers, and from it "bits per linear weight", the one figure that
/// `squeeze quantize`, `compare` and `demo` print.
///
/// Definition: every byte that the linear layers' stored form holds, times 8, over their weight
/// count. For a quantized layer the bytes are the packed codes (`qweight`), the lookup tables
/// (`lookup_table`, F16) and the whole sparse part (`rows`, `cols`, `vals`); for a dense layer they
/// are its weight tensor; for a GGUF file they are the blocks' 2-D tensors with their per-block
/// scales. The linear layers are those of the decoder blocks, plus the LM head when it is quantized.
/// Embeddings, norms and a dense LM head are not counted. The figure is what is on disk, not what
/// the kernels hold in memory (they widen the tables to F32 or int8).
public struct LinearWeightStorage: Sendable, Equatable {
    /// Bytes stored for the linear layers.
    public var bytes: Int
    /// Weights of the linear layers (rows x columns, summed).
    public var weights: Int

    public init(bytes: Int = 0, weights: Int = 0) {
        self.bytes = bytes
        self.weights = weights
    }

    /// Bits per linear weight: `bytes * 8 / weights` (0 when there are no weights).
    public var bitsPerWeight: Double { weights > 0 ? Double(bytes * 8) / Double(weights) : 0 }

    /// Adds one layer.
    public mutating func add(bytes: Int, weights: Int) {
        self.bytes += bytes
        self.weights += weights
    }

    /// Reads the storage from a model: a GGUF file, or a directory or safetensors file (quantized by
    /// Squeeze or SqueezeLLM, or dense). Nil when the model has no linear layers it recognizes.
    public static func measure(modelAt path: String) throws -> LinearWeightStorage? {
        var s = LinearWeightStorage()
        if path.hasSuffix(".gguf") {
            let g = try GGUFFile(path: path)
            for t in g.tensors where t.name.hasPrefix("blk.") && t.dims.count == 2 {
                s.add(bytes: t.byteCount, weights: t.elementCount)
            }
            return s.weights > 0 ? s : nil
        }
        let st = try SafeTensorsModel(path: path)
        let names = Set(st.tensorNames)
        // Block tensors of every family (model.layers.N, model.decoder.layers.N, transformer.h.N).
        func inBlock(_ n: String) -> Bool {
            n.contains("layers.") || n.hasPrefix("transformer.h.") || n.hasPrefix("h.")
        }
        for name in st.tensorNames {
            guard let info = st.info(name) else { continue }
            if name.hasSuffix(".qweight"), let lut = st.info(String(name.dropLast(".qweight".count)) + ".lookup_table")
            {
                let prefix = String(name.dropLast(".qweight".count))
                // qweight is int32 [columns * bits / 32, rows]; the table has 2^bits entries per row.
                let bits = Int(log2(Double(lut.shape[1])).rounded())
                var bytes = info.byteCount + lut.byteCount
                for part in ["rows", "cols", "vals"] { bytes += st.info(prefix + "." + part)?.byteCount ?? 0 }
                s.add(bytes: bytes, weights: info.shape[1] * info.shape[0] * 32 / max(bits, 1))
            } else if inBlock(name), name.hasSuffix(".weight"), info.shape.count == 2,
                !names.contains(String(name.dropLast(".weight".count)) + ".qweight")
            {
                s.add(bytes: info.byteCount, weights: info.elementCount)
            }
        }
        return s.weights > 0 ? s : nil
    }
}
