import Foundation
import SqueezeCore
import SqueezeModels
import SqueezeTokenizer

/// One generation job for the scheduler: token ids in, text out.
public struct GenerationRequest: Sendable {
    /// The prompt's token ids (not empty).
    public var prompt: [Int]
    /// Most tokens to generate (prompt + maxTokens must fit the context).
    public var maxTokens: Int
    /// Sampling settings (seeded per request when `seed` is set).
    public var sampling: SamplingParameters
    /// Stop strings, matched on the detokenized text; never part of the output.
    public var stop: [String]
    /// Number of alternatives per token to report with log-probabilities (nil: no log-probabilities).
    public var logprobs: Int?
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    public var ignoreEOS: Bool
    /// Seconds from submission after which the request fails with `.deadlineExceeded` (nil: none).
    public var timeLimit: Double?

    public init(
        prompt: [Int], maxTokens: Int, sampling: SamplingParameters = SamplingParameters(),
        stop: [String] = [], logprobs: Int? = nil, ignoreEOS: Bool = false, timeLimit: Double? = nil
    ) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.sampling = sampling
        self.stop = stop; self.logprobs = logprobs; self.ignoreEOS = ignoreEOS; self.timeLimit = timeLimit
    }
}

/// Why a generation failed.
public enum GenerationFailure: Error, CustomStringConvertible, Sendable {
    /// The model's forward pass failed (logged; clients see a bare 500).
    case internalError(String)
    /// The model produced NaN or infinite logits for this request.
    case nonFiniteOutput(SamplingError)
    /// The request ran past its time limit (seconds).
    case deadlineExceeded(Double)

    public var description: String {
        switch self {
        case let .internalError(m): return m
        case let .nonFiniteOutput(e): return "\(e)"
        case let .deadlineExceeded(t): return "the request ran past its time limit of \(t) s"
        }
    }
}

/// What a running generation reports, in order: text pieces, then exactly one `finished` or `failed`.
public enum GenerationEvent: Sendable {
    /// New output text (possibly empty when text is held back) and the log-probabilities of the
    /// tokens produced since the previous event (if requested).
    case text(String, logprobs: [TokenLogprob])
    /// Generation ended: why, prompt tokens and generated tokens.
    case finished(FinishReason, promptTokens: Int, completionTokens: Int)
    /// Generation failed: the model broke, or the request ran out of time.
    case failed(GenerationFailure)
}

/// A submitted generation: its event stream and a way to cancel it.
public final class GenerationHandle: Sendable {
    /// The events; the stream ends after `finished` or `failed`.
    public let events: GenerationEvents
    let flag: CancelFlag
    let scheduler: BatchScheduler

    init(events: AsyncStream<GenerationEvent>, flag: CancelFlag, scheduler: BatchScheduler) {
        self.events = GenerationEvents(stream: events, flag: flag)
        self.flag = flag; self.scheduler = scheduler
    }

    /// Cancels the generation (it finishes with `.cancelled`); safe to call at any time, repeatedly.
    public func cancel() {
        if flag.set() { scheduler.wake() }
    }
}

/// The events of one generation; taking each one tells the scheduler the client keeps up.
public struct GenerationEvents: AsyncSequence, Sendable {
    public typealias Element = GenerationEvent
    let stream: AsyncStream<GenerationEvent>
    let flag: CancelFlag

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<GenerationEvent>.AsyncIterator
        let flag: CancelFlag
        public mutating func next() async -> GenerationEvent? {
            let e = await base.next()
            flag.taken()
            return e
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: stream.makeAsyncIterator(), flag: flag) }
}

