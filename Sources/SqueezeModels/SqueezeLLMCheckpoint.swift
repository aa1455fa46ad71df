import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels

/// Errors of reading a SqueezeLLM `.pt` checkpoint, naming the file and the tensor or field.
public enum SqueezeLLMImportError: Error, CustomStringConvertible {
    /// quant_config.json is unreadable or disagrees with the tensors.
    case badQuantConfig(file: String, detail: String)
    /// No config.json beside the checkpoint and no base model to take it from.
    case missingConfig(checkpoint: String)
    /// The checkpoint has no `*.qweight` tensor.
    case noQuantizedLayers(file: String)
    /// A quantized layer's tensor has the wrong dtype, shape or contents.
    case badTensor(file: String, tensor: String, detail: String)
    /// A tensor the model needs is neither in the checkpoint nor in the base model.
    case missingTensor(file: String, tensor: String, hint: String)

    public var description: String {
        switch self {
        case let .badQuantConfig(f, d): return "\(f): \(d)"
        case let .missingConfig(c):
            return
                "\(c): no config.json beside the checkpoint; give the original model with --base (its config.json is used)"
        case let .noQuantizedLayers(f): return "\(f): no '*.qweight' tensors: not a SqueezeLLM checkpoint"
        case let .badTensor(f, t, d): return "\(f): tensor '\(t)': \(d)"
        case let .missingTensor(f, t, h): return "\(f): tensor '\(t)' is missing; \(h)"
        }
    }
}

/// A SqueezeLLM checkpoint as its reference code writes it (`torch.save(model.state_dict())` after
/// `QuantLinearLUT.pack2`), read through the restricted unpickler, under Squeeze's names:
///
/// - per linear layer `<prefix>.qweight` int32 [in·b/32, out] (3-bit: 32 values per 3 words; 4-bit:
///   8 per word), `<prefix>.lookup_table` F32 [out, 2^b];
/// - the sparse part as CSR `<prefix>.rows` (indptr, int32 [out+1]), `.cols` (int32), `.vals` (F32),
///   checked against `sparse_threshold.<prefix>` (the value count the reference allocates from);
/// - the hybrid kernel's dense rows `<prefix>.full_rows` F32 [in, topX] and `.full_row_indices`
///   int32 [topX] (the reference kernel adds `full_rows[:, j]` to output row `full_row_indices[j]`)
///   are folded into the CSR part (values summed where both hold one), so `rows`/`cols`/`vals` here
///   are the whole sparse matrix; the balanced kernel's `startrows` is derived data and is ignored;
/// - every other tensor (embeddings, norms, lm_head) from the checkpoint, or else from `base` (the
///   original model, which LLaMA-v1 and Vicuna-v1.1 checkpoints need: they hold only the quantized
///   layers). `rotary_emb.inv_freq` buffers are dropped.
///
/// Weights are `W[r, c] = lookup_table[r, index(r, c)] + sparse[r, c]`, the reference's semantics.
public final class SqueezeLLMCheckpoint: TensorSource {
    public let path: String
    public let checkpoint: PyTorchCheckpoint
    /// 3 or 4.
    public let bits: Int
    /// The model config (config.json beside the checkpoint, else the base model's).
    public let config: ModelConfig
    /// Where `config` came from.
    public let configPath: String
    /// Supplies the tensors the checkpoint lacks.
    public let base: TensorSource?
    /// The directory holding the base model's tokenizer and generation config, when there is one.
    public let baseDirectory: String?
    /// Prefixes of the quantized layers (`model.layers.0.self_attn.q_proj`, ...), in checkpoint order.
    public let quantizedLayers: [String]
    public let tensorNames: [String]
    public var ropeLayout: RopeLayout { .halves }

    private let ownNames: Set<String>
    private let sparseLayers: Set<String>
    private var foldedCache: [String: (rows: [Int32], cols: [Int32], vals: [Float])] = [:]
    private let lock = NSLock()

    static let extraSuffixes = [".full_rows", ".full_row_indices", ".startrows"]
    static let sparseSuffixes = [".rows", ".cols", ".vals"]

