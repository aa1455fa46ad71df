import CSqueezeKernels
import Foundation

/// Sampling settings. Temperature 0 means greedy decoding.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    /// Hugging Face-style repetition penalty (>1 discourages tokens already seen).
    public var repetitionPenalty: Float = 1
    /// OpenAI-style penalties: subtract presence once, frequency per occurrence.
    public var presencePenalty: Float = 0
    public var frequencyPenalty: Float = 0
    /// Seed for reproducible sampling (nil: from the system's random source).
    public var seed: UInt64?

    public init(
        temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0, repetitionPenalty: Float = 1,
        presencePenalty: Float = 0, frequencyPenalty: Float = 0, seed: UInt64? = nil
    ) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
    }

    /// Checks ranges; the error names the parameter.
    public func validate() throws {
        func bad(_ n: String, _ d: String) -> ModelError { .invalidArgument("\(n): \(d)") }
        if !(temperature >= 0) || !temperature.isFinite { throw bad("temperature", "must be >= 0") }
        if topK < 0 { throw bad("top_k", "must be >= 0") }
        if !(topP > 0 && topP <= 1) { throw bad("top_p", "must be in (0, 1]") }
        if !(minP >= 0 && minP <= 1) { throw bad("min_p", "must be in [0, 1]") }
        if !(repetitionPenalty > 0) || !repetitionPenalty.isFinite { throw bad("repetition_penalty", "must be > 0") }
        if !(presencePenalty >= -2 && presencePenalty <= 2) { throw bad("presence_penalty", "must be in [-2, 2]") }
        if !(frequencyPenalty >= -2 && frequencyPenalty <= 2) { throw bad("frequency_penalty", "must be in [-2, 2]") }
    }
}

/// Why logits cannot be sampled from.
public enum SamplingError: Error, CustomStringConvertible, Sendable {
    /// The model produced a NaN or +infinity logit (or no finite logit at all) at this token id.
    case nonFiniteLogit(index: Int, value: Float)

    public var description: String {
        switch self {
        case let .nonFiniteLogit(i, v):
            return "the model produced a non-finite logit (\(v)) for token \(i); its weights or activations are broken"
        }
    }
}

/// A small, fast, seedable generator (xoshiro256**).
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)
    public init(seed: UInt64) {
        var z = seed
        func split() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var r = z
            r = (r ^ (r >> 30)) &* 0xBF58_476D_1CE4_E5B9
            r = (r ^ (r >> 27)) &* 0x94D0_49BB_1331_11EB
            return r ^ (r >> 31)
        }
        s = (split(), split(), split(), split())
    }
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }
    /// A uniform Float in [0, 1).
    public mutating func nextUnit() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }
}

/// Chooses the next token from logits under `SamplingParameters`, with its own random state.
///
/// The candidate set is the top-k tokens (all when `topK` is 0), sorted by logit; min-p drops those
/// whose probability is below `minP` times the largest, top-p keeps the shortest prefix whose share of
/// the candidates' mass reaches `topP`, and the token is drawn from what is left, renormalized. Only
/// tokens that can survive the filters are sorted (a full-vocabulary sort happens only when the top-p
/// prefix is not inside the tokens above 1e-6 of the largest probability), and the buffers are the
/// sampler's own, reused from token to token.
public struct Sampler: Sendable {
    public let params: SamplingParameters
    var rng: Xoshiro256
    var cand: [(id: Int, logit: Float)] = []
    var probs: [Double] = []

    public init(_ params: SamplingParameters) {
        self.params = params
        rng = Xoshiro256(seed: params.seed ?? UInt64.random(in: .min ... .max))
    }

    /// Applies the penalties for previously seen tokens to `logits` in place.
    public func applyPenalties(_ logits: UnsafeMutablePointer<Float>, vocab: Int, history: [Int]) {
        let p = params
        if p.repetitionPenalty == 1 && p.presencePenalty == 0 && p.frequencyPenalty == 0 { return }
        var counts: [Int: Int] = [:]
        for t in history where t >= 0 && t < vocab { counts[t, default: 0] += 1 }
        for (t, n) in counts {
            var l = logits[t]
            if p.repetitionPenalty != 1 { l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty }
            l -= p.presencePenalty + p.frequencyPenalty * Float(n)
            logits[t] = l
        }
    }

    /// Sorts the candidates by logit descending (ties by id), in place.
    mutating func sortCandidates() {
        cand.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
    }

    /// The first logit that is NaN or +infinity (or token 0 when no logit is finite), as an error;
    /// nil when the logits can be sampled from. -infinity alone is a token that cannot be drawn.
    public static func checkFinite(_ logits: UnsafePointer<Float>, vocab: Int) -> SamplingError? {
        var anyFinite = false
        for i in 0..<vocab {
            let l = logits[i]
            if l.isFinite { anyFinite = true } else if l.isNaN || l > 0 { return .nonFiniteLogit(index: i, value: l) }
        }
        return anyFinite || vocab == 0 ? nil : .nonFiniteLogit(index: 0, value: logits[0])
    }