/// A thread-safe one-way cancel flag, and the count of events the client has not taken yet.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    private var unread = 0
    private var lastTaken = DispatchTime.now().uptimeNanoseconds
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    /// Sets the flag; returns true if it was not set before.
    func set() -> Bool { lock.lock(); defer { lock.unlock() }; let was = value; value = true; return !was }
    /// The scheduler queued an event. The wait is counted from the oldest unread event, so time
    /// spent in the queue before the first token does not count as the client not reading.
    func yielded() {
        lock.lock()
        if unread == 0 { lastTaken = DispatchTime.now().uptimeNanoseconds }
        unread += 1
        lock.unlock()
    }
    /// The client took an event.
    func taken() {
        lock.lock(); unread = max(0, unread - 1); lastTaken = DispatchTime.now().uptimeNanoseconds; lock.unlock()
    }
    /// Whether an event has waited unread for more than `nanoseconds` (the client stopped reading).
    func stalled(now: UInt64, nanoseconds: UInt64) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return unread > 0 && now > lastTaken && now - lastTaken > nanoseconds
    }
}

/// Continuous batching over one model on one dedicated thread. Each step admits waiting requests
/// (up to `maxBatch` active), prefills new ones in chunks on their own KV cache, then runs one
/// batched decode step (`DecoderModel.forwardBatch`) for every active sequence and samples each
/// with its own sampler. Finished and cancelled sequences give their cache back to a pool.
public final class BatchScheduler: @unchecked Sendable {
    public let model: DecoderModel
    public let tokenizer: Tokenizer
    /// Most sequences decoded together.
    public let maxBatch: Int
    /// Positions per sequence (prompt plus output).
    public let context: Int
    /// Most requests waiting for a slot; beyond that `submit` throws `queueFull`.
    public let queueLimit: Int
    /// Most prompt tokens prefilled per step (long prompts are split so others keep decoding).
    public let prefillChunk: Int
    /// Seconds a client may leave produced events unread before its generation is cancelled and its
    /// slot freed (nil: never).
    public let slowReaderTimeout: Double?
    let metrics: ServerMetrics?
    let stopTokens: Set<Int>

    private let cond = NSCondition()
    private var pending: [ActiveSequence] = []
    private var accepting = true
    private var stopRequested = false
    private var cancelAllRequested = false
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var nextID = 0
    private var activeCount = 0

    // Owned by the scheduler thread.
    private var active: [ActiveSequence] = []
    private var freeCaches: [KVCache] = []
    private let prefillWS: Workspace
    private let decodeWS: Workspace
    private var scratch: [Float]

    /// Creates the scheduler and starts its thread.
    public init(
        model: DecoderModel, tokenizer: Tokenizer, maxBatch: Int, context: Int, queueLimit: Int,
        prefillChunk: Int = 256, slowReaderTimeout: Double? = nil, metrics: ServerMetrics? = nil
    ) throws {
        guard maxBatch >= 1 else { throw ServerError.invalidConfiguration("max batch must be >= 1") }
        guard context >= 2 else { throw ServerError.invalidConfiguration("context must be >= 2") }
        guard queueLimit >= 0 else { throw ServerError.invalidConfiguration("queue must be >= 0") }
        guard prefillChunk >= 1 else { throw ServerError.invalidConfiguration("prefill chunk must be >= 1") }
        self.model = model
        self.tokenizer = tokenizer
        self.maxBatch = maxBatch
        self.context = context
        self.queueLimit = queueLimit
        self.prefillChunk = prefillChunk
        self.slowReaderTimeout = slowReaderTimeout
        self.metrics = metrics
        stopTokens = tokenizer.eosTokenIds.union(model.config.eosTokenIds)
        prefillWS = Workspace(model: model, maxTokens: min(prefillChunk, context), logitRows: 1)
        decodeWS = Workspace(model: model, maxTokens: maxBatch)
        scratch = [Float](repeating: 0, count: model.config.vocabSize)
        let t = Thread { self.loop() }
        t.name = "squeeze-scheduler"
        t.stackSize = 16 << 20
        thread = t
        t.start()
    }