    /// Opens `path` (a `.pt`/`.bin`/`.pth` zip checkpoint). `base` is the original model (a Hugging
    /// Face directory or a GGUF file); without it, the checkpoint's directory is used as the base when
    /// it holds config.json and safetensors. Bits come from `quant_config.json` beside the checkpoint
    /// (`{"wbits": N}`), else from the lookup tables' width; the two must agree.
    public init(path: String, base basePath: String? = nil) throws {
        self.path = path
        checkpoint = try PyTorchCheckpoint(path: path)
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let names = checkpoint.tensorNames
        let layers = names.filter { $0.hasSuffix(".qweight") }.map { String($0.dropLast(".qweight".count)) }
        guard !layers.isEmpty else { throw SqueezeLLMImportError.noQuantizedLayers(file: path) }
        quantizedLayers = layers

        // Bits: quant_config.json, checked against the first lookup table.
        let lutName = layers[0] + ".lookup_table"
        guard let lutRef = checkpoint.reference(lutName) else {
            throw SqueezeLLMImportError.badTensor(
                file: path, tensor: lutName, detail: "missing (every qweight needs its lookup_table)")
        }
        guard lutRef.shape.count == 2, [8, 16].contains(lutRef.shape[1]) else {
            throw SqueezeLLMImportError.badTensor(
                file: path, tensor: lutName,
                detail: "shape \(lutRef.shape) is not [out, 8] (3-bit) or [out, 16] (4-bit)")
        }
        let lutBits = lutRef.shape[1] == 8 ? 3 : 4
        let qcPath = dir + "/quant_config.json"
        if FileManager.default.fileExists(atPath: qcPath) {
            let qc = try ModelError.mappingConfigErrors { try JSONConfig(path: qcPath) }
            let w: Int
            do { w = try qc.int("wbits") } catch {
                throw SqueezeLLMImportError.badQuantConfig(file: qcPath, detail: "\(error)")
            }
            guard w == lutBits else {
                throw SqueezeLLMImportError.badQuantConfig(
                    file: qcPath,
                    detail: "wbits is \(w), but '\(lutName)' has \(lutRef.shape[1]) entries per row (\(lutBits) bits)")
            }
        }
        bits = lutBits

        // Config and base.
        var baseSource: TensorSource?
        var baseConfig: (ModelConfig, String)?
        var baseDir: String?
        let candidate = basePath ?? dir
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDir) {
            if isDir.boolValue {
                let hasST = ((try? FileManager.default.contentsOfDirectory(atPath: candidate)) ?? []).contains {
                    $0.hasSuffix(".safetensors")
                }
                if hasST {
                    baseSource = SafeTensorsSource(try SafeTensorsModel(path: candidate))
                    baseDir = candidate
                } else if basePath != nil {
                    throw SqueezeLLMImportError.missingTensor(
                        file: candidate, tensor: "*.safetensors",
                        hint: "the base model directory has no safetensors files")
                }
                if FileManager.default.fileExists(atPath: candidate + "/config.json") {
                    baseConfig = (try ModelConfig(configFile: candidate + "/config.json"), candidate + "/config.json")
                }
            } else if basePath != nil {
                let g = try GGUFFile(path: candidate)
                baseSource = GGUFTensorSource(g)
                baseConfig = (try ModelConfig(gguf: g), candidate)
                baseDir = nil
            }
        }
        base = baseSource
        baseDirectory = baseDir ?? (FileManager.default.fileExists(atPath: dir + "/config.json") ? dir : nil)
        if FileManager.default.fileExists(atPath: dir + "/config.json") {
            config = try ModelConfig(configFile: dir + "/config.json")
            configPath = dir + "/config.json"
        } else if let (c, p) = baseConfig {
            config = c
            configPath = p
        } else {
            throw SqueezeLLMImportError.missingConfig(checkpoint: path)
        }

