import Foundation

/// Errors raised while reading a JSON config file (`config.json`, `quant_config.json`, ...). Each
/// names the file and, where it applies, the field.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    /// The file cannot be read.
    case unreadable(path: String, detail: String)
    /// A required field is absent (`field` includes the nesting prefix, e.g. `rope_parameters.factor`).
    case missingField(file: String, field: String)
    /// A field has the wrong type or an unusable value.
    case invalidField(file: String, field: String, detail: String)

    public var description: String {
        switch self {
        case let .unreadable(p, d): return "\(p): cannot read the config: \(d)"
        case let .missingField(f, k): return "\(f): missing config field '\(k)'"
        case let .invalidField(f, k, d): return "\(f): config field '\(k)': \(d)"
        }
    }
}

/// A JSON object read from a config file, with typed accessors whose errors name the file and field.
public struct JSONConfig {
    public let path: String
    public let object: [String: Any]
    let prefix: String

    /// Parses `path` as a JSON object.
    public init(path: String) throws {
        self.path = path
        prefix = ""
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.unreadable(path: path, detail: "cannot read the file")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError.invalidField(file: path, field: "(root)", detail: "not a JSON object")
        }
        object = obj
    }

    /// A nested object of a config file (errors name `prefix` + field).
    public init(path: String, object: [String: Any], prefix: String) {
        self.path = path
        self.object = object
        self.prefix = prefix
    }

    func missing(_ k: String) -> ConfigError { .missingField(file: path, field: prefix + k) }
    func wrong(_ k: String, _ want: String) -> ConfigError {
        .invalidField(file: path, field: prefix + k, detail: "expected \(want), got \(String(describing: object[k]!))")
    }

    public func optionalInt(_ k: String) throws -> Int? {
        guard let v = object[k], !(v is NSNull) else { return nil }
        if !isJSONBoolean(v), let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded(),
            abs(n.doubleValue) < 9.2e18
        {
            return n.intValue
        }
        throw wrong(k, "an integer")
    }
    public func int(_ k: String) throws -> Int { guard let v = try optionalInt(k) else { throw missing(k) }; return v }
    public func optionalDouble(_ k: String) throws -> Double? {
        guard let v = object[k], !(v is NSNull) else { return nil }
        if let n = v as? NSNumber { return n.doubleValue }
        throw wrong(k, "a number")
    }
    public func double(_ k: String) throws -> Double {
        guard let v = try optionalDouble(k) else { throw missing(k) }; return v
    }
    public func optionalBool(_ k: String) throws -> Bool? {
        guard let v = object[k], !(v is NSNull) else { return nil }
        if isJSONBoolean(v), let b = v as? Bool { return b }
        throw wrong(k, "true or false")
    }
    public func optionalString(_ k: String) throws -> String? {
        guard let v = object[k], !(v is NSNull) else { return nil }
        if let s = v as? String { return s }
        throw wrong(k, "a string")
    }
    public func string(_ k: String) throws -> String {
        guard let v = try optionalString(k) else { throw missing(k) }; return v
    }
    public func object(_ k: String) -> [String: Any]? { object[k] as? [String: Any] }
    /// A nested object as a `JSONConfig` whose errors name `k.` + field (empty when absent).
    public func nested(_ k: String) -> JSONConfig {
        JSONConfig(path: path, object: object(k) ?? [:], prefix: prefix + k + ".")
    }
    /// An integer or an array of integers (as `eos_token_id` may be); empty when absent.
    public func intOrIntArray(_ k: String) throws -> [Int] {
        guard let v = object[k], !(v is NSNull) else { return [] }
        if let a = v as? [NSNumber] { return a.map { $0.intValue } }
        if let i = try optionalInt(k) { return [i] }
        return []
    }
}

/// Whether a value from JSONSerialization is a JSON true/false (not a number 0 or 1).
func isJSONBoolean(_ v: Any) -> Bool {
    String(describing: type(of: v)).contains("Boolean") || type(of: v) == Bool.self
}
