import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer

/// `squeeze sensitivity`: per-weight sensitivity of a model on a calibration text.
public struct SensitivityCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract:
            "Compute per-weight sensitivity (Fisher: summed squared gradients) for `squeeze quantize --sensitivity`.",
        discussion: """
            Draws --samples random windows of --seqlen tokens from the tokenized calibration text (Python \
            random.seed(seed); start = randint(0, N - seqlen - 1), as SqueezeLLM's reference), and for each \
            window adds the squared gradient of the mean next-token cross-entropy of every linear weight \
            (q, k, v, o, gate, up, down of every block), in F32. --mode activations instead averages x^2 per \
            input column over the windows (forward only). The output has the model's Hugging Face tensor \
            names, shapes and row order (also for GGUF models).
            """)

    @Option(help: "Model (GGUF file or Hugging Face directory). Default: the cached test model.")
    public var model: String?
    @Option(help: "Calibration text file (UTF-8).")
    public var calibration: String
    @Option(help: "Number of random windows.")
    public var samples = PositiveInt(100)
    @Option(help: "Tokens per window (at least 2, at most the model's context).")
    public var seqlen = PositiveInt(512)
    @Option(help: "Seed of the window sampler.")
    public var seed: UInt64 = 0
    @Option(help: "fisher (gradients squared) or activations (mean x^2 per input column, forward only).")
    public var mode: SensitivityMode = .fisher
    @Option(help: "Output dtype.")
    public var dtype: SensitivityValueType = .f32
    @Option(help: "Threads (default: all).")
    public var threads: PositiveInt?
    @Option(
        help:
            "Windows computed at once, each on one thread (default: one per thread when memory allows, else 1 with every kernel split over the threads)."
    )
    public var lanes: PositiveInt?
    @Option(help: "Output safetensors file.")
    public var output: String

    public init() {}

    public func run() throws {
        do {
            try compute()
        } catch let e as SensitivityError {
            throw Self.flagged(e)
        }
    }

    /// The library's error with its option named as the flag that sets it.
    static func flagged(_ e: SensitivityError) -> Error {
        switch e {
        case let .windowExceedsContext(s, c):
            return ValidationError("--seqlen \(s) exceeds the model's context of \(c) tokens (max_position_embeddings)")
        case let .calibrationTooShort(t, s):
            return ValidationError(
                "the calibration text has \(t) tokens, fewer than one window of \(s) + 1; give a longer --calibration text or a smaller --seqlen"
            )
        case let .invalidOption(n, d):
            return ValidationError("--\(n) \(d)")
        default:
            return e
        }
    }

    func compute() throws {
        let m = mode, dt = dtype.dtype, samples = samples.value, seqlen = seqlen.value
        if let t = threads { WorkerPool.shared.defaultThreads = min(t.value, WorkerPool.shared.threadCount) }
        let modelPath = try model ?? DefaultModel.requirePath()
        guard let bytes = FileManager.default.contents(atPath: calibration) else {
            throw ValidationError("--calibration: cannot read '\(calibration)'")
        }
        let sha = SHA256Digest.hex(bytes)
        let tokenizer = try Tokenizer.load(path: modelPath)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let net = try Sensitivity.loadModel(path: modelPath)
        let options = SensitivityOptions(samples: samples, seqlen: seqlen, seed: seed, mode: m)
        let starts = try Sensitivity.plan(model: net, tokenCount: tokens.count, options: options)
        Progress.eprint(
            "\(tokens.count) calibration tokens; \(samples) windows of \(seqlen); mode \(m.rawValue); \(WorkerPool.shared.defaultThreads) threads"
        )
        let windows = starts.map { Array(tokens[$0..<($0 + seqlen)]) }
        let laneCount = min(
            lanes?.value ?? Sensitivity.automaticLanes(model: net, windows: windows, mode: m), windows.count)
        Progress.eprint("\(laneCount) window(s) at once")
        let acc = try Sensitivity.compute(model: net, windows: windows, mode: m, lanes: laneCount) { p in
            let loss = p.loss.map { String(format: ", loss %.4f", $0) } ?? ""
            Progress.line(
                String(
                    format: "sensitivity %d/%d windows, %.0f tok/s, ETA %@%@", p.done, p.total,
                    p.tokensPerSecond, Progress.eta(done: p.done, total: p.total, elapsed: p.elapsed), loss))
        }
        Progress.done()
        let meta = Sensitivity.metadata(
            options: options, calibrationPath: calibration, calibrationSHA256: sha,
            tokenCount: tokens.count, modelPath: modelPath)
        try acc.write(to: output, dtype: dt, metadata: meta)
        let fwd = Double(acc.tokens) / max(acc.forwardSeconds, 1e-9)
        if m == .fisher {
            let bwd = Double(acc.tokens) / max(acc.backwardSeconds, 1e-9)
            let all = Double(acc.tokens) / max(acc.forwardSeconds + acc.backwardSeconds, 1e-9)
            print(
                String(
                    format:
                        "wrote %@: %d windows, mean loss %.5f; forward %.0f tok/s, backward %.0f tok/s, forward+backward %.0f tok/s (%.1f s)",
                    output, acc.windows, acc.losses.reduce(0, +) / Double(max(1, acc.losses.count)), fwd, bwd, all,
                    acc.forwardSeconds + acc.backwardSeconds))
        } else {
            print(
                String(
                    format: "wrote %@: %d windows; forward %.0f tok/s (%.1f s)", output, acc.windows, fwd,
                    acc.forwardSeconds))
        }
    }
}
