import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// How windows are cut and scored.
public enum PerplexityProtocol: String, Sendable, CaseIterable, Codable {
    /// SqueezeLLM/GPTQ/AWQ: non-overlapping windows of N tokens (no BOS), every next-token prediction scored.
    case gptq
    /// llama.cpp's `llama-perplexity`: chunks of N tokens, first token replaced by BOS where the model
    /// adds BOS, only the second half of each chunk scored.
    case llamacpp
}

/// Errors of the evaluation commands.
public enum EvalError: Error, CustomStringConvertible, Equatable {
    case textTooShort(file: String, tokens: Int, needed: Int)
    case contextTooLong(requested: Int, modelContext: Int)
    case badArgument(String)
    case logitsFileMismatch(file: String, detail: String)

    public var description: String {
        switch self {
        case let .textTooShort(f, t, n): return "\(f): the text has \(t) tokens, fewer than one window of \(n)"
        case let .contextTooLong(r, m): return "context \(r) is longer than the model's context of \(m) tokens"
        case let .badArgument(s): return s
        case let .logitsFileMismatch(f, d): return "\(f): base log-probabilities do not match this run: \(d)"
        }
    }
}

/// Result of a perplexity run.
public struct PerplexityResult: Codable, Sendable {
    public var protocolName: String
    public var context: Int
    public var windows: Int
    public var tokensScored: Int
    public var perplexity: Double
    /// Standard error of the perplexity (delta method: PPL x standard error of the mean NLL).
    public var perplexityStdError: Double
    public var meanNLL: Double
    public var seconds: Double
    public var tokensPerSecond: Double
    public var kl: KLDivergenceSummary?
}

/// KL divergence of a model's next-token distributions from a base model's.
public struct KLDivergenceSummary: Codable, Sendable {
    public var mean: Double
    public var median: Double
    public var p99: Double
    public var topTokenAgreement: Double
    public var positions: Int
    /// How the base distribution was stored ("top-K plus rest mass, K = ...").
    public var storage: String
}

/// Perplexity over a token sequence, with optional saving of, or comparison with, base log-probabilities.
public struct PerplexityEvaluator {
    public let model: DecoderModel
    public var proto: PerplexityProtocol = .gptq
    public var context: Int = 2048
    public var maxWindows: Int?
    /// Token id put first in each llama.cpp chunk when the model adds BOS (nil: no replacement).
    public var bosToken: Int?
    /// Progress callback: (windows done, windows, running PPL, seconds so far).
    public var progress: ((Int, Int, Double, Double) -> Void)?

    public init(model: DecoderModel) { self.model = model }

    /// The windows' start offsets and the scored prediction positions within a window.
    public func plan(tokenCount: Int) throws -> (starts: [Int], first: Int) {
        let n = context
        guard n >= 2 else { throw EvalError.badArgument("the window length (context) must be at least 2, got \(n)") }
        if let limit = model.config.contextLimit, n > limit {
            throw EvalError.contextTooLong(requested: n, modelContext: limit)
        }
        var count = tokenCount / n
        if let m = maxWindows { count = min(count, m) }
        let first = proto == .gptq ? 0 : n / 2
        return ((0..<count).map { $0 * n }, first)
    }

