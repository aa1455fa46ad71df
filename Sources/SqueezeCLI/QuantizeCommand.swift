import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeQuant
import SqueezeTokenizer

/// `squeeze quantize`: SqueezeLLM quantization of a model into a directory.
public struct QuantizeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract:
            "Quantize a model to 3 or 4 bits with per-row look-up tables (SqueezeLLM), optionally dense-and-sparse.",
        discussion: """
            Reads a GGUF file or a Hugging Face directory and writes a directory with config.json \
            (quantization_config), the tokenizer, and model.safetensors holding per linear layer SqueezeLLM's \
            qweight/lookup_table (and rows/cols/vals for the sparse part). Written to a temporary directory \
            and renamed on success.
            """)

    /// `--bits`: the index width.
    public enum Bits: Int, CaseIterable, Sendable, ExpressibleByArgument {
        case two = 2, three = 3, four = 4
    }

    /// `--sensitivity`: where the per-weight sensitivity comes from.
    public enum SensitivityArgument: ExpressibleByArgument, Equatable, Sendable {
        /// Uniform weights.
        case none
        /// Mean squared input activations over calibration windows (needs --calibration).
        case activations
        /// A safetensors file of squared gradients, or a directory of SqueezeLLM gradient chunks.
        case file(String)

        public init?(argument: String) {
            switch argument {
            case "": return nil
            case "none": self = .none
            case "activations": self = .activations
            default: self = .file(argument)
            }
        }

        public var defaultValueDescription: String {
            switch self {
            case .none: return "none"
            case .activations: return "activations"
            case let .file(p): return p
            }
        }
    }

    @Option(help: "Input model (GGUF file or Hugging Face directory).")
    public var model: String
    @Option(help: "Output directory (must not exist).")
    public var output: String
    @Option(help: "Bits per weight: 3 or 4 (2 also works).")
    public var bits: Bits = .four
    @Option(
        help:
            "Sensitivity: a safetensors file of squared gradients (see `squeeze sensitivity`), a directory of SqueezeLLM layer_N.pt gradient chunks, activations (needs --calibration), or none."
    )
    public var sensitivity: SensitivityArgument = .none
    @Option(
        help: "Calibration text for --sensitivity activations, --method squeezellm-gptq and --refit-tables.")
    public var calibration: String?
    @Option(help: "Windows of 512 tokens drawn from the calibration text (seed 0).")
    public var calibrationSamples = PositiveInt(100)
    @Option(help: "Dense-and-sparse: percent of weights kept exactly (0.45 = 0.05% most sensitive + 0.40% outliers).")
    public var sparsity: Percentage?
    @Option(help: "Percent of weights kept for sensitivity (default 0.05 when sparse).")
    public var sensitiveFraction: Percentage?
    @Option(help: "Percent of weights kept as outliers, threshold solved per tensor.")
    public var outlierFraction: Percentage?
    @Option(help: "Outliers beyond the interquartile fences: T = max(|q1 - r IQR|, |q3 + r IQR|).")
    public var outlierRange: PositiveDouble?
    @Option(help: "k-means engine: optimal (exact) or lloyd (fast).")
    public var kmeans: KMeansEngine = .optimal
    @Option(
        help:
            "Method: squeezellm, squeezellm-gptq (GPTQ error feedback on the tables, then a table refit; needs --calibration), rtn (GPTQ's per-row asymmetric grid) or rtn-minmax. Default: squeezellm."
    )
    public var method: QuantMethod?
    @Flag(
        help:
            "Refit each row's table to the layer-output error on the calibration inputs (needs --calibration; squeezellm-gptq always does)."
    )
    public var refitTables = false
    @Option(
        help: "Fraction of the mean diagonal of X^T X added to its diagonal for squeezellm-gptq and --refit-tables.")
    public var dampening: PositiveDouble?
    @Option(help: "Sparse values dtype.")
    public var sparseDtype: SparseValueType = .f16
    @Flag(help: "Quantize the LM head too.")
    public var quantizeHead = false
    @Option(help: "Threads (default: all cores).")
    public var threads: PositiveInt?
    @Option(
        help:
            "Quantize only blocks A-B (0-based, inclusive) into a partial directory; `squeeze merge` assembles the partials."
    )
    public var layers: LayerRange?
    @Option(help: "Write an HTML report with per-layer charts.")
    public var report: String?
    @Option(help: "Write the report as JSON.")
    public var jsonReport: String?
    @Flag(help: "Print the per-tensor table.")
    public var verbose = false

    public init() {}

    public func validate() throws {
        if sensitivity == .activations && calibration == nil {
            throw ValidationError("--sensitivity activations needs --calibration FILE")
        }
        if resolvedMethod.needsCalibration && calibration == nil {
            throw ValidationError("--method \(resolvedMethod.rawValue) needs --calibration FILE")
        }
        if refitTables && calibration == nil { throw ValidationError("--refit-tables needs --calibration FILE") }
        if (resolvedMethod.needsCalibration || refitTables) && layers != nil {
            throw ValidationError(
                "--layers cannot be combined with calibrated quantization (each block's inputs come from the quantized blocks before it)"
            )
        }
        if outlierFraction != nil && outlierRange != nil {
            throw ValidationError("give --outlier-fraction or --outlier-range, not both")
        }
        if sparsity != nil && (outlierFraction != nil || outlierRange != nil) {
            throw ValidationError("--sparsity is shorthand; do not combine it with --outlier-fraction/--outlier-range")
        }
    }

    /// The method run: `--method`, else squeezellm.
    public var resolvedMethod: QuantMethod { method ?? .squeezellm }

    /// The library's options for these flags (the sensitivity source as given; `run` makes the
    /// activations file and the calibration windows).
    public var options: QuantizeOptions {
        var o = QuantizeOptions()
        o.bits = bits.rawValue
        o.method = resolvedMethod
        o.refitTables = refitTables
        if let d = dampening { o.dampening = d.value }
        o.kmeans.engine = kmeans
        o.sparseDType = sparseDtype.dtype
        o.quantizeHead = quantizeHead
        o.threads = threads?.value
        o.layers = layers?.range
        if case let .file(f) = sensitivity { o.sensitivity = .file(f) }
        if let s = sparsity {
            o.outliers = s.value > 0 ? OutlierSelector.sparsity(percent: s.value) : nil
        } else if sensitiveFraction != nil || outlierFraction != nil || outlierRange != nil {
            let sens = (sensitiveFraction?.value ?? 0.05) / 100
            let thr: OutlierThreshold =
                outlierFraction.map { .fraction($0.value / 100) } ?? outlierRange.map { .range($0.value) } ?? .none
            o.outliers = OutlierSelector(sensitiveFraction: sens, threshold: thr)
        }
        return o
    }

    public func run() throws {
        var temporaries: [String] = []
        defer { for t in temporaries { try? FileManager.default.removeItem(atPath: t) } }
        var o = options
        if let t = threads { WorkerPool.shared.defaultThreads = min(t.value, WorkerPool.shared.threadCount) }
        switch sensitivity {
        case .none: break
        case .activations:
            guard let cal = calibration else {
                throw ValidationError("--sensitivity activations needs --calibration FILE")
            }
            let file = output + ".activations-\(getpid()).safetensors"
            InterruptCleanup.register(file)
            try ActivationSensitivity.make(
                model: model, calibration: cal, samples: calibrationSamples.value, output: file)
            o.sensitivity = .file(file)
            o.sensitivityLabel =
                "activations (\(calibrationSamples.value) windows of 512 tokens of \(URL(fileURLWithPath: cal).lastPathComponent))"
            temporaries.append(file)
        case let .file(f):
            guard FileManager.default.fileExists(atPath: f) else {
                throw ValidationError("--sensitivity: no such file '\(f)'")
            }
        }
        if o.usesCalibration, let cal = calibration {
            o.calibrationWindows = try CalibrationWindows.make(
                model: model, calibration: cal, samples: calibrationSamples.value)
            o.calibrationLabel =
                "\(calibrationSamples.value) windows of 512 tokens of \(URL(fileURLWithPath: cal).lastPathComponent)"
        }
        if o.outliers != nil && o.sensitivity == .none && (o.outliers!.sensitiveFraction > 0) {
            Progress.eprint("note: no sensitivity file: the sparse part holds only outliers (no sensitive weights)")
        }
        let rep = try ModelQuantizer.quantize(model: model, output: output, options: o) {
            done, total, name, rps, elapsed in
            Progress.line(
                String(
                    format: "[%d/%d] %@  %.0f rows/s  %.0fs elapsed  ETA %@", done, total, name, rps, elapsed,
                    Progress.eta(done: done, total: total, elapsed: elapsed)))
        }
        Progress.done()
        print(rep.textSummary(perTensor: verbose), terminator: "")
        if let r = report { try AtomicFile.write(rep.html(), to: r); print("report: \(r)") }
        if let j = jsonReport {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write(enc.encode(rep), to: j)
        }
        print("wrote \(output)")
    }
}

