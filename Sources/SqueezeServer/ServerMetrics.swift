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

    /// The metric `squeeze_<name>_<unit>` (no unit suffix when `unit` is empty) with its help text.
    static func metric(_ name: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "squeeze", metricName: name, unitName: unit, helpText: help)
    }
    static let activeSequences = metric("active_sequences", "", "Sequences being prefilled or decoded.")

    /// Creates the metrics; `maxBatch` sets the batch-size buckets.
    public init(maxBatch: Int) {
        promptTokens = registry.makeCounter(
            descriptor: Self.metric("prompt_tokens", "total", "Prompt tokens of accepted requests."))
        generatedTokens = registry.makeCounter(
            descriptor: Self.metric("generated_tokens", "total", "Tokens generated."))
        queueDepth = registry.makeGauge(
            descriptor: Self.metric("queue_depth", "", "Requests waiting for a batch slot."))
        var b: [Double] = []
        var x = 1
        while x < maxBatch { b.append(Double(x)); x *= 2 }
        b.append(Double(maxBatch))
        batchSize = registry.makeValueHistogram(
            descriptor: Self.metric("batch_size", "", "Sequences per batched decode step."), buckets: b)
        decodeStep = registry.makeDurationHistogram(
            descriptor: Self.metric("decode_step", "seconds", "Duration of one batched decode step."),
            buckets: Self.latencyBuckets)
        timeToFirstToken = registry.makeDurationHistogram(
            descriptor: Self.metric(
                "time_to_first_token", "seconds", "Time from queueing to the first generated token."),
            buckets: Self.latencyBuckets)
        _ = registry.makeGauge(descriptor: Self.activeSequences)
    }

    /// Counts a finished HTTP request.
    func request(route: String, status: Int) {
        registry.makeCounter(
            descriptor: Self.metric("http_requests", "total", "HTTP requests by route and status."),
            labels: [("route", route), ("status", String(status))]
        ).increment()
    }

    /// Records a request's total latency.
    func latency(route: String, seconds: Double) {
        registry.makeDurationHistogram(
            descriptor: Self.metric("request_duration", "seconds", "Request latency (to the last byte of output)."),
            labels: [("route", route)], buckets: Self.latencyBuckets
        )
        .recordNanoseconds(Int64(seconds * 1e9))
    }

    /// Sets the active sequence gauge.
    func active(_ n: Int) {
        registry.makeGauge(descriptor: Self.activeSequences).set(Double(n))
    }

    /// The text exposition format.
    public func render() -> String { registry.emitToString() }
}
