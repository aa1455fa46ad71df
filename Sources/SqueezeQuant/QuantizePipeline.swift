import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// The quantization method.
public enum QuantMethod: String, Sendable, Codable, CaseIterable {
    /// Sensitivity-weighted per-row k-means look-up tables (SqueezeLLM).
    case squeezellm
    /// Per-row uniform round-to-nearest (GPTQ's asymmetric quantizer), the baseline.
    case rtn
    /// Plain per-row min-max uniform grid.
    case rtnMinmax = "rtn-minmax"
    /// SqueezeLLM's tables as the grid, columns rounded in order with GPTQ's error feedback through
    /// the layer's input second moments, then each table refitted to the layer-output error.
    case squeezellmGPTQ = "squeezellm-gptq"

    /// Whether the method needs calibration inputs (X^T X of every linear layer).
    public var needsCalibration: Bool { self == .squeezellmGPTQ }
}

/// Where the per-weight sensitivities come from.
public enum SensitivitySource: Sendable, Equatable {
    /// Plain k-means (all weights count equally).
    case none
    /// A safetensors file of accumulated squared gradients (or per-column importances) with the
    /// model's Hugging Face tensor names: `[out, in]` per weight or `[in]` per input column.
    case file(String)

    public var description: String {
        switch self {
        case .none: return "none"
        case let .file(p): return "file:" + URL(fileURLWithPath: p).lastPathComponent
        }
    }
}

/// Settings of `squeeze quantize`.
public struct QuantizeOptions: Sendable {
    public var bits: Int = 4
    public var method: QuantMethod = .squeezellm
    public var kmeans = KMeansOptions()
    public var sensitivity: SensitivitySource = .none
    /// Dense-and-sparse split (nil: dense only).
    public var outliers: OutlierSelector?
    /// Sparse values as F16 (default) or F32.
    public var sparseDType: DType = .f16
    /// Quantize the LM head too (unties it from the embeddings).
    public var quantizeHead = false
    /// Dtype for tensors kept in full precision whose source dtype is block-quantized (GGUF).
    public var fallbackDType: DType = .f16
    /// How the sensitivity is described in config.json and the report (default: from `sensitivity`).
    public var sensitivityLabel: String?
    /// Largest shard of model.safetensors before splitting.
    public var maxShardBytes = 4 << 30
    /// Quantize only these blocks (0-based, inclusive) into a partial directory that
    /// `PartialQuantization.merge` assembles with the other ranges' (nil: the whole model).
    public var layers: ClosedRange<Int>?
    public var threads: Int?
    /// Calibration windows (token ids) whose inputs to each linear layer give its X^T X, for
    /// `squeezellm-gptq` and `refitTables`.
    public var calibrationWindows: [[Int]]?
    /// How the calibration is described in config.json.
    public var calibrationLabel: String?
    /// Refit each row's table to the layer-output error on the calibration inputs (`OutputRefit`);
    /// `squeezellm-gptq` always does.
    public var refitTables = false
    /// This fraction of the mean diagonal of X^T X is added to its diagonal.
    public var dampening = 0.01
    /// Columns per lazy batch update of GPTQ.
    public var gptqBlockSize = 128

    /// Whether layers are quantized with their calibration inputs.
    public var usesCalibration: Bool { method.needsCalibration || refitTables }

    public init() {}
}

/// Per-tensor figures of a quantization run.
public struct TensorReport: Codable, Sendable {
    public var name: String
    public var rows: Int
    public var columns: Int
    /// sum F (w - q)^2 over the dense part (F as given; uniform weights count 1).
    public var weightedError: Double
    /// sum (w - q)^2 over all weights (sparse ones are exact up to their storage precision).
    public var squaredError: Double
    /// sqrt(sum (w - q)^2 / sum w^2).
    public var relativeError: Double
    public var sparseCount: Int
    public var seconds: Double
    public var bytes: Int
}

