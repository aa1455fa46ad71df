import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeQuant
import SqueezeTokenizer

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a model to 3 or 4 bits with per-row look-up tables (SqueezeLLM), optionally dense-and-sparse.",
        discussion: """
        Reads a GGUF file or a Hugging Face directory and writes a directory with config.json \
        (quantization_config), the tokenizer, and model.safetensors holding per linear layer SqueezeLLM's \
        qweight/lookup_table (and rows/cols/vals for the sparse part). Written to a temporary directory \
        and renamed on success.
        """)

    @Option(help: "Input model (GGUF file or Hugging Face directory).")
    var model: String
    @Option(help: "Output directory (must not exist).")
    var output: String
    @Option(help: "Bits per weight: 3 or 4 (2 also works).")
    var bits: Int = 4
    @Option(help: "Sensitivity: a safetensors file of squared gradients (see `squeeze sensitivity`), a directory of SqueezeLLM layer_N.pt gradient chunks, activations (needs --calibration), or none.")
    var sensitivity: String = "none"
    @Option(help: "Calibration text for --sensitivity activations.")
    var calibration: String?
    @Option(help: "Windows of 512 tokens drawn from the calibration text for --sensitivity activations.")
    var calibrationSamples: Int = 100
    @Option(help: "Dense-and-sparse: percent of weights kept exactly (0.45 = 0.05% most sensitive + 0.40% outliers).")
    var sparsity: Double?
    @Option(help: "Percent of weights kept for sensitivity (default 0.05 when sparse).")
    var sensitiveFraction: Double?
    @Option(help: "Percent of weights kept as outliers, threshold solved per tensor.")
    var outlierFraction: Double?
    @Option(help: "Outliers beyond the interquartile fences: T = max(|q1 - r IQR|, |q3 + r IQR|).")
    var outlierRange: Double?
    @Option(help: "k-means engine: optimal (exact) or lloyd (fast).")
    var kmeans: String = "optimal"
    @Option(help: "Method: squeezellm, rtn (GPTQ's per-row asymmetric grid) or rtn-minmax.")
    var method: String = "squeezellm"
    @Option(help: "Sparse values dtype: f16 or f32.")
    var sparseDtype: String = "f16"
    @Flag(help: "Quantize the LM head too.")
    var quantizeHead = false
    @Option(help: "Threads (default: all cores).")
    var threads: Int?
    @Option(help: "Write an HTML report with per-layer charts.")
    var report: String?
    @Option(help: "Write the report as JSON.")
    var jsonReport: String?
    @Flag(help: "Print the per-tensor table.")
    var verbose = false

    func run() throws {
        var temporaries: [String] = []
        defer { for t in temporaries { try? FileManager.default.removeItem(atPath: t) } }
        var o = QuantizeOptions()
        o.bits = bits
        guard let m = QuantMethod(rawValue: method) else { throw ValidationError("--method must be squeezellm, rtn or rtn-minmax") }
        o.method = m
        guard let e = KMeansEngine(rawValue: kmeans) else { throw ValidationError("--kmeans must be optimal or lloyd") }
        o.kmeans.engine = e
        guard let sd = DType(userName: sparseDtype), [.f16, .f32].contains(sd) else { throw ValidationError("--sparse-dtype must be f16 or f32") }
        o.sparseDType = sd
        o.quantizeHead = quantizeHead
        o.threads = threads
        if let t = threads { guard t > 0 else { throw ValidationError("--threads must be positive") }; WorkerPool.shared.defaultThreads = min(t, WorkerPool.shared.threadCount) }
        switch sensitivity {
        case "none": o.sensitivity = .none
        case "activations":
            guard let cal = calibration else { throw ValidationError("--sensitivity activations needs --calibration FILE") }
            let file = output + ".activations-\(getpid()).safetensors"
            InterruptCleanup.install(removing: file)
            try ActivationSensitivity.make(model: model, calibration: cal, samples: calibrationSamples, output: file)
            o.sensitivity = .file(file)
            o.sensitivityLabel = "activations (\(calibrationSamples) windows of 512 tokens of \(URL(fileURLWithPath: cal).lastPathComponent))"
            temporaries.append(file)
        default:
            guard FileManager.default.fileExists(atPath: sensitivity) else { throw ValidationError("--sensitivity: no such file '\(sensitivity)'") }
            o.sensitivity = .file(sensitivity)
        }
        for (name, v) in [("--sparsity", sparsity), ("--sensitive-fraction", sensitiveFraction), ("--outlier-fraction", outlierFraction)] {
            if let v = v, !(v >= 0 && v <= 100) { throw ValidationError("\(name) is a percentage in [0, 100], got \(v)") }
        }
        if let r = outlierRange, !(r > 0) { throw ValidationError("--outlier-range must be positive") }
        if outlierFraction != nil && outlierRange != nil { throw ValidationError("give --outlier-fraction or --outlier-range, not both") }
        if let s = sparsity {
            if outlierFraction != nil || outlierRange != nil { throw ValidationError("--sparsity is shorthand; do not combine it with --outlier-fraction/--outlier-range") }
            o.outliers = s > 0 ? OutlierSelector.sparsity(percent: s) : nil
        } else if sensitiveFraction != nil || outlierFraction != nil || outlierRange != nil {
            let sens = (sensitiveFraction ?? 0.05) / 100
            let thr: OutlierThreshold = outlierFraction.map { .fraction($0 / 100) } ?? outlierRange.map { .range($0) } ?? .none
            o.outliers = OutlierSelector(sensitiveFraction: sens, threshold: thr)
        }
        if o.outliers != nil && o.sensitivity == .none && (o.outliers!.sensitiveFraction > 0) {
            Progress.eprint("note: no sensitivity file: the sparse part holds only outliers (no sensitive weights)")
        }
        InterruptCleanup.install(removing: ModelQuantizer.temporaryDirectory(for: output))
        let rep = try ModelQuantizer.quantize(model: model, output: output, options: o) { done, total, name, rps, elapsed in
            Progress.line(String(format: "[%d/%d] %@  %.0f rows/s  %.0fs elapsed  ETA %@", done, total, name, rps, elapsed,
                                 Progress.eta(done: done, total: total, elapsed: elapsed)))
        }
        Progress.done()
        print(rep.textSummary(perTensor: verbose), terminator: "")
        if let r = report { try rep.html().write(toFile: r, atomically: true, encoding: .utf8); print("report: \(r)") }
        if let j = jsonReport {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(rep).write(to: URL(fileURLWithPath: j))
        }
        print("wrote \(output)")
    }
}

