import Foundation

/// A Jinja2 subset large enough for Hugging Face chat templates, rendered as transformers does
/// (`trim_blocks=True`, `lstrip_blocks=True`): output, `if/elif/else`, `for` (with `if` filter,
/// `else`, tuple targets and `loop.*`), `set` (also `ns.attr` and block form), `macro`,
/// `break`/`continue`, comments, whitespace control, Python-like operators, filters, tests and
/// string/dict methods, `raise_exception`, `namespace`, `range`.
final class JinjaTemplate {
    indirect enum Expr {
        case literal(JValue)
        case name(String)
        case list([Expr])
        case dict([(Expr, Expr)])
        case attr(Expr, String)
        case index(Expr, Expr)
        case slice(Expr, Expr?, Expr?, Expr?)
        case call(Expr, [Expr], [(String, Expr)])
        case filter(Expr, String, [Expr], [(String, Expr)])
        case test(Expr, String, [Expr], Bool)
        case unary(String, Expr)
        case binary(String, Expr, Expr)
        case ternary(Expr, Expr, Expr?)
    }
    indirect enum Node {
        case text(String)
        case output(Expr)
        case ifs([(Expr, [Node])], [Node]?)
        case forLoop([String], Expr, Expr?, [Node], [Node]?)
        case set([String], Expr)
        case setBlock(String, [Node])
        case macro(String, [(String, Expr?)], [Node])
        case brk, cont
    }

    let nodes: [Node]
    var macros: [(params: [(String, Expr?)], body: [Node])] = []

    init(_ source: String) throws {
        let toks = try JinjaTemplate.lex(source)
        var p = Parser(toks: toks)
        nodes = try p.parseBody(until: [])
        macros = p.macros
    }

    // MARK: Template lexing

    enum Tok { case text(String), output(String), stmt(String) }

    static func lex(_ src: String) throws -> [Tok] {
        enum Raw { case text(String), tag(kind: Character, body: String, left: Character?, right: Bool) }
        var raws = [Raw]()
        let s = Array(src.unicodeScalars)
        var i = 0, textStart = 0
        func text(_ a: Int, _ b: Int) -> String {
            var v = String.UnicodeScalarView(); v.append(contentsOf: s[a..<b]); return String(v)
        }
        while i < s.count - 1 {
            guard s[i] == "{", s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#" else { i += 1; continue }
            let kind = Character(s[i + 1])
            let close: Unicode.Scalar = kind == "{" ? "}" : (kind == "%" ? "%" : "#")
            raws.append(.text(text(textStart, i)))
            var j = i + 2
            var left: Character? = nil
            if j < s.count && (s[j] == "-" || s[j] == "+") { left = Character(s[j]); j += 1 }
            // Find the closing delimiter, skipping string literals.
            var k = j
            var quote: Unicode.Scalar? = nil
            var end = -1
            while k < s.count - 1 {
                let c = s[k]
                if let q = quote {
                    if c == "\\" { k += 2; continue }; if c == q { quote = nil }
                } else if kind != "#" && (c == "'" || c == "\"") {
                    quote = c
                } else if c == close && s[k + 1] == "}" {
                    end = k; break
                }
                k += 1
            }
            guard end >= 0 else { throw TokenizerError.template("unclosed tag at offset \(i)") }
            var bodyEnd = end
            var right = false
            if bodyEnd > j && s[bodyEnd - 1] == "-" {
                right = true; bodyEnd -= 1
            } else if bodyEnd > j && s[bodyEnd - 1] == "+" {
                bodyEnd -= 1
            }
            let body = text(j, bodyEnd).trimmingCharacters(in: .whitespacesAndNewlines)
            // {% raw %} ... {% endraw %}
            if kind == "%" && body == "raw" {
                let rest = text(end + 2, s.count)
                guard let r = rest.range(of: #"\{%-?\s*endraw\s*-?%\}"#, options: .regularExpression) else {
                    throw TokenizerError.template("unclosed raw block")
                }
                raws.append(.text(String(rest[rest.startIndex..<r.lowerBound])))
                let consumed = rest.unicodeScalars.distance(from: rest.unicodeScalars.startIndex, to: r.upperBound)
                i = end + 2 + consumed; textStart = i
                continue
            }
            raws.append(.tag(kind: kind, body: body, left: left, right: right))
            i = end + 2; textStart = i
        }
        raws.append(.text(text(textStart, s.count)))

        // Whitespace control, trim_blocks and lstrip_blocks.
        var out = [Tok]()
        for (idx, r) in raws.enumerated() {
            switch r {
            case .text(var t):
                if idx + 1 < raws.count, case let .tag(kind, _, left, _) = raws[idx + 1] {
                    if left == "-" {
                        t = String(t.reversed().drop(while: { $0.isWhitespace }).reversed())
                    } else if left != "+" && kind != "{" {
                        // lstrip_blocks: spaces/tabs between a line start and a block or comment tag.
                        let tail = t.reversed().prefix(while: { $0 == " " || $0 == "\t" })
                        let before = t.dropLast(tail.count)
                        if before.isEmpty ? idx == 0 : before.last == "\n" { t = String(before) }
                    }
                }
                if idx > 0, case let .tag(kind, _, _, right) = raws[idx - 1] {
                    if right {
                        t = String(t.drop(while: { $0.isWhitespace }))
                    } else if kind != "{" {
                        // trim_blocks: drop the first newline after a block or comment tag.
                        if t.hasPrefix("\r\n") {
                            t.removeFirst(1)
                        }  // "\r\n" is one Character
                        else if t.hasPrefix("\n") {
                            t.removeFirst()
                        }
                    }
                }
                if !t.isEmpty { out.append(.text(t)) }
            case let .tag(kind, body, _, _):
                if kind == "{" { out.append(.output(body)) } else if kind == "%" { out.append(.stmt(body)) }
            }
        }
        return out
    }