/// Totals and per-tensor figures of a quantization run.
public struct QuantizeReport: Codable, Sendable {
    public var model: String
    public var output: String
    public var bits: Int
    public var method: String
    public var kmeans: String
    public var sensitivity: String
    public var sparsity: String
    public var tensors: [TensorReport]
    /// Bits per linear weight as `LinearWeightStorage` defines it: codes, tables and the sparse
    /// part as written, over the quantized layers' weights.
    public var bitsPerWeight: Double
    public var quantizedWeights: Int
    public var outputBytes: Int
    public var wallSeconds: Double
    public var totalWeightedError: Double { tensors.reduce(0) { $0 + $1.weightedError } }
    public var totalSquaredError: Double { tensors.reduce(0) { $0 + $1.squaredError } }
    public var totalSparse: Int { tensors.reduce(0) { $0 + $1.sparseCount } }
}

/// Errors of the quantize pipeline, naming the file and tensor.
public enum QuantizePipelineError: Error, CustomStringConvertible {
    case outputExists(String)
    case sensitivityMismatch(file: String, tensor: String, detail: String)
    case unwritable(path: String, reason: String)
    case badOption(String)

    public var description: String {
        switch self {
        case let .outputExists(p): return "output '\(p)' already exists; remove it or choose another path"
        case let .sensitivityMismatch(f, t, d): return "\(f): sensitivity for '\(t)': \(d)"
        case let .unwritable(p, r): return "cannot write '\(p)': \(r)"
        case let .badOption(s): return s
        }
    }
}

/// Quantizes a model (GGUF or Hugging Face directory) into a Squeeze/SqueezeLLM-layout directory,
/// streaming tensor by tensor from the mapped input: peak memory stays near the largest tensor.
public enum ModelQuantizer {
    /// The linear layers quantized per block of Llama-family models (Hugging Face suffixes); other
    /// families' lists come from `ModelConfig.linearTensors(layer:)`.
    public static let linearSuffixes = [
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
    ]

    /// Progress events: (tensors done, tensors total, name, rows quantized per second, seconds elapsed).
    public typealias Progress = (Int, Int, String, Double, Double) -> Void

