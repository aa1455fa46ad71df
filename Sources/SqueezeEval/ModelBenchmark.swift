import Foundation
import SqueezeCore
import SqueezeModels

/// One row of the model benchmark.
public struct ModelBenchResult: Codable, Sendable {
    public var weights: String
    public var threads: Int
    public var promptTokens: Int
    public var prefillTokensPerSecond: Double
    public var decodeTokens: Int
    /// Positions in the cache when decoding starts.
    public var decodeContext: Int
    public var decodeTokensPerSecond: Double
    /// Bytes of weights read per decoded token times tokens/s.
    public var decodeGBps: Double
    public var weightBytesPerToken: Int
}

/// Prefill and decode speed of a loaded model.
public enum ModelBenchmark {
    /// Times a `promptTokens`-token prefill and `decodeTokens` single-token decode steps (best of
    /// `repeats`). Decoding continues after the first `decodeContext` positions of the prompt (at
    /// most `promptTokens`), so the default short context compares with llama-bench's `tg`, which
    /// starts from an empty one, and a long one measures attention over a long cache.
    public static func run(
        model: DecoderModel, label: String, threads: Int, promptTokens: Int = 512,
        decodeTokens: Int = 64, decodeContext: Int = 16, repeats: Int = 3
    ) throws -> ModelBenchResult {
        try withThreads(model.pool, threads) {
            try measure(
                model: model, label: label, threads: threads, promptTokens: promptTokens,
                decodeTokens: decodeTokens, decodeContext: min(max(0, decodeContext), promptTokens), repeats: repeats)
        }
    }

    /// Runs `body` with `pool.defaultThreads` set to `threads` (at most the pool's size), then restores it.
    static func withThreads<T>(_ pool: WorkerPool, _ threads: Int, _ body: () throws -> T) rethrows -> T {
        let old = pool.defaultThreads
        pool.defaultThreads = min(threads, pool.threadCount)
        defer { pool.defaultThreads = old }
        return try body()
    }

    static func measure(
        model: DecoderModel, label: String, threads: Int, promptTokens: Int,
        decodeTokens: Int, decodeContext: Int, repeats: Int
    ) throws -> ModelBenchResult {
        var rng = Xoshiro256(seed: 7)
        let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(model.config.vocabSize)) }
        let cache = model.makeCache(capacity: promptTokens + decodeTokens + 1)
        let ws = Workspace(model: model, maxTokens: promptTokens, logitRows: 1)
        let wsDecode = Workspace(model: model, maxTokens: 1)
        var bestPrefill = Double.infinity, bestDecode = Double.infinity
        for _ in 0..<repeats {
            cache.reset()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try model.forward(tokens: prompt, cache: cache, workspace: ws, logits: .last)
            let t1 = DispatchTime.now().uptimeNanoseconds
            bestPrefill = min(bestPrefill, Double(t1 - t0) / 1e9)
            cache.truncate(to: decodeContext)
            var tok = 1
            let t2 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<decodeTokens {
                try model.forward(tokens: [tok], cache: cache, workspace: wsDecode, logits: .last)
                tok = (tok * 31 + 7) % model.config.vocabSize
            }
            let t3 = DispatchTime.now().uptimeNanoseconds
            bestDecode = min(bestDecode, Double(t3 - t2) / 1e9)
        }
        let dtps = Double(decodeTokens) / bestDecode
        return ModelBenchResult(
            weights: label, threads: threads, promptTokens: promptTokens,
            prefillTokensPerSecond: Double(promptTokens) / bestPrefill, decodeTokens: decodeTokens,
            decodeContext: decodeContext,
            decodeTokensPerSecond: dtps, decodeGBps: dtps * Double(model.weightBytesPerToken) / 1e9,
            weightBytesPerToken: model.weightBytesPerToken)
    }
}

/// One row of the batched-decode benchmark.
public struct BatchBenchResult: Codable, Sendable {
    public var weights: String
    public var threads: Int
    /// Sequences decoded together, one token each per step (`DecoderModel.forwardBatch`).
    public var batch: Int
    /// Steps per second and tokens per second over all sequences (batch x steps per second).
    public var stepsPerSecond: Double
    public var tokensPerSecond: Double
}

