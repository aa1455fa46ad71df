import ArgumentParser
import Foundation
import SqueezeModels
import SqueezeServer

/// `squeeze serve`: an OpenAI-compatible HTTP server with continuous batching.
/// Blocks until SIGINT/SIGTERM, then drains in-flight requests and exits.
public struct ServeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible HTTP API (completions and chat, streaming, metrics).")

    @Option(help: "Model: a .gguf file or a model directory. Default: $SQUEEZE_MODEL or the cached test model.")
    public var model: String?
    @Option(help: "Address to bind (loopback by default).")
    public var host = "127.0.0.1"
    @Option(help: "TCP port (0: any free port).")
    public var port: UInt16 = 8080
    @Option(help: "Require 'Authorization: Bearer KEY' on every route but /health. Default: $SQUEEZE_API_KEY if set.")
    public var apiKey: String?
    @Option(help: "Most sequences decoded together.")
    public var maxBatch = PositiveInt(8)
    @Option(help: "Positions per sequence (prompt plus output), at least 16.")
    public var context = PositiveInt(2048)
    @Option(help: "Most requests waiting for a slot (more get 503).")
    public var queue = NonNegativeInt(64)
    @Option(help: "Largest request body in bytes (more get 413).")
    public var maxBody = PositiveInt(1 << 20)
    @Option(help: "Model id reported to clients (default: the file name).")
    public var name: String?
    @Option(help: "Seconds to let in-flight requests finish on SIGINT/SIGTERM before cancelling them.")
    public var shutdownGrace = 30.0
    @Option(help: "LM head storage: stored (as in the file) or q8 (8-bit, quantized at load; faster decoding).")
    public var head: HeadFormat = .stored
    @Option(help: ModelOpening.kvCacheHelp)
    public var kvCache: KVCachePrecision = .f16

    public init() {}

    public func validate() throws {
        // The server needs room for a prompt and an answer in each sequence.
        if context.value < 16 { throw ValidationError("--context must be at least 16, got \(context.value)") }
        if !(shutdownGrace >= 0) {
            throw ValidationError("--shutdown-grace must be 0 or more seconds, got \(shutdownGrace)")
        }
    }

    /// The server's configuration for these options.
    public func serverConfiguration(apiKey key: String?) -> ServerConfiguration {
        ServerConfiguration(
            host: host, port: Int(port), apiKey: key, maxBatch: maxBatch.value, context: context.value,
            queueLimit: queue.value, maxBodyBytes: maxBody.value, modelName: name, shutdownGrace: shutdownGrace)
    }

    public func run() throws {
        let path = try model ?? DefaultModel.requirePath()
        let key = apiKey ?? ProcessInfo.processInfo.environment["SQUEEZE_API_KEY"]
        let config = serverConfiguration(apiKey: key)
        let server = try SqueezeServer.load(
            modelPath: path, configuration: config,
            options: LoadOptions(head: head, kvCache: kvCache))
        let host = self.host
        let result = ResultBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { port in
                    print(
                        "squeeze serve: \(server.modelID) on http://\(host):\(port) (max batch \(config.maxBatch), context \(server.configuration.context), queue \(config.queueLimit))"
                    )
                    fflush(stdout)
                }
            } catch {
                result.error = error
            }
            done.signal()
        }
        done.wait()
        if let e = result.error { throw e }
    }
}

/// Carries the server's outcome from its task to the blocked command.
private final class ResultBox: @unchecked Sendable {
    var error: Error?
}
