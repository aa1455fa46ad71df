import AsyncHTTPClient
import Foundation
import SqueezeModels
import SqueezeServer
import SqueezeTokenizer
import Testing

/// The real test model: $SQUEEZE_MODEL or the cache that `bash scripts/ci/fetch-test-model.sh` fills.
let testModelPath =
    ProcessInfo.processInfo.environment["SQUEEZE_MODEL"]
    ?? (NSHomeDirectory() + "/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf")
let haveTestModel = FileManager.default.fileExists(atPath: testModelPath)
let skipNote: Comment = "the test model is not cached; fetch it with `bash scripts/ci/fetch-test-model.sh`"

/// The model and tokenizer, loaded once for all tests.
final class Loaded: Sendable {
    let model: DecoderModel
    let tokenizer: Tokenizer
    init() throws {
        model = try ModelLoader.load(path: testModelPath)
        tokenizer = try Tokenizer.load(path: testModelPath)
    }
    static let shared = Result { try Loaded() }
}

/// A server on a random loopback port, with a real HTTP client.
final class TestServer: Sendable {
    let running: RunningServer
    var server: SqueezeServer { running.server }
    var port: Int { running.port }
    var base: String { "http://127.0.0.1:\(port)" }

    static func start(
        model: DecoderModel? = nil, _ configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> TestServer {
        let l = try Loaded.shared.get()
        var config = ServerConfiguration(host: "127.0.0.1", port: 0, maxBatch: 8, context: 512, queueLimit: 16)
        configure(&config)
        let server = try SqueezeServer(
            model: model ?? l.model, tokenizer: l.tokenizer, modelID: "test-model", configuration: config)
        return TestServer(running: try await server.start())
    }

    init(running: RunningServer) { self.running = running }

    func stop() async { await running.stop() }

    /// Sends a request; returns status, headers (lower-cased names) and body text.
    func send(
        _ method: String, _ path: String, json: Any? = nil, raw: String? = nil, key: String? = nil,
        timeout: Int64 = 120, closeConnection: Bool = true
    ) async throws -> (status: Int, headers: [String: String], body: String) {
        var req = HTTPClientRequest(url: base + path)
        req.method = .init(rawValue: method)
        // A fresh connection per request by default: a pooled connection may be one the server is
        // closing after an error or a timeout (the hostile-client tests provoke both).
        if closeConnection { req.headers.add(name: "Connection", value: "close") }
        if let key { req.headers.add(name: "Authorization", value: "Bearer \(key)") }
        if let json {
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(try JSONSerialization.data(withJSONObject: json))
        } else if let raw {
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(Data(raw.utf8))
        }
        let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(timeout))
        let body = try await resp.body.collect(upTo: 16 << 20)
        var headers: [String: String] = [:]
        for h in resp.headers { headers[h.name.lowercased()] = h.value }
        return (Int(resp.status.code), headers, String(buffer: body))
    }

    /// POSTs JSON and parses a JSON object reply.
    func post(
        _ path: String, _ json: Any, key: String? = nil, closeConnection: Bool = true
    ) async throws -> (status: Int, object: [String: Any]) {
        let r = try await send("POST", path, json: json, key: key, closeConnection: closeConnection)
        return (r.status, jsonObject(r.body))
    }

    /// POSTs a streaming request and returns the `data:` payloads (the last being "[DONE]").
    func stream(
        _ path: String, _ json: [String: Any], key: String? = nil, closeConnection: Bool = true
    ) async throws -> (status: Int, contentType: String, events: [String]) {
        var body = json
        body["stream"] = true
        let r = try await send("POST", path, json: body, key: key, closeConnection: closeConnection)
        return (r.status, r.headers["content-type"] ?? "", parseSSE(r.body))
    }
}

/// Splits a server-sent-events body into its `data:` payloads.
func parseSSE(_ text: String) -> [String] {
    text.components(separatedBy: "\n\n").compactMap { block -> String? in
        let lines = block.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { String($0.dropFirst(6)) }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }
}

func jsonObject(_ s: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
}

extension Dictionary where Key == String, Value == Any {
    var choices: [[String: Any]] { self["choices"] as? [[String: Any]] ?? [] }
    var usage: [String: Int] { self["usage"] as? [String: Int] ?? [:] }
    var error: [String: Any] { self["error"] as? [String: Any] ?? [:] }
    var firstText: String { choices.first?["text"] as? String ?? "" }
    var chatContent: String { (choices.first?["message"] as? [String: Any])?["content"] as? String ?? "" }
    var finishReason: String? { choices.first?["finish_reason"] as? String }
}
