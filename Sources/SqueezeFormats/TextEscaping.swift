import Foundation

/// String literals as JSON, Python and HTML write them: one escaper driven by a table per syntax.
public enum TextEscaping {
    /// A JSON string literal as Python's `json.dumps(ensure_ascii=False)` writes it.
    public static func jsonQuoted(_ s: String) -> String {
        "\"" + escaped(s, jsonEscapes, control: "\\u%04x", delete: false) + "\""
    }

    /// A Python string literal as `repr` writes it: single quotes unless the text holds a single
    /// quote and no double one (or `quote` when given), control characters as `\xNN`.
    public static func pythonRepr(_ s: String, quote: Character? = nil) -> String {
        let q: Character = quote ?? (s.contains("'") && !s.contains("\"") ? "\"" : "'")
        var table = pythonEscapes
        table[q.unicodeScalars.first!] = "\\" + String(q)
        return String(q) + escaped(s, table, control: "\\x%02x", delete: true) + String(q)
    }

    /// Text with `& < > " '` as HTML entities (Jinja's `escape` filter, as markupsafe writes it).
    public static func htmlEscaped(_ s: String) -> String { escaped(s, htmlEscapes, control: nil, delete: false) }

    static let jsonEscapes: [Unicode.Scalar: String] = [
        "\"": "\\\"", "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\u{08}": "\\b", "\u{0C}": "\\f",
    ]
    static let pythonEscapes: [Unicode.Scalar: String] = ["\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"]
    static let htmlEscapes: [Unicode.Scalar: String] = [
        "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&#34;", "'": "&#39;",
    ]

    /// `s` with each scalar in `table` replaced, and other C0 controls (and DEL if `delete`) as
    /// `control` formats them when it is given. Other non-printable scalars (C1 controls, line
    /// separators) stay as they are, where Python's `repr` would escape them.
    static func escaped(_ s: String, _ table: [Unicode.Scalar: String], control: String?, delete: Bool) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 2)
        for u in s.unicodeScalars {
            if let r = table[u] {
                out += r
            } else if let control, u.value < 0x20 || (delete && u.value == 0x7F) {
                out += String(format: control, u.value)
            } else {
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
