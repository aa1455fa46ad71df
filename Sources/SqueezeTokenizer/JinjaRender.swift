import Foundation
import SqueezeFormats

/// What one render of a template may use: a template from a model file must not loop, allocate or
/// recurse without bound. Exceeding one throws `TokenizerError.template` naming the budget.
struct JinjaBudget {
    /// Loop iterations over the whole render (including `for ... if` filtering).
    static let maxLoopIterations = 100_000
    /// Length of one `range(...)`.
    static let maxRangeLength = 100_000
    /// Bytes of output (and of any one string the template builds).
    static let maxOutputBytes = 16 << 20
    /// Bytes of strings and array slots built over the whole render (string doubling, repeated concatenation).
    static let maxWorkBytes = 1 << 30
    /// Macro calls active at once.
    static let maxCallDepth = 16
    /// Nesting of blocks, expressions and macro calls while rendering (bounds the native stack).
    static let maxRenderDepth = 256
    /// Nesting of lists and dicts a template may build.
    static let maxValueDepth = 64
    /// List and dict items visited over the whole render to check that nesting (lists that share
    /// one another, `[x, x]` in a loop, would otherwise make the checks exponential).
    static let maxWalkedItems = 4_000_000
}

extension JinjaTemplate {
    /// Renders the template with the given global variables.
    func render(_ globals: [String: JValue]) throws -> String {
        var ctx = Context(template: self, scopes: [globals])
        var out = ""
        _ = try ctx.run(nodes, &out)
        return out
    }

    enum Flow { case normal, brk, cont }

    struct Context {
        let template: JinjaTemplate
        var scopes: [[String: JValue]]
        /// Budget use so far (see `JinjaBudget`).
        var iterations = 0, work = 0, callDepth = 0, renderDepth = 0, walked = 0

        init(template: JinjaTemplate, scopes: [[String: JValue]]) { self.template = template; self.scopes = scopes }

        mutating func enter() throws {
            guard renderDepth < JinjaBudget.maxRenderDepth else {
                throw TokenizerError.template(
                    "rendering nested deeper than \(JinjaBudget.maxRenderDepth) (blocks, expressions and macro calls)")
            }
            renderDepth += 1
        }

        mutating func iterate() throws {
            iterations += 1
            guard iterations <= JinjaBudget.maxLoopIterations else {
                throw TokenizerError.template("more than \(JinjaBudget.maxLoopIterations) loop iterations")
            }
        }

        /// Charges `bytes` of building to the render's work budget.
        mutating func charge(_ bytes: Int) throws {
            work += bytes
            guard work <= JinjaBudget.maxWorkBytes else {
                throw TokenizerError.template(
                    "the template builds more than \(JinjaBudget.maxWorkBytes) bytes of values")
            }
        }

        /// Charges a value the template built and checks its size: a string or list at most the
        /// output budget; lists and dicts nested at most `maxValueDepth` deep (walked, charged).
        mutating func built(_ v: JValue) throws -> JValue {
            switch v {
            case let .string(x):
                let n = x.utf8.count
                guard n <= JinjaBudget.maxOutputBytes else {
                    throw TokenizerError.template("a string of \(n) bytes exceeds \(JinjaBudget.maxOutputBytes)")
                }
                try charge(n)
            case let .array(a):
                guard a.count <= JinjaBudget.maxOutputBytes else {
                    throw TokenizerError.template("a list of \(a.count) items exceeds \(JinjaBudget.maxOutputBytes)")
                }
                try charge(8 * a.count)
            default: break
            }
            return v
        }

        /// Checks the nesting of a list or dict the template assembled from other values; the items
        /// visited count against `maxWalkedItems`.
        mutating func nested(_ v: JValue) throws -> JValue {
            var nodes = 0
            let left = JinjaBudget.maxWalkedItems - walked
            func depth(_ x: JValue, _ d: Int) throws {
                nodes += 1
                guard nodes <= left else {
                    throw TokenizerError.template(
                        "checking the nesting of lists and dicts visits more than \(JinjaBudget.maxWalkedItems) items")
                }
                guard d <= JinjaBudget.maxValueDepth else {
                    throw TokenizerError.template("lists and dicts nested deeper than \(JinjaBudget.maxValueDepth)")
                }
                switch x {
                case let .array(a):
                    for e in a {
                        if case .array = e {
                            try depth(e, d + 1)
                        } else if case .dict = e {
                            try depth(e, d + 1)
                        } else {
                            nodes += 1
                        }
                    }
                case let .dict(m):
                    for k in m.keys {
                        if let e = m.values[k] {
                            if case .array = e {
                                try depth(e, d + 1)
                            } else if case .dict = e {
                                try depth(e, d + 1)
                            } else {
                                nodes += 1
                            }
                        }
                    }
                default: break
                }
            }
            try depth(v, 1)
            walked += nodes
            return v
        }

