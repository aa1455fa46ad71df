import Foundation
import SqueezeCore

/// Why generation ended.
public enum FinishReason: String, Sendable, Codable {
    /// An end-of-sequence token or a stop string.
    case stop
    /// The token limit.
    case length
    /// The caller asked to stop (e.g. a client went away).
    case cancelled
}

/// Timing and counts of one generation.
public struct GenerationStats: Sendable, Codable {
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var finishReason = FinishReason.length
    public var prefillTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0 }
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 && generatedTokens > 1 ? Double(generatedTokens - 1) / decodeSeconds : 0
    }
}

/// A reusable single-sequence generator: holds the KV cache and workspaces, so generating
/// allocates nothing per token.
public final class Generator {
    public let model: DecoderModel
    public let cache: KVCache
    let prefillWS: Workspace
    let decodeWS: Workspace

    /// A generator for sequences of up to `context` tokens (prompt plus output).
    public init(model: DecoderModel, context: Int, prefillChunk: Int = 256) {
        self.model = model
        cache = model.makeCache(capacity: context)
        prefillWS = Workspace(model: model, maxTokens: min(prefillChunk, context), logitRows: 1)
        decodeWS = Workspace(model: model, maxTokens: 1)
    }

    /// Generates after `prompt`. `onToken` receives each new token and returns false to stop
    /// (then the reason is `.stop` if `stopped` was set by the caller, else `.cancelled`).
    /// Stops at any of `stopTokens` (the token is reported, not counted as text by callers) or `maxTokens`.
    /// Logits that are NaN or +infinity (broken weights) throw `SamplingError` rather than pick a token.
    public func generate(
        prompt: [Int], maxTokens: Int, sampling: SamplingParameters, stopTokens: Set<Int>,
        onToken: (Int) -> TokenDecision
    ) throws -> GenerationStats {
        try sampling.validate()
        guard !prompt.isEmpty else { throw ModelError.invalidArgument("the prompt is empty") }
        let limit = min(maxTokens, cache.capacity - prompt.count)
        guard limit > 0 else {
            throw ModelError.contextOverflow(requested: prompt.count + max(1, maxTokens), limit: cache.capacity)
        }
        var stats = GenerationStats()
        stats.promptTokens = prompt.count
        var sampler = Sampler(sampling)
        var history = prompt
        cache.reset()
        let t0 = DispatchTime.now().uptimeNanoseconds
        try model.forward(tokens: prompt, cache: cache, workspace: prefillWS, logits: .last)
        var logits = prefillWS.logits.pointer
        let t1 = DispatchTime.now().uptimeNanoseconds
        stats.prefillSeconds = Double(t1 - t0) / 1e9
        let V = model.config.vocabSize
        while true {
            let tok = try sampler.sampleChecked(logits, vocab: V, history: history)
            stats.generatedTokens += 1
            history.append(tok)
            if stopTokens.contains(tok) { _ = onToken(tok); stats.finishReason = .stop; break }
            switch onToken(tok) {
            case .continue: break
            case .stop: stats.finishReason = .stop
            case .cancel: stats.finishReason = .cancelled
            }
            if stats.finishReason != .length { break }
            if stats.generatedTokens >= limit { stats.finishReason = .length; break }
            if case let .longrope(_, _, orig, _) = model.config.ropeScaling, cache.length <= orig,
                history.count > orig
            {
                // transformers' Phi-3 `generate` drops its cache at the step that first passes the
                // original context and runs the whole sequence again, so every key takes the long
                // factors (`Phi3ForCausalLM.prepare_inputs_for_generation`); do the same.
                cache.reset()
                try model.forward(tokens: history, cache: cache, workspace: prefillWS, logits: .last)
                logits = prefillWS.logits.pointer
            } else {
                try model.forward(tokens: [tok], cache: cache, workspace: decodeWS, logits: .last)
                logits = decodeWS.logits.pointer
            }
        }
        stats.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
        return stats
    }
}

/// What the caller wants after a token.
public enum TokenDecision: Sendable {
    case `continue`, stop, cancel
}