    /// Queues a request. Throws `ServerError.queueFull` when `queueLimit` requests are already
    /// waiting, `.shuttingDown` after `shutdown`, and `.invalidConfiguration` for a request that
    /// cannot fit (callers validate first).
    public func submit(_ request: GenerationRequest) throws -> GenerationHandle {
        guard !request.prompt.isEmpty else { throw ServerError.invalidConfiguration("the prompt is empty") }
        guard request.maxTokens >= 1, request.prompt.count + request.maxTokens <= context else {
            throw ServerError.invalidConfiguration("prompt plus max tokens exceed the context (\(context))")
        }
        let (stream, cont) = AsyncStream<GenerationEvent>.makeStream(bufferingPolicy: .unbounded)
        let flag = CancelFlag()
        let handle = GenerationHandle(events: stream, flag: flag, scheduler: self)
        cont.onTermination = { [weak handle] _ in handle?.cancel() }
        cond.lock()
        defer { cond.unlock() }
        guard accepting else { throw ServerError.shuttingDown }
        guard pending.count < queueLimit || (pending.isEmpty && activeCount < maxBatch) else {
            throw ServerError.queueFull(limit: queueLimit)
        }
        nextID += 1
        let seq = ActiveSequence(id: nextID, request: request, continuation: cont, flag: flag, tokenizer: tokenizer)
        pending.append(seq)
        metrics?.queueDepth.set(Double(pending.count))
        cond.signal()
        return handle
    }

    /// Requests waiting for a slot.
    public var queueDepth: Int { cond.lock(); defer { cond.unlock() }; return pending.count }
    /// Sequences being prefilled or decoded.
    public var activeSequences: Int { cond.lock(); defer { cond.unlock() }; return activeCount }
    /// Whether new requests are accepted.
    public var isAccepting: Bool { cond.lock(); defer { cond.unlock() }; return accepting }

    /// Stops accepting new requests (they get `shuttingDown`); running ones go on.
    public func stopAccepting() {
        cond.lock(); accepting = false; cond.unlock()
    }

    /// Cancels every waiting and running request (each finishes with `.cancelled`).
    public func cancelAll() {
        cond.lock(); cancelAllRequested = true; cond.signal(); cond.unlock()
    }

    /// Stops accepting, cancels what is left if `cancelInFlight` (else lets it finish), and waits
    /// for the thread to end. Idempotent.
    public func shutdown(cancelInFlight: Bool) {
        cond.lock()
        let first = !stopRequested
        accepting = false
        stopRequested = true
        if cancelInFlight { cancelAllRequested = true }
        cond.signal()
        cond.unlock()
        _ = first
        done.wait(); done.signal()
    }

    func wake() { cond.lock(); cond.signal(); cond.unlock() }

    // MARK: The scheduler thread

    private func loop() {
        while true {
            cond.lock()
            while pending.isEmpty && active.isEmpty && !stopRequested { cond.wait() }
            if cancelAllRequested {
                for s in pending { s.flag.cancelFromScheduler() }
                for s in active { s.flag.cancelFromScheduler() }
                cancelAllRequested = false
            }
            if stopRequested && pending.isEmpty && active.isEmpty { cond.unlock(); break }
            // Drop cancelled waiting requests; admit up to maxBatch.
            var cancelledWaiting: [ActiveSequence] = [], expiredWaiting: [ActiveSequence] = []
            let now = DispatchTime.now().uptimeNanoseconds
            pending.removeAll { s in
                if s.flag.isSet { cancelledWaiting.append(s); return true }
                if let d = s.deadline, now >= d { expiredWaiting.append(s); return true }
                return false
            }
            while active.count < maxBatch && !pending.isEmpty { active.append(pending.removeFirst()) }
            activeCount = active.count
            let depth = pending.count
            cond.unlock()
            metrics?.queueDepth.set(Double(depth))
            for s in cancelledWaiting { finish(s, .cancelled) }
            for s in expiredWaiting { fail(s, .deadlineExceeded(s.request.timeLimit ?? 0)) }
            step()
            cond.lock(); activeCount = active.count; cond.unlock()
            metrics?.active(active.count)
        }
        freeCaches.removeAll()
        done.signal()
    }

