import Foundation

// Foundation only (no HTTP types), so that the fuzz harness can build it alone.

/// A request body the server cannot use, naming the field at fault (answered as a 400).
public struct RequestDecodingError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong, for the client.
    public var message: String
    /// The field at fault (`temperature`, `messages[0].content`), if any.
    public var param: String?

    public init(_ message: String, param: String? = nil) {
        self.message = message
        self.param = param
    }

    public var description: String { message + (param.map { " (param \($0))" } ?? "") }
}

/// Decodes an OpenAI request body: it must be a JSON object (nesting is bounded by Foundation's
/// parser), then each known field must have its type; unknown fields are ignored.
public func decodeRequestBody<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    guard (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) is [String: Any] else {
        throw RequestDecodingError("the request body is not a valid JSON object")
    }
    do { return try JSONDecoder().decode(T.self, from: data) } catch let e as DecodingError {
        throw RequestDecodingError.fromDecoding(e)
    }
}

extension RequestDecodingError {
    /// Maps a decoding error to a message naming the field.
    static func fromDecoding(_ e: DecodingError) -> RequestDecodingError {
        func path(_ p: [CodingKey]) -> String {
            var s = ""
            for k in p {
                if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
            }
            return s
        }
        switch e {
        case let .keyNotFound(k, ctx):
            let p = path(ctx.codingPath + [k])
            return .init("'\(p)' is required", param: p)
        case let .typeMismatch(t, ctx):
            let p = path(ctx.codingPath)
            return .init("'\(p)' has the wrong type (expected \(typeName(t)))", param: p)
        case let .valueNotFound(t, ctx):
            let p = path(ctx.codingPath)
            return .init("'\(p)' must not be null (expected \(typeName(t)))", param: p)
        case let .dataCorrupted(ctx):
            let p = path(ctx.codingPath)
            return .init(
                p.isEmpty ? "the request body is not valid JSON" : "'\(p)': \(ctx.debugDescription)",
                param: p.isEmpty ? nil : p)
        @unknown default:
            return .init("the request body could not be read")
        }
    }

    static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is String.Type: return "a string"
        case is Int.Type, is Int64.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default:
            let n = "\(t)"
            if n.hasPrefix("Array") { return "an array" }
            if n.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }
}

/// Limits on stop strings: each generated token is matched against every stop string, so their
/// count and length bound the work per token.
public enum StopStringLimits {
    /// Most stop strings per request.
    public static let count = 16
    /// Longest stop string, in Unicode scalars.
    public static let length = 256

    /// Refuses more than `count` stop strings or one longer than `length`, naming it.
    public static func check(_ stop: [String]) throws {
        if stop.count > count {
            throw RequestDecodingError("at most \(count) stop strings are supported", param: "stop")
        }
        if let i = stop.firstIndex(where: { $0.unicodeScalars.count > length }) {
            throw RequestDecodingError("stop strings are at most \(length) characters long", param: "stop[\(i)]")
        }
    }
}