    /// Picks a token like `sample`, but refuses logits that are NaN or +infinity (a broken model or
    /// weights) instead of choosing a token from them.
    public mutating func sampleChecked(
        _ logits: UnsafeMutablePointer<Float>, vocab: Int, history: [Int] = []
    ) throws -> Int {
        if let e = Self.checkFinite(logits, vocab: vocab) { throw e }
        return sample(logits, vocab: vocab, history: history)
    }

    /// Makes every logit finite or -infinity (NaN becomes -infinity) so that the filters below
    /// always keep a candidate; returns the token to pick without drawing when a logit is
    /// +infinity (the first such) or none is finite (token 0).
    static func sanitize(_ logits: UnsafeMutablePointer<Float>, vocab: Int) -> Int? {
        var anyFinite = false
        for i in 0..<vocab {
            let l = logits[i]
            if l.isFinite { anyFinite = true; continue }
            if l.isNaN { logits[i] = -.infinity } else if l > 0 { return i }
        }
        return anyFinite ? nil : 0
    }

    /// Picks a token from `logits` (modified in place by penalties). Never traps: NaN logits count
    /// as -infinity, a +infinity logit is picked outright, and with no finite logit token 0 is.
    public mutating func sample(_ logits: UnsafeMutablePointer<Float>, vocab: Int, history: [Int] = []) -> Int {
        applyPenalties(logits, vocab: vocab, history: history)
        if vocab <= 0 { return 0 }
        if let forced = Self.sanitize(logits, vocab: vocab) { return forced }
        let top = Int(sq_argmax_f32(logits, Int64(vocab)))
        if params.temperature == 0 { return top }
        let invT = 1 / params.temperature
        let maxL = logits[top]
        cand.removeAll(keepingCapacity: true)
        let k = params.topK > 0 ? min(params.topK, vocab) : vocab
        var total = 0.0  // mass of the top-k candidates, relative to the largest
        if k < vocab {
            // Keep the k best: collect, and trim back to k whenever twice as many have gathered.
            var floor = -Float.infinity
            for i in 0..<vocab {
                let l = logits[i]
                if cand.count < k || l > floor {
                    cand.append((i, l))
                    if cand.count > 2 * k {
                        sortCandidates()
                        cand.removeLast(cand.count - k)
                        floor = cand[k - 1].logit
                    }
                }
            }
            sortCandidates()
            if cand.count > k { cand.removeLast(cand.count - k) }
            for c in cand { total += Double(expf((c.logit - maxL) * invT)) }
        } else {
            for i in 0..<vocab { total += Double(expf((logits[i] - maxL) * invT)) }
            if params.topP >= 1 && params.minP <= 0 {
                // No filter: draw over the whole vocabulary in id order (same distribution).
                let r = Double(rng.nextUnit()) * total
                var acc = 0.0
                for i in 0..<vocab {
                    acc += Double(expf((logits[i] - maxL) * invT))
                    if r < acc { return i }
                }
                return top
            }
            // Only tokens above a probability floor can be in the kept prefix when their mass already
            // reaches top-p (or they are all that min-p keeps); otherwise take everything.
            var found = false
            for ratio in [1e-3, 1e-6] {
                let floorP = max(ratio, Double(params.minP))
                let cut = maxL + Float(log(floorP)) / invT
                cand.removeAll(keepingCapacity: true)
                var mass = 0.0
                for i in 0..<vocab where logits[i] >= cut {
                    cand.append((i, logits[i]))
                    mass += Double(expf((logits[i] - maxL) * invT))
                }
                if Double(params.minP) >= ratio || mass >= Double(params.topP) * total { found = true; break }
            }
            if !found {
                cand.removeAll(keepingCapacity: true)
                for i in 0..<vocab { cand.append((i, logits[i])) }
            }
            sortCandidates()
        }
        probs.removeAll(keepingCapacity: true)
        for c in cand { probs.append(Double(expf((c.logit - maxL) * invT))) }
        var n = probs.count
        if params.minP > 0 {
            let thr = Double(params.minP) * probs[0]
            while n > 1 && probs[n - 1] < thr { n -= 1 }
        }
        if params.topP < 1 {
            var acc = 0.0
            for i in 0..<n {
                acc += probs[i] / total
                if acc >= Double(params.topP) { n = i + 1; break }
            }
        }
        var kept = 0.0
        for i in 0..<n { kept += probs[i] }
        let r = Double(rng.nextUnit()) * kept
        var acc = 0.0
        for i in 0..<n {
            acc += probs[i]
            if r < acc { return cand[i].id }
        }
        return cand[n - 1].id
    }
}
