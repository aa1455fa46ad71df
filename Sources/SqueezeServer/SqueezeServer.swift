import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import ServiceLifecycle
import SqueezeCore
import SqueezeModels
import SqueezeTokenizer

/// Settings of `squeeze serve`.
public struct ServerConfiguration: Sendable {
    /// Address to bind (loopback by default).
    public var host = "127.0.0.1"
    /// TCP port (0: any free port).
    public var port = 8080
    /// If set, every route but `/health` needs `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// Most sequences decoded together.
    public var maxBatch = 8
    /// Positions per sequence, prompt plus output (capped at the model's own limit).
    public var context = 2048
    /// Most requests waiting for a slot; more get 503 with Retry-After.
    public var queueLimit = 64
    /// Largest request body in bytes; larger gets 413.
    public var maxBodyBytes = 1 << 20
    /// Prompt tokens prefilled per scheduler step.
    public var prefillChunk = 256
    /// The model id reported by `/v1/models` and in responses (default: the file name).
    public var modelName: String?
    /// Seconds to let in-flight requests finish after SIGINT/SIGTERM before cancelling them.
    public var shutdownGrace = 30.0
    /// Seconds a connection may sit without a complete request head (or between requests) before
    /// it is closed.
    public var idleTimeout = 60.0
    /// Seconds from a request's head to the end of its body; a client trickling its body is cut off.
    public var readTimeout = 30.0
    /// Most open connections; further ones wait in the listen backlog until one closes.
    public var maxConnections = 512
    /// Seconds a generation request may take, from arrival to its last token (then 504).
    public var requestTimeout = 600.0
    /// Seconds a streaming client may leave its output unread before its generation is cancelled
    /// and its batch slot freed.
    public var slowReaderTimeout = 30.0
    /// Parse special-token text (`<|im_start|>`) in chat message contents as control tokens.
    /// Off by default: a user could otherwise forge roles and turns.
    public var allowSpecialTokensInContent = false

    public init(
        host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, maxBatch: Int = 8,
        context: Int = 2048, queueLimit: Int = 64, maxBodyBytes: Int = 1 << 20, prefillChunk: Int = 256,
        modelName: String? = nil, shutdownGrace: Double = 30
    ) {
        self.host = host; self.port = port; self.apiKey = apiKey; self.maxBatch = maxBatch
        self.context = context; self.queueLimit = queueLimit; self.maxBodyBytes = maxBodyBytes
        self.prefillChunk = prefillChunk; self.modelName = modelName; self.shutdownGrace = shutdownGrace
    }

    /// Whether `host` only accepts connections from this machine.
    public var bindsLoopbackOnly: Bool {
        let h = host.lowercased()
        return h == "localhost" || h == "::1" || h == "[::1]" || h.hasPrefix("127.")
    }

    /// Checks the limits; the error names the setting.
    public func validate() throws {
        guard (0...65535).contains(port) else { throw ServerError.invalidConfiguration("port \(port) is out of range") }
        guard maxBodyBytes >= 1024 else { throw ServerError.invalidConfiguration("max body must be >= 1024 bytes") }
        if let k = apiKey, k.isEmpty {
            throw ServerError.invalidConfiguration("the API key is empty (it would accept a bare 'Bearer ' header)")
        }
        for (name, v) in [
            ("idle timeout", idleTimeout), ("read timeout", readTimeout), ("request timeout", requestTimeout),
            ("slow reader timeout", slowReaderTimeout),
        ] where !(v > 0 && v <= 1e6) {
            throw ServerError.invalidConfiguration("\(name) must be in (0, 1e6] seconds, got \(v)")
        }
        guard maxConnections >= 1 else { throw ServerError.invalidConfiguration("max connections must be >= 1") }
    }
}

/// An OpenAI-compatible HTTP server for one model, with continuous batching.
///
/// Routes: `GET /health`, `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`
/// (both with `stream: true` as server-sent events) and `GET /metrics` (Prometheus text format).
public final class SqueezeServer: Sendable {
    public let configuration: ServerConfiguration
    /// The id clients name the model by.
    public let modelID: String
    public let tokenizer: Tokenizer
    public let scheduler: BatchScheduler
    public let metrics: ServerMetrics
    let created = Int(Date().timeIntervalSince1970)

    /// A server for an already loaded model and tokenizer; starts the scheduler thread.
    public init(model: DecoderModel, tokenizer: Tokenizer, modelID: String, configuration: ServerConfiguration) throws {
        try configuration.validate()
        var config = configuration
        config.context = min(configuration.context, model.config.contextLimit ?? configuration.context)
        self.configuration = config
        self.modelID = configuration.modelName ?? modelID
        self.tokenizer = tokenizer
        metrics = ServerMetrics(maxBatch: config.maxBatch)
        scheduler = try BatchScheduler(
            model: model, tokenizer: tokenizer, maxBatch: config.maxBatch, context: config.context,
            queueLimit: config.queueLimit, prefillChunk: config.prefillChunk,
            slowReaderTimeout: config.slowReaderTimeout, metrics: metrics)
    }