    /// One scheduling step: prefill work for new sequences, then one batched decode step.
    private func step() {
        // Cancelled sequences end now; so do those past their time limit or whose client stopped reading.
        let now = DispatchTime.now().uptimeNanoseconds
        let slowNS = slowReaderTimeout.map { UInt64(max(0, $0) * 1e9) }
        for s in active where !s.finished {
            if s.flag.isSet {
                finish(s, .cancelled)
            } else if let d = s.deadline, now >= d {
                fail(s, .deadlineExceeded(s.request.timeLimit ?? 0))
            } else if let ns = slowNS, s.flag.stalled(now: now, nanoseconds: ns) {
                finish(s, .cancelled)
            }
        }
        active.removeAll { $0.finished }

        // Prefill (bounded work per step).
        var budget = prefillChunk
        for s in active where !s.finished && s.prefilled < s.request.prompt.count && budget > 0 {
            if s.cache == nil { s.cache = freeCaches.popLast() ?? model.makeCache(capacity: context); s.cache!.reset() }
            let n = min(budget, s.request.prompt.count - s.prefilled)
            let last = s.prefilled + n == s.request.prompt.count
            let chunk = Array(s.request.prompt[s.prefilled..<(s.prefilled + n)])
            do {
                try model.forward(tokens: chunk, cache: s.cache!, workspace: prefillWS, logits: last ? .last : .none)
            } catch {
                fail(s, .internalError("prefill: \(error)")); continue
            }
            budget -= n
            s.prefilled += n
            if last {
                s.prefillEnd = DispatchTime.now().uptimeNanoseconds
                accept(s, logits: prefillWS.logits.pointer)
                if let t0 = s.admitted {
                    metrics?.timeToFirstToken.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - t0))
                }
            }
        }
        active.removeAll { $0.finished }

        // One decode step for every sequence that has a next input token.
        let ready = active.filter { !$0.finished && $0.prefilled == $0.request.prompt.count && $0.hasInput }
        guard !ready.isEmpty else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        do {
            try model.forwardBatch(tokens: ready.map(\.lastToken), caches: ready.map { $0.cache! }, workspace: decodeWS)
        } catch {
            for s in ready { fail(s, .internalError("decode: \(error)")) }
            active.removeAll { $0.finished }
            return
        }
        let V = model.config.vocabSize
        for (i, s) in ready.enumerated() { accept(s, logits: decodeWS.logits.pointer + i * V) }
        let dt = DispatchTime.now().uptimeNanoseconds - t0
        metrics?.decodeStep.recordNanoseconds(Int64(dt))
        metrics?.batchSize.record(Double(ready.count))
        active.removeAll { $0.finished }
    }

    /// Samples the next token of `s` from its logits row and reports it.
    private func accept(_ s: ActiveSequence, logits: UnsafeMutablePointer<Float>) {
        let V = model.config.vocabSize
        // Broken weights or activations: this request fails; the scheduler and the others go on.
        if let e = Sampler.checkFinite(logits, vocab: V) {
            fail(s, .nonFiniteOutput(e))
            return
        }
        var lp: TokenLogprob?
        if let k = s.request.logprobs {
            // Log-probabilities of the raw model distribution (before penalties and temperature).
            scratch.withUnsafeMutableBufferPointer { buf in buf.baseAddress!.update(from: logits, count: V) }
            lp = TokenLogprob(token: "", id: -1, logprob: 0, top: topLogprobs(k))
        }
        let tok = s.sampler.sample(logits, vocab: V, history: s.history)
        s.history.append(tok)
        s.generated += 1
        metrics?.generatedTokens.increment()
        if var l = lp {
            l.id = tok
            l.token = tokenizer.decode([tok])
            l.logprob = Self.reportable(scratch[tok] - lse)
            s.pendingLogprobs.append(l)
        }
        if !s.request.ignoreEOS && stopTokens.contains(tok) {
            let rest = s.stop.push(s.decoder.flush()).text + s.stop.flush()
            emit(s, rest)
            finish(s, .stop)
            return
        }
        let (text, stopped) = s.stop.push(s.decoder.push(tok))
        if stopped { emit(s, text); finish(s, .stop); return }
        if s.generated >= s.request.maxTokens || s.cache!.length >= s.cache!.capacity {
            let tail = s.stop.push(s.decoder.flush())
            emit(s, text + tail.text + (tail.stopped ? "" : s.stop.flush()))
            finish(s, tail.stopped ? .stop : .length)
            return
        }
        emit(s, text)
        s.lastToken = tok
        s.hasInput = true
    }

    private var lse: Float = 0

    /// Log-softmax of `scratch` (sets `lse`) and its `k` largest entries.
    private func topLogprobs(_ k: Int) -> [(token: String, id: Int, logprob: Float)] {
        let V = scratch.count
        var m = -Float.infinity
        for x in scratch where x > m { m = x }
        var sum: Double = 0
        for x in scratch { sum += Double(expf(x - m)) }
        lse = m + Float(log(sum))
        guard k > 0 else { return [] }
        var best: [(id: Int, logit: Float)] = []
        best.reserveCapacity(k + 1)
        for i in 0..<V {
            let x = scratch[i]
            if best.count < k || x > best[best.count - 1].logit {
                var j = best.count
                if best.count == k { best.removeLast(); j = k - 1 }
                best.append((i, x))
                while j > 0 && best[j - 1].logit < x { best.swapAt(j, j - 1); j -= 1 }
            }
        }
        return best.map { (tokenizer.decode([$0.id]), $0.id, Self.reportable($0.logit - lse)) }
    }

    /// A log-probability JSON can carry: -infinity (a logit of -infinity) becomes -9999, as OpenAI reports
    /// impossible tokens.
    static func reportable(_ lp: Float) -> Float { lp.isFinite ? lp : -9999 }

    private func emit(_ s: ActiveSequence, _ text: String) {
        if text.isEmpty && s.pendingLogprobs.isEmpty { return }
        s.continuation.yield(.text(text, logprobs: s.pendingLogprobs))
        s.flag.yielded()
        s.pendingLogprobs.removeAll()
    }

    private func finish(_ s: ActiveSequence, _ reason: FinishReason) {
        guard !s.finished else { return }
        s.finished = true
        if !s.pendingLogprobs.isEmpty { s.continuation.yield(.text("", logprobs: s.pendingLogprobs)) }
        s.continuation.yield(.finished(reason, promptTokens: s.request.prompt.count, completionTokens: s.generated))
        s.continuation.finish()
        release(s)
    }

    private func fail(_ s: ActiveSequence, _ failure: GenerationFailure) {
        guard !s.finished else { return }
        s.finished = true
        s.continuation.yield(.failed(failure))
        s.continuation.finish()
        release(s)
    }

    private func release(_ s: ActiveSequence) {
        if let c = s.cache {
            c.reset()
            if freeCaches.count < maxBatch { freeCaches.append(c) }
            s.cache = nil
        }
    }
}