extension ModelBenchmark {
    /// Times `steps` batched decode steps of `batch` sequences, each with its own cache holding a
    /// `context`-token prompt (prefilled before timing; best of `repeats`), as the server's scheduler
    /// runs them.
    public static func runBatched(
        model: DecoderModel, label: String, threads: Int, batch: Int, context: Int = 64,
        steps: Int = 32, repeats: Int = 3
    ) throws -> BatchBenchResult {
        try withThreads(model.pool, threads) {
            try measureBatched(
                model: model, label: label, threads: threads, batch: batch, context: context,
                steps: steps, repeats: repeats)
        }
    }

    static func measureBatched(
        model: DecoderModel, label: String, threads: Int, batch: Int, context: Int,
        steps: Int, repeats: Int
    ) throws -> BatchBenchResult {
        var rng = Xoshiro256(seed: 11)
        let V = model.config.vocabSize
        let caches = (0..<batch).map { _ in model.makeCache(capacity: context + steps + 1) }
        let prompts = (0..<batch).map { _ in (0..<context).map { _ in Int(rng.next() % UInt64(V)) } }
        let wsPrompt = Workspace(model: model, maxTokens: max(1, context), logitRows: 1)
        let ws = Workspace(model: model, maxTokens: batch, logitRows: batch)
        var best = Double.infinity
        for _ in 0..<repeats {
            for (c, p) in zip(caches, prompts) {
                c.reset()
                if !p.isEmpty { try model.forward(tokens: p, cache: c, workspace: wsPrompt, logits: .none) }
            }
            var toks = (0..<batch).map { ($0 * 17 + 3) % V }
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps {
                try model.forwardBatch(tokens: toks, caches: caches, workspace: ws)
                toks = toks.map { ($0 * 31 + 7) % V }
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let sps = Double(steps) / best
        return BatchBenchResult(
            weights: label, threads: threads, batch: batch, stepsPerSecond: sps,
            tokensPerSecond: sps * Double(batch))
    }
}

/// One configuration's figures over interleaved rounds (`ModelBenchmark.runRounds`).
public struct ModelBenchRounds: Codable, Sendable {
    /// The median of each figure over the rounds (each figure's own median).
    public var median: ModelBenchResult
    /// Prefill and decode tokens/s of each round, in round order.
    public var prefillTokensPerSecond: [Double]
    public var decodeTokensPerSecond: [Double]
}

extension ModelBenchmark {
    /// The median of `values` (the mean of the middle two for an even count); nil when empty.
    public static func median(_ values: [Double]) -> Double? {
        if values.isEmpty { return nil }
        let s = values.sorted(), n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// Times every (model, thread count) configuration `rounds` times, interleaved: round 1 of every
    /// configuration, then round 2, and so on, so that a slow spell of the machine touches every
    /// configuration alike instead of whichever ran during it. Each round of a configuration is one
    /// `run` (itself the best of `repeats`). `progress` is called before each measurement with the
    /// round (from 1), the label and the thread count. Returns one entry per configuration, in the
    /// order of `models` then `threads`.
    public static func runRounds(
        models: [(label: String, model: DecoderModel)], threads: [Int], rounds: Int,
        promptTokens: Int = 512, decodeTokens: Int = 64, decodeContext: Int = 16,
        repeats: Int = 3,
        progress: (Int, String, Int) -> Void = { _, _, _ in }
    ) throws -> [ModelBenchRounds] {
        var results: [[ModelBenchResult]] = Array(repeating: [], count: models.count * threads.count)
        for round in 1...max(1, rounds) {
            for (i, entry) in models.enumerated() {
                for (j, t) in threads.enumerated() {
                    progress(round, entry.label, t)
                    results[i * threads.count + j].append(
                        try run(
                            model: entry.model, label: entry.label, threads: t, promptTokens: promptTokens,
                            decodeTokens: decodeTokens, decodeContext: decodeContext, repeats: repeats))
                }
            }
        }
        return results.map { rs in
            let prefill = rs.map(\.prefillTokensPerSecond), decode = rs.map(\.decodeTokensPerSecond)
            var m = rs[0]
            m.prefillTokensPerSecond = median(prefill)!
            m.decodeTokensPerSecond = median(decode)!
            m.decodeGBps = median(rs.map(\.decodeGBps))!
            return ModelBenchRounds(median: m, prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode)
        }
    }
}