    /// Loads the model and its tokenizer from `modelPath` (anything `ModelLoader.load` accepts).
    public static func load(
        modelPath: String, configuration: ServerConfiguration,
        options: LoadOptions = LoadOptions()
    ) throws -> SqueezeServer {
        let model: DecoderModel, tok: Tokenizer
        do { model = try ModelLoader.load(path: modelPath, options: options) } catch {
            throw ServerError.loadFailed(path: modelPath, detail: "\(error)")
        }
        do { tok = try Tokenizer.load(path: ModelLoader.tokenizerPath(for: modelPath)) } catch {
            throw ServerError.loadFailed(path: modelPath, detail: "\(error)")
        }
        var name = URL(fileURLWithPath: modelPath).lastPathComponent
        if name.hasSuffix(".gguf") { name = String(name.dropLast(5)) }
        return try SqueezeServer(model: model, tokenizer: tok, modelID: name, configuration: configuration)
    }

    /// The Hummingbird application serving the routes on `configuration.host:port`.
    /// `onServerRunning` receives the bound port (useful with port 0).
    public func makeApplication(
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorAndAuthMiddleware(apiKey: configuration.apiKey, metrics: metrics))
        router.get("/health") { _, _ -> Response in
            self.json([
                "status": "ok", "model": self.modelID,
                "queue": String(self.scheduler.queueDepth), "active": String(self.scheduler.activeSequences),
            ])
        }
        router.get("/v1/models") { _, _ -> Response in
            try self.encode(ModelList(data: [.init(id: self.modelID, created: self.created)]))
        }
        router.get("/metrics") { _, _ -> Response in
            self.metrics.active(self.scheduler.activeSequences)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: self.metrics.render())))
        }
        router.post("/v1/completions") { request, _ -> Response in
            let body = try await self.readBody(request)
            let req = try self.decode(CompletionRequest.self, body)
            return try await self.completions(req, request: request)
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            let body = try await self.readBody(request)
            let req = try self.decode(ChatCompletionRequest.self, body)
            return try await self.chat(req, request: request)
        }
        let address = configuration.host
        let port = configuration.port
        let readTimeout = TimeAmount.nanoseconds(Int64(configuration.readTimeout * 1e9))
        let http = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestReadTimeoutHandler(timeout: readTimeout)],
            idleTimeout: .nanoseconds(Int64(configuration.idleTimeout * 1e9)))
        return Application(
            router: router, server: .http1(configuration: http),
            configuration: .init(
                address: .hostname(address, port: port), serverName: "squeeze",
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections)),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) })
    }

    /// Serves until SIGINT or SIGTERM: then stops accepting, lets in-flight requests finish for up
    /// to `shutdownGrace` seconds, cancels the rest, and returns.
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = makeApplication(onServerRunning: onServerRunning)
        let watcher = ShutdownWatcher(grace: configuration.shutdownGrace, scheduler: scheduler)
        watcher.install()
        defer { watcher.cancel() }
        try await app.runService()
        await stop(cancelInFlight: true)
    }

    /// Starts serving in the background and returns once the port is bound; `RunningServer.stop`
    /// ends it gracefully.
    public func start() async throws -> RunningServer {
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let app = makeApplication { port in cont.yield(port) }
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [], logger: app.logger))
        let task = Task {
            defer { cont.finish() }
            try await group.run()
        }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next() else {
            try await task.value
            throw ServerError.invalidConfiguration("the server stopped before binding \(configuration.host)")
        }
        return RunningServer(server: self, port: port, group: group, task: task)
    }

    /// Stops the scheduler (cancelling in-flight work if asked) and waits for its thread.
    public func stop(cancelInFlight: Bool) async {
        let s = scheduler
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                s.shutdown(cancelInFlight: cancelInFlight); c.resume()
            }
        }
    }

    // MARK: Helpers

    func json(_ d: [String: String]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: d, options: [.sortedKeys])) ?? Data()
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    func encode<T: Encodable>(_ v: T, closeConnection: Bool = false) throws -> Response {
        let enc = JSONEncoder()
        enc.outputFormatting = [.withoutEscapingSlashes]
        var headers: HTTPFields = [.contentType: "application/json"]
        // Watching for the client going away ends the connection after the reply: say so.
        if closeConnection { headers[.connection] = "close" }
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try enc.encode(v))))
    }

    /// Reads the body (not stored back into the request, so that the request can still watch
    /// for the client closing the connection).
    func readBody(_ request: Request) async throws -> ByteBuffer {
        let limit = configuration.maxBodyBytes
        if let cl = request.headers[.contentLength].flatMap({ Int($0) }), cl > limit {
            throw APIError.tooLarge("the request body is over the limit of \(limit) bytes")
        }
        do { return try await request.body.collect(upTo: limit) } catch let e as HTTPResponseError
            where e.status == .contentTooLarge
        {
            throw APIError.tooLarge("the request body is over the limit of \(limit) bytes")
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        do { return try decodeRequestBody(T.self, from: Data(buffer: body)) } catch let e as RequestDecodingError {
            throw APIError.invalid(e.message, param: e.param)
        }
    }
}

