import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// A sensitivity file accepted by `squeeze quantize --sensitivity`, after a name and shape check
/// against the model:
/// - Squeeze's own output (`squeeze sensitivity`): metadata `format = squeeze-sensitivity`; Fisher
///   tensors [rows, columns] or activations tensors [1, columns] (one value per input column, broadcast).
/// - SqueezeLLM's gradient tool output: a Hugging Face checkpoint (a directory with config.json and
///   safetensors, single or sharded, or one safetensors file) whose linear weights hold the
///   accumulated squared gradients, usually BF16; its other tensors (embeddings, norms) are ignored.
/// - The MLX gradient tool's safetensors (`mlx-squeezellm-gradients`: metadata `nsamples`, `seqlen`,
///   `seed`; F32 tensors under the same `model.layers.N.*.weight` names).
/// Tensors are looked up under Hugging Face names and are in Hugging Face row order (rotate-half
/// Q and K rows); `values(layer:kind:rowOrder:)` permutes Q and K rows for GGUF-layout models.
/// PyTorch `.pt` / `.bin` files are not read here.
public final class SensitivityFile: @unchecked Sendable {
    /// The `format` metadata value of Squeeze's own files.
    public static let formatName = "squeeze-sensitivity"

    /// Where a file came from.
    public enum Origin: String, Sendable {
        case squeeze, squeezeLLMCheckpoint, mlx, other
        /// SqueezeLLM's chunked gradient files (`layer_N.pt`).
        case squeezeLLMGradientChunks
        /// A PyTorch state dict with Hugging Face names.
        case pytorch
    }

    public let path: String
    public let origin: Origin
    /// The file's metadata (the first file's, for a sharded checkpoint).
    public let metadata: [String: String]
    /// True when each tensor holds one value per input column ([1, columns] or [columns]).
    public let isPerColumn: Bool
    let tensors: SensitivityTensors

