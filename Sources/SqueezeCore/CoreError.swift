/// Errors raised by the core: files that cannot be opened or mapped, bad tensor views.
public enum CoreError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case cannotMap(path: String, reason: String)
    case outOfRange(what: String, detail: String)
    case shapeMismatch(what: String, expected: [Int], got: [Int])
    case dtypeMismatch(what: String, expected: DType, got: DType)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason): return "cannot open '\(path)': \(reason)"
        case let .cannotMap(path, reason): return "cannot map '\(path)': \(reason)"
        case let .outOfRange(what, detail): return "\(what): out of range (\(detail))"
        case let .shapeMismatch(what, e, g): return "\(what): expected shape \(e), got \(g)"
        case let .dtypeMismatch(what, e, g): return "\(what): expected dtype \(e.rawValue), got \(g.rawValue)"
        }
    }
}
