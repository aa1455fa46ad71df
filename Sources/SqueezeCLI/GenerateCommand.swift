import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeModels
import SqueezeTokenizer

/// The sampling options of `squeeze generate`.
public struct SamplingOptions: ParsableArguments {
    @Option(help: "Temperature (0 = greedy: always the most likely token).")
    public var temperature: Float = 0.7
    @Option(help: "Keep only the k most likely tokens (0 = off).")
    public var topK: Int = 40
    @Option(help: "Nucleus sampling: keep the smallest set with this probability mass.")
    public var topP: Float = 0.95
    @Option(help: "Drop tokens below min-p times the top probability.")
    public var minP: Float = 0.05
    @Option(help: "Repetition penalty (1 = off, as llama.cpp's default; applies at every temperature).")
    public var repetitionPenalty: Float = 1.0
    @Option(help: "Random seed for reproducible sampling.")
    public var seed: UInt64?
    @Flag(help: "Greedy decoding: the same as --temperature 0.")
    public var greedy = false

    public init() {}

    /// The library's parameters; `--greedy` only sets the temperature to 0, so it decodes exactly as `--temperature 0`.
    public var parameters: SamplingParameters {
        SamplingParameters(
            temperature: greedy ? 0 : temperature, topK: topK, topP: topP, minP: minP,
            repetitionPenalty: repetitionPenalty, seed: seed)
    }

    public func validate() throws {
        do {
            try parameters.validate()
        } catch let ModelError.invalidArgument(detail) {
            // The library names parameters as the API does (top_p); the message names the flag.
            throw ValidationError("--" + detail.replacingOccurrences(of: "_", with: "-"))
        }
    }
}

/// `squeeze generate`: streams a completion of a prompt.
public struct GenerateCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a prompt, streaming it; prints speed and peak memory to stderr.")

    @Option(help: "Model: GGUF file, Hugging Face directory or quantized directory. Default: the cached test model.")
    public var model: String?
    @Option(help: "The prompt.")
    public var prompt: String
    @Flag(help: "Wrap the prompt as a user message in the model's chat template.")
    public var chat = false
    @Option(help: "System message for --chat.")
    public var system: String?
    @Option(help: "Maximum tokens to generate.")
    public var maxTokens = PositiveInt(128)
    @Option(parsing: .singleValue, help: "Stop when this string appears (repeatable).")
    public var stop: [String] = []
    @Option(help: "Context length to allocate (prompt plus output).")
    public var context = PositiveInt(2048)
    @Option(help: "Weight dtype for full-precision models.")
    public var dtype: WeightType = .native
    @Option(help: "Quantized layers' kernels: fast (7-bit table codes, int8 activations) or exact (float tables).")
    public var kernels: KernelsMode = .fast
    @Option(
        help:
            "LM head storage: stored (as in the file) or q8 (8-bit with a scale per 32, quantized at load; about half the bytes of F16)."
    )
    public var head: HeadFormat = .stored
    @Option(help: ModelOpening.kvCacheHelp)
    public var kvCache: KVCachePrecision = .f16
    @Option(help: "Threads (default: all cores).")
    public var threads: PositiveInt?
    @OptionGroup public var sampling: SamplingOptions

    public init() {}

    public func run() throws {
        if let t = threads { WorkerPool.shared.defaultThreads = min(t.value, WorkerPool.shared.threadCount) }
        let path = try ModelOpening.resolve(model)
        let m = try ModelOpening.load(path, dtype: dtype, kernels: kernels, head: head)
        m.kvCachePrecision = kvCache
        let tok = try ModelOpening.tokenizer(for: path)
        var text = prompt
        if chat {
            var msgs: [ChatMessage] = []
            if let s = system { msgs.append(ChatMessage(role: "system", content: s)) }
            msgs.append(ChatMessage(role: "user", content: prompt))
            text = try tok.applyChatTemplate(messages: msgs, addGenerationPrompt: true)
        }
        let ids = tok.encode(text, addSpecialTokens: !chat)
        let ctx = min(context.value, m.config.contextLimit ?? context.value)
        guard ids.count < ctx else {
            throw ValidationError("the prompt has \(ids.count) tokens; --context \(ctx) leaves no room to generate")
        }
        let gen = Generator(model: m, context: ctx)
        let decoder = StreamingDecoder(tokenizer: tok, skipSpecialTokens: true)
        var out = ""
        var printed = 0
        let holdBack = stop.map { $0.count }.max() ?? 0
        var stopped = false
        let stats = try gen.generate(
            prompt: ids, maxTokens: maxTokens.value, sampling: sampling.parameters, stopTokens: tok.eosTokenIds
        ) { id in
            if tok.eosTokenIds.contains(id) { return .stop }
            out += decoder.push(id)
            if let s = stop.first(where: { out.contains($0) }) {
                out = String(out[..<out.range(of: s)!.lowerBound])
                stopped = true
            }
            // Print what can no longer become part of a stop string.
            let safe = stopped ? out.count : max(printed, out.count - holdBack)
            if safe > printed {
                let chunk = out.dropFirst(printed).prefix(safe - printed)
                FileHandle.standardOutput.write(Data(chunk.utf8))
                printed = safe
            }
            return stopped ? .stop : .continue
        }
        if !stopped {
            out += decoder.flush()
            FileHandle.standardOutput.write(Data(out.dropFirst(printed).utf8))
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
        Progress.eprint(
            String(
                format:
                    "prompt %d tokens, %.1f tok/s prefill; generated %d tokens, %.1f tok/s decode; finish: %@; peak memory %.0f MiB",
                stats.promptTokens, stats.prefillTokensPerSecond, stats.generatedTokens, stats.decodeTokensPerSecond,
                stats.finishReason.rawValue, Double(peakResidentBytes()) / 1048576))
    }
}
