import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeKernels
import SqueezeModels
import SqueezeQuant

/// `squeeze bench`: maps its options onto `BenchmarkSuite` and prints the tables.
public struct BenchCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure memory bandwidth, the GEMV kernels, and model prefill/decode speed (use a release build).",
        discussion: """
            Prints the machine's read bandwidth, a kernel table (F16, LUT 4/3-bit exact and int8, with 0.45% \
            sparse) for 4096x4096, 11008x4096 and the model's shapes, and prefill (--prompt tokens) and decode \
            tokens/s of the model at each weight type and of each --quantized directory.
            """)

    @Option(help: "Model to time (GGUF or model directory). Default: the cached test model.")
    public var model: String?
    @Option(help: "Weight types of the full-precision model to time, comma-separated (empty: none).")
    public var weights = CommaSeparated<WeightType>([.f32, .f16])
    @Option(
        parsing: .singleValue, help: "A quantized model directory to time as well (repeatable), as PATH or LABEL=PATH.")
    public var quantized: [LabeledPath] = []
    @Option(
        help:
            "LM head storage for the --quantized models, comma-separated: stored (as in the file), q8 (8-bit, quantized at load)."
    )
    public var head = CommaSeparated<HeadFormat>([.stored, .q8])
    @Option(help: ModelOpening.kvCacheHelp)
    public var kvCache: KVCachePrecision = .f16
    @Option(help: "Thread counts, comma-separated.")
    public var threads = CommaSeparated<PositiveInt>([PositiveInt(1), PositiveInt(2)])
    @Option(help: "Prompt length for prefill.")
    public var prompt = PositiveInt(512)
    @Option(help: "Tokens to decode.")
    public var decode = PositiveInt(64)
    @Option(
        help:
            "Positions already in the cache when decoding starts (at most --prompt; 16 compares with llama-bench's tg, a long one times attention over a long cache)."
    )
    public var decodeContext = NonNegativeInt(16)
    @Option(
        help:
            "Time every model configuration this many times, interleaved (round 1 of each, then round 2, ...), and report each figure's median and range; all --quantized models stay loaded."
    )
    public var rounds = PositiveInt(1)
    @Option(
        help:
            "Also time batched decoding (one token for each of N sequences per step, as `squeeze serve` runs them) at these batch sizes, comma-separated, e.g. 1,4,8."
    )
    public var batch = CommaSeparated<PositiveInt>([])
    @Flag(help: "Skip the kernel table.")
    public var skipKernels = false
    @Flag(help: "Skip the model table.")
    public var skipModels = false
    @Option(help: "Kernel shapes as ROWSxCOLS, comma-separated (default: 4096x4096, 11008x4096 and the model's).")
    public var shapes: CommaSeparated<MatrixShape>?
    @Flag(help: "Also time the quantizer on one LLaMA-7B-shaped block (random weights) and project a whole 7B model.")
    public var quantizeProjection = false
    @Flag(help: "Use the portable scalar kernels (no SIMD dispatch).")
    public var scalar = false
    @Flag(help: "Print JSON.")
    public var json = false

    public init() {}

    public func validate() throws {
        if threads.values.isEmpty { throw ValidationError("--threads needs at least one count") }
        if let s = shapes, s.values.isEmpty { throw ValidationError("--shapes needs at least one ROWSxCOLS shape") }
    }

    /// The suite's configuration for these options.
    public func configuration(modelPath: String) -> BenchmarkSuite.Configuration {
        var c = BenchmarkSuite.Configuration(modelPath: modelPath)
        c.variants = BenchmarkSuite.variants(
            modelPath: modelPath, weightTypes: weights.values.map(\.dtype),
            quantized: quantized.map { ($0.label, $0.path) }, heads: head.values)
        c.kvCache = kvCache
        c.threads = threads.values.map(\.value)
        c.promptTokens = prompt.value
        c.decodeTokens = decode.value
        c.decodeContext = decodeContext.value
        c.rounds = rounds.value
        c.batchSizes = batch.values.map(\.value)
        c.kernelShapes = shapes.map { $0.values.map { BenchmarkSuite.Shape(rows: $0.rows, columns: $0.columns) } }
        c.measureKernels = !skipKernels
        c.measureModels = !skipModels
        return c
    }

    public func run() throws {
        if scalar { ISALevel.current = .scalar }
        let path = try model ?? DefaultModel.requirePath()
        let rounds = self.rounds.value
        let report = try BenchmarkSuite.run(configuration(modelPath: path)) { r, label, t in
            if !json { Progress.eprint("round \(r)/\(rounds): \(label), \(t) thread(s)") }
        }
        var projections:
            [(bits: Int, engine: KMeansEngine, sparse: Bool, threads: Int, result: QuantizeProjection.Result)] = []
        if quantizeProjection {
            for (bits, engine, sparse) in [(3, KMeansEngine.optimal, false), (3, .optimal, true), (4, .lloyd, false)] {
                let t = WorkerPool.shared.threadCount
                projections.append(
                    (
                        bits, engine, sparse, t,
                        try QuantizeProjection.llama7BBlock(bits: bits, engine: engine, sparse: sparse, threads: t)
                    ))
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
            return
        }
        var lines = BenchTables.lines(
            report, threads: threads.values.map(\.value), promptTokens: prompt.value, rounds: rounds)
        if !projections.isEmpty {
            lines.append("")
            lines.append(
                "| quantizer | block of LLaMA-7B shapes | threads | seconds per block | projected 7B (32 blocks) |")
            lines.append("| --- | --- | --- | --- | --- |")
            for p in projections {
                lines.append(
                    String(
                        format:
                            "| %d-bit %@%@ | q,k,v,o 4096x4096; gate,up 11008x4096; down 4096x11008 | %d | %.1f | %.0f s (%.1f min) |",
                        p.bits, p.engine.rawValue, p.sparse ? ", 0.45% sparse" : "", p.threads,
                        p.result.secondsPerBlock,
                        p.result.projectedSeconds7B, p.result.projectedSeconds7B / 60))
            }
        }
        lines.forEach { print($0) }
    }
}

