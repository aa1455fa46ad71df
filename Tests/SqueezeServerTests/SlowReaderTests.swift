import Foundation
import SqueezeModels
import SqueezeServer
import Testing

/// The scheduler's slow-reader rule on the real test model: a generation whose events wait unread
/// longer than the timeout is cancelled and its batch slot goes to the next request, while a
/// request that merely waited in the queue is not mistaken for a slow reader.
@Suite(.serialized, .enabled(if: haveTestModel, skipNote))
struct SlowReaderTests {
    static func last(_ h: GenerationHandle) async -> GenerationEvent? {
        var last: GenerationEvent?
        for await e in h.events { last = e }
        return last
    }

    @Test func clientThatStopsReadingIsCancelledAndItsSlotFreed() async throws {
        let l = try Loaded.shared.get()
        let s = try BatchScheduler(
            model: l.model, tokenizer: l.tokenizer, maxBatch: 1, context: 512, queueLimit: 4, slowReaderTimeout: 0.3)
        defer { s.shutdown(cancelInFlight: true) }
        let prompt = l.tokenizer.encode("Once upon a time, in a small village,")
        // Nobody reads this one's events.
        let stalled = try s.submit(GenerationRequest(prompt: prompt, maxTokens: 400, ignoreEOS: true))
        // Queued behind it (one slot), read as fast as it comes; it waits longer than the timeout
        // before its first token.
        let reader = try s.submit(GenerationRequest(prompt: prompt, maxTokens: 24, ignoreEOS: true))
        guard case let .finished(why, _, n)? = await Self.last(reader) else {
            Issue.record("the reader did not finish")
            return
        }
        #expect(why == .length && n == 24, "the reader ended with \(why) after \(n) tokens")
        guard case let .finished(stalledWhy, _, stalledN)? = await Self.last(stalled) else {
            Issue.record("the stalled generation did not finish")
            return
        }
        #expect(
            stalledWhy == .cancelled && stalledN < 400, "the stalled one ended with \(stalledWhy) after \(stalledN)")
    }
}
