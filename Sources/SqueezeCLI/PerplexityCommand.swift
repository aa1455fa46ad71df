import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeKernels
import SqueezeModels
import SqueezeTokenizer

/// `squeeze perplexity`: perplexity on a text, and KL divergence against saved base log-probabilities.
public struct PerplexityCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract:
            "Perplexity of a model on a text file (GPTQ/SqueezeLLM or llama.cpp protocol), and KL divergence against a base."
    )

    @Option(help: "Model: GGUF file, Hugging Face directory or quantized directory. Default: the cached test model.")
    public var model: String?
    @Option(help: "UTF-8 text file.")
    public var text: String
    @Option(
        name: .customLong("protocol"),
        help: "gptq (non-overlapping windows, all predictions) or llamacpp (second half of each chunk).")
    public var proto: PerplexityProtocol = .gptq
    @Option(help: "Window length in tokens (default 2048, capped at the model's context).")
    public var context: PositiveInt?
    @Option(help: "Evaluate only the first N windows.")
    public var windows: PositiveInt?
    @Option(help: "Save the model's log-probabilities (top-K plus rest mass) for later --kl-base runs.")
    public var saveLogits: String?
    @Option(help: "Report KL divergence against log-probabilities saved with --save-logits.")
    public var klBase: String?
    @Option(help: "Entries kept per position by --save-logits.")
    public var topK = PositiveInt(32)
    @Option(help: "Weight dtype for full-precision models.")
    public var dtype: WeightType = .native
    @Option(
        help:
            "Quantized layers' kernels: exact (float tables, default here) or fast (7-bit table codes and int8 activations; every token then goes through the decoding kernels, to measure what decoding computes)."
    )
    public var kernels: KernelsMode = .exact
    @Option(help: "LM head storage: stored (as in the file) or q8 (8-bit, quantized at load).")
    public var head: HeadFormat = .stored
    @Option(
        help: "KV cache storage: f32 (default here: the activations as computed), f16 or q8 (to measure their cost).")
    public var kvCache: KVCachePrecision = .f32
    @Option(help: "Threads (default: all cores).")
    public var threads: PositiveInt?
    @Flag(help: "Print JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        if let t = threads { WorkerPool.shared.defaultThreads = min(t.value, WorkerPool.shared.threadCount) }
        let path = try ModelOpening.resolve(model)
        let result = try PerplexityRunner.run(
            modelPath: path, textPath: text, proto: proto, context: context?.value, windows: windows?.value,
            dtype: dtype, kernels: kernels, head: head, kvCache: kvCache,
            saveLogits: saveLogits, klBase: klBase, topK: topK.value
        ) { done, total, ppl, secs in
            Progress.line(
                String(
                    format: "[%d/%d] PPL %.4f  %.0fs  ETA %@", done, total, ppl, secs,
                    Progress.eta(done: done, total: total, elapsed: secs)))
        }
        Progress.done()
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(result), as: UTF8.self))
        } else {
            print(result.summary)
        }
    }
}

/// Shared by `perplexity` and `compare`: loads, tokenizes and evaluates.
enum PerplexityRunner {
    static func run(
        modelPath: String, textPath: String, proto: PerplexityProtocol, context: Int?, windows: Int?, dtype: WeightType,
        kernels: KernelsMode, head: HeadFormat = .stored, kvCache: KVCachePrecision = .f32, saveLogits: String?,
        klBase: String?,
        topK: Int, progress: ((Int, Int, Double, Double) -> Void)?
    ) throws -> PerplexityResult {
        let m = try ModelOpening.load(modelPath, dtype: dtype, kernels: kernels, head: head)
        m.kvCachePrecision = kvCache
        if kernels == .fast {
            // Prefill (16+ tokens) decodes quantized rows to F32 in either mode; evaluate every
            // token through the decoding kernels instead, so the figure is the fast path's accuracy.
            LUTMatrix.prefillThreshold = Int.max
            Q8Matrix.prefillThreshold = Int.max
        }
        let tok = try ModelOpening.tokenizer(for: modelPath)
        let tokens = try TextFile.tokens(path: textPath, tokenizer: tok)
        var ev = PerplexityEvaluator(model: m)
        ev.proto = proto
        ev.context = context ?? min(2048, m.config.maxPositionEmbeddings)
        ev.maxWindows = windows
        ev.bosToken = tok.addBOS ? tok.bosTokenId : nil
        ev.progress = progress
        let save = saveLogits.map { _ in BaseLogProbs(k: topK) }
        let base = try klBase.map { try BaseLogProbs.load(path: $0) }
        let r = try ev.run(tokens: tokens, textName: textPath, saveBase: save, klBase: base)
        if let s = save, let p = saveLogits { try s.save(to: p) }
        return r
    }
}