    // MARK: Expression lexing

    enum ETok: Equatable { case name(String), str(String), int(Int), num(Double), op(String), end }

    static func lexExpr(_ src: String) throws -> [ETok] {
        var out = [ETok]()
        let s = Array(src.unicodeScalars)
        var i = 0
        func isNameStart(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic }
        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if isNameStart(c) {
                var j = i + 1
                while j < s.count && (isNameStart(s[j]) || ("0"..."9").contains(s[j])) { j += 1 }
                var v = String.UnicodeScalarView(); v.append(contentsOf: s[i..<j]); out.append(.name(String(v))); i = j;
                continue
            }
            if ("0"..."9").contains(c) {
                var j = i; var isFloat = false
                while j < s.count
                    && (("0"..."9").contains(s[j]) || s[j] == "_"
                        || (s[j] == "." && !isFloat && j + 1 < s.count && ("0"..."9").contains(s[j + 1])))
                {
                    if s[j] == "." { isFloat = true }; j += 1
                }
                var v = String.UnicodeScalarView(); v.append(contentsOf: s[i..<j])
                let str = String(v).replacingOccurrences(of: "_", with: "")
                // Python integers are unbounded; a literal beyond Int64 is refused rather than trapping.
                if isFloat {
                    out.append(.num(Double(str) ?? .infinity))
                } else if let n = Int(str) {
                    out.append(.int(n))
                } else {
                    throw TokenizerError.template("integer literal \(str) is too large")
                }
                i = j; continue
            }
            if c == "'" || c == "\"" {
                var j = i + 1; var v = ""
                while j < s.count && s[j] != c {
                    if s[j] == "\\" && j + 1 < s.count {
                        let e = s[j + 1]
                        switch e {
                        case "n": v += "\n";
                        case "t": v += "\t";
                        case "r": v += "\r"
                        case "\\": v += "\\";
                        case "'": v += "'";
                        case "\"": v += "\""
                        default: v += "\\"; v.unicodeScalars.append(e)
                        }
                        j += 2; continue
                    }
                    v.unicodeScalars.append(s[j]); j += 1
                }
                guard j < s.count else { throw TokenizerError.template("unterminated string in '\(src)'") }
                out.append(.str(v)); i = j + 1; continue
            }
            let two = i + 1 < s.count ? String(Character(c)) + String(Character(s[i + 1])) : ""
            if ["==", "!=", "<=", ">=", "//", "**"].contains(two) { out.append(.op(two)); i += 2; continue }
            if "+-*/%~<>()[]{}.,:|=".unicodeScalars.contains(c) {
                out.append(.op(String(Character(c)))); i += 1; continue
            }
            throw TokenizerError.template("unexpected character '\(c)' in '\(src)'")
        }
        out.append(.end)
        return out
    }

    // MARK: Parsing

    /// Deepest nesting of blocks (`if`, `for`, `macro`, ...) and of expressions (parentheses,
    /// operators) accepted: bounded so a crafted template cannot overflow the stack.
    static let maxParseDepth = 64

    struct Parser {
        var toks: [Tok]
        var pos = 0
        /// Blocks currently open.
        var depth = 0
        var macros: [(params: [(String, Expr?)], body: [Node])] = []

        init(toks: [Tok]) { self.toks = toks }

        /// Parses nodes until a statement whose first word is in `until`; returns without consuming it.
        mutating func parseBody(until: Set<String>) throws -> [Node] {
            var nodes = [Node]()
            while pos < toks.count {
                switch toks[pos] {
                case let .text(t): nodes.append(.text(t)); pos += 1
                case let .output(src):
                    var e = ExprParser(try JinjaTemplate.lexExpr(src))
                    nodes.append(.output(try e.parseFull())); pos += 1
                case let .stmt(src):
                    let word = src.prefix(while: { !$0.isWhitespace })
                    if until.contains(String(word)) { return nodes }
                    pos += 1
                    nodes.append(try parseStatement(String(word), String(src.dropFirst(word.count))))
                }
            }
            if !until.isEmpty {
                throw TokenizerError.template("missing {% \(until.sorted().joined(separator: " or ")) %}")
            }
            return nodes
        }

        mutating func currentWord() -> (String, String) {
            guard case let .stmt(src) = toks[pos] else { return ("", "") }
            let word = src.prefix(while: { !$0.isWhitespace })
            return (String(word), String(src.dropFirst(word.count)))
        }

        mutating func parseStatement(_ word: String, _ rest: String) throws -> Node {
            guard depth < JinjaTemplate.maxParseDepth else {
                throw TokenizerError.template("blocks nested deeper than \(JinjaTemplate.maxParseDepth)")
            }
            depth += 1
            defer { depth -= 1 }
            switch word {
            case "if":
                var branches = [(Expr, [Node])]()
                var ep = ExprParser(try JinjaTemplate.lexExpr(rest)); var cond = try ep.parseFull()
                var elseBody: [Node]? = nil
                while true {
                    let body = try parseBody(until: ["elif", "else", "endif"])
                    branches.append((cond, body))
                    let (w, r) = currentWord(); pos += 1
                    if w == "elif" {
                        var ep2 = ExprParser(try JinjaTemplate.lexExpr(r)); cond = try ep2.parseFull(); continue
                    }
                    if w == "else" { elseBody = try parseBody(until: ["endif"]); pos += 1 }
                    break
                }
                return .ifs(branches, elseBody)
            case "for":
                var e = ExprParser(try JinjaTemplate.lexExpr(rest))
                var targets = [String]()
                repeat {
                    guard case let .name(n) = e.next() else {
                        throw TokenizerError.template("bad for target in '\(rest)'")
                    }
                    targets.append(n)
                } while e.accept(.op(","))
                guard e.next() == .name("in") else { throw TokenizerError.template("expected 'in' in for '\(rest)'") }
                let iter = try e.parseOr()
                var cond: Expr? = nil
                if e.accept(.name("if")) { cond = try e.parseOr() }
                _ = e.accept(.name("recursive"))
                guard e.peek == .end else { throw TokenizerError.template("unexpected tokens in for '\(rest)'") }
                let body = try parseBody(until: ["else", "endfor"])
                var elseBody: [Node]? = nil
                let (w, _) = currentWord(); pos += 1
                if w == "else" { elseBody = try parseBody(until: ["endfor"]); pos += 1 }
                return .forLoop(targets, iter, cond, body, elseBody)
            case "set":
                var e = ExprParser(try JinjaTemplate.lexExpr(rest))
                var target = [String]()
                guard case let .name(n) = e.next() else { throw TokenizerError.template("bad set target '\(rest)'") }
                target.append(n)
                while e.accept(.op(".")) {
                    guard case let .name(a) = e.next() else {
                        throw TokenizerError.template("bad set target '\(rest)'")
                    }
                    target.append(a)
                }
                if e.peek == .end {
                    let body = try parseBody(until: ["endset"]); pos += 1
                    return .setBlock(n, body)
                }
                guard e.next() == .op("=") else { throw TokenizerError.template("expected '=' in set '\(rest)'") }
                return .set(target, try e.parseFull())
            case "macro":
                var e = ExprParser(try JinjaTemplate.lexExpr(rest))
                guard case let .name(name) = e.next(), e.accept(.op("(")) else {
                    throw TokenizerError.template("bad macro '\(rest)'")
                }
                var params = [(String, Expr?)]()
                while !e.accept(.op(")")) {
                    guard case let .name(p) = e.next() else {
                        throw TokenizerError.template("bad macro parameter in '\(rest)'")
                    }
                    var d: Expr? = nil
                    if e.accept(.op("=")) { d = try e.parseTernary() }
                    params.append((p, d))
                    _ = e.accept(.op(","))
                }
                let body = try parseBody(until: ["endmacro"]); pos += 1
                macros.append((params, body))
                return .set([name], .literal(.macro(macros.count - 1)))
            case "break": return .brk
            case "continue": return .cont
            case "generation", "endgeneration": return .text("")
            default:
                throw TokenizerError.template("unsupported statement '{% \(word) %}'")
            }
        }
    }

    struct ExprParser {
        var t: [ETok]
        var p = 0
        /// Nested sub-expressions currently being parsed.
        var depth = 0
        init(_ t: [ETok]) { self.t = t }
        var peek: ETok { t[p] }
        mutating func next() -> ETok { let x = t[p]; if p < t.count - 1 { p += 1 }; return x }
        mutating func accept(_ x: ETok) -> Bool { if t[p] == x { p += 1; return true }; return false }
        mutating func expect(_ x: ETok) throws {
            guard accept(x) else { throw TokenizerError.template("expected \(x), found \(peek)") }
        }

        mutating func parsedFull() throws -> Expr { try parseFull() }
        mutating func parseFull() throws -> Expr {
            let e = try parseTernary()
            guard peek == .end else { throw TokenizerError.template("unexpected \(peek) in expression") }
            return e
        }
        /// Counts one level of nesting; every recursive path of the parser passes here or through
        /// `parseNot`/`parseUnary`, which count their own.
        mutating func enter() throws {
            // One level of parentheses passes three counting functions.
            guard depth < 3 * JinjaTemplate.maxParseDepth else {
                throw TokenizerError.template("expression nested deeper than \(JinjaTemplate.maxParseDepth)")
            }
            depth += 1
        }
        mutating func parseTernary() throws -> Expr {
            try enter()
            defer { depth -= 1 }
            let a = try parseOr()
            if accept(.name("if")) {
                let c = try parseOr()
                var b: Expr? = nil
                if accept(.name("else")) { b = try parseTernary() }
                return .ternary(c, a, b)
            }
            return a
        }
        mutating func parseOr() throws -> Expr {
            var a = try parseAnd()
            while accept(.name("or")) { a = .binary("or", a, try parseAnd()) }
            return a
        }
        mutating func parseAnd() throws -> Expr {
            var a = try parseNot()
            while accept(.name("and")) { a = .binary("and", a, try parseNot()) }
            return a
        }
        mutating func parseNot() throws -> Expr {
            try enter()
            defer { depth -= 1 }
            if accept(.name("not")) { return .unary("not", try parseNot()) }
            return try parseCompare()
        }
        mutating func parseCompare() throws -> Expr {
            var a = try parseConcat()
            while true {
                if case let .op(o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                    p += 1; a = .binary(o, a, try parseConcat())
                } else if accept(.name("in")) {
                    a = .binary("in", a, try parseConcat())
                } else if peek == .name("not") && t[p + 1] == .name("in") {
                    p += 2; a = .unary("not", .binary("in", a, try parseConcat()))
                } else {
                    return a
                }
            }
        }
        mutating func parseConcat() throws -> Expr {
            var a = try parseAdd()
            while accept(.op("~")) { a = .binary("~", a, try parseAdd()) }
            return a
        }
        mutating func parseAdd() throws -> Expr {
            var a = try parseMul()
            while true {
                if accept(.op("+")) {
                    a = .binary("+", a, try parseMul())
                } else if accept(.op("-")) {
                    a = .binary("-", a, try parseMul())
                } else {
                    return a
                }
            }
        }
        mutating func parseMul() throws -> Expr {
            var a = try parseUnary()
            while true {
                if case let .op(o) = peek, ["*", "/", "//", "%"].contains(o) {
                    p += 1; a = .binary(o, a, try parseUnary())
                } else {
                    return a
                }
            }
        }
        mutating func parseUnary() throws -> Expr {
            try enter()
            defer { depth -= 1 }
            if accept(.op("-")) { return .unary("-", try parseUnary()) }
            if accept(.op("+")) { return try parseUnary() }
            var a = try parsePostfix()
            if accept(.op("**")) { a = .binary("**", a, try parseUnary()) }
            return a
        }
        mutating func parseArgs() throws -> ([Expr], [(String, Expr)]) {
            var args = [Expr](), kw = [(String, Expr)]()
            while !accept(.op(")")) {
                if case let .name(n) = peek, t[p + 1] == .op("=") {
                    p += 2; kw.append((n, try parseTernary()))
                } else {
                    args.append(try parseTernary())
                }
                if !accept(.op(",")) { try expect(.op(")")); break }
            }
            return (args, kw)
        }
        mutating func parsePostfix() throws -> Expr {
            var a = try parsePrimary()
            while true {
                if accept(.op(".")) {
                    guard case let .name(n) = next() else { throw TokenizerError.template("expected attribute name") }
                    a = .attr(a, n)
                } else if accept(.op("[")) {
                    var parts: [Expr?] = [nil]
                    var isSlice = false
                    while !accept(.op("]")) {
                        if accept(.op(":")) { isSlice = true; parts.append(nil); continue }
                        parts[parts.count - 1] = try parseTernary()
                    }
                    if isSlice {
                        while parts.count < 3 { parts.append(nil) }
                        a = .slice(a, parts[0], parts[1], parts[2])
                    } else {
                        guard let idx = parts[0] else { throw TokenizerError.template("empty subscript") }
                        a = .index(a, idx)
                    }
                } else if accept(.op("(")) {
                    let (args, kw) = try parseArgs()
                    a = .call(a, args, kw)
                } else if accept(.op("|")) {
                    guard case let .name(f) = next() else { throw TokenizerError.template("expected filter name") }
                    var args = [Expr](), kw = [(String, Expr)]()
                    if accept(.op("(")) { (args, kw) = try parseArgs() }
                    a = .filter(a, f, args, kw)
                } else if accept(.name("is")) {
                    let neg = accept(.name("not"))
                    guard case let .name(tn) = next() else { throw TokenizerError.template("expected test name") }
                    var args = [Expr]()
                    if accept(.op("(")) {
                        args = try parseArgs().0
                    } else if case .str = peek {
                        args = [try parsePrimary()]
                    } else if case .int = peek {
                        args = [try parsePrimary()]
                    }
                    a = .test(a, tn, args, neg)
                } else {
                    return a
                }
            }
        }
        mutating func parsePrimary() throws -> Expr {
            switch next() {
            case let .str(s):
                var v = s
                while case let .str(more) = peek { v += more; p += 1 }  // adjacent literals concatenate
                return .literal(.string(v))
            case let .int(i): return .literal(.int(i))
            case let .num(d): return .literal(.double(d))
            case let .name(n):
                switch n {
                case "true", "True": return .literal(.bool(true))
                case "false", "False": return .literal(.bool(false))
                case "none", "None": return .literal(.none)
                default: return .name(n)
                }
            case .op("("):
                let e = try parseTernary()
                if accept(.op(",")) {
                    var items = [e]
                    while !accept(.op(")")) { items.append(try parseTernary()); _ = accept(.op(",")) }
                    return .list(items)
                }
                try expect(.op(")"))
                return e
            case .op("["):
                var items = [Expr]()
                while !accept(.op("]")) {
                    items.append(try parseTernary()); if !accept(.op(",")) { try expect(.op("]")); break }
                }
                return .list(items)
            case .op("{"):
                var items = [(Expr, Expr)]()
                while !accept(.op("}")) {
                    let k = try parseTernary(); try expect(.op(":")); items.append((k, try parseTernary()))
                    if !accept(.op(",")) { try expect(.op("}")); break }
                }
                return .dict(items)
            case let x: throw TokenizerError.template("unexpected \(x)")
            }
        }
    }
}
