import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer

struct SensitivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract: "Compute per-weight sensitivity (Fisher: summed squared gradients) for `squeeze quantize --sensitivity`.",
        discussion: """
        Draws --samples random windows of --seqlen tokens from the tokenized calibration text (Python \
        random.seed(seed); start = randint(0, N - seqlen - 1), as SqueezeLLM's reference), and for each \
        window adds the squared gradient of the mean next-token cross-entropy of every linear weight \
        (q, k, v, o, gate, up, down of every block), in F32. --mode activations instead averages x^2 per \
        input column over the windows (forward only). The output has the model's Hugging Face tensor \
        names, shapes and row order (also for GGUF models).
        """)

    @Option(help: "Model (GGUF file or Hugging Face directory). Default: the cached test model.")
    var model: String?
    @Option(help: "Calibration text file (UTF-8).")
    var calibration: String
    @Option(help: "Number of random windows.")
    var samples: Int = 100
    @Option(help: "Tokens per window.")
    var seqlen: Int = 512
    @Option(help: "Seed of the window sampler.")
    var seed: UInt64 = 0
    @Option(help: "fisher (gradients squared) or activations (mean x^2 per input column, forward only).")
    var mode: String = "fisher"
    @Option(help: "Output dtype: f32 or bf16.")
    var dtype: String = "f32"
    @Option(help: "Threads (default: all).")
    var threads: Int?
    @Option(help: "Windows computed at once, each on one thread (default: one per thread when memory allows, else 1 with every kernel split over the threads).")
    var lanes: Int?
    @Option(help: "Output safetensors file.")
    var output: String

    func run() throws {
        guard let m = SensitivityMode(rawValue: mode) else { throw ValidationError("--mode must be fisher or activations, got '\(mode)'") }
        guard let dt = DType(userName: dtype), dt == .f32 || dt == .bf16 else { throw ValidationError("--dtype must be f32 or bf16, got '\(dtype)'") }
        if let t = threads { WorkerPool.shared.defaultThreads = max(1, min(t, WorkerPool.shared.threadCount)) }
        let modelPath = try model ?? DefaultModel.requirePath()
        guard let bytes = FileManager.default.contents(atPath: calibration) else {
            throw ValidationError("cannot read the calibration file \(calibration)")
        }
        let sha = SHA256Digest.hex(bytes)
        let tokenizer = try Tokenizer.load(path: modelPath)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let net = try Sensitivity.loadModel(path: modelPath)
        let options = SensitivityOptions(samples: samples, seqlen: seqlen, seed: seed, mode: m)
        let starts = try Sensitivity.plan(model: net, tokenCount: tokens.count, options: options)
        Progress.eprint("\(tokens.count) calibration tokens; \(samples) windows of \(seqlen); mode \(m.rawValue); \(WorkerPool.shared.defaultThreads) threads")
        let windows = starts.map { Array(tokens[$0..<($0 + seqlen)]) }
        if let l = lanes, l < 1 { throw ValidationError("--lanes must be at least 1, got \(l)") }
        let laneCount = min(lanes ?? Sensitivity.automaticLanes(model: net, windows: windows, mode: m), windows.count)
        Progress.eprint("\(laneCount) window(s) at once")
        let acc = try Sensitivity.compute(model: net, windows: windows, mode: m, lanes: laneCount) { p in
            let loss = p.loss.map { String(format: ", loss %.4f", $0) } ?? ""
            Progress.line(String(format: "sensitivity %d/%d windows, %.0f tok/s, ETA %@%@", p.done, p.total,
                                 p.tokensPerSecond, Progress.eta(done: p.done, total: p.total, elapsed: p.elapsed), loss))
        }
        Progress.done()
        let meta = Sensitivity.metadata(options: options, calibrationPath: calibration, calibrationSHA256: sha,
                                        tokenCount: tokens.count, modelPath: modelPath)
        try acc.write(to: output, dtype: dt, metadata: meta)
        let fwd = Double(acc.tokens) / max(acc.forwardSeconds, 1e-9)
        if m == .fisher {
            let bwd = Double(acc.tokens) / max(acc.backwardSeconds, 1e-9)
            let all = Double(acc.tokens) / max(acc.forwardSeconds + acc.backwardSeconds, 1e-9)
            print(String(format: "wrote %@: %d windows, mean loss %.5f; forward %.0f tok/s, backward %.0f tok/s, forward+backward %.0f tok/s (%.1f s)",
                         output, acc.windows, acc.losses.reduce(0, +) / Double(max(1, acc.losses.count)), fwd, bwd, all,
                         acc.forwardSeconds + acc.backwardSeconds))
        } else {
            print(String(format: "wrote %@: %d windows; forward %.0f tok/s (%.1f s)", output, acc.windows, fwd, acc.forwardSeconds))
        }
    }
}
