/// Errors raised while reading or writing model files. Each names the file and, where it applies,
/// the tensor or field that is wrong.
public enum FormatError: Error, CustomStringConvertible, Equatable {
    /// The file ends before a structure it announces.
    case truncated(file: String, detail: String)
    /// A header, magic number or field is malformed.
    case corrupt(file: String, detail: String)
    /// The file's format version is not supported.
    case unsupportedVersion(file: String, version: Int)
    /// A dtype or GGML type that Squeeze does not know or cannot convert.
    case unsupportedDType(file: String, tensor: String, dtype: String)
    /// A tensor the model needs is not in the checkpoint.
    case missingTensor(file: String, tensor: String)
    /// A tensor's shape differs from what the config implies.
    case shapeMismatch(file: String, tensor: String, expected: [Int], got: [Int])
    /// A metadata or config field is missing or has the wrong type.
    case missingField(file: String, field: String)
    case invalidField(file: String, field: String, detail: String)
    /// An I/O failure while writing.
    case writeFailed(path: String, reason: String)
    /// A tensor's stored byte span differs from what its shape and dtype need.
    case sizeMismatch(file: String, tensor: String, expectedBytes: Int, gotBytes: Int)
    /// A tensor's data lies (partly) outside the file's data section.
    case outOfBounds(file: String, tensor: String, detail: String)
    /// Two tensors' data overlap.
    case overlappingTensors(file: String, tensor: String, other: String)
    /// A shard named by a sharded checkpoint's index does not exist.
    case missingShard(index: String, shard: String, tensor: String)

    public var description: String {
        switch self {
        case let .truncated(f, d): return "\(f): truncated file: \(d)"
        case let .corrupt(f, d): return "\(f): corrupt file: \(d)"
        case let .unsupportedVersion(f, v): return "\(f): unsupported format version \(v)"
        case let .unsupportedDType(f, t, d): return "\(f): tensor '\(t)': unsupported dtype \(d)"
        case let .missingTensor(f, t): return "\(f): tensor '\(t)' is missing"
        case let .shapeMismatch(f, t, e, g): return "\(f): tensor '\(t)': expected shape \(e), got \(g)"
        case let .missingField(f, k): return "\(f): missing field '\(k)'"
        case let .invalidField(f, k, d): return "\(f): field '\(k)': \(d)"
        case let .writeFailed(p, r): return "cannot write '\(p)': \(r)"
        case let .sizeMismatch(f, t, e, g):
            return "\(f): tensor '\(t)': data spans \(g) bytes but its shape and dtype need \(e)"
        case let .outOfBounds(f, t, d): return "\(f): tensor '\(t)': data out of bounds: \(d)"
        case let .overlappingTensors(f, t, o): return "\(f): tensor '\(t)': data overlaps tensor '\(o)'"
        case let .missingShard(i, s, t): return "\(i): shard '\(s)' (holding tensor '\(t)') does not exist"
        }
    }
}