    /// Opens a safetensors file, a checkpoint directory, a directory of SqueezeLLM `layer_N.pt`
    /// gradient chunks or a PyTorch state dict, and identifies its origin.
    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SensitivityError.notASensitivityFile(path: path, detail: "no such file or directory")
        }
        let isTorch = !isDir.boolValue && ["pt", "bin", "pth"].contains(URL(fileURLWithPath: path).pathExtension)
        let chunkDir: String? =
            isDir.boolValue
            ? (GradientChunks.hasChunks(path) ? path : nil)
            : (isTorch && GradientChunks.layerIndex(URL(fileURLWithPath: path).lastPathComponent) != nil
                ? URL(fileURLWithPath: path).deletingLastPathComponent().path : nil)
        if let cd = chunkDir {
            tensors = try GradientChunks(directory: cd)
            metadata = [:]
            origin = .squeezeLLMGradientChunks
        } else if isTorch {
            let ck: PyTorchCheckpoint
            do { ck = try PyTorchCheckpoint(path: path) } catch {
                throw SensitivityError.notASensitivityFile(path: path, detail: "\(error)")
            }
            tensors = PyTorchStateDictTensors(ck)
            metadata = [:]
            origin = .pytorch
        } else {
            let st: SafeTensorsModel
            do { st = try SafeTensorsModel(path: path) } catch {
                throw SensitivityError.notASensitivityFile(path: path, detail: "\(error)")
            }
            tensors = st
            metadata = st.metadata
            origin = Self.origin(path: path, isDir: isDir.boolValue, metadata: metadata)
        }
        let probes = [
            ModelFamily.llama.weightName(layer: 0, kind: .q)!, "model.decoder.layers.0.self_attn.q_proj.weight",
            "decoder.layers.0.self_attn.q_proj.weight", "transformer.h.0.attn.c_attn.weight", "h.0.attn.c_attn.weight",
            ModelFamily.phi3.weightName(layer: 0, kind: .q)!,
        ]
        let st = tensors
        guard let info = probes.lazy.compactMap({ st.sensitivityInfo($0) }).first else {
            throw SensitivityError.missingTensor(file: path, tensor: probes[0])
        }
        isPerColumn =
            metadata["mode"] == SensitivityMode.activations.rawValue || info.shape.count == 1 || info.shape.first == 1
    }

    static func origin(path: String, isDir: Bool, metadata: [String: String]) -> Origin {
        let dir = isDir ? path : URL(fileURLWithPath: path).deletingLastPathComponent().path
        if metadata["format"] == SensitivityFile.formatName {
            return .squeeze
        } else if metadata["nsamples"] != nil {
            return .mlx
        } else if FileManager.default.fileExists(atPath: dir + "/config.json") {
            return .squeezeLLMCheckpoint
        }
        return .other
    }

    /// Checks that every linear weight of a model with `config` has a sensitivity of the right shape
    /// ([rows, columns], or [1, columns] / [columns] for a per-column file) and a float dtype.
    public func validate(config c: ModelConfig) throws {
        if let g = tensors as? GradientChunks, g.layers.count != c.numLayers {
            throw SensitivityError.notASensitivityFile(
                path: path,
                detail:
                    "gradient chunks for layers \(g.layers.map(String.init).joined(separator: ", ")), but the model has \(c.numLayers) layers (layer_0.pt to layer_\(c.numLayers - 1).pt expected)"
            )
        }
        for t in c.allLinearTensors {
            let name = t.weightName
            let cols = t.columns
            guard let info = tensors.sensitivityInfo(name) else {
                throw SensitivityError.missingTensor(file: path, tensor: name)
            }
            let ok = isPerColumn ? (info.shape == [1, cols] || info.shape == [cols]) : info.shape == t.storedShape
            guard ok else {
                throw SensitivityError.shapeMismatch(
                    file: path, tensor: name,
                    expected: isPerColumn ? [1, cols] : t.storedShape, got: info.shape)
            }
            guard [.f32, .f16, .bf16, .f64].contains(info.dtype) else {
                throw SensitivityError.unsupportedDType(file: path, tensor: name, dtype: info.dtype)
            }
        }
    }

    /// The sensitivity of every element of a stored linear weight as [rows * columns] F32 in the
    /// [out, in] orientation the quantizer uses (Conv1D files, [in, out], are transposed; a per-column
    /// file is broadcast over the rows). Throws on a shape mismatch, NaN, infinite or negative values.
    public func values(tensor lt: LinearTensor) throws -> [Float] {
        let name = lt.weightName
        let rows = lt.rows, cols = lt.columns
        guard tensors.contains(name) else { throw SensitivityError.missingTensor(file: path, tensor: name) }
        let t = try tensors.tensor(name)
        let ok = isPerColumn ? (t.shape == [1, cols] || t.shape == [cols]) : t.shape == lt.storedShape
        guard ok else {
            throw SensitivityError.shapeMismatch(
                file: path, tensor: name, expected: isPerColumn ? [1, cols] : lt.storedShape, got: t.shape)
        }
        guard [.f32, .f16, .bf16, .f64].contains(t.dtype) else {
            throw SensitivityError.unsupportedDType(file: path, tensor: name, dtype: t.dtype)
        }
        let raw = t.toFloatArray()
        if let bad = raw.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw SensitivityError.invalidValues(
                file: path, tensor: name, detail: "element \(bad) is \(raw[bad]); sensitivities are finite and >= 0")
        }
        var out = [Float](repeating: 0, count: rows * cols)
        if isPerColumn {
            for r in 0..<rows { for j in 0..<cols { out[r * cols + j] = raw[j] } }
        } else if lt.transposed {
            for r in 0..<rows { for j in 0..<cols { out[r * cols + j] = raw[j * rows + r] } }
        } else {
            return raw
        }
        return out
    }

    /// [rows, columns] of a linear weight of `kind` in a model with config `c`.
    public static func shape(_ kind: LinearKind, _ c: ModelConfig) -> (Int, Int) {
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, f = c.intermediateSize
        switch kind {
        case .q: return (qd, h)
        case .k, .v: return (kvd, h)
        case .o: return (h, qd)
        case .gate, .up: return (f, h)
        case .down: return (h, f)
        }
    }

    /// The tensor as stored (F32, F16, BF16 or F64).
    public func tensor(layer: Int, kind: LinearKind, config c: ModelConfig) throws -> Tensor {
        guard let name = c.weightName(layer: layer, kind: kind) else {
            throw SensitivityError.missingTensor(file: path, tensor: "\(kind) of block \(layer) (the model has none)")
        }
        guard tensors.contains(name) else { throw SensitivityError.missingTensor(file: path, tensor: name) }
        return try tensors.tensor(name)
    }

    /// The sensitivity of every element of the weight, [rows * columns] F32 row-major (a per-column
    /// file is broadcast over the rows), with Q and K rows in `rowOrder` (`.interleaved` for
    /// GGUF-loaded models). Throws on a shape mismatch, NaN, infinite or negative values.
    public func values(
        layer: Int, kind: LinearKind, config c: ModelConfig, rowOrder: RopeLayout = .halves
    ) throws -> [Float] {
        let name = c.weightName(layer: layer, kind: kind) ?? "\(kind)"
        let (rows, cols) = Self.shape(kind, c)
        let t = try tensor(layer: layer, kind: kind, config: c)
        let ok = isPerColumn ? (t.shape == [1, cols] || t.shape == [cols]) : t.shape == [rows, cols]
        guard ok else {
            throw SensitivityError.shapeMismatch(
                file: path, tensor: name, expected: isPerColumn ? [1, cols] : [rows, cols], got: t.shape)
        }
        guard [.f32, .f16, .bf16, .f64].contains(t.dtype) else {
            throw SensitivityError.unsupportedDType(file: path, tensor: name, dtype: t.dtype)
        }
        let raw = t.toFloatArray()
        if let bad = raw.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw SensitivityError.invalidValues(
                file: path, tensor: name, detail: "element \(bad) is \(raw[bad]); sensitivities are finite and >= 0")
        }
        if isPerColumn {
            var out = [Float](repeating: 0, count: rows * cols)
            for r in 0..<rows { for j in 0..<cols { out[r * cols + j] = raw[j] } }
            return out
        }
        guard rowOrder == .interleaved, kind == .q || kind == .k else { return raw }
        // File rows are in HF order; GGUF row g is HF row hfRowForGGUF[g].
        let heads = kind == .q ? c.numHeads : c.numKVHeads
        let ggufForHF = RopePermutation.ggufRowForHFRow(heads: heads, headDim: c.headDim)
        var out = [Float](repeating: 0, count: rows * cols)
        for hf in 0..<rows {
            let g = ggufForHF[hf]
            for j in 0..<cols { out[g * cols + j] = raw[hf * cols + j] }
        }
        return out
    }
}