    public static func quantize(
        model path: String, output: String, options: QuantizeOptions,
        progress: Progress? = nil
    ) throws -> QuantizeReport {
        guard [2, 3, 4].contains(options.bits) else {
            throw QuantizePipelineError.badOption("bits per weight must be 2, 3 or 4, got \(options.bits)")
        }
        guard [.f16, .f32].contains(options.sparseDType) else {
            throw QuantizePipelineError.badOption(
                "the sparse values' dtype must be f16 or f32, got \(options.sparseDType.rawValue)")
        }
        if options.usesCalibration {
            let what = options.method.needsCalibration ? "--method \(options.method.rawValue)" : "--refit-tables"
            guard let w = options.calibrationWindows, !w.isEmpty else {
                throw QuantizePipelineError.badOption("\(what) needs calibration text (--calibration FILE)")
            }
            guard options.layers == nil else {
                throw QuantizePipelineError.badOption(
                    "\(what) quantizes every block in order (each block's inputs come from the quantized blocks before it); it cannot run with --layers"
                )
            }
            guard options.dampening >= 0, options.dampening.isFinite else {
                throw QuantizePipelineError.badOption("--dampening must be finite and >= 0, got \(options.dampening)")
            }
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: output) { throw QuantizePipelineError.outputExists(output) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let input = try ModelInput(path: path)
        let config = input.config
        let sens =
            try options.sensitivity == .none ? nil : PipelineSensitivity(source: options.sensitivity, config: config)

        // The tensors to quantize, in file order of the model (a partial run: its blocks' only, the
        // head with the last block, the plain tensors with block 0).
        var linear: [String] = []
        if let r = options.layers {
            guard r.lowerBound >= 0, r.upperBound < config.numLayers else {
                throw QuantizePipelineError.badOption(
                    "--layers \(r.lowerBound)-\(r.upperBound) is outside the model's blocks 0-\(config.numLayers - 1)")
            }
            linear = r.flatMap { config.linearTensors(layer: $0).map(\.prefix) }
            if options.quantizeHead && r.upperBound == config.numLayers - 1 { linear.append("lm_head") }
        } else {
            linear = config.allLinearTensors.map(\.prefix)
            if options.quantizeHead { linear.append("lm_head") }
        }
        let withPlain = options.layers.map { $0.lowerBound == 0 } ?? true
        if let s = sens { try s.check() }

        // Pass 1: the sparse split of every tensor (its size must be known to write the header).
        var nnz: [String: Int] = [:]
        if let sel = options.outliers {
            for name in linear {
                let w = try input.weight(name)
                let sv = try sens?.values(for: name, rows: w.rows, cols: w.cols) ?? nil
                let selection = try w.buffer.withUnsafeBufferPointer { wb in
                    try sv.withFullPointer(rows: w.rows, cols: w.cols) { sp in
                        try sel.select(
                            weights: wb.baseAddress!, sensitivity: sp, count: w.rows * w.cols,
                            tensorName: name + ".weight")
                    }
                }
                nnz[name] = selection.keptCount
            }
        }

        // The output layout.
        let k = 1 << options.bits
        var entries: [SafeTensorsWriter.Entry] = []
        var plainNames: [String] = []
        var plainEntries: [SafeTensorsWriter.Entry] = []
        let linearSet = Set((config.allLinearTensors.map(\.prefix) + ["lm_head"]).map { $0 + ".weight" })
        for n in input.tensorNames where !linearSet.contains(n) || n == "lm_head.weight" && !options.quantizeHead {
            let info = try input.plainInfo(n, fallback: options.fallbackDType)
            plainEntries.append(.init(name: n, dtype: info.dtype, shape: info.shape))
        }
        if withPlain {
            entries = plainEntries
            plainNames = plainEntries.map(\.name)
        }
        if options.quantizeHead && config.tieWordEmbeddings && !input.contains("lm_head.weight") {
            // The head is tied: quantizing it unties it from the embeddings (which stay as they are).
        }
        for name in linear {
            let (rows, cols) = try input.shape(name)
            let wordRows = try SqueezePacking.wordRows(cols: cols, bits: options.bits, tensorName: name + ".weight")
            entries.append(.init(name: name + ".qweight", dtype: .i32, shape: [wordRows, rows]))
            entries.append(.init(name: name + ".lookup_table", dtype: .f16, shape: [rows, k]))
            if let z = nnz[name] {
                entries.append(.init(name: name + ".rows", dtype: .i32, shape: [rows + 1]))
                entries.append(.init(name: name + ".cols", dtype: .i32, shape: [z]))
                entries.append(.init(name: name + ".vals", dtype: options.sparseDType, shape: [z]))
            }
        }

        // Written beside the output and renamed onto it on success (leftovers of killed runs are removed).
        let dir = try AtomicDirectory(destination: output)
        let tmp = dir.temporaryPath

        let sparsityDesc: String
        if let sel = options.outliers {
            switch sel.threshold {
            case .none: sparsityDesc = String(format: "sensitive %.4g%%", sel.sensitiveFraction * 100)
            case let .fraction(f):
                sparsityDesc = String(
                    format: "sensitive %.4g%% + outliers %.4g%%", sel.sensitiveFraction * 100, f * 100)
            case let .range(r):
                sparsityDesc = String(
                    format: "sensitive %.4g%% + outliers beyond IQR range %.4g", sel.sensitiveFraction * 100, r)
            case let .absolute(t):
                sparsityDesc = String(format: "sensitive %.4g%% + |w| >= %.4g", sel.sensitiveFraction * 100, t)
            }
        } else {
            sparsityDesc = "dense"
        }
        let meta = [
            "format": "pt", "quant_method": "squeezellm", "wbits": "\(options.bits)",
            "tool": "squeeze \(squeezeVersion)",
        ]
        // A partial directory holds its tensors in one file; the merge shards them as one run would.
        let writer = try ShardedSafeTensorsWriter(
            directory: tmp, entries: entries, metadata: meta,
            maxShardBytes: options.layers == nil ? options.maxShardBytes : Int.max)

        var reports: [TensorReport] = []
        var quantBytes = 0, quantWeights = 0
        let total = entries.count
        var done = 0
        // Plain tensors first, in the order the writer expects.
        let order = writer.plan.flatMap { $0.entries.map { $0.name } }
        var pendingLinear: [String: (QuantizedMatrix, SparseCSR?)] = [:]
        // Calibrated methods quantize a whole block at once, in block order, as the writer asks for
        // its first tensor.
        let stream =
            try options.usesCalibration ? LayerInputStream(input: input, windows: options.calibrationWindows!) : nil
        var blockOf: [String: (Int, LinearKind)] = [:]
        if stream != nil {
            for li in 0..<config.numLayers {
                for t in config.linearTensors(layer: li) {
                    if let kind = t.parts.first?.kind, t.parts.count == 1 { blockOf[t.prefix] = (li, kind) }
                }
            }
        }
        var blockResults: [String: (QuantizedMatrix, SparseCSR?, TensorReport)] = [:]
        for name in order {
            if plainNames.contains(name) {
                let t = try input.plainTensor(name, fallback: options.fallbackDType)
                try writer.write(t)
                done += 1
                progress?(done, total, name, 0, elapsed(t0))
                continue
            }
            // A quantized layer's tensors: quantize on its first entry (qweight), write the rest in order.
            let layer = String(name[..<name.lastIndex(of: ".")!])
            let suffix = String(name[name.index(after: name.lastIndex(of: ".")!)...])
            if suffix == "qweight" {
                let ts = DispatchTime.now().uptimeNanoseconds
                let (rows, cols) = try input.shape(layer)
                let w = (rows: rows, cols: cols)
                let result: (QuantizedMatrix, SparseCSR?, TensorReport)
                if let s = stream, let li = blockOf[layer]?.0 {
                    while blockResults[layer] == nil && s.nextBlock <= li {
                        for (name, res) in try quantizeBlock(
                            s.nextBlock, stream: s, input: input, sens: sens, options: options)
                        {
                            blockResults[name] = res
                        }
                    }
                    guard let res = blockResults.removeValue(forKey: layer) else {
                        throw QuantizePipelineError.badOption("internal: \(layer) asked for after its block")
                    }
                    result = res
                } else {
                    let wm = try input.weight(layer)
                    let sv = try sens?.values(for: layer, rows: wm.rows, cols: wm.cols) ?? nil
                    var res = try quantizeOne(name: layer, w: wm, sens: sv, options: options)
                    res.2.seconds = elapsed(ts)
                    result = res
                }
                let (q, csr, rep) = result
                var r = rep
                let qw = try SqueezePacking.pack(
                    indices: q.indices, rows: w.rows, cols: w.cols, bits: options.bits, tensorName: layer)
                try qw.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
                var bytes = qw.count * 4 + w.rows * k * 2
                if let c = csr {
                    bytes +=
                        c.rowPointers.count * 4 + c.columnIndices.count * 4 + c.values.count
                        * options.sparseDType.byteSize
                }
                r.bytes = bytes
                quantBytes += bytes
                quantWeights += w.rows * w.cols
                reports.append(r)
                pendingLinear[layer] = (q, csr)
                done += 1
                progress?(done, total, layer, Double(w.rows) / max(r.seconds, 1e-9), elapsed(t0))
                continue
            }
            guard let (q, csr) = pendingLinear[layer] else {
                throw QuantizePipelineError.badOption("internal: \(name) planned before its qweight")
            }
            switch suffix {
            case "lookup_table":
                let h = SqueezePacking.lutHalf(q)
                try h.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
                if csr == nil { pendingLinear[layer] = nil }
            case "rows": try csr!.rowPointers.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
            case "cols": try csr!.columnIndices.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
            case "vals":
                if options.sparseDType == .f16 {
                    try csr!.valuesHalf().withUnsafeBytes { try writer.write(name: name, bytes: $0) }
                } else {
                    try csr!.values.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
                }
                pendingLinear[layer] = nil
            default:
                throw QuantizePipelineError.badOption("internal: unexpected tensor \(name)")
            }
            done += 1
        }
        try writer.finish()

        // Config, generation config, tokenizer.
        var cfg = config.huggingFaceJSON()
        if options.quantizeHead { cfg["tie_word_embeddings"] = false }
        var qc: [String: Any] = [
            "quant_method": "squeezellm", "wbits": options.bits, "method": options.method.rawValue,
            "kmeans": options.kmeans.engine.rawValue,
            "sensitivity": options.sensitivityLabel ?? options.sensitivity.description,
            "sparsity": sparsityDesc, "sparse_dtype": options.sparseDType.rawValue,
            "quantize_head": options.quantizeHead, "tool": "squeeze \(squeezeVersion)",
            "source": URL(fileURLWithPath: path).lastPathComponent,
        ]
        if options.usesCalibration {
            qc["calibration"] = options.calibrationLabel ?? "\(options.calibrationWindows?.count ?? 0) windows"
            qc["refit_tables"] = true
            qc["dampening"] = options.dampening
            if options.method == .squeezellmGPTQ { qc["gptq_block_size"] = options.gptqBlockSize }
        }
        if let sel = options.outliers {
            qc["sensitive_fraction"] = sel.sensitiveFraction
            if case let .fraction(f) = sel.threshold { qc["outlier_fraction"] = f }
            if case let .range(r) = sel.threshold { qc["outlier_range"] = r }
        }
        cfg["quantization_config"] = qc
        try dir.writeJSON(cfg, to: "config.json")
        try input.writeTokenizerAndGeneration(to: tmp, config: config)
        if let r = options.layers {
            try dir.writeJSON(
                PartialQuantization.description(
                    layers: r, numLayers: config.numLayers, model: path, config: config, metadata: meta,
                    maxShardBytes: options.maxShardBytes, plainEntries: plainEntries, entries: entries),
                to: PartialQuantization.descriptionFile)
        }

        let outBytes = directorySize(tmp)
        try dir.commit()
        return QuantizeReport(
            model: path, output: output, bits: options.bits, method: options.method.rawValue,
            kmeans: options.kmeans.engine.rawValue,
            sensitivity: options.sensitivityLabel ?? options.sensitivity.description,
            sparsity: sparsityDesc, tensors: reports,
            bitsPerWeight: LinearWeightStorage(bytes: quantBytes, weights: quantWeights).bitsPerWeight,
            quantizedWeights: quantWeights, outputBytes: outBytes, wallSeconds: elapsed(t0))
    }

    /// Quantizes every linear layer of block `li` with its inputs' second moments (the blocks
    /// before it already quantized), puts what each quantized layer computes into the stream's model
    /// and runs the block again for the next block's inputs. Returns each layer's results by prefix.
    static func quantizeBlock(
        _ li: Int, stream s: LayerInputStream, input: ModelInput, sens: PipelineSensitivity?, options: QuantizeOptions
    ) throws -> [String: (QuantizedMatrix, SparseCSR?, TensorReport)] {
        let moments = s.secondMoments(block: li)
        var out: [String: (QuantizedMatrix, SparseCSR?, TensorReport)] = [:]
        for t in input.config.linearTensors(layer: li) {
            guard t.parts.count == 1, let kind = t.parts.first?.kind else {
                throw QuantizePipelineError.badOption(
                    "calibrated quantization needs whole linear layers; '\(t.prefix).weight' is fused")
            }
            guard let m = moments[LayerInputStream.inputOwner(kind)] else {
                throw QuantizePipelineError.badOption("internal: no inputs were observed for '\(t.prefix).weight'")
            }
            let ts = DispatchTime.now().uptimeNanoseconds
            let w = try input.weight(t.prefix)
            let sv = try sens?.values(for: t.prefix, rows: w.rows, cols: w.cols) ?? nil
            var (q, csr, rep) = try quantizeOne(
                name: t.prefix, w: w, sens: sv, options: options, hessian: m.dampened(options.dampening))
            rep.seconds = elapsed(ts)
            // What the stored layer computes: table values plus the sparse part as written.
            var deq = q.dequantized()
            if var c = csr {
                if options.sparseDType == .f16 {
                    c.values = c.values.map { HalfConversion.toFloat(HalfConversion.toHalf($0)) }
                }
                c.add(into: &deq)
            }
            s.commit(prefix: t.prefix, kind: kind, values: deq, rows: w.rows, cols: w.cols)
            out[t.prefix] = (q, csr, rep)
        }
        s.advance(block: li)
        return out
    }

    static func quantizeOne(
        name: String, w: WeightMatrix, sens: SensitivityValues?, options: QuantizeOptions, hessian: [Double]? = nil
    )
        throws -> (QuantizedMatrix, SparseCSR?, TensorReport)
    {
        let rows = w.rows, cols = w.cols
        return try w.buffer.withUnsafeBufferPointer { wb -> (QuantizedMatrix, SparseCSR?, TensorReport) in
            let wp = wb.baseAddress!
            var mask: [UInt8]?
            if let sel = options.outliers {
                mask = try sens.withFullPointer(rows: rows, cols: cols) { sp in
                    try sel.select(weights: wp, sensitivity: sp, count: rows * cols, tensorName: name + ".weight").mask
                }
            }
            var q: QuantizedMatrix
            // Where kept positions end (GPTQ: their error-fed weights), when not the weights themselves.
            var kept: [Float]?
            var kmOpts = options.kmeans
            kmOpts.halfPrecisionTable = true
            kmOpts.threads = options.threads
            q = try sens.withInput { si in
                try mask.withOptionalPointer { mp in
                    switch options.method {
                    case .squeezellm, .squeezellmGPTQ:
                        var r = try NonUniformQuantizer.quantizeMatrix(
                            weights: wp, sensitivity: si, rows: rows, cols: cols, bits: options.bits,
                            keepMask: mp, options: kmOpts, tensorName: name + ".weight")
                        guard let h = hessian else { return r }
                        if options.method == .squeezellmGPTQ {
                            let u = try GPTQTableQuantizer.inverseCholeskyUpper(
                                h, n: cols, tensorName: name + ".weight")
                            let g = try GPTQTableQuantizer.quantize(
                                weights: wp, rows: rows, cols: cols, bits: options.bits, tables: r.lut, u: u,
                                keepMask: mp, blockSize: options.gptqBlockSize, threads: options.threads,
                                tensorName: name + ".weight")
                            r.indices = g.indices
                            if mp != nil { kept = g.values }
                        }
                        try kept.withOptionalPointer { kp in
                            try h.withUnsafeBufferPointer { hb in
                                _ = try OutputRefit.refit(
                                    &r, weights: wp, hessian: hb.baseAddress!, keepMask: mp, keptValues: kp,
                                    sensitivity: si, threads: options.threads, tensorName: name + ".weight")
                            }
                        }
                        if let m = mp { r = RTNQuantizer.assignKeptToNearestZero(r, keepMask: m) }
                        return r
                    case .rtn, .rtnMinmax:
                        var r = try RTNQuantizer.quantizeMatrix(
                            weights: wp, sensitivity: si, rows: rows, cols: cols, bits: options.bits,
                            variant: options.method == .rtn ? .gptq : .minmax, tensorName: name + ".weight")
                        if let m = mp { r = RTNQuantizer.assignKeptToNearestZero(r, keepMask: m) }
                        if let h = hessian, options.refitTables {
                            try h.withUnsafeBufferPointer { hb in
                                _ = try OutputRefit.refit(
                                    &r, weights: wp, hessian: hb.baseAddress!, keepMask: mp, sensitivity: si,
                                    threads: options.threads, tensorName: name + ".weight")
                            }
                        }
                        return r
                    }
                }
            }
            // Round the tables to FP16 as stored (the k-means already chose labels against FP16 centroids).
            q.lut = q.lut.map { HalfConversion.toFloat(HalfConversion.toHalf($0)) }
            var csr: SparseCSR?
            if let m = mask {
                csr = m.withUnsafeBufferPointer { mb in
                    kept.withOptionalPointer { kp in
                        SparseCSR.build(weights: kp ?? wp, keepMask: mb.baseAddress!, quantized: q)
                    }
                }
            }
            // Errors against what is stored.
            var se = 0.0, we = 0.0, norm = 0.0
            let kk = q.clusters
            let svals = sens
            for r in 0..<rows {
                for c in 0..<cols {
                    let i = r * cols + c
                    let wv = Double(wp[i])
                    var qv = Double(q.lut[r * kk + Int(q.indices[i])])
                    if let m = mask, m[i] != 0, let cs = csr {
                        qv = Double(cs.valueAt(row: r, column: c, half: options.sparseDType == .f16) ?? 0) + qv
                    }
                    let d = wv - qv
                    se += d * d
                    norm += wv * wv
                    if mask == nil || mask![i] == 0 { we += Double(svals?.at(r, c) ?? 1) * d * d }
                }
            }
            let rep = TensorReport(
                name: name, rows: rows, columns: cols, weightedError: we, squaredError: se,
                relativeError: norm > 0 ? (se / norm).squareRoot() : 0, sparseCount: csr?.nonzeroCount ?? 0,
                seconds: 0, bytes: 0)
            return (q, csr, rep)
        }
    }

    /// Where a run writes before renaming onto `output` (`AtomicDirectory`'s temporary: removed on
    /// failure and on SIGINT/SIGTERM).
    public static func temporaryDirectory(for output: String) -> String { AtomicDirectory.temporaryPath(for: output) }

    static func elapsed(_ t0: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }

    static func directorySize(_ dir: String) -> Int {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).reduce(0) { acc, f in
            acc + (((try? fm.attributesOfItem(atPath: dir + "/" + f))?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}

/// The tool's version, recorded in outputs.
public let squeezeVersion = "0.1.0"

extension SparseCSR {
    /// The stored value at (row, column), or nil if not kept.
    func valueAt(row: Int, column: Int, half: Bool) -> Float? {
        let lo = Int(rowPointers[row]), hi = Int(rowPointers[row + 1])
        for j in lo..<hi where Int(columnIndices[j]) == column {
            return half ? HalfConversion.toFloat(HalfConversion.toHalf(values[j])) : values[j]
        }
        return nil
    }
}

extension RTNQuantizer {
    /// Points kept positions at the grid value nearest 0 (so dense + sparse reproduces w).
    static func assignKeptToNearestZero(_ q: QuantizedMatrix, keepMask: UnsafePointer<UInt8>) -> QuantizedMatrix {
        var q = q
        for r in 0..<q.rows {
            let z = q.nearestZeroIndex(row: r)
            for c in 0..<q.cols where keepMask[r * q.cols + c] != 0 { q.indices[r * q.cols + c] = UInt8(z) }
        }
        return q
    }
}

extension Optional where Wrapped == [Float] {
    func withOptionalPointer<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        switch self {
        case .none: return try body(nil)
        case let .some(a): return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}

extension Optional where Wrapped == [UInt8] {
    func withOptionalPointer<R>(_ body: (UnsafePointer<UInt8>?) throws -> R) rethrows -> R {
        switch self {
        case .none: return try body(nil)
        case let .some(a): return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}