/// The Markdown tables of `squeeze bench`.
public enum BenchTables {
    public static func lines(
        _ report: BenchmarkSuite.Report, threads: [Int], promptTokens: Int, rounds: Int
    ) -> [String] {
        var lines: [String] = []
        lines.append(
            "machine: \(report.cpuCount) CPUs, ISA \(report.isa), features \(report.features.joined(separator: ",")), LUT kernels \(report.lutVariant)"
        )
        lines.append(
            "memory read bandwidth: "
                + threads.map {
                    String(format: "%.1f GB/s (%d thread%@)", report.bandwidthGBps["\($0)"] ?? 0, $0, $0 > 1 ? "s" : "")
                }.joined(separator: ", "))
        if !report.kernels.isEmpty {
            lines.append("")
            lines.append("| kernel | shape | threads | time (us) | GB/s | vs F16 | % of bandwidth |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for r in report.kernels {
                lines.append(
                    String(
                        format: "| %@ | %dx%d | %d | %.1f | %.1f | %@ | %.0f%% |", r.kernel, r.rows, r.columns,
                        r.threads,
                        r.microseconds, r.gbPerSecond, r.speedupOverF16.map { String(format: "%.2fx", $0) } ?? "-",
                        r.percentOfBandwidth))
            }
        }
        if !report.models.isEmpty {
            lines.append("")
            lines.append(
                rounds > 1
                    ? "| weights | threads | prefill tok/s (\(promptTokens)), median (range) of \(rounds) rounds | decode tok/s, median (range) | decode GB/s | % of bandwidth | weight MB/token |"
                    : "| weights | threads | prefill tok/s (\(promptTokens)) | decode tok/s | decode GB/s | % of bandwidth | weight MB/token |"
            )
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for (i, r) in report.models.enumerated() {
                var prefill = String(format: "%.1f", r.prefillTokensPerSecond),
                    decode = String(format: "%.1f", r.decodeTokensPerSecond)
                if let rs = report.rounds?[i] {
                    let p = rs.prefillTokensPerSecond, d = rs.decodeTokensPerSecond
                    prefill = String(format: "%.1f (%.1f-%.1f)", r.prefillTokensPerSecond, p.min() ?? 0, p.max() ?? 0)
                    decode = String(format: "%.1f (%.1f-%.1f)", r.decodeTokensPerSecond, d.min() ?? 0, d.max() ?? 0)
                }
                let bw = report.bandwidthGBps["\(r.threads)"] ?? 1
                lines.append(
                    String(
                        format: "| %@ | %d | %@ | %@ | %.1f | %.0f%% | %.1f |", r.weights, r.threads, prefill, decode,
                        r.decodeGBps, 100 * r.decodeGBps / bw, Double(r.weightBytesPerToken) / 1e6))
            }
        }
        if !report.batched.isEmpty {
            lines.append("")
            lines.append("| weights | threads | batch | steps/s | tokens/s | vs batch 1 |")
            lines.append("| --- | --- | --- | --- | --- | --- |")
            var single: [String: Double] = [:]
            for r in report.batched {
                let key = "\(r.weights)/\(r.threads)"
                if r.batch == 1 { single[key] = r.tokensPerSecond }
                lines.append(
                    String(
                        format: "| %@ | %d | %d | %.1f | %.1f | %@ |", r.weights, r.threads, r.batch, r.stepsPerSecond,
                        r.tokensPerSecond, single[key].map { String(format: "%.2fx", r.tokensPerSecond / $0) } ?? "-"))
            }
        }
        return lines
    }
}