        func lookup(_ n: String) -> JValue {
            for s in scopes.reversed() { if let v = s[n] { return v } }
            switch n {
            case "raise_exception", "range", "namespace", "dict", "strftime_now", "lipsum", "cycler", "joiner":
                return .function(n)
            default: return .undefined
            }
        }

        mutating func assign(_ target: [String], _ v: JValue) throws {
            if target.count == 1 { scopes[scopes.count - 1][target[0]] = v; return }
            // ns.attr = value: update the namespace where it lives.
            for i in stride(from: scopes.count - 1, through: 0, by: -1) {
                if case var .dict(d)? = scopes[i][target[0]] {
                    d[target[1]] = v
                    // `set ns.a = ns` in a loop would nest without bound.
                    scopes[i][target[0]] = try nested(.dict(d))
                    return
                }
            }
            throw TokenizerError.template("cannot assign to \(target.joined(separator: "."))")
        }

        mutating func run(_ nodes: [Node], _ out: inout String) throws -> Flow {
            try enter()
            defer { renderDepth -= 1 }
            for n in nodes {
                if out.utf8.count > JinjaBudget.maxOutputBytes {
                    throw TokenizerError.template("output exceeds \(JinjaBudget.maxOutputBytes) bytes")
                }
                switch n {
                case let .text(t): out += t
                case let .output(e): out += try eval(e).rendered
                case let .ifs(branches, elseBody):
                    var done = false
                    for (c, body) in branches where try eval(c).truthy {
                        let f = try run(body, &out); if f != .normal { return f }
                        done = true; break
                    }
                    if !done, let e = elseBody { let f = try run(e, &out); if f != .normal { return f } }
                case let .forLoop(targets, iterE, cond, body, elseBody):
                    let iterV = try eval(iterE)
                    var items: [JValue]
                    if case let .dict(d) = iterV {
                        items = d.keys.map { .string($0) }
                    } else if iterV.isUndefined
                        || {
                            if case .none = iterV { return true }; return false
                        }()
                    {
                        items = []
                    } else if let a = iterV.items {
                        items = a
                    } else {
                        throw TokenizerError.template("cannot iterate over \(iterV.repr)")
                    }
                    if let cond {
                        var kept = [JValue]()
                        for it in items {
                            try iterate()
                            scopes.append([:]); try bind(targets, it)
                            let ok = try eval(cond).truthy
                            scopes.removeLast()
                            if ok { kept.append(it) }
                        }
                        items = kept
                    }
                    if items.isEmpty {
                        if let e = elseBody { let f = try run(e, &out); if f != .normal { return f } }; continue
                    }
                    for (i, it) in items.enumerated() {
                        try iterate()
                        var loop = JDict()
                        loop["index"] = .int(i + 1); loop["index0"] = .int(i)
                        loop["revindex"] = .int(items.count - i); loop["revindex0"] = .int(items.count - i - 1)
                        loop["first"] = .bool(i == 0); loop["last"] = .bool(i == items.count - 1)
                        loop["length"] = .int(items.count)
                        loop["previtem"] = i > 0 ? items[i - 1] : .undefined
                        loop["nextitem"] = i + 1 < items.count ? items[i + 1] : .undefined
                        scopes.append(["loop": .dict(loop)])
                        try bind(targets, it)
                        let f = try run(body, &out)
                        scopes.removeLast()
                        if f == .brk { break }
                    }
                case let .set(target, e): try assign(target, try eval(e))
                case let .setBlock(name, body):
                    var s = ""; _ = try run(body, &s); try assign([name], try built(.string(s)))
                case .macro: break
                case .brk: return .brk
                case .cont: return .cont
                }
            }
            if out.utf8.count > JinjaBudget.maxOutputBytes {
                throw TokenizerError.template("output exceeds \(JinjaBudget.maxOutputBytes) bytes")
            }
            return .normal
        }