    /// Runs the evaluation. `textName` names the input in errors. With `saveBase`, base log-probabilities
    /// are collected; with `klBase`, KL divergence against them is reported.
    public func run(
        tokens: [Int], textName: String, saveBase: BaseLogProbs? = nil, klBase: BaseLogProbs? = nil
    ) throws -> PerplexityResult {
        let (starts, first) = try plan(tokenCount: tokens.count)
        guard !starts.isEmpty else {
            throw EvalError.textTooShort(file: textName, tokens: tokens.count, needed: context)
        }
        let n = context, V = model.config.vocabSize
        if let kb = klBase {
            try kb.check(proto: proto, context: n, windows: starts.count, tokens: tokens, file: textName)
        }
        saveBase?.begin(proto: proto, context: n, windows: starts.count, tokens: tokens)
        let cache = model.makeCache(capacity: n)
        let ws = Workspace(model: model, maxTokens: min(n, 512), logitRows: n)
        var nlls: [Double] = []
        nlls.reserveCapacity(starts.count * (n - 1 - first))
        var kls: [Double] = []
        var agree = 0
        let t0 = DispatchTime.now().uptimeNanoseconds
        var scoredPos = 0
        for (wi, s) in starts.enumerated() {
            var window = Array(tokens[s..<(s + n)])
            if proto == .llamacpp, let b = bosToken { window[0] = b }
            cache.reset()
            try model.forward(tokens: window, cache: cache, workspace: ws, logits: .all)
            for j in first..<(n - 1) {
                let row = ws.logits.pointer + j * V
                let lse = Double(sq_logsumexp_f32(row, Int64(V)))
                let target = tokens[s + j + 1]
                nlls.append(lse - Double(row[target]))
                saveBase?.record(row: row, vocab: V, lse: Float(lse))
                if let kb = klBase {
                    let (kl, top) = kb.compare(position: scoredPos, row: row, vocab: V, lse: Float(lse))
                    kls.append(kl)
                    if top { agree += 1 }
                }
                scoredPos += 1
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            progress?(wi + 1, starts.count, exp(nlls.reduce(0, +) / Double(nlls.count)), elapsed)
        }
        let secs = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let mean = nlls.reduce(0, +) / Double(nlls.count)
        let varSum = nlls.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        let se = nlls.count > 1 ? (varSum / Double(nlls.count - 1) / Double(nlls.count)).squareRoot() : 0
        let ppl = exp(mean)
        var result = PerplexityResult(
            protocolName: proto.rawValue, context: n, windows: starts.count, tokensScored: nlls.count,
            perplexity: ppl, perplexityStdError: ppl * se, meanNLL: mean, seconds: secs,
            tokensPerSecond: Double(starts.count * n) / secs, kl: nil)
        if let kb = klBase, !kls.isEmpty {
            let sorted = kls.sorted()
            result.kl = KLDivergenceSummary(
                mean: kls.reduce(0, +) / Double(kls.count), median: sorted[sorted.count / 2],
                p99: sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))],
                topTokenAgreement: Double(agree) / Double(kls.count), positions: kls.count,
                storage: kb.storageDescription)
        }
        return result
    }
}

/// A base model's next-token log-probabilities at every scored position, stored compactly as the
/// top-K entries plus the log of the remaining mass. KL(base || model) is then computed over the
/// K+1 bins (the K tokens and "everything else"), a lower bound of the full-vocabulary KL that is
/// tight when the rest mass is small.
public final class BaseLogProbs {
    public let k: Int
    public private(set) var ids: [Int32] = []
    public private(set) var logprobs: [Float] = []
    public private(set) var restLogMass: [Float] = []
    public private(set) var proto = PerplexityProtocol.gptq
    public private(set) var context = 0
    public private(set) var windows = 0
    public private(set) var tokenHash = ""

    public init(k: Int = 32) { self.k = k }

    public var storageDescription: String {
        "top-\(k) log-probabilities plus the rest mass per position (KL over \(k + 1) bins)"
    }
    public var positions: Int { restLogMass.count }

    func begin(proto: PerplexityProtocol, context: Int, windows: Int, tokens: [Int]) {
        self.proto = proto
        self.context = context
        self.windows = windows
        tokenHash = Self.hash(tokens)
        ids.removeAll(); logprobs.removeAll(); restLogMass.removeAll()
    }

    static func hash(_ tokens: [Int]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in tokens { h = (h ^ UInt64(bitPattern: Int64(t))) &* 0x100_0000_01b3 }
        return String(h, radix: 16)
    }