/// The calibration windows of calibrated quantization: `samples` windows of 512 tokens of the
/// calibration text, drawn as `squeeze sensitivity` draws them (seed 0).
enum CalibrationWindows {
    static func make(model: String, calibration: String, samples: Int) throws -> [[Int]] {
        guard let bytes = FileManager.default.contents(atPath: calibration) else {
            throw ValidationError("--calibration: cannot read '\(calibration)'")
        }
        let tokenizer = try Tokenizer.load(path: model)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let starts = try WindowSampler.starts(tokenCount: tokens.count, seqlen: 512, samples: samples, seed: 0)
        return starts.map { Array(tokens[$0..<($0 + 512)]) }
    }
}

/// `--sensitivity activations`: the mean squared input activation per column of every linear layer
/// over calibration windows (forward only), written to a temporary sensitivity file.
enum ActivationSensitivity {
    static func make(model: String, calibration: String, samples: Int, output: String) throws {
        guard let bytes = FileManager.default.contents(atPath: calibration) else {
            throw ValidationError("--calibration: cannot read '\(calibration)'")
        }
        let tokenizer = try Tokenizer.load(path: model)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let net = try Sensitivity.loadModel(path: model)
        let options = SensitivityOptions(samples: samples, seqlen: 512, seed: 0, mode: .activations)
        let starts = try Sensitivity.plan(model: net, tokenCount: tokens.count, options: options)
        let windows = starts.map { Array(tokens[$0..<($0 + 512)]) }
        let acc = try Sensitivity.compute(model: net, windows: windows, mode: .activations) { p in
            Progress.line(
                String(
                    format: "activations %d/%d windows, %.0f tok/s, ETA %@", p.done, p.total, p.tokensPerSecond,
                    Progress.eta(done: p.done, total: p.total, elapsed: p.elapsed)))
        }
        Progress.done()
        let meta = Sensitivity.metadata(
            options: options, calibrationPath: calibration, calibrationSHA256: SHA256Digest.hex(bytes),
            tokenCount: tokens.count, modelPath: model)
        try acc.write(to: output, dtype: .f32, metadata: meta)
    }
}
