import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer

/// `squeeze compare`: perplexity and KL divergence of several models against a base, in one table.
public struct CompareCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Perplexity and KL divergence of several models against a base, in one table.")

    @Option(help: "The base model (its log-probabilities are the reference for KL).")
    public var base: String
    @Option(parsing: .upToNextOption, help: "Candidate models (GGUF, Hugging Face or quantized directories).")
    public var candidates: [String]
    @Option(help: "UTF-8 text file.")
    public var text: String
    @Option(
        name: .customLong("protocol"),
        help: "gptq (non-overlapping windows, all predictions) or llamacpp (second half of each chunk).")
    public var proto: PerplexityProtocol = .gptq
    @Option(help: "Window length in tokens.")
    public var context = PositiveInt(512)
    @Option(help: "Evaluate only the first N windows.")
    public var windows: PositiveInt?
    @Option(help: "Quantized layers' kernels: exact (float tables) or fast (int8).")
    public var kernels: KernelsMode = .exact
    @Flag(help: "Print a Markdown table.")
    public var markdown = false

    public init() {}

    public func validate() throws {
        if candidates.isEmpty { throw ValidationError("give at least one model to --candidates") }
    }

    public func run() throws {
        let p = proto
        let tmp = NSTemporaryDirectory() + "squeeze-compare-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        func progress(_ name: String) -> (Int, Int, Double, Double) -> Void {
            { d, t, ppl, s in Progress.line(String(format: "%@ [%d/%d] PPL %.4f %.0fs", name, d, t, ppl, s)) }
        }
        let baseResult = try PerplexityRunner.run(
            modelPath: base, textPath: text, proto: p, context: context.value, windows: windows?.value,
            dtype: .native, kernels: kernels, saveLogits: tmp, klBase: nil, topK: 32,
            progress: progress(base))
        var rows: [(String, Int, Double?, PerplexityResult)] = [
            (base, ModelSize.bytes(base), Self.bitsPerWeight(base), baseResult)
        ]
        for c in candidates {
            let r = try PerplexityRunner.run(
                modelPath: c, textPath: text, proto: p, context: context.value, windows: windows?.value,
                dtype: .native, kernels: kernels, saveLogits: nil, klBase: tmp, topK: 32,
                progress: progress(c))
            rows.append((c, ModelSize.bytes(c), Self.bitsPerWeight(c), r))
        }
        Progress.done()
        let header = ["model", "size (MiB)", "bits/weight", "PPL", "delta PPL", "mean KLD", "same top token"]
        var table: [[String]] = []
        for (name, size, bpw, r) in rows {
            table.append([
                name, String(format: "%.1f", Double(size) / 1048576), bpw.map { String(format: "%.2f", $0) } ?? "-",
                String(format: "%.4f +/- %.4f", r.perplexity, r.perplexityStdError),
                name == base ? "-" : String(format: "%+.4f", r.perplexity - baseResult.perplexity),
                r.kl.map { String(format: "%.5f", $0.mean) } ?? "0",
                r.kl.map { String(format: "%.2f%%", 100 * $0.topTokenAgreement) } ?? "100%",
            ])
        }
        if markdown {
            print("| " + header.joined(separator: " | ") + " |")
            print("|" + String(repeating: " --- |", count: header.count))
            for r in table { print("| " + r.joined(separator: " | ") + " |") }
        } else {
            let widths = header.indices.map { i in max(header[i].count, table.map { $0[i].count }.max() ?? 0) }
            func line(_ r: [String]) -> String {
                r.indices.map { r[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(
                    separator: "  ")
            }
            print(line(header))
            table.forEach { print(line($0)) }
        }
        print(
            "(\(p.rawValue) protocol, context \(context.value), \(baseResult.windows) windows; KL over the base's top-32 tokens plus the rest mass)"
        )
    }

    /// Bits per linear weight (`LinearWeightStorage`); nil when the model's linear layers are not recognized.
    static func bitsPerWeight(_ path: String) -> Double? {
        (try? LinearWeightStorage.measure(modelAt: path))??.bitsPerWeight
    }
}
