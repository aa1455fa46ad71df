import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// A weight matrix as F32 in Hugging Face row order (Q/K rows un-permuted for GGUF inputs).
struct WeightMatrix {
    let rows: Int
    let cols: Int
    let buffer: [Float]
}

/// A model to quantize: a GGUF file or a Hugging Face directory, read tensor by tensor.
final class ModelInput {
    let path: String
    let config: ModelConfig
    let source: TensorSource
    /// Linear weights stored [in, out] (Conv1D), read transposed.
    let transposed: Set<String>
    let gguf: GGUFFile?
    let directory: String?

    init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError.notAModel(path: path, detail: "no such file or directory")
        }
        if !isDir.boolValue {
            let g = try GGUFFile(path: path)
            gguf = g
            config = try ModelConfig(gguf: g)
            source = GGUFTensorSource(g)
            directory = nil
        } else {
            let cfgPath = path + "/config.json"
            let cfg = try ModelError.mappingConfigErrors { try JSONConfig(path: cfgPath) }
            if cfg.object("quantization_config") != nil {
                throw ModelError.notAModel(
                    path: path,
                    detail: "it is already quantized (config.json has quantization_config); quantize the original model"
                )
            }
            var c = try ModelConfig(configFile: cfgPath)
            let st = SafeTensorsSource(try SafeTensorsModel(path: path))
            c.resolveTensorPrefix(names: Set(st.tensorNames))
            config = c
            source = st
            gguf = nil
            directory = path
        }
        transposed = Set(config.allLinearTensors.filter(\.transposed).map(\.prefix))
    }

    var tensorNames: [String] { source.tensorNames }
    func contains(_ n: String) -> Bool { source.contains(n) }

    func shape(_ layer: String) throws -> (Int, Int) {
        let t = try source.tensor(layer + ".weight")
        guard t.shape.count == 2 else {
            throw ModelError.shapeMismatch(file: path, tensor: layer + ".weight", expected: [-1, -1], got: t.shape)
        }
        return transposed.contains(layer) ? (t.shape[1], t.shape[0]) : (t.shape[0], t.shape[1])
    }

    func weight(_ layer: String) throws -> WeightMatrix {
        let name = layer + ".weight"
        guard source.contains(name) else { throw ModelError.missingTensor(file: path, tensor: name) }
        var t = try source.tensor(name)
        guard t.shape.count == 2 else {
            throw ModelError.shapeMismatch(file: path, tensor: name, expected: [-1, -1], got: t.shape)
        }
        if source.ropeLayout == .interleaved {
            if layer.hasSuffix("self_attn.q_proj") { t = RopePermutation.toHF(t, heads: config.numHeads) }
            if layer.hasSuffix("self_attn.k_proj") { t = RopePermutation.toHF(t, heads: config.numKVHeads) }
        }
        if transposed.contains(layer) {
            // Conv1D [in, out] -> [out, in]: the quantizer works per output row.
            let (i, o) = (t.shape[0], t.shape[1])
            let src = t.toFloatArray()
            var buf = [Float](repeating: 0, count: i * o)
            for a in 0..<i { for b in 0..<o { buf[b * i + a] = src[a * o + b] } }
            return WeightMatrix(rows: o, cols: i, buffer: buf)
        }
        return WeightMatrix(rows: t.shape[0], cols: t.shape[1], buffer: t.toFloatArray())
    }

    func plainInfo(_ name: String, fallback: DType) throws -> (dtype: DType, shape: [Int]) {
        if let g = source as? GGUFTensorSource, let (info, shape) = g.storedInfo(name) {
            return (info.type.plainDType ?? (shape.count == 1 ? .f32 : fallback), shape)
        }
        let t = try source.tensor(name)
        return (t.dtype, t.shape)
    }

    func plainTensor(_ name: String, fallback: DType) throws -> Tensor {
        let info = try plainInfo(name, fallback: fallback)
        var t = try source.tensor(name)
        if t.dtype != info.dtype { t = try t.converted(to: info.dtype) }
        if source.ropeLayout == .interleaved && (name.hasSuffix("q_proj.weight") || name.hasSuffix("k_proj.weight")) {
            let heads = name.hasSuffix("q_proj.weight") ? config.numHeads : config.numKVHeads
            t = try RopePermutation.toHF(t, heads: heads).converted(to: info.dtype)
        }
        return Tensor(name: name, dtype: t.dtype, shape: t.shape, data: t.data, owner: t.owner)
    }

    /// Copies the tokenizer and generation config (HF inputs), or writes a vocabulary-only
    /// `tokenizer.gguf` and a generation_config.json (GGUF inputs).
    func writeTokenizerAndGeneration(to dir: String, config: ModelConfig) throws {
        let fm = FileManager.default
        if let g = gguf {
            try GGUFWriter.writeVocabulary(of: g, to: dir + "/tokenizer.gguf")
            var gen: [String: Any] = [:]
            if let b = config.bosTokenId { gen["bos_token_id"] = b }
            if let e = config.eosTokenIds.first { gen["eos_token_id"] = e }
            try writeJSON(gen, to: dir + "/generation_config.json")
            return
        }
        for f in [
            "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
            "tokenizer.model", "vocab.json", "merges.txt", "tokenizer.gguf",
        ] {
            let src = path + "/" + f
            if fm.fileExists(atPath: src) { try fm.copyItem(atPath: src, toPath: dir + "/" + f) }
        }
    }
}