/// Where a sensitivity file's tensors come from (safetensors, gradient chunks or a state dict).
protocol SensitivityTensors: AnyObject {
    /// Shape and dtype of a tensor under its Hugging Face name, nil when absent.
    func sensitivityInfo(_ name: String) -> (shape: [Int], dtype: DType)?
    func contains(_ name: String) -> Bool
    func tensor(_ name: String) throws -> Tensor
}

extension SafeTensorsModel: SensitivityTensors {
    func sensitivityInfo(_ name: String) -> (shape: [Int], dtype: DType)? { info(name).map { ($0.shape, $0.dtype) } }
}

/// A PyTorch state dict under Hugging Face names.
final class PyTorchStateDictTensors: SensitivityTensors {
    let checkpoint: PyTorchCheckpoint
    init(_ c: PyTorchCheckpoint) { checkpoint = c }
    func sensitivityInfo(_ name: String) -> (shape: [Int], dtype: DType)? {
        checkpoint.reference(name).map { ($0.shape, $0.storage.dtype) }
    }
    func contains(_ name: String) -> Bool { checkpoint.contains(name) }
    func tensor(_ name: String) throws -> Tensor { try checkpoint.tensor(name) }
}

/// SqueezeLLM's chunked gradients: `layer_N.pt` files, each a dict q, k, v, o, gate, up, down
/// (`squeezellm/model_parse.py` `get_module_names` for Llama), served under Hugging Face names.
final class GradientChunks: SensitivityTensors {
    /// The chunk keys of a Llama layer and the linear each names.
    static let keys: [(String, LinearKind)] = [
        ("q", .q), ("k", .k), ("v", .v), ("o", .o), ("gate", .gate), ("up", .up), ("down", .down),
    ]
    let directory: String
    /// Layer indices found, ascending.
    let layers: [Int]
    let files: [Int: PyTorchCheckpoint]

