import Foundation

/// A JSON object that keeps its members in order and compares keys byte-wise.
///
/// Foundation's JSON parsing yields `[String: Any]`, whose `String` keys compare by canonical
/// equivalence: vocabularies that hold both "ά" (U+1F71) and "ά" (U+03AC) would silently lose
/// a token. This parser keeps every member; lookups by key return the last member of that name.
final class OrderedObject: ExpressibleByDictionaryLiteral {
    var pairs: [(String, Any)]
    private var index: [[UInt8]: Int] = [:]

    init(pairs: [(String, Any)]) {
        self.pairs = pairs
        for (i, p) in pairs.enumerated() { index[Array(p.0.utf8)] = i }
    }
    convenience init(dictionaryLiteral elements: (String, Any)...) { self.init(pairs: elements) }

    subscript(_ key: String) -> Any? {
        get { index[Array(key.utf8)].map { pairs[$0].1 } }
        set {
            let k = Array(key.utf8)
            if let v = newValue {
                if let i = index[k] { pairs[i].1 = v } else { index[k] = pairs.count; pairs.append((key, v)) }
            }
        }
    }
    var count: Int { pairs.count }
}

/// A small, strict JSON parser producing `OrderedObject`, `[Any]`, `String`, `Int`, `Double`,
/// `Bool` and `NSNull`.
struct JSONParser {
    let b: [UInt8]
    var i = 0
    /// Arrays and objects currently open; bounded so a deeply nested file cannot overflow the stack.
    var depth = 0

    /// Deepest nesting of arrays and objects accepted (real tokenizers and configs nest under 10).
    static let maxDepth = 512

    struct Failure: Error { let offset: Int; let what: String }

    static func parse(_ data: [UInt8]) throws -> Any {
        var p = JSONParser(b: data)
        p.ws()
        let v = try p.value()
        p.ws()
        guard p.i == p.b.count else { throw Failure(offset: p.i, what: "trailing characters") }
        return v
    }

    mutating func ws() { while i < b.count && (b[i] == 32 || b[i] == 9 || b[i] == 10 || b[i] == 13) { i += 1 } }

    mutating func value() throws -> Any {
        guard i < b.count else { throw Failure(offset: i, what: "unexpected end") }
        if b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") {
            guard depth < Self.maxDepth else {
                throw Failure(offset: i, what: "arrays and objects nested deeper than \(Self.maxDepth)")
            }
            depth += 1
        }
        switch b[i] {
        case UInt8(ascii: "{"):
            defer { depth -= 1 }
            i += 1; ws()
            var pairs = [(String, Any)]()
            if i < b.count && b[i] == UInt8(ascii: "}") { i += 1; return OrderedObject(pairs: pairs) }
            while true {
                ws()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw Failure(offset: i, what: "expected a key") }
                let k = try string()
                ws()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw Failure(offset: i, what: "expected ':'") }
                i += 1; ws()
                pairs.append((k, try value()))
                ws()
                guard i < b.count else { throw Failure(offset: i, what: "unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return OrderedObject(pairs: pairs) }
                throw Failure(offset: i, what: "expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            defer { depth -= 1 }
            i += 1; ws()
            var arr = [Any]()
            if i < b.count && b[i] == UInt8(ascii: "]") { i += 1; return arr }
            while true {
                ws()
                arr.append(try value())
                ws()
                guard i < b.count else { throw Failure(offset: i, what: "unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return arr }
                throw Failure(offset: i, what: "expected ',' or ']'")
            }
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        case UInt8(ascii: "n"): try literal("null"); return NSNull()
        default: return try number()
        }
    }

    mutating func literal(_ s: String) throws {
        let u = Array(s.utf8)
        guard i + u.count <= b.count, b[i..<(i + u.count)].elementsEqual(u) else {
            throw Failure(offset: i, what: "bad literal")
        }
        i += u.count
    }

    mutating func number() throws -> Any {
        let s = i
        var isFloat = false
        while i < b.count {
            let c = b[i]
            if (c >= 48 && c <= 57) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
                i += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                isFloat = true; i += 1
            } else {
                break
            }
        }
        guard i > s else { throw Failure(offset: s, what: "unexpected character") }
        let text = String(decoding: b[s..<i], as: UTF8.self)
        if !isFloat, let v = Int(text) { return v }
        guard let d = Double(text) else { throw Failure(offset: s, what: "bad number") }
        return d
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<(i + 4)], as: UTF8.self), radix: 16) else {
            throw Failure(offset: i, what: "bad \\u escape")
        }
        i += 4
        return v
    }

    mutating func string() throws -> String {
        i += 1
        var out = [UInt8]()
        let start = i
        // Fast path: no escapes.
        while i < b.count && b[i] != UInt8(ascii: "\"") && b[i] != UInt8(ascii: "\\") { i += 1 }
        guard i < b.count else { throw Failure(offset: start, what: "unterminated string") }
        if b[i] == UInt8(ascii: "\"") {
            let s = String(decoding: b[start..<i], as: UTF8.self); i += 1; return s
        }
        out.append(contentsOf: b[start..<i])
        while i < b.count {
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
            if c == UInt8(ascii: "\\") {
                guard i + 1 < b.count else { break }
                let e = b[i + 1]; i += 2
                switch e {
                case UInt8(ascii: "n"): out.append(10)
                case UInt8(ascii: "t"): out.append(9)
                case UInt8(ascii: "r"): out.append(13)
                case UInt8(ascii: "b"): out.append(8)
                case UInt8(ascii: "f"): out.append(12)
                case UInt8(ascii: "u"):
                    var v = try hex4()
                    if v >= 0xD800 && v < 0xDC00, i + 6 <= b.count, b[i] == UInt8(ascii: "\\"),
                        b[i + 1] == UInt8(ascii: "u"),
                        let lo = UInt32(String(decoding: b[(i + 2)..<(i + 6)], as: UTF8.self), radix: 16),
                        lo >= 0xDC00 && lo < 0xE000
                    {
                        // Only a low surrogate completes the pair; "\uD800\u0041" leaves U+FFFD then "A".
                        i += 6
                        v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    out.append(contentsOf: Array(String(Unicode.Scalar(v) ?? "\u{FFFD}").utf8))
                default: out.append(e)
                }
                continue
            }
            out.append(c); i += 1
        }
        throw Failure(offset: start, what: "unterminated string")
    }
}

/// An integer from a parsed JSON number.
func jsonInt(_ v: Any?) -> Int? {
    if let i = v as? Int { return i }
    // Int(exactly:) rather than Int(_:): 1e19 or 1e300 from a file is nil, not a trap.
    if let d = v as? Double { return Int(exactly: d) }
    return nil
}
