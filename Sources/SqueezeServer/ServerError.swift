import Foundation
import Hummingbird

/// An error answered to a client in OpenAI's error shape:
/// `{"error": {"message", "type", "param", "code"}}` with an HTTP status.
public struct APIError: Error, CustomStringConvertible, Sendable, Equatable {
    /// HTTP status code.
    public var status: Int
    /// OpenAI error type (`invalid_request_error`, `authentication_error`, ...).
    public var type: String
    /// Human-readable message. Never carries internal detail for 5xx errors.
    public var message: String
    /// The request field at fault, if any (`temperature`, `messages[0].content`).
    public var param: String?
    /// A short machine code (`invalid_api_key`, `model_not_found`, ...).
    public var code: String?
    /// Seconds after which to retry (503 only), sent as `Retry-After`.
    public var retryAfter: Int?

    public init(
        status: Int, type: String, message: String, param: String? = nil, code: String? = nil, retryAfter: Int? = nil
    ) {
        self.status = status; self.type = type; self.message = message
        self.param = param; self.code = code; self.retryAfter = retryAfter
    }

    public var description: String { "\(status) \(type): \(message)" + (param.map { " (param \($0))" } ?? "") }

    /// 400 naming the parameter at fault.
    public static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, type: "invalid_request_error", message: message, param: param, code: code)
    }
    /// 401 for a missing or wrong API key.
    public static let unauthorized = APIError(
        status: 401, type: "authentication_error",
        message: "missing or invalid API key (send 'Authorization: Bearer KEY')",
        code: "invalid_api_key")
    /// 404 for an unknown route.
    public static func notFound(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 404, type: "not_found_error", message: message, param: param, code: code)
    }
    /// 405 for a known route with another method.
    public static let methodNotAllowed = APIError(
        status: 405, type: "invalid_request_error", message: "method not allowed")
    /// 413 for a body or prompt over the limit.
    public static func tooLarge(_ message: String, param: String? = nil) -> APIError {
        APIError(status: 413, type: "invalid_request_error", message: message, param: param, code: "request_too_large")
    }
    /// 503 when the queue is full or the server is stopping.
    public static func overloaded(_ message: String, retryAfter: Int = 1) -> APIError {
        APIError(status: 503, type: "server_error", message: message, code: "server_overloaded", retryAfter: retryAfter)
    }
    /// 500 with no internal detail.
    public static let internalError = APIError(status: 500, type: "server_error", message: "internal server error")

    /// The JSON body.
    public var json: Data {
        struct Body: Encodable {
            struct Inner: Encodable {
                let message: String, type: String, param: String?, code: String?
                enum CodingKeys: String, CodingKey { case message, type, param, code }
                func encode(to e: Encoder) throws {
                    var c = e.container(keyedBy: CodingKeys.self)
                    try c.encode(message, forKey: .message); try c.encode(type, forKey: .type)
                    try c.encode(param, forKey: .param); try c.encode(code, forKey: .code)
                }
            }
            let error: Inner
        }
        return (try? JSONEncoder().encode(Body(error: .init(message: message, type: type, param: param, code: code))))
            ?? Data()
    }

    /// The HTTP response.
    public var response: Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let r = retryAfter { headers[.retryAfter] = String(r) }
        if status == 401 { headers[.wwwAuthenticate] = "Bearer" }
        return Response(
            status: HTTPResponse.Status(code: status), headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: json)))
    }
}

/// Errors of setting up or running the server (not sent to clients).
public enum ServerError: Error, CustomStringConvertible, Sendable {
    /// A configuration value is out of range.
    case invalidConfiguration(String)
    /// The model or tokenizer could not be loaded.
    case loadFailed(path: String, detail: String)
    /// The scheduler is not accepting work.
    case queueFull(limit: Int)
    /// The server is shutting down.
    case shuttingDown

    public var description: String {
        switch self {
        case let .invalidConfiguration(s): return "invalid server configuration: \(s)"
        case let .loadFailed(p, d): return "cannot load \(p): \(d)"
        case let .queueFull(l): return "the request queue is full (\(l) waiting)"
        case .shuttingDown: return "the server is shutting down"
        }
    }
}
