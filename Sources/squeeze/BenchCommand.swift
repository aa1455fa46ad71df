import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeModels

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure memory bandwidth, kernels and model prefill/decode speed (release build).")

    @Option(help: "Model to time (GGUF or model directory). Default: the cached test model.")
    var model: String?
    @Option(help: "Weight types to time, comma-separated (f32, f16, bf16, native).")
    var weights: String = "f32,f16"
    @Option(help: "Thread counts, comma-separated.")
    var threads: String = "1,2"
    @Option(help: "Prompt length for prefill.")
    var prompt: Int = 512
    @Option(help: "Tokens to decode.")
    var decode: Int = 64
    @Flag(help: "Use the portable scalar kernels (no SIMD dispatch).")
    var scalar = false
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        if scalar { ISALevel.current = .scalar }
        let path = try model ?? DefaultModel.requirePath()
        let threadList = threads.split(separator: ",").compactMap { Int($0) }
        var lines: [String] = []
        var results: [ModelBenchResult] = []
        let bw1 = MemoryBandwidth.measure(threads: 1)
        let bw2 = WorkerPool.shared.threadCount > 1 ? MemoryBandwidth.measure(threads: 2) : bw1
        lines.append(String(format: "memory read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (2 threads); ISA %@; CPU %@",
                            bw1, bw2, ISALevel.current.description, cpuFeatureNames.joined(separator: ",")))
        lines.append("| weights | threads | prefill tok/s (\(prompt)) | decode tok/s | decode GB/s | % of bandwidth |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for w in weights.split(separator: ",").map(String.init) {
            let dt: DType? = w == "native" ? nil : DType(userName: w)
            if w != "native" && dt == nil { throw ValidationError("unknown weight type '\(w)'") }
            let m = try ModelLoader.load(path: path, options: LoadOptions(weightDType: dt))
            for t in threadList {
                let r = try ModelBenchmark.run(model: m, label: w, threads: t, promptTokens: prompt, decodeTokens: decode)
                results.append(r)
                let bw = t > 1 ? bw2 : bw1
                lines.append(String(format: "| %@ | %d | %.1f | %.1f | %.1f | %.0f%% |", w, t, r.prefillTokensPerSecond,
                                    r.decodeTokensPerSecond, r.decodeGBps, 100 * r.decodeGBps / bw))
            }
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(results), as: UTF8.self))
        } else {
            lines.forEach { print($0) }
        }
    }
}