/// `--sensitivity activations`: the mean squared input activation per column of every linear layer
/// over calibration windows (forward only), written to a temporary sensitivity file.
enum ActivationSensitivity {
    static func make(model: String, calibration: String, samples: Int, output: String) throws {
        guard let bytes = FileManager.default.contents(atPath: calibration) else {
            throw ValidationError("cannot read the calibration file \(calibration)")
        }
        let tokenizer = try Tokenizer.load(path: model)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let net = try Sensitivity.loadModel(path: model)
        let options = SensitivityOptions(samples: samples, seqlen: 512, seed: 0, mode: .activations)
        let starts = try Sensitivity.plan(model: net, tokenCount: tokens.count, options: options)
        let windows = starts.map { Array(tokens[$0..<($0 + 512)]) }
        let acc = try Sensitivity.compute(model: net, windows: windows, mode: .activations) { p in
            Progress.line(String(format: "activations %d/%d windows, %.0f tok/s, ETA %@", p.done, p.total, p.tokensPerSecond,
                                 Progress.eta(done: p.done, total: p.total, elapsed: p.elapsed)))
        }
        Progress.done()
        let meta = Sensitivity.metadata(options: options, calibrationPath: calibration, calibrationSHA256: SHA256Digest.hex(bytes),
                                        tokenCount: tokens.count, modelPath: model)
        try acc.write(to: output, dtype: .f32, metadata: meta)
    }
}
