import Foundation
import SqueezeFormats

/// A value in the Jinja template interpreter (Python semantics for the subset used by chat templates).
indirect enum JValue {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JValue])
    case dict(JDict)
    case function(String)
    case macro(Int)

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .dict(d): return !d.keys.isEmpty
        case .function, .macro: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }

    /// `str(value)` as Jinja prints it.
    var rendered: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return JValue.pyFloat(d)
        case let .string(s): return s
        case .array, .dict: return repr
        case let .function(n): return "<function \(n)>"
        case .macro: return "<macro>"
        }
    }

    /// Python `repr`.
    var repr: String {
        switch self {
        case let .string(s): return TextEscaping.pythonRepr(s)
        case let .array(a): return "[" + a.map { $0.repr }.joined(separator: ", ") + "]"
        case let .dict(d):
            return "{" + d.keys.map { JValue.string($0).repr + ": " + d.values[$0]!.repr }.joined(separator: ", ") + "}"
        default: return rendered
        }
    }

    static func pyFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded() && abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    /// JSON as Python's `json.dumps(ensure_ascii=False)` writes it.
    func json(indent: Int?, level: Int = 0) -> String {
        let nl = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) }
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * level) }
        let sep = indent == nil ? ", " : ","
        switch self {
        case .undefined, .none: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return JValue.pyFloat(d)
        case let .string(s): return TextEscaping.jsonQuoted(s)
        case let .array(a):
            if a.isEmpty { return "[]" }
            return "[" + a.map { (nl ?? "") + $0.json(indent: indent, level: level + 1) }.joined(separator: sep)
                + (close ?? "") + "]"
        case let .dict(d):
            if d.keys.isEmpty { return "{}" }
            return "{"
                + d.keys.map {
                    (nl ?? "") + JValue.string($0).json(indent: nil) + ": "
                        + d.values[$0]!.json(indent: indent, level: level + 1)
                }.joined(separator: sep) + (close ?? "") + "}"
        case .function, .macro: return "null"
        }
    }

    static func == (a: JValue, b: JValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { $0 == $1 }
        case let (.dict(x), .dict(y)): return x.keys == y.keys && x.keys.allSatisfy { x.values[$0]! == y.values[$0]! }
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    var number: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    var items: [JValue]? {
        switch self {
        case let .array(a): return a
        case let .dict(d): return d.keys.map { .string($0) }
        case let .string(s): return s.map { .string(String($0)) }
        default: return nil
        }
    }
}

/// An insertion-ordered dictionary.
struct JDict {
    var keys: [String] = []
    var values: [String: JValue] = [:]
    subscript(_ k: String) -> JValue? {
        get { values[k] }
        set {
            if values[k] == nil, newValue != nil { keys.append(k) }
            if newValue == nil { keys.removeAll { $0 == k } }
            values[k] = newValue
        }
    }
}