        // Names: the checkpoint's own (minus hybrid/balanced extras and rotary buffers), then the base's.
        var own: [String] = []
        var sparse = Set<String>()
        let layerSet = Set(layers)
        for n in names {
            if n.hasSuffix("rotary_emb.inv_freq") || Self.extraSuffixes.contains(where: { n.hasSuffix($0) }) {
                continue
            }
            own.append(n)
            if n.hasSuffix(".rows") { sparse.insert(String(n.dropLast(".rows".count))) }
        }
        // A hybrid layer with full rows but no CSR part still gets one.
        for l in layers where checkpoint.contains(l + ".full_rows") && !sparse.contains(l) {
            sparse.insert(l)
            own.append(contentsOf: Self.sparseSuffixes.map { l + $0 })
        }
        var all = own
        let ownSet = Set(own)
        if let b = baseSource {
            for n in b.tensorNames where !ownSet.contains(n) {
                if n.hasSuffix(".weight"), layerSet.contains(String(n.dropLast(".weight".count))) { continue }
                all.append(n)
            }
        }
        ownNames = ownSet
        sparseLayers = sparse
        tensorNames = all
    }

    public func contains(_ name: String) -> Bool {
        ownNames.contains(name)
            || (base.map { b in
                if name.hasSuffix(".weight"), quantizedLayers.contains(String(name.dropLast(".weight".count))) {
                    return false
                }
                return b.contains(name)
            } ?? false)
    }

    public func tensor(_ name: String) throws -> Tensor {
        if ownNames.contains(name) {
            for s in Self.sparseSuffixes where name.hasSuffix(s) {
                let layer = String(name.dropLast(s.count))
                if sparseLayers.contains(layer) {
                    let f = try folded(layer)
                    switch s {
                    case ".rows":
                        return Tensor.owning(AlignedBuffer(f.rows), name: name, dtype: .i32, shape: [f.rows.count])
                    case ".cols":
                        return Tensor.owning(AlignedBuffer(f.cols), name: name, dtype: .i32, shape: [f.cols.count])
                    default: return Tensor.owning(AlignedBuffer(f.vals), name: name, dtype: .f32, shape: [f.vals.count])
                    }
                }
            }
            return try checkpoint.tensor(name)
        }
        if let b = base, contains(name) { return try b.tensor(name) }
        throw SqueezeLLMImportError.missingTensor(
            file: path, tensor: name,
            hint: base == nil
                ? "LLaMA-v1 and Vicuna-v1.1 checkpoints hold only the quantized layers: give the original model with --base"
                : "the base model does not have it either")
    }

    /// Checks that every tensor the model needs is here (quantized or dense linears, norms,
    /// embeddings, the LM head unless tied), naming the first that is not.
    public func checkComplete() throws {
        var need = ["model.embed_tokens.weight", "model.norm.weight"]
        if !config.tieWordEmbeddings && !contains("lm_head.qweight") { need.append("lm_head.weight") }
        let linears = [
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
        ]
        for l in 0..<config.numLayers {
            let p = "model.layers.\(l)."
            need += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
            for s in linears where !contains(p + s + ".qweight") { need.append(p + s + ".weight") }
        }
        for n in need where !contains(n) {
            throw SqueezeLLMImportError.missingTensor(
                file: path, tensor: n,
                hint: base == nil
                    ? "LLaMA-v1 and Vicuna-v1.1 checkpoints hold only the quantized layers: give the original model with --base"
                    : "the base model does not have it either")
        }
    }

    /// The layers' quantized operators (the factory `DecoderModel` takes).
    public func linearFactory(mode: LUTMode) throws -> LinearFactory {
        try QuantizedCheckpoint(bits: bits, source: self, mode: mode).factory
    }

    /// Loads the model (every shape checked; layers run from their packed form).
    public func loadModel(options: LoadOptions = LoadOptions(), pool: WorkerPool = .shared) throws -> DecoderModel {
        try DecoderModel(
            config: config, source: self, options: options, linearFactory: try linearFactory(mode: options.lutMode),
            pool: pool)
    }

    /// The whole sparse part of a layer: the CSR arrays with the hybrid dense rows added in, rows in
    /// order, columns sorted and unique within a row.
    public func folded(_ layer: String) throws -> (rows: [Int32], cols: [Int32], vals: [Float]) {
        lock.lock()
        if let f = foldedCache[layer] { lock.unlock(); return f }
        lock.unlock()
        let f = try computeFolded(layer)
        lock.lock()
        foldedCache[layer] = f
        lock.unlock()
        return f
    }

    private func computeFolded(_ layer: String) throws -> (rows: [Int32], cols: [Int32], vals: [Float]) {
        let lt = try checkpoint.tensor(layer + ".lookup_table")
        let qw = try checkpoint.tensor(layer + ".qweight")
        guard lt.shape.count == 2, qw.shape.count == 2, qw.dtype == .i32 else {
            throw SqueezeLLMImportError.badTensor(
                file: path, tensor: layer + ".qweight",
                detail: "expected I32 [in*\(bits)/32, out], got \(qw.dtype.rawValue) \(qw.shape)")
        }
        let out = lt.shape[0], inp = qw.shape[0] * 32 / bits
        func bad(_ s: String, _ d: String) -> SqueezeLLMImportError {
            .badTensor(file: path, tensor: layer + s, detail: d)
        }
        var perRow = [[Int32: Float]](repeating: [:], count: out)
        if checkpoint.contains(layer + ".rows") {
            let r = try checkpoint.tensor(layer + ".rows"), c = try checkpoint.tensor(layer + ".cols"),
                v = try checkpoint.tensor(layer + ".vals")
            guard [.i32, .i64].contains(r.dtype), [.i32, .i64].contains(c.dtype) else {
                throw bad(".rows", "rows/cols must be integer, got \(r.dtype.rawValue)/\(c.dtype.rawValue)")
            }
            guard v.dtype.isFloatingPoint else { throw bad(".vals", "must be floating point, got \(v.dtype.rawValue)") }
            guard r.shape == [out + 1] else {
                throw bad(".rows", "shape \(r.shape), expected [\(out + 1)] (indptr of \(out) rows)")
            }
            guard c.shape.count == 1, v.shape == c.shape else {
                throw bad(".vals", "shape \(v.shape) differs from cols \(c.shape)")
            }
            let rp = r.toIntArray(), ci = c.toIntArray(), vv = v.toFloatArray()
            let nnz = ci.count
            guard rp[0] == 0, rp[out] == nnz, zip(rp, rp.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw bad(".rows", "indptr must rise from 0 to the value count \(nnz)")
            }
            if let t = checkpoint.int("sparse_threshold." + layer), t != nnz {
                throw bad(".vals", "holds \(nnz) values but sparse_threshold.\(layer) says \(t)")
            }
            for row in 0..<out {
                for j in rp[row]..<rp[row + 1] {
                    guard ci[j] >= 0, ci[j] < inp else { throw bad(".cols", "column \(ci[j]) out of range 0..<\(inp)") }
                    perRow[row][Int32(ci[j]), default: 0] += vv[j]
                }
            }
        }
        if checkpoint.contains(layer + ".full_rows") {
            let fr = try checkpoint.tensor(layer + ".full_rows")
            guard checkpoint.contains(layer + ".full_row_indices") else {
                throw bad(".full_row_indices", "missing (full_rows needs it)")
            }
            let fi = try checkpoint.tensor(layer + ".full_row_indices")
            guard fr.dtype.isFloatingPoint, fr.shape.count == 2, fr.shape[0] == inp else {
                throw bad(".full_rows", "expected a float [\(inp), topX], got \(fr.dtype.rawValue) \(fr.shape)")
            }
            let topX = fr.shape[1]
            guard [.i32, .i64].contains(fi.dtype), fi.shape == [topX] else {
                throw bad(".full_row_indices", "expected an integer [\(topX)], got \(fi.dtype.rawValue) \(fi.shape)")
            }
            let idx = fi.toIntArray(), vals = fr.toFloatArray()
            for (j, row) in idx.enumerated() {
                guard row >= 0, row < out else { throw bad(".full_row_indices", "row \(row) out of range 0..<\(out)") }
                for k in 0..<inp {
                    let x = vals[k * topX + j]
                    if x != 0 { perRow[row][Int32(k), default: 0] += x }
                }
            }
        }
        var rows: [Int32] = [0], cols: [Int32] = [], vals: [Float] = []
        for row in 0..<out {
            for (c, v) in perRow[row].sorted(by: { $0.key < $1.key }) {
                cols.append(c)
                vals.append(v)
            }
            rows.append(Int32(cols.count))
        }
        return (rows, cols, vals)
    }
}
