import SqueezeFormats

/// Errors raised while loading or running a model. Each names the file, tensor or field.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(file: String, name: String)
    /// A `model_type` no family serves; lists the supported ones.
    case unsupportedModelType(file: String, modelType: String, supported: [String])
    case missingConfigField(file: String, field: String)
    case invalidConfig(file: String, field: String, detail: String)
    case missingTensor(file: String, tensor: String)
    case shapeMismatch(file: String, tensor: String, expected: [Int], got: [Int])
    case unsupportedWeight(file: String, tensor: String, detail: String)
    case notAModel(path: String, detail: String)
    case contextOverflow(requested: Int, limit: Int)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unsupportedArchitecture(f, n): return "\(f): unsupported model architecture '\(n)'"
        case let .unsupportedModelType(f, t, s):
            return "\(f): unsupported model architecture '\(t)' (model_type; supported: \(s.joined(separator: ", ")))"
        case let .missingConfigField(f, k): return "\(f): missing config field '\(k)'"
        case let .invalidConfig(f, k, d): return "\(f): config field '\(k)': \(d)"
        case let .missingTensor(f, t): return "\(f): tensor '\(t)' is missing from the checkpoint"
        case let .shapeMismatch(f, t, e, g): return "\(f): tensor '\(t)' has shape \(g) but the config implies \(e)"
        case let .unsupportedWeight(f, t, d): return "\(f): tensor '\(t)': \(d)"
        case let .notAModel(p, d): return "\(p): not a model Squeeze can open: \(d)"
        case let .contextOverflow(r, l): return "sequence of \(r) tokens exceeds the context of \(l)"
        case let .invalidArgument(s): return s
        }
    }
}

extension ModelError {
    /// The model error for an error reading a config file: an unreadable file is not a model, a
    /// missing or invalid field keeps its name.
    public init(_ e: ConfigError) {
        switch e {
        case let .unreadable(p, d): self = .notAModel(path: p, detail: d)
        case let .missingField(f, k): self = .missingConfigField(file: f, field: k)
        case let .invalidField(f, k, d): self = .invalidConfig(file: f, field: k, detail: d)
        }
    }

    /// Runs `body`, rethrowing a `ConfigError` as the matching `ModelError` (other errors unchanged).
    public static func mappingConfigErrors<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ConfigError { throw ModelError(e) }
    }
}
