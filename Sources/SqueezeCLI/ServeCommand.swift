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
    @Option(
        help:
            "Require 'Authorization: Bearer KEY' on every route but /health (visible in ps: prefer --api-key-file or $SQUEEZE_API_KEY)."
    )
    public var apiKey: String?
    @Option(help: "Read the API key from this file (surrounding whitespace and newlines are dropped).")
    public var apiKeyFile: String?
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
    @Option(help: "Seconds a connection may wait without a complete request head (or between requests).")
    public var idleTimeout = 60.0
    @Option(help: "Seconds from a request's head to the end of its body (a client trickling its body is cut off).")
    public var readTimeout = 30.0
    @Option(help: "Seconds a generation request may take from arrival to its last token (then 504).")
    public var requestTimeout = 600.0
    @Option(help: "Seconds a streaming client may leave output unread before its generation is cancelled.")
    public var slowReaderTimeout = 30.0
    @Option(help: "Most open connections (further ones wait until one closes).")
    public var maxConnections = PositiveInt(512)
    @Flag(help: "Parse special-token text such as <|im_start|> in chat message contents as control tokens.")
    public var allowSpecialTokensInContent = false

    public init() {}

    public func validate() throws {
        // The server needs room for a prompt and an answer in each sequence.
        if context.value < 16 { throw ValidationError("--context must be at least 16, got \(context.value)") }
        if !(shutdownGrace >= 0) {
            throw ValidationError("--shutdown-grace must be 0 or more seconds, got \(shutdownGrace)")
        }
        for (flag, v) in [
            ("--idle-timeout", idleTimeout), ("--read-timeout", readTimeout), ("--request-timeout", requestTimeout),
            ("--slow-reader-timeout", slowReaderTimeout),
        ] where !(v > 0 && v <= 1e6) {
            throw ValidationError("\(flag) must be more than 0 and at most 1e6 seconds, got \(v)")
        }
        if apiKey != nil && apiKeyFile != nil {
            throw ValidationError("give --api-key or --api-key-file, not both")
        }
        if apiKey?.isEmpty == true { throw ValidationError("--api-key is empty") }
    }

    /// The API key: `--api-key`, else the contents of `--api-key-file`, else `SQUEEZE_API_KEY`;
    /// nil when none is given. An empty key is an error (it would accept a bare `Bearer ` header).
    public func resolveAPIKey(environment: [String: String]) throws -> String? {
        if let k = apiKey { return k }
        if let f = apiKeyFile {
            guard let data = FileManager.default.contents(atPath: f) else {
                throw ValidationError("--api-key-file: cannot read '\(f)'")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ValidationError("--api-key-file: '\(f)' is not UTF-8 text")
            }
            let k = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if k.isEmpty { throw ValidationError("--api-key-file: '\(f)' holds an empty key") }
            return k
        }
        if let k = environment["SQUEEZE_API_KEY"] {
            if k.isEmpty { throw ValidationError("SQUEEZE_API_KEY is set but empty") }
            return k
        }
        return nil
    }

    /// The server's configuration for these options.
    public func serverConfiguration(apiKey key: String?) -> ServerConfiguration {
        var c = ServerConfiguration(
            host: host, port: Int(port), apiKey: key, maxBatch: maxBatch.value, context: context.value,
            queueLimit: queue.value, maxBodyBytes: maxBody.value, modelName: name, shutdownGrace: shutdownGrace)
        c.idleTimeout = idleTimeout
        c.readTimeout = readTimeout
        c.requestTimeout = requestTimeout
        c.slowReaderTimeout = slowReaderTimeout
        c.maxConnections = maxConnections.value
        c.allowSpecialTokensInContent = allowSpecialTokensInContent
        return c
    }

    public func run() throws {
        let path = try model ?? DefaultModel.requirePath()
        let key = try resolveAPIKey(environment: ProcessInfo.processInfo.environment)
        let config = serverConfiguration(apiKey: key)
        if key == nil && !config.bindsLoopbackOnly {
            FileHandle.standardError.write(
                Data(
                    "squeeze serve: warning: listening on \(host) without an API key; anyone who can reach it can use the model (set --api-key-file or SQUEEZE_API_KEY)\n"
                        .utf8))
        }
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
