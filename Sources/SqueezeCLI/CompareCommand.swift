import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeModels
import SqueezeTokenizer
import SqueezeFormats

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Perplexity and KL divergence of several models against a base, in one table.")

    @Option(help: "The base model (its log-probabilities are the reference for KL).")
    var base: String
    @Option(parsing: .upToNextOption, help: "Candidate models (GGUF, Hugging Face or quantized directories).")
    var candidates: [String]
    @Option(help: "UTF-8 text file.")
    var text: String
    @Option(name: .customLong("protocol"), help: "gptq or llamacpp.")
    var proto: String = "gptq"
    @Option(help: "Window length in tokens.")
    var context: Int = 512
    @Option(help: "Evaluate only the first N windows.")
    var windows: Int?
    @Option(help: "Quantized layers' kernels: exact or fast.")
    var kernels: String = "exact"
    @Flag(help: "Print a Markdown table.")
    var markdown = false

    func run() throws {
        guard let p = PerplexityProtocol(rawValue: proto) else { throw ValidationError("--protocol must be gptq or llamacpp") }
        guard !candidates.isEmpty else { throw ValidationError("give at least one --candidates model") }
        let tmp = NSTemporaryDirectory() + "squeeze-compare-\(getpid()).safetensors"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        func progress(_ name: String) -> (Int, Int, Double, Double) -> Void {
            { d, t, ppl, s in Progress.line(String(format: "%@ [%d/%d] PPL %.4f %.0fs", name, d, t, ppl, s)) }
        }
        let baseResult = try PerplexityRunner.run(modelPath: base, textPath: text, proto: p, context: context, windows: windows,
                                                  dtype: "native", kernels: kernels, saveLogits: tmp, klBase: nil, topK: 32,
                                                  progress: progress(base))
        var rows: [(String, Int, Double?, PerplexityResult)] = [(base, ModelSize.bytes(base), Self.bitsPerWeight(base), baseResult)]
        for c in candidates {
            let r = try PerplexityRunner.run(modelPath: c, textPath: text, proto: p, context: context, windows: windows,
                                             dtype: "native", kernels: kernels, saveLogits: nil, klBase: tmp, topK: 32,
                                             progress: progress(c))
            rows.append((c, ModelSize.bytes(c), Self.bitsPerWeight(c), r))
        }
        Progress.done()
        let header = ["model", "size (MiB)", "bits/weight", "PPL", "delta PPL", "mean KLD", "same top token"]
        var table: [[String]] = []
        for (name, size, bpw, r) in rows {
            table.append([name, String(format: "%.1f", Double(size) / 1048576), bpw.map { String(format: "%.2f", $0) } ?? "-",
                          String(format: "%.4f +/- %.4f", r.perplexity, r.perplexityStdError),
                          name == base ? "-" : String(format: "%+.4f", r.perplexity - baseResult.perplexity),
                          r.kl.map { String(format: "%.5f", $0.mean) } ?? "0",
                          r.kl.map { String(format: "%.2f%%", 100 * $0.topTokenAgreement) } ?? "100%"])
        }
        if markdown {
            print("| " + header.joined(separator: " | ") + " |")
            print("|" + String(repeating: " --- |", count: header.count))
            for r in table { print("| " + r.joined(separator: " | ") + " |") }
        } else {
            let widths = header.indices.map { i in max(header[i].count, table.map { $0[i].count }.max() ?? 0) }
            func line(_ r: [String]) -> String { r.indices.map { r[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
            print(line(header))
            table.forEach { print(line($0)) }
        }
        print("(\(p.rawValue) protocol, context \(context), \(baseResult.windows) windows; KL over the base's top-32 tokens plus the rest mass)")
    }

    /// Storage bits per linear weight: from the GGUF block types, or the quantized checkpoint's tensors.
    static func bitsPerWeight(_ path: String) -> Double? {
        if path.hasSuffix(".gguf"), let g = try? SqueezeFormats.GGUFFile(path: path) {
            let lin = g.tensors.filter { $0.name.hasPrefix("blk.") && $0.dims.count == 2 }
            let bytes = lin.reduce(0) { $0 + $1.byteCount }, n = lin.reduce(0) { $0 + $1.elementCount }
            return n > 0 ? Double(bytes * 8) / Double(n) : nil
        }
        guard let st = try? SqueezeFormats.SafeTensorsModel(path: path) else { return nil }
        var bytes = 0, n = 0
        // Block tensors of every family (model.layers.N, model.decoder.layers.N, transformer.h.N).
        for name in st.tensorNames where name.contains("layers.") || name.hasPrefix("transformer.h.") || name.hasPrefix("h.") {
            guard let info = st.info(name) else { continue }
            if name.hasSuffix(".qweight") || name.hasSuffix(".lookup_table") || name.hasSuffix(".rows") || name.hasSuffix(".cols") || name.hasSuffix(".vals") {
                bytes += info.byteCount
                if name.hasSuffix(".lookup_table"), let q = st.info(String(name.dropLast(".lookup_table".count)) + ".qweight") {
                    n += info.shape[0] * q.shape[0] * 32 / (info.shape[1] == 16 ? 4 : (info.shape[1] == 8 ? 3 : 2))
                }
            } else if name.hasSuffix(".weight"), info.shape.count == 2 {
                bytes += info.byteCount
                n += info.elementCount
            }
        }
        return n > 0 ? Double(bytes * 8) / Double(n) : nil
    }
}
