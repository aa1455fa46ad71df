import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels

/// Errors of dequantization, naming the file and the tensor.
public enum DequantizeError: Error, CustomStringConvertible {
    case outputExists(String)
    /// The requested output dtype is not a float type a checkpoint stores.
    case unsupportedDType(DType)
    /// The input has no `quantization_config`.
    case notQuantized(path: String)
    /// A quantized layer's tensors do not fit together.
    case badTensor(file: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .outputExists(p): return "output '\(p)' already exists; remove it or choose another path"
        case let .unsupportedDType(d):
            return "the dequantized weights' dtype must be f16, bf16 or f32, got \(d.rawValue)"
        case let .notQuantized(p): return "\(p): no quantization_config; nothing to dequantize"
        case let .badTensor(f, t, d): return "\(f): tensor '\(t)': \(d)"
        }
    }
}

/// Expands a SqueezeLLM-layout directory back to a plain Hugging Face checkpoint (F16 by default),
/// so any engine can check the quantized model's quality: each linear weight is
/// `lookup_table[row][index] + sparse` at every position.
public enum ModelDequantizer {
    public static func dequantize(directory: String, output: String, dtype: DType = .f16) throws {
        guard [.f16, .f32, .bf16].contains(dtype) else { throw DequantizeError.unsupportedDType(dtype) }
        let fm = FileManager.default
        if fm.fileExists(atPath: output) { throw DequantizeError.outputExists(output) }
        let cfgPath = directory + "/config.json"
        let cfgObj = try ModelError.mappingConfigErrors { try JSONConfig(path: cfgPath) }
        guard let qc = cfgObj.object("quantization_config") else {
            throw DequantizeError.notQuantized(path: cfgPath)
        }
        let bits = try ModelError.mappingConfigErrors {
            try JSONConfig(path: cfgPath, object: qc, prefix: "quantization_config.").int("wbits")
        }
        let st = try SafeTensorsModel(path: directory)
        // Linear weights the family stores [in, out] (GPT-2's Conv1D) are written back in that orientation.
        var transposed: Set<String> = []
        if var c = try? ModelConfig(configFile: cfgPath) {
            c.resolveTensorPrefix(names: Set(st.tensorNames))
            transposed = Set(c.allLinearTensors.filter(\.transposed).map(\.prefix))
        }
        let quantSuffixes = [".qweight", ".lookup_table", ".rows", ".cols", ".vals"]
        var layers: [String] = []
        var entries: [SafeTensorsWriter.Entry] = []
        for n in st.tensorNames {
            if n.hasSuffix(".qweight") {
                let p = String(n.dropLast(".qweight".count))
                layers.append(p)
                let lt = try st.tensor(p + ".lookup_table")
                let qw = try st.tensor(n)
                let shape = [lt.shape[0], qw.shape[0] * 32 / bits]
                entries.append(
                    .init(name: p + ".weight", dtype: dtype, shape: transposed.contains(p) ? shape.reversed() : shape))
            } else if !quantSuffixes.contains(where: { n.hasSuffix($0) }) {
                let t = try st.tensor(n)
                entries.append(.init(name: n, dtype: t.dtype, shape: t.shape))
            }
        }
        let dir = try AtomicDirectory(destination: output)
        let writer = try ShardedSafeTensorsWriter(
            directory: dir.temporaryPath, entries: entries,
            metadata: ["format": "pt", "dequantized_from": "squeezellm"],
            maxShardBytes: 4 << 30)
        for e in writer.plan.flatMap({ $0.entries }) {
            if e.name.hasSuffix(".weight"), layers.contains(String(e.name.dropLast(".weight".count))) {
                let p = String(e.name.dropLast(".weight".count))
                let t = transposed.contains(p)
                let rows = t ? e.shape[1] : e.shape[0], cols = t ? e.shape[0] : e.shape[1]
                let qw = try st.tensor(p + ".qweight").toIntArray().map { Int32(truncatingIfNeeded: $0) }
                let lut = try st.tensor(p + ".lookup_table").toFloatArray()
                let idx: [UInt8]
                do { idx = try SqueezeLLMLayout.unpack(qweight: qw, bits: bits, rows: rows, cols: cols) } catch {
                    throw DequantizeError.badTensor(file: directory, tensor: p + ".qweight", detail: "\(error)")
                }
                let k: Int = 1 << bits
                var w = [Float](repeating: 0, count: rows * cols)
                for r in 0..<rows {
                    for c in 0..<cols {
                        let index = Int(idx[r * cols + c])
                        w[r * cols + c] = lut[r * k + index]
                    }
                }
                if st.contains(p + ".rows") {
                    let rp: [Int] = try st.tensor(p + ".rows").toIntArray()
                    let ci: [Int] = try st.tensor(p + ".cols").toIntArray()
                    let v: [Float] = try st.tensor(p + ".vals").toFloatArray()
                    for r in 0..<rows {
                        for j in rp[r]..<rp[r + 1] { w[r * cols + ci[j]] += v[j] }
                    }
                }
                if t {
                    var wt = [Float](repeating: 0, count: rows * cols)
                    for r in 0..<rows { for c in 0..<cols { wt[c * rows + r] = w[r * cols + c] } }
                    w = wt
                }
                try writer.write(try Tensor.f32(name: e.name, shape: e.shape, values: w).converted(to: dtype))
            } else {
                try writer.write(try st.tensor(e.name))
            }
        }
        try writer.finish()
        var cfg = cfgObj.object
        cfg.removeValue(forKey: "quantization_config")
        cfg["torch_dtype"] = dtype == .f32 ? "float32" : (dtype == .f16 ? "float16" : "bfloat16")
        try dir.writeJSON(cfg, to: "config.json")
        for f in (try fm.contentsOfDirectory(atPath: directory))
        where !f.hasSuffix(".safetensors") && f != "config.json" && !f.hasSuffix(".index.json") {
            try dir.copyFile(from: directory + "/" + f, to: f)
        }
        try dir.commit()
    }
}