        mutating func bind(_ targets: [String], _ v: JValue) throws {
            if targets.count == 1 { scopes[scopes.count - 1][targets[0]] = v; return }
            guard case let .array(a) = v, a.count == targets.count else {
                throw TokenizerError.template("cannot unpack \(v.repr) into \(targets.count) names")
            }
            for (n, x) in zip(targets, a) { scopes[scopes.count - 1][n] = x }
        }

        mutating func eval(_ e: Expr) throws -> JValue {
            try enter()
            defer { renderDepth -= 1 }
            switch e {
            case let .literal(v): return v
            case let .name(n): return lookup(n)
            case let .list(items): return try nested(.array(try items.map { try eval($0) }))
            case let .dict(items):
                var d = JDict()
                for (k, v) in items { d[try eval(k).rendered] = try eval(v) }
                return try nested(.dict(d))
            case let .attr(o, name):
                let v = try eval(o)
                if case let .dict(d) = v { return d[name] ?? .undefined }
                return .undefined
            case let .index(o, i):
                return try JinjaTemplate.subscriptValue(try eval(o), try eval(i))
            case let .slice(o, a, b, c):
                let v = try eval(o)
                let start = try a.map { try eval($0) }, stop = try b.map { try eval($0) },
                    step = try c.map { try eval($0) }
                return try JinjaTemplate.slice(v, start, stop, step)
            case let .call(f, args, kw):
                let a = try args.map { try eval($0) }
                var k = [String: JValue]()
                for (n, x) in kw { k[n] = try eval(x) }
                if case let .attr(obj, method) = f {
                    let o = try eval(obj)
                    if case let .dict(d) = o, let m = d[method], case .macro = m { return try built(try call(m, a, k)) }
                    return try built(try JinjaTemplate.method(o, method, a, k))
                }
                return try built(try call(try eval(f), a, k))
            case let .filter(x, name, args, kw):
                let v = try eval(x)
                let a = try args.map { try eval($0) }
                var k = [String: JValue]()
                for (n, y) in kw { k[n] = try eval(y) }
                return try built(try JinjaTemplate.filter(v, name, a, k))
            case let .test(x, name, args, neg):
                let v = try eval(x)
                let a = try args.map { try eval($0) }
                let r = try JinjaTemplate.test(v, name, a)
                return .bool(neg ? !r : r)
            case let .unary(op, x):
                let v = try eval(x)
                if op == "not" { return .bool(!v.truthy) }
                if case let .int(i) = v {
                    let (r, o) = (0).subtractingReportingOverflow(i)
                    guard !o else { throw TokenizerError.template("integer overflow in -\(i)") }
                    return .int(r)
                }
                if let d = v.number { return .double(-d) }
                throw TokenizerError.template("bad operand for unary -: \(v.repr)")
            case let .binary(op, x, y):
                if op == "and" { let a = try eval(x); return a.truthy ? try eval(y) : a }
                if op == "or" { let a = try eval(x); return a.truthy ? a : try eval(y) }
                return try built(try JinjaTemplate.binary(op, try eval(x), try eval(y)))
            case let .ternary(c, a, b):
                if try eval(c).truthy { return try eval(a) }
                return try b.map { try eval($0) } ?? .undefined
            }
        }