    func topK(row: UnsafeMutablePointer<Float>, vocab: Int) -> [Int] {
        var best: [(Int, Float)] = []
        best.reserveCapacity(2 * k + 1)
        var floor = -Float.infinity
        for i in 0..<vocab where best.count < k || row[i] > floor {
            best.append((i, row[i]))
            if best.count >= 2 * k {
                best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
                best.removeLast(best.count - k)
                floor = best[k - 1].1
            }
        }
        best.sort { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        return best.prefix(k).map { $0.0 }
    }

    func record(row: UnsafeMutablePointer<Float>, vocab: Int, lse: Float) {
        let top = topK(row: row, vocab: vocab)
        var mass = 0.0
        for id in top {
            let lp = row[id] - lse
            ids.append(Int32(id))
            logprobs.append(lp)
            mass += exp(Double(lp))
        }
        restLogMass.append(Float(log(max(1e-30, 1 - mass))))
    }

    /// KL(base || model) at one position over the K+1 bins, and whether the top tokens agree.
    func compare(position p: Int, row: UnsafeMutablePointer<Float>, vocab: Int, lse: Float) -> (Double, Bool) {
        var kl = 0.0, qmass = 0.0
        var modelTop = 0
        for i in 1..<vocab where row[i] > row[modelTop] { modelTop = i }
        for j in 0..<k {
            let id = Int(ids[p * k + j])
            let lp = Double(logprobs[p * k + j])
            let lq = Double(row[id] - lse)
            kl += exp(lp) * (lp - lq)
            qmass += exp(lq)
        }
        let lpr = Double(restLogMass[p])
        let lqr = log(max(1e-30, 1 - qmass))
        kl += exp(lpr) * (lpr - lqr)
        return (max(0, kl), Int(ids[p * k]) == modelTop)
    }

    func check(proto: PerplexityProtocol, context: Int, windows: Int, tokens: [Int], file: String) throws {
        if proto != self.proto || context != self.context {
            throw EvalError.logitsFileMismatch(
                file: file,
                detail:
                    "saved with \(self.proto.rawValue) at context \(self.context), now \(proto.rawValue) at \(context)")
        }
        if windows != self.windows {
            throw EvalError.logitsFileMismatch(file: file, detail: "saved \(self.windows) windows, now \(windows)")
        }
        if Self.hash(tokens) != tokenHash {
            throw EvalError.logitsFileMismatch(file: file, detail: "the text's tokens differ")
        }
    }

    /// Writes the log-probabilities as safetensors (`ids` I32 [positions, K], `logprobs` F32 [positions, K],
    /// `rest_logmass` F32 [positions]) with the protocol in the metadata.
    public func save(to path: String) throws {
        let n = positions
        let t1 = ids.withUnsafeBufferPointer {
            Tensor(name: "ids", dtype: .i32, shape: [n, k], data: UnsafeRawPointer($0.baseAddress!), owner: nil)
        }
        let t2 = logprobs.withUnsafeBufferPointer {
            Tensor(name: "logprobs", dtype: .f32, shape: [n, k], data: UnsafeRawPointer($0.baseAddress!), owner: nil)
        }
        let t3 = restLogMass.withUnsafeBufferPointer {
            Tensor(name: "rest_logmass", dtype: .f32, shape: [n], data: UnsafeRawPointer($0.baseAddress!), owner: nil)
        }
        try withExtendedLifetime((ids, logprobs, restLogMass)) {
            try SafeTensorsWriter.write(
                tensors: [t1, t2, t3],
                metadata: [
                    "format": "squeeze-base-logprobs", "protocol": proto.rawValue, "context": "\(context)",
                    "windows": "\(windows)", "k": "\(k)", "tokens_fnv1a": tokenHash, "storage": storageDescription,
                ], to: path)
        }
    }

    /// Reads a file written by `save(to:)`.
    public static func load(path: String) throws -> BaseLogProbs {
        let f = try SafeTensorsFile(path: path)
        guard f.metadata["format"] == "squeeze-base-logprobs", let ks = f.metadata["k"], let k = Int(ks),
            let p = f.metadata["protocol"].flatMap(PerplexityProtocol.init(rawValue:)),
            let c = f.metadata["context"].flatMap(Int.init), let w = f.metadata["windows"].flatMap(Int.init)
        else {
            throw EvalError.logitsFileMismatch(
                file: path, detail: "not a file written by `squeeze perplexity --save-logits`")
        }
        let b = BaseLogProbs(k: k)
        b.proto = p
        b.context = c
        b.windows = w
        b.tokenHash = f.metadata["tokens_fnv1a"] ?? ""
        b.ids = try f.tensor("ids").toIntArray().map { Int32($0) }
        b.logprobs = try f.tensor("logprobs").toFloatArray()
        b.restLogMass = try f.tensor("rest_logmass").toFloatArray()
        guard b.ids.count == b.restLogMass.count * k, b.logprobs.count == b.ids.count else {
            throw EvalError.logitsFileMismatch(file: path, detail: "tensor sizes disagree")
        }
        return b
    }
}
