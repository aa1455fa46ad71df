import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeKernels
import SqueezeModels
import SqueezeQuant

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure memory bandwidth, the GEMV kernels, and model prefill/decode speed (use a release build).",
        discussion: """
        Prints the machine's read bandwidth, a kernel table (F16, LUT 4/3-bit exact and int8, with 0.45% \
        sparse) for 4096x4096, 11008x4096 and the model's shapes, and prefill (--prompt tokens) and decode \
        tokens/s of the model at each weight type and of each --quantized directory.
        """)

    @Option(help: "Model to time (GGUF or model directory). Default: the cached test model.")
    var model: String?
    @Option(help: "Weight types of the full-precision model to time, comma-separated (f32, f16, bf16, native; empty: none).")
    var weights: String = "f32,f16"
    @Option(parsing: .singleValue, help: "A quantized model directory to time as well (repeatable), as PATH or LABEL=PATH.")
    var quantized: [String] = []
    @Option(help: "LM head storage for the --quantized models, comma-separated: stored (as in the file), q8 (8-bit, quantized at load).")
    var head: String = "stored,q8"
    @Option(help: ModelOpening.kvCacheHelp)
    var kvCache: String = "f16"
    @Option(help: "Thread counts, comma-separated.")
    var threads: String = "1,2"
    @Option(help: "Prompt length for prefill.")
    var prompt: Int = 512
    @Option(help: "Tokens to decode.")
    var decode: Int = 64
    @Option(help: "Positions already in the cache when decoding starts (at most --prompt; 16 compares with llama-bench's tg, a long one times attention over a long cache).")
    var decodeContext: Int = 16
    @Option(help: "Time every model configuration this many times, interleaved (round 1 of each, then round 2, ...), and report each figure's median and range; all --quantized models stay loaded.")
    var rounds: Int = 1
    @Option(help: "Also time batched decoding (one token for each of N sequences per step, as `squeeze serve` runs them) at these batch sizes, comma-separated, e.g. 1,4,8.")
    var batch: String = ""
    @Flag(help: "Skip the kernel table.")
    var skipKernels = false
    @Flag(help: "Skip the model table.")
    var skipModels = false
    @Option(help: "Kernel shapes as ROWSxCOLS, comma-separated (default: 4096x4096, 11008x4096 and the model's).")
    var shapes: String?
    @Flag(help: "Also time the quantizer on one LLaMA-7B-shaped block (random weights) and project a whole 7B model.")
    var quantizeProjection = false
    @Flag(help: "Use the portable scalar kernels (no SIMD dispatch).")
    var scalar = false
    @Flag(help: "Print JSON.")
    var json = false

    struct Output: Encodable {
        var bandwidthGBps: [String: Double]
        var isa: String
        var kernels: [KernelRowOut]
        var models: [ModelBenchResult]
        /// With --rounds > 1: each configuration's per-round figures (models then holds the medians).
        var rounds: [ModelBenchRounds]?
        var batched: [BatchBenchResult]
    }
    struct KernelRowOut: Encodable {
        var kernel: String, rows: Int, columns: Int, threads: Int, microseconds: Double, gbPerSecond: Double
        var speedupOverF16: Double?, percentOfBandwidth: Double, note: String
    }

    func validate() throws {
        guard decodeContext >= 0 else { throw ValidationError("--decode-context must be >= 0") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        _ = try ModelOpening.kvCache(kvCache)
    }

    func run() throws {
        if scalar { ISALevel.current = .scalar }
        let path = try model ?? DefaultModel.requirePath()
        let threadList = threads.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        guard !threadList.isEmpty else { throw ValidationError("--threads needs at least one positive count") }
        let batches = try batch.split(separator: ",").map { item -> Int in
            guard let b = Int(item.trimmingCharacters(in: .whitespaces)), b > 0 else {
                throw ValidationError("--batch: '\(item)' is not a positive batch size (e.g. --batch 1,4,8)")
            }
            return b
        }
        var out = Output(bandwidthGBps: [:], isa: ISALevel.current.description, kernels: [], models: [], rounds: nil, batched: [])
        var lines: [String] = []
        for t in threadList { out.bandwidthGBps["\(t)"] = KernelBenchmark.measureBandwidth(threads: min(t, WorkerPool.shared.threadCount)) }
        lines.append("machine: \(WorkerPool.cpuCount) CPUs, ISA \(ISALevel.current), features \(cpuFeatureNames.joined(separator: ",")), LUT kernels \(LUTMatrix.variant)")
        lines.append("memory read bandwidth: " + threadList.map { String(format: "%.1f GB/s (%d thread%@)", out.bandwidthGBps["\($0)"]!, $0, $0 > 1 ? "s" : "") }.joined(separator: ", "))
        let base = try ModelLoader.load(path: path)
        if !skipKernels {
            let c = base.config
            var sh: [(Int, Int)] = [(4096, 4096), (11008, 4096)]
            if let s = shapes {
                sh = s.split(separator: ",").compactMap { let p = $0.split(separator: "x").compactMap { Int($0) }; return p.count == 2 ? (p[0], p[1]) : nil }
            } else {
                for s in [(c.intermediateSize, c.hiddenSize), (c.hiddenSize, c.intermediateSize), (c.numHeads * c.headDim, c.hiddenSize)] where !sh.contains(where: { $0 == s }) { sh.append(s) }
            }
            let rows = try KernelBenchmark.run(shapes: sh, threads: threadList, repeats: 20, minBytes: 128 << 20, gemmTokens: 0, cpuTime: false)
            lines.append("")
            lines.append("| kernel | shape | threads | time (us) | GB/s | vs F16 | % of bandwidth |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for r in rows {
                let bw = out.bandwidthGBps["\(r.threads)"] ?? out.bandwidthGBps.values.max() ?? 1
                out.kernels.append(KernelRowOut(kernel: r.kernel, rows: r.rows, columns: r.columns, threads: r.threads,
                                                microseconds: r.seconds * 1e6, gbPerSecond: r.gbPerSecond,
                                                speedupOverF16: r.speedupOverF16, percentOfBandwidth: 100 * r.gbPerSecond / bw, note: r.note))
                lines.append(String(format: "| %@ | %dx%d | %d | %.1f | %.1f | %@ | %.0f%% |", r.kernel, r.rows, r.columns, r.threads,
                                    r.seconds * 1e6, r.gbPerSecond, r.speedupOverF16.map { String(format: "%.2fx", $0) } ?? "-",
                                    100 * r.gbPerSecond / bw))
            }
        }
        if !skipModels {
            lines.append("")
            lines.append(rounds > 1
                ? "| weights | threads | prefill tok/s (\(prompt)), median (range) of \(rounds) rounds | decode tok/s, median (range) | decode GB/s | % of bandwidth | weight MB/token |"
                : "| weights | threads | prefill tok/s (\(prompt)) | decode tok/s | decode GB/s | % of bandwidth | weight MB/token |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            var runs: [(String, () throws -> DecoderModel)] = []
            for w in weights.split(separator: ",").map(String.init) where !w.isEmpty {
                let dt: DType? = w == "native" ? nil : DType(userName: w)
                if w != "native" && dt == nil { throw ValidationError("unknown weight type '\(w)'") }
                runs.append((w, { try ModelLoader.load(path: path, options: LoadOptions(weightDType: dt)) }))
            }
            var heads: [HeadFormat] = []
            for h in head.split(separator: ",") {
                guard let f = HeadFormat(rawValue: String(h)) else { throw ValidationError("--head: unknown '\(h)' (stored, q8)") }
                heads.append(f)
            }
            for q in quantized {
                let parts = q.split(separator: "=", maxSplits: 1).map(String.init)
                let (label, p) = parts.count == 2 ? (parts[0], parts[1]) : (URL(fileURLWithPath: q).lastPathComponent, q)
                for h in heads {
                    runs.append((h == .stored ? label : "\(label)+\(h.rawValue) head", { try ModelLoader.load(path: p, options: LoadOptions(head: h)) }))
                }
            }
            var batchLines: [String] = []
            let precision = try ModelOpening.kvCache(kvCache)
            func row(_ r: ModelBenchResult, prefill: String, decode: String) -> String {
                let bw = out.bandwidthGBps["\(r.threads)"] ?? 1
                return String(format: "| %@ | %d | %@ | %@ | %.1f | %.0f%% | %.1f |", r.weights, r.threads, prefill, decode,
                              r.decodeGBps, 100 * r.decodeGBps / bw, Double(r.weightBytesPerToken) / 1e6)
            }
            func timeBatches(_ m: DecoderModel, _ label: String, _ t: Int) throws {
                var single: Double?
                for b in batches {
                    let r = try ModelBenchmark.runBatched(model: m, label: label, threads: t, batch: b)
                    out.batched.append(r)
                    if b == 1 { single = r.tokensPerSecond }
                    batchLines.append(String(format: "| %@ | %d | %d | %.1f | %.1f | %@ |", label, t, b, r.stepsPerSecond, r.tokensPerSecond,
                                             single.map { String(format: "%.2fx", r.tokensPerSecond / $0) } ?? "-"))
                }
            }
            if rounds > 1 {
                // Every model loaded at once, so that the rounds interleave configurations.
                var loaded: [(label: String, model: DecoderModel)] = []
                for (label, load) in runs {
                    let m = try load()
                    m.kvCachePrecision = precision
                    loaded.append((label, m))
                }
                let results = try ModelBenchmark.runRounds(
                    models: loaded, threads: threadList, rounds: rounds, promptTokens: prompt, decodeTokens: decode,
                    decodeContext: decodeContext,
                    progress: { r, label, t in
                        if !json { FileHandle.standardError.write(Data("round \(r)/\(rounds): \(label), \(t) thread(s)\n".utf8)) }
                    })
                out.rounds = results
                for r in results {
                    out.models.append(r.median)
                    let p = r.prefillTokensPerSecond, d = r.decodeTokensPerSecond
                    lines.append(row(r.median,
                                     prefill: String(format: "%.1f (%.1f-%.1f)", r.median.prefillTokensPerSecond, p.min()!, p.max()!),
                                     decode: String(format: "%.1f (%.1f-%.1f)", r.median.decodeTokensPerSecond, d.min()!, d.max()!)))
                }
                for (label, m) in loaded { for t in threadList { try timeBatches(m, label, t) } }
            } else {
                for (label, load) in runs {
                    let m = try load()
                    m.kvCachePrecision = precision
                    for t in threadList {
                        let r = try ModelBenchmark.run(model: m, label: label, threads: t, promptTokens: prompt, decodeTokens: decode,
                                                       decodeContext: decodeContext)
                        out.models.append(r)
                        lines.append(row(r, prefill: String(format: "%.1f", r.prefillTokensPerSecond),
                                         decode: String(format: "%.1f", r.decodeTokensPerSecond)))
                        try timeBatches(m, label, t)
                    }
                }
            }
            if !batchLines.isEmpty {
                lines.append("")
                lines.append("| weights | threads | batch | steps/s | tokens/s | vs batch 1 |")
                lines.append("| --- | --- | --- | --- | --- | --- |")
                lines += batchLines
            }
        }
        if quantizeProjection {
            lines.append("")
            lines.append("| quantizer | block of LLaMA-7B shapes | threads | seconds per block | projected 7B (32 blocks) |")
            lines.append("| --- | --- | --- | --- | --- |")
            for (bits, engine, sparse) in [(3, KMeansEngine.optimal, false), (3, .optimal, true), (4, .lloyd, false)] {
                let t = WorkerPool.shared.threadCount
                let r = try QuantizeProjection.llama7BBlock(bits: bits, engine: engine, sparse: sparse, threads: t)
                lines.append(String(format: "| %d-bit %@%@ | q,k,v,o 4096x4096; gate,up 11008x4096; down 4096x11008 | %d | %.1f | %.0f s (%.1f min) |",
                                    bits, engine.rawValue, sparse ? ", 0.45% sparse" : "", t, r.secondsPerBlock, r.projectedSeconds7B, r.projectedSeconds7B / 60))
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(out), as: UTF8.self))
        } else {
            lines.forEach { print($0) }
        }
    }
}
