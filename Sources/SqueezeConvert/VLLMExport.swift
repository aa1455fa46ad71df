import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// Errors of the vLLM export, naming the file and the layer.
public enum VLLMExportError: Error, CustomStringConvertible {
    case outputExists(String)
    /// The input is not a Squeeze/SqueezeLLM quantized directory.
    case notQuantized(path: String, detail: String)
    /// vLLM's squeezellm method takes only what its loader allocates: 4-bit, dense, dense lm_head.
    case unsupported(path: String, detail: String)
    case badTensor(file: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .outputExists(p): return "output '\(p)' already exists; remove it or choose another path"
        case let .notQuantized(p, d): return "\(p): \(d)"
        case let .unsupported(p, d): return "\(p): cannot export for vLLM: \(d)"
        case let .badTensor(f, t, d): return "\(f): tensor '\(t)': \(d)"
        }
    }
}

/// What an export wrote.
public struct VLLMExportReport: Sendable {
    public var quantizedLayers: Int
    public var tensors: Int
    /// Things vLLM may not like that were not refused.
    public var warnings: [String]
}

/// Writes a Squeeze quantized directory in the layout vLLM's `squeezellm` quantization loaded
/// (vLLM 0.2.2 to 0.6.0, `vllm/model_executor/layers/quantization/squeezellm.py`):
/// - `quant_config.json` `{"wbits": 4}` (the file `SqueezeLLMConfig.get_config_filenames` names), and
///   `quantization_config` `{"quant_method": "squeezellm", "wbits": 4}` in config.json;
/// - per linear layer `qweight` int32 [in/8, out] (input 8r+t of output o in bits 4t..4t+3 of
///   `qweight[r, o]`, which is what the kernel `NUQ4MatMulKernel` reads) and `lookup_table` F16 [out, 16];
/// - every other tensor unchanged, config and tokenizer files copied.
///
/// vLLM's loader allocates nothing else, so 3-bit models, models with a sparse part and models with
/// a quantized lm_head are refused with that explanation (a sparse layer with no values is exported
/// without it). Written through `AtomicDirectory`.
public enum VLLMExporter {
    public static func export(directory: String, output: String) throws -> VLLMExportReport {
        let fm = FileManager.default
        if fm.fileExists(atPath: output) { throw VLLMExportError.outputExists(output) }
        let cfgPath = directory + "/config.json"
        guard fm.fileExists(atPath: cfgPath) else {
            throw VLLMExportError.notQuantized(
                path: directory,
                detail: "no config.json: not a directory written by the quantizer or the SqueezeLLM converter")
        }
        guard let qc = try QuantizationConfig.read(configPath: cfgPath) else {
            throw VLLMExportError.notQuantized(path: cfgPath, detail: "no quantization_config: not a quantized model")
        }
        guard qc.method == "squeezellm" else {
            throw VLLMExportError.notQuantized(
                path: cfgPath, detail: "quantization method '\(qc.method)' is not squeezellm")
        }
        let bits = qc.bits
        guard bits == 4 else {
            throw VLLMExportError.unsupported(
                path: cfgPath,
                detail:
                    "the model is \(bits)-bit; vLLM's squeezellm method (0.2.2 to 0.6.0) loads only 4-bit models (SqueezeLLMConfig raises for any other wbits)"
            )
        }
        let st = try SafeTensorsModel(path: directory)
        if st.contains("lm_head.qweight") {
            throw VLLMExportError.unsupported(
                path: directory,
                detail:
                    "lm_head is quantized; vLLM keeps lm_head dense (it is not a linear layer there): quantize without the head"
            )
        }
        var layers: [String] = []
        var warnings: [String] = []
        for n in st.tensorNames where n.hasSuffix(".qweight") {
            let p = String(n.dropLast(".qweight".count))
            layers.append(p)
            if st.contains(p + ".vals") {
                let nnz = try st.tensor(p + ".vals").elementCount
                if nnz > 0 {
                    throw VLLMExportError.unsupported(
                        path: directory,
                        detail:
                            "layer '\(p)' has a sparse part (\(nnz) values); vLLM's squeezellm method has no sparse kernel and its loader allocates only qweight and lookup_table: quantize dense (no sparse part) to export"
                    )
                }
            }
        }
        guard !layers.isEmpty else {
            throw VLLMExportError.notQuantized(path: directory, detail: "no '*.qweight' tensors")
        }
        let skip = Set(layers.flatMap { p in [".rows", ".cols", ".vals"].map { p + $0 } })
        var entries: [SafeTensorsWriter.Entry] = []
        var oddShapes: [[Int]: [String]] = [:]
        for n in st.tensorNames where !skip.contains(n) {
            let info = st.info(n)!
            if n.hasSuffix(".lookup_table") {
                let p = String(n.dropLast(".lookup_table".count))
                let qw = st.info(p + ".qweight")!
                guard qw.dtype == .i32, qw.shape.count == 2 else {
                    throw VLLMExportError.badTensor(
                        file: directory, tensor: p + ".qweight",
                        detail: "expected I32 [in/8, out], got \(qw.dtype.rawValue) \(qw.shape)")
                }
                guard info.dtype.isFloatingPoint, info.shape == [qw.shape[1], 16] else {
                    throw VLLMExportError.badTensor(
                        file: directory, tensor: n,
                        detail: "expected a float [\(qw.shape[1]), 16], got \(info.dtype.rawValue) \(info.shape)")
                }
                let inputs = qw.shape[0] * 8
                if inputs % 128 != 0 || qw.shape[1] % 128 != 0 {
                    oddShapes[[inputs, qw.shape[1]], default: []].append(p)
                }
                entries.append(.init(name: n, dtype: .f16, shape: info.shape))
            } else {
                entries.append(.init(name: n, dtype: info.dtype, shape: info.shape))
            }
        }
        for (shape, ls) in oddShapes.sorted(by: { $0.value[0] < $1.value[0] }) {
            warnings.append(
                "\(ls.count) layer(s) of \(shape[0]) inputs x \(shape[1]) outputs (first: \(ls[0])): vLLM's kernel reads blocks of 128 inputs and 128 outputs without bounds checks, so shapes that are not multiples of 128 may not run correctly there"
            )
        }

        let dir = try AtomicDirectory(destination: output)
        let writer = try ShardedSafeTensorsWriter(
            directory: dir.temporaryPath, entries: entries, metadata: ["format": "pt"], maxShardBytes: 4 << 30)
        for e in writer.plan.flatMap({ $0.entries }) {
            let t = try st.tensor(e.name)
            try writer.write(e.dtype == t.dtype ? t : try t.converted(to: e.dtype))
        }
        try writer.finish()

        var cfg = try ModelError.mappingConfigErrors { try JSONConfig(path: cfgPath) }.object
        cfg["quantization_config"] = ["quant_method": "squeezellm", "wbits": 4] as [String: Any]
        try dir.writeJSON(cfg, to: "config.json")
        try dir.writeJSON(["wbits": 4], to: "quant_config.json")
        for f in try fm.contentsOfDirectory(atPath: directory)
        where !f.hasSuffix(".safetensors") && !f.hasSuffix(".index.json") && f != "config.json"
            && f != "quant_config.json"
        {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: directory + "/" + f, isDirectory: &isDir), !isDir.boolValue {
                try dir.copyFile(from: directory + "/" + f, to: f)
            }
        }
        try dir.commit()
        return VLLMExportReport(quantizedLayers: layers.count, tensors: entries.count, warnings: warnings)
    }
}