    /// N of a `layer_N.pt` file name.
    static func layerIndex(_ file: String) -> Int? {
        guard file.hasPrefix("layer_"), file.hasSuffix(".pt") else { return nil }
        return Int(file.dropFirst(6).dropLast(3))
    }

    static func hasChunks(_ dir: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).contains { layerIndex($0) != nil }
    }

    init(directory: String) throws {
        self.directory = directory
        let found = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { f in
            Self.layerIndex(f).map { ($0, f) }
        }
        var files: [Int: PyTorchCheckpoint] = [:]
        for (i, f) in found {
            let p = directory + "/" + f
            let ck: PyTorchCheckpoint
            do { ck = try PyTorchCheckpoint(path: p) } catch {
                throw SensitivityError.notASensitivityFile(path: p, detail: "\(error)")
            }
            let known = Set(Self.keys.map { $0.0 })
            if let odd = ck.tensorNames.first(where: { !known.contains($0) }) {
                throw SensitivityError.notASensitivityFile(
                    path: p,
                    detail: "unexpected key '\(odd)'; SqueezeLLM gradient chunks hold q, k, v, o, gate, up, down")
            }
            for (k, kind) in Self.keys where !ck.contains(k) {
                throw SensitivityError.missingTensor(
                    file: p, tensor: "\(k) (\(ModelFamily.llama.weightName(layer: i, kind: kind) ?? "\(kind)"))")
            }
            files[i] = ck
        }
        layers = files.keys.sorted()
        guard layers == Array(0..<layers.count) else {
            throw SensitivityError.notASensitivityFile(
                path: directory,
                detail:
                    "gradient chunks are not layer_0.pt to layer_\(layers.count - 1).pt without gaps: found \(layers)")
        }
        self.files = files
    }

    /// (file, key) of a Hugging Face weight name.
    func locate(_ name: String) -> (PyTorchCheckpoint, String)? {
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let l = Int(parts[2]), let f = files[l]
        else { return nil }
        guard
            let (key, _) = Self.keys.first(where: {
                ModelFamily.llama.linearSuffix($0.1).map { $0 + ".weight" } == parts[3]
            })
        else { return nil }
        return (f, key)
    }

    func sensitivityInfo(_ name: String) -> (shape: [Int], dtype: DType)? {
        guard let (f, k) = locate(name), let r = f.reference(k) else { return nil }
        return (r.shape, r.storage.dtype)
    }
    func contains(_ name: String) -> Bool { sensitivityInfo(name) != nil }
    func tensor(_ name: String) throws -> Tensor {
        guard let (f, k) = locate(name) else { throw SensitivityError.missingTensor(file: directory, tensor: name) }
        let t = try f.tensor(k)
        return Tensor(name: name, dtype: t.dtype, shape: t.shape, data: t.data, owner: t.owner)
    }
}