/// A server started by `SqueezeServer.start`.
public final class RunningServer: Sendable {
    public let server: SqueezeServer
    /// The bound TCP port.
    public let port: Int
    let group: ServiceGroup
    let task: Task<Void, Error>

    init(server: SqueezeServer, port: Int, group: ServiceGroup, task: Task<Void, Error>) {
        self.server = server; self.port = port; self.group = group; self.task = task
    }

    /// Cancels in-flight generations, then shuts the listener down gracefully: connections already
    /// accepted are served (or closed when idle) before it returns. Cancelling the serving task
    /// instead would drop accepted connections not yet handed to a handler, which SwiftNIO traps on
    /// (apple/swift-nio#2637). After `timeout` seconds the serving task is cancelled regardless;
    /// returns false then.
    @discardableResult
    public func stop(timeout: Double = 30) async -> Bool {
        await server.stop(cancelInFlight: true)
        await group.triggerGracefulShutdown()
        let task = self.task
        let watchdog = Task { () -> Bool in
            do { try await Task.sleep(nanoseconds: UInt64(timeout * 1e9)) } catch { return false }
            task.cancel()
            return true
        }
        _ = try? await task.value
        watchdog.cancel()
        return await !watchdog.value
    }
}

/// Turns every error into OpenAI's error JSON (no internal detail in 500s), checks the API key
/// (constant-time compare) and counts requests.
struct ErrorAndAuthMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let apiKey: [UInt8]?
    let metrics: ServerMetrics

    init(apiKey: String?, metrics: ServerMetrics) {
        self.apiKey = apiKey.map { Array($0.utf8) }
        self.metrics = metrics
    }

    static let knownRoutes: Set<String> = [
        "/health", "/v1/models", "/metrics", "/v1/completions", "/v1/chat/completions",
    ]

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let path = request.uri.path
        let route = Self.knownRoutes.contains(path) ? path : "other"
        let response: Response
        do {
            if let key = apiKey, path != "/health" {
                guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "),
                    constantTimeEqual(Array(auth.utf8.dropFirst(7)), key)
                else { throw APIError.unauthorized }
            }
            response = try await next(request, context)
        } catch let e as APIError {
            response = e.response
        } catch let e as HTTPResponseError {
            switch e.status.code {
            case 404 where Self.knownRoutes.contains(path): response = APIError.methodNotAllowed.response
            case 404: response = APIError.notFound("no route for \(request.method) \(path)").response
            case 405: response = APIError.methodNotAllowed.response
            case 413: response = APIError.tooLarge("the request body is over the limit").response
            case 400..<500: response = APIError.invalid("bad request").response
            default: response = APIError.internalError.response
            }
        } catch {
            FileHandle.standardError.write(
                Data("squeeze serve: internal error on \(request.method) \(path): \(error)\n".utf8))
            response = APIError.internalError.response
        }
        metrics.request(route: route, status: response.status.code)
        return response
    }
}

/// Compares two byte strings in time that depends only on their lengths.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
    if a.count != b.count { diff |= 1 }
    let n = max(a.count, b.count)
    for i in 0..<n {
        let x = i < a.count ? a[i] : 0, y = i < b.count ? b[i] : 0
        diff |= x ^ y
    }
    return diff == 0
}

/// Watches SIGINT/SIGTERM (alongside the server's own graceful shutdown): stops the scheduler
/// accepting work at once, and cancels in-flight requests after the grace period.
final class ShutdownWatcher: @unchecked Sendable {
    let grace: Double
    let scheduler: BatchScheduler
    var sources: [DispatchSourceSignal] = []
    let queue = DispatchQueue(label: "squeeze-shutdown")

    init(grace: Double, scheduler: BatchScheduler) { self.grace = grace; self.scheduler = scheduler }

    func install() {
        for sig in [SIGINT, SIGTERM] {
            let src = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            src.setEventHandler { [scheduler, grace, queue] in
                scheduler.stopAccepting()
                queue.asyncAfter(deadline: .now() + grace) { scheduler.cancelAll() }
            }
            src.resume()
            sources.append(src)
        }
    }

    func cancel() { for s in sources { s.cancel() }; sources.removeAll() }
}

/// Closes a connection whose request takes longer than `timeout` from its head to the end of its
/// body. The idle timeout restarts on every body chunk, so without this a client sending one byte
/// every few seconds would hold its connection (and a request handler) forever.
final class RequestReadTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    let timeout: TimeAmount
    var timer: Scheduled<Void>?

    init(timeout: TimeAmount) { self.timeout = timeout }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            timer?.cancel()
            let ctx = context
            timer = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: timeout) {
                ctx.close(promise: nil)
            }
        case .end:
            timer?.cancel()
            timer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }
}