/// The state of one request inside the scheduler.
final class ActiveSequence {
    let id: Int
    let request: GenerationRequest
    let continuation: AsyncStream<GenerationEvent>.Continuation
    let flag: CancelFlag
    var cache: KVCache?
    var sampler: Sampler
    var history: [Int]
    var prefilled = 0
    var generated = 0
    var lastToken = 0
    var hasInput = false
    var finished = false
    var admitted: UInt64?
    var prefillEnd: UInt64?
    /// Uptime in nanoseconds after which the request fails (from its time limit).
    let deadline: UInt64?
    let decoder: StreamingDecoder
    var stop: StopMatcher
    var pendingLogprobs: [TokenLogprob] = []

    init(
        id: Int, request: GenerationRequest, continuation: AsyncStream<GenerationEvent>.Continuation,
        flag: CancelFlag, tokenizer: Tokenizer
    ) {
        self.id = id
        self.request = request
        self.continuation = continuation
        self.flag = flag
        sampler = Sampler(request.sampling)
        history = request.prompt
        decoder = StreamingDecoder(tokenizer: tokenizer, skipSpecialTokens: true)
        stop = StopMatcher(request.stop)
        let now = DispatchTime.now().uptimeNanoseconds
        admitted = now
        deadline = request.timeLimit.map { now &+ UInt64(min(max(0, $0), 1e9) * 1e9) }
    }
}

extension CancelFlag {
    /// Sets the flag from the scheduler thread (no wake-up needed).
    func cancelFromScheduler() { _ = set() }
}