        mutating func call(_ f: JValue, _ a: [JValue], _ k: [String: JValue]) throws -> JValue {
            switch f {
            case let .function(name):
                switch name {
                case "raise_exception":
                    throw TokenizerError.templateException(a.first?.rendered ?? "")
                case "range":
                    guard (1...3).contains(a.count) else {
                        throw TokenizerError.template("range expects 1 to 3 arguments, got \(a.count)")
                    }
                    var n = [Int]()
                    for x in a {
                        guard let i = JinjaTemplate.integer(x) else {
                            throw TokenizerError.template("range argument \(x.repr) is not an integer")
                        }
                        n.append(i)
                    }
                    let (lo, hi, st) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count > 2 ? n[2] : 1)
                    guard st != 0 else { throw TokenizerError.template("range step 0") }
                    // The length is checked before anything is allocated (range(10**12) is refused).
                    let (span, o) = st > 0 ? hi.subtractingReportingOverflow(lo) : lo.subtractingReportingOverflow(hi)
                    let length = o ? Int.max : (span <= 0 ? 0 : (span - 1) / (st == Int.min ? Int.max : abs(st)) + 1)
                    guard length <= JinjaBudget.maxRangeLength else {
                        throw TokenizerError.template(
                            "range of \(o ? "more than \(Int.max)" : "\(length)") items exceeds \(JinjaBudget.maxRangeLength)"
                        )
                    }
                    try charge(8 * length)
                    return .array(Array(stride(from: lo, to: hi, by: st)).map { .int($0) })
                case "namespace", "dict":
                    var d = JDict()
                    if case let .dict(x)? = a.first { d = x }
                    for key in k.keys.sorted() { d[key] = k[key] }
                    return try nested(.dict(d))
                case "strftime_now":
                    let fmt = DateFormatter()
                    fmt.dateFormat = "dd MMM yyyy"
                    return .string(fmt.string(from: Date()))
                default: throw TokenizerError.template("unsupported function \(name)()")
                }
            case let .macro(idx):
                guard callDepth < JinjaBudget.maxCallDepth else {
                    throw TokenizerError.template("macro calls nested deeper than \(JinjaBudget.maxCallDepth)")
                }
                callDepth += 1
                defer { callDepth -= 1 }
                let m = template.macros[idx]
                var scope = [String: JValue]()
                for (i, (pname, dflt)) in m.params.enumerated() {
                    if i < a.count {
                        scope[pname] = a[i]
                    } else if let v = k[pname] {
                        scope[pname] = v
                    } else if let d = dflt {
                        scope[pname] = try eval(d)
                    } else {
                        scope[pname] = .undefined
                    }
                }
                scopes.append(scope)
                var s = ""
                _ = try run(m.body, &s)
                scopes.removeLast()
                return .string(s)
            default:
                throw TokenizerError.template("\(f.repr) is not callable")
            }
        }
    }

    /// Largest indent width (`indent`, `tojson(indent=...)`) accepted.
    static let maxIndent = 256

    /// An integer value: an int, a bool, or a float with an exact integer value in range (NaN,
    /// 1e300 and 2.5 give nil rather than trapping).
    static func integer(_ v: JValue) -> Int? {
        switch v {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        case let .double(d): return Int(exactly: d)
        default: return nil
        }
    }

    static func subscriptValue(_ v: JValue, _ i: JValue) throws -> JValue {
        switch (v, i) {
        case let (.array(a), .int(n)):
            let k = n < 0 ? a.count + n : n
            return k >= 0 && k < a.count ? a[k] : .undefined
        case let (.string(s), .int(n)):
            let c = Array(s); let k = n < 0 ? c.count + n : n
            return k >= 0 && k < c.count ? .string(String(c[k])) : .undefined
        case let (.dict(d), key): return d[key.rendered] ?? .undefined
        default: return .undefined
        }
    }

    static func slice(_ v: JValue, _ a: JValue?, _ b: JValue?, _ c: JValue?) throws -> JValue {
        func idx(_ x: JValue?) -> Int? { if case let .int(i)? = x { return i }; return nil }
        let items: [JValue]
        let isString: Bool
        switch v {
        case let .array(x): items = x; isString = false
        case let .string(s): items = s.map { .string(String($0)) }; isString = true
        default: return .undefined
        }
        let n = items.count
        let step = idx(c) ?? 1
        guard step != 0 else { throw TokenizerError.template("slice step 0") }
        func norm(_ i: Int?, _ dflt: Int) -> Int {
            guard var i else { return dflt }
            if i < 0 { i += n }
            return step > 0 ? min(max(i, 0), n) : min(max(i, -1), n - 1)
        }
        var out = [JValue]()
        if step > 0 {
            var i = norm(idx(a), 0); let e = norm(idx(b), n)
            while i < e {
                out.append(items[i])
                let (next, o) = i.addingReportingOverflow(step)
                if o { break }
                i = next
            }
        } else {
            var i = norm(idx(a), n - 1); let e = norm(idx(b), -1)
            while i > e {
                out.append(items[i])
                let (next, o) = i.addingReportingOverflow(step)
                if o { break }
                i = next
            }
        }
        return isString ? .string(out.map { $0.rendered }.joined()) : .array(out)
    }

    static func binary(_ op: String, _ a: JValue, _ b: JValue) throws -> JValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(!(a == b))
        case "~": return .string(a.rendered + b.rendered)
        case "in":
            switch b {
            case let .string(s): return .bool(s.contains(a.rendered) || a.rendered.isEmpty)
            case let .array(x): return .bool(x.contains { $0 == a })
            case let .dict(d): return .bool(d[a.rendered] != nil)
            default: return .bool(false)
            }
        case "<", ">", "<=", ">=":
            let r: Bool
            if case let .string(x) = a, case let .string(y) = b {
                r = op == "<" ? x < y : op == ">" ? x > y : op == "<=" ? x <= y : x >= y
            } else if let x = a.number, let y = b.number {
                r = op == "<" ? x < y : op == ">" ? x > y : op == "<=" ? x <= y : x >= y
            } else {
                throw TokenizerError.template("cannot compare \(a.repr) \(op) \(b.repr)")
            }
            return .bool(r)
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)): return .string(x + y)
            case let (.array(x), .array(y)): return .array(x + y)
            case let (.int(x), .int(y)):
                let (r, o) = x.addingReportingOverflow(y)
                guard !o else { throw TokenizerError.template("integer overflow in \(x) + \(y)") }
                return .int(r)
            default:
                if let x = a.number, let y = b.number { return .double(x + y) }
                throw TokenizerError.template("cannot add \(a.repr) and \(b.repr)")
            }
        case "-", "*", "/", "//", "%", "**":
            if op == "*", case let .string(s) = a, case let .int(n) = b {
                // Checked before the string is built: "x" * 10**12 is refused, not allocated.
                let (bytes, o) = s.utf8.count.multipliedReportingOverflow(by: max(n, 0))
                guard !o, bytes <= JinjaBudget.maxOutputBytes else {
                    throw TokenizerError.template(
                        "string repetition of \(n) exceeds \(JinjaBudget.maxOutputBytes) bytes")
                }
                return .string(String(repeating: s, count: max(n, 0)))
            }
            if case let .int(x) = a, case let .int(y) = b {
                func exact(_ r: (partialValue: Int, overflow: Bool)) throws -> JValue {
                    guard !r.overflow else { throw TokenizerError.template("integer overflow in \(x) \(op) \(y)") }
                    return .int(r.partialValue)
                }
                switch op {
                case "-": return try exact(x.subtractingReportingOverflow(y))
                case "*": return try exact(x.multipliedReportingOverflow(by: y))
                case "/":
                    guard y != 0 else { throw TokenizerError.template("division by zero") };
                    return .double(Double(x) / Double(y))
                case "//":
                    guard y != 0 else { throw TokenizerError.template("division by zero") }
                    // Python floors; Int.min // -1 overflows.
                    let (q, o) = x.dividedReportingOverflow(by: y)
                    guard !o else { return try exact((0, true)) }
                    return .int(q * y != x && (x < 0) != (y < 0) ? q - 1 : q)
                case "%":
                    guard y != 0 else { throw TokenizerError.template("modulo by zero") }
                    if y == -1 { return .int(0) }
                    let m = x % y; return .int(m != 0 && (m < 0) != (y < 0) ? m + y : m)
                default:
                    if y < 0 { return .double(pow(Double(x), Double(y))) }
                    var r = 1, base = x, e = y
                    while e > 0 {
                        if e & 1 == 1 {
                            let m = r.multipliedReportingOverflow(by: base);
                            guard !m.overflow else { return try exact(m) }; r = m.partialValue
                        }
                        e >>= 1
                        if e > 0 {
                            let m = base.multipliedReportingOverflow(by: base);
                            guard !m.overflow else { return try exact(m) }; base = m.partialValue
                        }
                    }
                    return .int(r)
                }
            }
            guard let x = a.number, let y = b.number else {
                throw TokenizerError.template("bad operands for \(op): \(a.repr), \(b.repr)")
            }
            switch op {
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/": return .double(x / y)
            case "//": return .double((x / y).rounded(.down))
            case "%": return .double(x - y * (x / y).rounded(.down))
            default: return .double(pow(x, y))
            }
        default: throw TokenizerError.template("unsupported operator \(op)")
        }
    }

    static func method(_ o: JValue, _ name: String, _ a: [JValue], _ k: [String: JValue]) throws -> JValue {
        if case let .string(s) = o {
            let chars = a.first.map { $0.rendered }
            func stripSet(_ c: Character) -> Bool { chars.map { $0.contains(c) } ?? c.isWhitespace }
            switch name {
            case "strip": return .string(String(s.drop(while: stripSet).reversed().drop(while: stripSet).reversed()))
            case "lstrip": return .string(String(s.drop(while: stripSet)))
            case "rstrip": return .string(String(s.reversed().drop(while: stripSet).reversed()))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(s.capitalized)
            case "capitalize": return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
            case "startswith":
                if case let .array(opts)? = a.first { return .bool(opts.contains { s.hasPrefix($0.rendered) }) }
                return .bool(s.hasPrefix(a.first?.rendered ?? ""))
            case "endswith":
                if case let .array(opts)? = a.first { return .bool(opts.contains { s.hasSuffix($0.rendered) }) }
                return .bool(s.hasSuffix(a.first?.rendered ?? ""))
            case "split":
                if let sep = a.first, case let .string(sp) = sep {
                    return .array(s.components(separatedBy: sp).map { .string($0) })
                }
                return .array(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
            case "replace":
                guard a.count >= 2 else { throw TokenizerError.template("replace needs 2 arguments") }
                return .string(s.replacingOccurrences(of: a[0].rendered, with: a[1].rendered))
            case "format":
                return .string(pyFormat(s, a))
            case "count":
                let sub = a.first?.rendered ?? ""
                return .int(sub.isEmpty ? s.count + 1 : s.components(separatedBy: sub).count - 1)
            case "find":
                guard let r = s.range(of: a.first?.rendered ?? "") else { return .int(-1) }
                return .int(s.distance(from: s.startIndex, to: r.lowerBound))
            case "join":
                return .string((a.first?.items ?? []).map { $0.rendered }.joined(separator: s))
            default: break
            }
        }
        if case let .dict(d) = o {
            switch name {
            case "items": return .array(d.keys.map { .array([.string($0), d[$0]!]) })
            case "keys": return .array(d.keys.map { .string($0) })
            case "values": return .array(d.keys.map { d[$0]! })
            case "get": return d[a.first?.rendered ?? ""] ?? (a.count > 1 ? a[1] : .none)
            default: break
            }
        }
        throw TokenizerError.template("unsupported method \(name) on \(o.repr)")
    }

    /// Python `%`-style formatting for `%s`/`%d`.
    static func pyFormat(_ s: String, _ a: [JValue]) -> String {
        var out = "", i = 0
        var it = s.makeIterator()
        while let c = it.next() {
            if c == "%", let f = it.next() {
                if f == "%" { out += "%"; continue }
                let v = i < a.count ? a[i] : .undefined; i += 1
                out +=
                    (f == "d"
                        ? (v.number.flatMap { integer(.double($0.rounded(.towardZero))) }.map { String($0) }
                            ?? v.rendered) : v.rendered)
            } else {
                out.append(c)
            }
        }
        return out
    }

    static func filter(_ v: JValue, _ name: String, _ a: [JValue], _ k: [String: JValue]) throws -> JValue {
        switch name {
        case "trim": return try method(.string(v.rendered), "strip", a, [:])
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.count)
            case let .array(x): return .int(x.count)
            case let .dict(d): return .int(d.keys.count)
            default: return .int(0)
            }
        case "tojson":
            let indent = try (k["indent"] ?? a.first).flatMap { x -> Int? in
                if case .none = x { return nil }
                if x.isUndefined { return nil }
                guard let i = integer(x), (0...maxIndent).contains(i) else {
                    throw TokenizerError.template("tojson indent \(x.repr) is not in 0...\(maxIndent)")
                }
                return i
            }
            return .string(v.json(indent: indent))
        case "upper", "lower", "title", "capitalize": return try method(.string(v.rendered), name, [], [:])
        case "string": return .string(v.rendered)
        case "safe": return v
        case "e", "escape":
            return .string(TextEscaping.htmlEscaped(v.rendered))
        case "int":
            if let n = v.number {
                guard let i = integer(.double(n.rounded(.towardZero))) else {
                    throw TokenizerError.template("int of \(v.repr) is out of range")
                }
                return .int(i)
            }
            return .int(Int(v.rendered.trimmingCharacters(in: .whitespaces)) ?? 0)
        case "float": return .double(v.number ?? Double(v.rendered) ?? 0)
        case "list": return .array(v.items ?? [])
        case "first": return v.items?.first ?? .undefined
        case "last": return v.items?.last ?? .undefined
        case "reverse":
            if case let .string(s) = v { return .string(String(s.reversed())) }
            return .array((v.items ?? []).reversed())
        case "join":
            let sep = a.first?.rendered ?? ""
            if let attr = k["attribute"]?.rendered {
                return .string(
                    (v.items ?? []).map {
                        if case let .dict(d) = $0 { return d[attr]?.rendered ?? "" }; return ""
                    }.joined(separator: sep))
            }
            return .string((v.items ?? []).map { $0.rendered }.joined(separator: sep))
        case "default", "d":
            let dflt = a.first ?? .string("")
            let boolean = (a.count > 1 ? a[1] : k["boolean"] ?? .bool(false)).truthy
            if v.isUndefined || (boolean && !v.truthy) { return dflt }
            return v
        case "replace":
            guard a.count >= 2 else { throw TokenizerError.template("replace needs 2 arguments") }
            return .string(v.rendered.replacingOccurrences(of: a[0].rendered, with: a[1].rendered))
        case "items":
            if case let .dict(d) = v { return .array(d.keys.map { .array([.string($0), d[$0]!]) }) }
            return .array([])
        case "selectattr", "rejectattr":
            guard let attr = a.first?.rendered else { throw TokenizerError.template("\(name) needs an attribute") }
            let testName = a.count > 1 ? a[1].rendered : nil
            let testArgs = Array(a.dropFirst(2))
            var out = [JValue]()
            for item in v.items ?? [] {
                var val = JValue.undefined
                if case let .dict(d) = item { val = d[attr] ?? .undefined }
                let ok = try testName.map { try test(val, $0, testArgs) } ?? val.truthy
                if ok == (name == "selectattr") { out.append(item) }
            }
            return .array(out)
        case "map":
            if let attr = k["attribute"]?.rendered {
                return .array(
                    (v.items ?? []).map {
                        if case let .dict(d) = $0 { return d[attr] ?? .undefined }; return .undefined
                    })
            }
            guard let f = a.first?.rendered else { throw TokenizerError.template("map needs a filter or attribute") }
            return .array(try (v.items ?? []).map { try filter($0, f, Array(a.dropFirst()), [:]) })
        case "unique":
            var out = [JValue]()
            for x in v.items ?? [] where !out.contains(where: { $0 == x }) { out.append(x) }
            return .array(out)
        case "format": return .string(pyFormat(v.rendered, a))
        case "abs": if case let .int(i) = v { return .int(abs(i)) }; return .double(abs(v.number ?? 0))
        case "indent":
            let width =
                try a.first.map { x -> Int in
                    guard let i = integer(x), (0...maxIndent).contains(i) else {
                        throw TokenizerError.template("indent width \(x.repr) is not in 0...\(maxIndent)")
                    }
                    return i
                } ?? 4
            let pad = String(repeating: " ", count: width)
            let lines = v.rendered.components(separatedBy: "\n")
            let first = (k["first"] ?? (a.count > 1 ? a[1] : .bool(false))).truthy
            return .string(
                lines.enumerated().map { i, l in (i == 0 && !first) || l.isEmpty ? l : pad + l }.joined(separator: "\n")
            )
        default:
            throw TokenizerError.template("unsupported filter '\(name)'")
        }
    }

    static func test(_ v: JValue, _ name: String, _ a: [JValue]) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "sequence", "iterable":
            switch v {
            case .array, .string, .dict: return true;
            default: return false
            }
        case "callable":
            switch v {
            case .function, .macro: return true;
            default: return false
            }
        case "equalto", "eq", "==": return v == (a.first ?? .undefined)
        case "ne", "!=": return !(v == (a.first ?? .undefined))
        case "even": return (integer(v) ?? 1) % 2 == 0
        case "odd": return (integer(v) ?? 0) % 2 != 0
        case "in": return try binary("in", v, a.first ?? .undefined).truthy
        case "lower": return v.rendered == v.rendered.lowercased()
        case "upper": return v.rendered == v.rendered.uppercased()
        default: throw TokenizerError.template("unsupported test '\(name)'")
        }
    }
}
