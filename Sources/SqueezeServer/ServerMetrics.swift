import Foundation
import Prometheus

/// The server's Prometheus metrics (one registry per server, served at `GET /metrics`).
public final class ServerMetrics: Sendable {
    /// The registry all metrics live in.
    public let registry = PrometheusCollectorRegistry()
    /// Prompt tokens of admitted requests.
    let promptTokens: Counter
    /// Tokens generated (all requests).
    let generatedTokens: Counter
    /// Requests waiting for a batch slot.
    let queueDepth: Gauge
    /// Sequences decoded per step.
    let batchSize: ValueHistogram
    /// Seconds per batched decode step.
    let decodeStep: DurationHistogram
    /// Seconds from a request's arrival in the queue to its first token.
    let timeToFirstToken: DurationHistogram

    static let latencyBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60),
    ]

    /// Creates the metrics; `maxBatch` sets the batch-size buckets.
    public init(maxBatch: Int) {
        promptTokens = registry.makeCounter(name: "squeeze_prompt_tokens_total", help: "Prompt tokens of accepted requests.")
        generatedTokens = registry.makeCounter(name: "squeeze_generated_tokens_total", help: "Tokens generated.")
        queueDepth = registry.makeGauge(name: "squeeze_queue_depth", help: "Requests waiting for a batch slot.")
        var b: [Double] = []
        var x = 1
        while x < maxBatch { b.append(Double(x)); x *= 2 }
        b.append(Double(maxBatch))
        batchSize = registry.makeValueHistogram(name: "squeeze_batch_size", buckets: b, help: "Sequences per batched decode step.")
        decodeStep = registry.makeDurationHistogram(name: "squeeze_decode_step_seconds", buckets: Self.latencyBuckets,
                                                    help: "Duration of one batched decode step.")
        timeToFirstToken = registry.makeDurationHistogram(name: "squeeze_time_to_first_token_seconds", buckets: Self.latencyBuckets,
                                                          help: "Time from queueing to the first generated token.")
        _ = registry.makeGauge(name: "squeeze_active_sequences", help: "Sequences being prefilled or decoded.")
    }

    /// Counts a finished HTTP request.
    func request(route: String, status: Int) {
        registry.makeCounter(name: "squeeze_http_requests_total", labels: [("route", route), ("status", String(status))],
                             help: "HTTP requests by route and status.").increment()
    }

    /// Records a request's total latency.
    func latency(route: String, seconds: Double) {
        registry.makeDurationHistogram(name: "squeeze_request_duration_seconds", labels: [("route", route)],
                                       buckets: Self.latencyBuckets, help: "Request latency (to the last byte of output).")
            .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Sets the active sequence gauge.
    func active(_ n: Int) {
        registry.makeGauge(name: "squeeze_active_sequences", help: "Sequences being prefilled or decoded.").set(Double(n))
    }

    /// The text exposition format.
    public func render() -> String { registry.emitToString() }
}