/// Sensitivity values of one tensor: per weight ([rows, cols]) or per input column ([cols]).
struct SensitivityValues {
    let rows: Int
    let cols: Int
    let values: [Float]
    let perColumn: Bool

    func at(_ r: Int, _ c: Int) -> Float { perColumn ? values[c] : values[r * cols + c] }
}

extension Optional where Wrapped == SensitivityValues {
    /// A per-weight pointer (expanding per-column values), or nil without sensitivities.
    func withFullPointer<R>(rows: Int, cols: Int, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let s = self else { return try body(nil) }
        if !s.perColumn { return try s.values.withUnsafeBufferPointer { try body($0.baseAddress) } }
        var full = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows { for c in 0..<cols { full[r * cols + c] = s.values[c] } }
        return try full.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// The quantizer's view of the values.
    func withInput<R>(_ body: (SensitivityInput) throws -> R) rethrows -> R {
        guard let s = self else { return try body(.uniform) }
        return try s.values.withUnsafeBufferPointer { b in
            try body(s.perColumn ? .perColumn(b.baseAddress!) : .full(b.baseAddress!))
        }
    }
}

/// The pipeline's view of a sensitivity file (see `SensitivityFile`, which reads Squeeze's own
/// files, SqueezeLLM's gradient checkpoints and MLX gradient files): values per weight in Hugging Face
/// row order; per-column files are broadcast over rows.
final class PipelineSensitivity {
    let file: SensitivityFile
    let config: ModelConfig

    init(source: SensitivitySource, config: ModelConfig) throws {
        guard case let .file(p) = source else { throw QuantizePipelineError.badOption("no sensitivity file") }
        file = try SensitivityFile(path: p)
        self.config = config
    }

    /// Checks, before any work, names and shapes of every linear layer's sensitivity.
    func check() throws { try file.validate(config: config) }

    /// Values for a layer prefix (`model.layers.N.mlp.up_proj`, `transformer.h.N.attn.c_attn`) in the
    /// quantizer's [out, in] orientation; nil for layers without one (the LM head).
    func values(for layer: String, rows: Int, cols: Int) throws -> SensitivityValues? {
        guard let t = config.allLinearTensors.first(where: { $0.prefix == layer }) else { return nil }
        let v = try file.values(tensor: t)
        guard v.count == rows * cols else {
            throw QuantizePipelineError.sensitivityMismatch(
                file: file.path, tensor: layer + ".weight", detail: "\(v.count) values for a [\(rows), \(cols)] weight")
        }
        return SensitivityValues(rows: rows, cols: cols, values: v, perColumn: false)
    }
}
