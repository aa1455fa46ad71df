import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer

/// `squeeze sensitivity`: `compute` (the default: `squeeze sensitivity --calibration ...`) and `merge`.
public struct SensitivityGroupCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract:
            "Per-weight sensitivity (Fisher: summed squared gradients) for `squeeze quantize --sensitivity`; `merge` sums shard files.",
        subcommands: [SensitivityCommand.self, SensitivityMergeCommand.self],
        defaultSubcommand: SensitivityCommand.self)

    public init() {}
}

/// `squeeze sensitivity [compute]`: per-weight sensitivity of a model on a calibration text.
public struct SensitivityCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "compute",
        abstract:
            "Compute per-weight sensitivity (Fisher: summed squared gradients) for `squeeze quantize --sensitivity`.",
        discussion: """
            Draws --samples random windows of --seqlen tokens from the tokenized calibration text (Python \
            random.seed(seed); start = randint(0, N - seqlen - 1), as SqueezeLLM's reference), and for each \
            window adds the squared gradient of the mean next-token cross-entropy of every linear weight \
            (q, k, v, o, gate, up, down of every block), in F32. --mode activations instead averages x^2 per \
            input column over the windows (forward only). The output has the model's Hugging Face tensor \
            names, shapes and row order (also for GGUF models).

            The pass goes block by block: the windows' block inputs are kept, each block's internals are \
            recomputed for its backward, weights are read as stored (F16/BF16 mapped from the file, never an \
            F32 copy of the model), and each block's values are written as soon as they are complete. \
            Memory: about (layers + 2) x seqlen x hidden x 4 bytes per window, plus per lane one block's \
            accumulators and activations.

            --shard I/N computes shard I (0-based) of N of the same draw: windows \
            [I x samples / N, (I + 1) x samples / N). `squeeze sensitivity merge` sums the shard files into \
            the file one run writes.
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
    @Option(
        help:
            "automatic, whole-model (every block's accumulators and activations held; fastest) or block-streamed (one block at a time; memory independent of depth)."
    )
    public var pass: SensitivityPass = .automatic
    @Option(help: "Compute only shard I of N (0-based) of the windows, for `squeeze sensitivity merge`.")
    public var shard: ShardSpec?
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
        let meta = Sensitivity.metadata(
            options: options, calibrationPath: calibration, calibrationSHA256: sha,
            tokenCount: tokens.count, modelPath: modelPath)
        var count = starts.count
        if let shard {
            let range = try SensitivityShards.range(index: shard.index, count: shard.count, samples: starts.count)
            count = range.count
            Progress.eprint("shard \(shard.index)/\(shard.count): windows \(range.lowerBound)..<\(range.upperBound)")
        }
        let probe = Array(repeating: [Int](repeating: 0, count: seqlen), count: count)
        let laneCount = min(lanes?.value ?? Sensitivity.automaticLanes(model: net, windows: probe, mode: m), count)
        let chosen =
            pass == .automatic
            ? Sensitivity.automaticPass(model: net, windows: probe, mode: m, lanes: laneCount) : pass
        let estimate = Sensitivity.estimatedBytes(
            model: net, windows: count, seqlen: seqlen, mode: m, lanes: laneCount)
        Progress.eprint(
            "\(laneCount) window(s) at once; \(chosen.rawValue) pass"
                + (chosen == .blockStreamed ? "; about \(estimate >> 20) MiB besides the mapped weights" : ""))
        let acc = try Sensitivity.run(
            model: net, tokens: tokens, options: options, shard: shard.map { ($0.index, $0.count) },
            lanes: laneCount, pass: chosen, output: SensitivityOutput(path: output, dtype: dt, metadata: meta),
            modelPath: modelPath
        ) { p in
            let loss = p.loss.map { String(format: ", loss %.4f", $0) } ?? ""
            let what = p.block.map { "\(p.phase) block \($0)" } ?? p.phase
            Progress.line(
                String(
                    format: "sensitivity %@ (%d/%d), %.0f tok/s, ETA %@%@", what, p.done, p.total,
                    p.tokensPerSecond, Progress.eta(done: p.done, total: p.total, elapsed: p.elapsed), loss))
        }
        Progress.done()
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

/// `squeeze sensitivity merge`: sums shard files into the file one run writes.
public struct SensitivityMergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Sum the shard files of `squeeze sensitivity --shard I/N` into one sensitivity file.",
        discussion: """
            Checks that the shards come from the same model, mode, window draw (--samples, --seqlen, --seed, \
            calibration text) and dtype, and that their windows are disjoint and cover the draw; then sums \
            them (activations: averaged, weighted by tokens). The result equals one run's file up to the \
            order of the F32 additions.
            """)

    @Argument(help: "Shard files.")
    public var shards: [String]
    @Option(help: "Output safetensors file.")
    public var output: String

    public init() {}

    public func validate() throws {
        guard !shards.isEmpty else { throw ValidationError("give at least one shard file") }
    }

    public func run() throws {
        let r = try SensitivityShards.merge(paths: shards, output: output)
        print("wrote \(output): \(r.shards) shards, \(r.windows) windows, \(r.tensors) tensors")
    }
}
