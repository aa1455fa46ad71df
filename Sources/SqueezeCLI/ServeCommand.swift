import ArgumentParser
import Foundation
import SqueezeModels
import SqueezeServer

/// `squeeze serve`: an OpenAI-compatible HTTP server with continuous batching.
/// Blocks until SIGINT/SIGTERM, then drains in-flight requests and exits.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible HTTP API (completions and chat, streaming, metrics).")

    @Option(help: "Model: a .gguf file or a model directory. Default: $SQUEEZE_MODEL or the cached test model.")
    var model: String?
    @Option(help: "Address to bind (loopback by default).")
    var host = "127.0.0.1"
    @Option(help: "TCP port (0: any free port).")
    var port = 8080
    @Option(help: "Require 'Authorization: Bearer KEY' on every route but /health. Default: $SQUEEZE_API_KEY if set.")
    var apiKey: String?
    @Option(help: "Most sequences decoded together.")
    var maxBatch = 8
    @Option(help: "Positions per sequence (prompt plus output).")
    var context = 2048
    @Option(help: "Most requests waiting for a slot (more get 503).")
    var queue = 64
    @Option(help: "Largest request body in bytes (more get 413).")
    var maxBody = 1 << 20
    @Option(help: "Model id reported to clients (default: the file name).")
    var name: String?
    @Option(help: "Seconds to let in-flight requests finish on SIGINT/SIGTERM before cancelling them.")
    var shutdownGrace = 30.0
    @Option(help: "LM head storage: stored (as in the file) or q8 (8-bit, quantized at load; faster decoding).")
    var head = "stored"
    @Option(help: ModelOpening.kvCacheHelp)
    var kvCache = "f16"

    func validate() throws {
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be >= 1") }
        guard context >= 16 else { throw ValidationError("--context must be >= 16") }
        guard queue >= 0 else { throw ValidationError("--queue must be >= 0") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard HeadFormat(rawValue: head) != nil else { throw ValidationError("--head must be stored or q8") }
        _ = try ModelOpening.kvCache(kvCache)
    }

    func run() throws {
        let path = try model ?? DefaultModel.requirePath()
        let key = apiKey ?? ProcessInfo.processInfo.environment["SQUEEZE_API_KEY"]
        let config = ServerConfiguration(host: host, port: port, apiKey: key, maxBatch: maxBatch, context: context,
                                         queueLimit: queue, maxBodyBytes: maxBody, modelName: name, shutdownGrace: shutdownGrace)
        let server = try SqueezeServer.load(modelPath: path, configuration: config,
                                           options: LoadOptions(head: HeadFormat(rawValue: head) ?? .stored,
                                                               kvCache: try ModelOpening.kvCache(kvCache)))
        let host = self.host
        let result = ResultBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { port in
                    print("squeeze serve: \(server.modelID) on http://\(host):\(port) (max batch \(config.maxBatch), context \(server.configuration.context), queue \(config.queueLimit))")
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
