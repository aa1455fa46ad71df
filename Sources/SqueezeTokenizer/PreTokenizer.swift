import Foundation

/// How a split keeps its delimiters (Hugging Face `SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// The regexes that have a hand-written scanner. Each implements the named regex exactly,
/// over Unicode scalars, with `\p{L}`, `\p{N}` and `\s` (White_Space) as Oniguruma defines them.
enum ScanRegex {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (Llama-3); with `maxDigits` 1 it is Qwen2's regex (`\p{N}` instead of `\p{N}{1,3}`).
    case llama3(maxDigits: Int)

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The scanner for a regex source text, if there is one.
    static func known(_ pattern: String) -> ScanRegex? {
        switch pattern {
        case gpt2Pattern: return .gpt2
        case llama3Pattern: return .llama3(maxDigits: 3)
        case qwen2Pattern: return .llama3(maxDigits: 1)
        default: return nil
        }
    }

    /// Splits `lo..<hi` of `t` into consecutive matches (these regexes match every scalar).
    @inline(__always)
    func split(_ t: ScalarText, _ lo: Int, _ hi: Int, into out: inout [Range<Int>]) {
        t.sc.withUnsafeBufferPointer { sc in
            t.cls.withUnsafeBufferPointer { cls in
                var i = lo
                while i < hi {
                    let e: Int
                    switch self {
                    case .gpt2: e = ScanRegex.gpt2Match(sc, cls, i, hi)
                    case .llama3(let d): e = ScanRegex.llama3Match(sc, cls, i, hi, maxDigits: d)
                    }
                    out.append(i..<e)
                    i = e
                }
            }
        }
    }

    /// Length of a contraction `'s|'t|'re|'ve|'m|'ll|'d` at `i` (0 if none).
    @inline(__always)
    static func contraction(_ sc: UnsafeBufferPointer<UInt32>, _ i: Int, _ hi: Int, caseInsensitive: Bool) -> Int {
        guard sc[i] == 39, i + 1 < hi else { return 0 }
        func low(_ v: UInt32) -> UInt32 { caseInsensitive && v >= 65 && v <= 90 ? v + 32 : v }
        let a = low(sc[i + 1])
        if a == 115 || a == 116 || a == 109 || a == 100 { return 2 }  // s t m d
        if i + 2 < hi {
            let b = low(sc[i + 2])
            if (a == 114 && b == 101) || (a == 118 && b == 101) || (a == 108 && b == 108) { return 3 }  // re ve ll
        }
        return 0
    }

    static func gpt2Match(
        _ sc: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int
    ) -> Int {
        let L = CharClass.letter, N = CharClass.number, S = CharClass.space
        let c = contraction(sc, i, hi, caseInsensitive: false)
        if c > 0 { return i + c }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a leading space can only help when the
        // next scalar is not whitespace; without it the space itself matches none of the three.
        let start = (sc[i] == 32 && i + 1 < hi && cls[i + 1] & S == 0) ? i + 1 : i
        let k0 = cls[start]
        if k0 & L != 0 {
            var e = start + 1; while e < hi && cls[e] & L != 0 { e += 1 }; return e
        }
        if k0 & N != 0 {
            var e = start + 1; while e < hi && cls[e] & N != 0 { e += 1 }; return e
        }
        if k0 & (L | N | S) == 0 {
            var e = start + 1; while e < hi && cls[e] & (L | N | S) == 0 { e += 1 }; return e
        }
        // `\s+(?!\S)|\s+`
        var e = i + 1; while e < hi && cls[e] & S != 0 { e += 1 }
        if e == hi { return e }
        if e - 1 > i { return e - 1 }
        return e
    }

    static func llama3Match(
        _ sc: UnsafeBufferPointer<UInt32>, _ cls: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int, maxDigits: Int
    ) -> Int {
        let L = CharClass.letter, N = CharClass.number, S = CharClass.space, CRLF = CharClass.crlf
        let c = contraction(sc, i, hi, caseInsensitive: true)
        if c > 0 { return i + c }
        let k0 = cls[i]
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if k0 & (CRLF | L | N) == 0 && i + 1 < hi && cls[i + 1] & L != 0 {
            var e = i + 2; while e < hi && cls[e] & L != 0 { e += 1 }; return e
        }
        if k0 & L != 0 {
            var e = i + 1; while e < hi && cls[e] & L != 0 { e += 1 }; return e
        }
        // `\p{N}{1,maxDigits}`
        if k0 & N != 0 {
            var e = i + 1; while e < hi && e - i < maxDigits && cls[e] & N != 0 { e += 1 }; return e
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var s = i
        if sc[i] == 32 && i + 1 < hi && cls[i + 1] & (S | L | N) == 0 { s = i + 1 }
        if cls[s] & (S | L | N) == 0 {
            var e = s + 1; while e < hi && cls[e] & (S | L | N) == 0 { e += 1 }
            while e < hi && cls[e] & CRLF != 0 { e += 1 }
            return e
        }
        // Whitespace alternatives: `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`.
        var j = i; var lastCRLF = -1
        while j < hi && cls[j] & S != 0 { if cls[j] & CRLF != 0 { lastCRLF = j }; j += 1 }
        if lastCRLF >= 0 { return lastCRLF + 1 }
        if j == hi { return j }
        if j - 1 > i { return j - 1 }
        return j
    }
}

/// The pattern of a `Split` pre-tokenizer.
enum SplitPattern {
    case scanner(ScanRegex)
    case literal([UInt32])
    case regex(NSRegularExpression)
}

/// One range-splitting step of a pre-tokenizer pipeline (works on scalar ranges, no rewriting).
enum Splitter {
    case split(SplitPattern, SplitBehavior, invert: Bool)
    /// `Digits`: individual digits isolated, or runs of digits isolated.
    case digits(individual: Bool)
    /// `Whitespace`: `\w+|[^\w\s]+`.
    case whitespace
    /// `WhitespaceSplit`: split on whitespace, which is removed.
    case whitespaceSplit
    /// `Punctuation`.
    case punctuation(SplitBehavior)
    /// `Metaspace` splitting: on the replacement scalar, merged with the next piece.
    case metaspace(UInt32)

    func apply(_ t: ScalarText, _ pieces: [Range<Int>]) -> [Range<Int>] {
        var out = [Range<Int>](); out.reserveCapacity(pieces.count * 2)
        for p in pieces where !p.isEmpty { apply(t, p, &out) }
        return out
    }

    /// Builds pieces from sorted, non-overlapping matches in `r`, following `behavior` exactly as
    /// Hugging Face's `NormalizedString::split` does (consecutive delimiters are separate matches).
    static func assemble(_ r: Range<Int>, _ matches: [Range<Int>], _ behavior: SplitBehavior, _ out: inout [Range<Int>])
    {
        // All pieces of r: gaps (false) and matches (true).
        var pieces = [(Range<Int>, Bool)]()
        var pos = r.lowerBound
        for m in matches {
            if m.lowerBound > pos { pieces.append((pos..<m.lowerBound, false)) }
            pieces.append((m, true))
            pos = m.upperBound
        }
        if pos < r.upperBound { pieces.append((pos..<r.upperBound, false)) }
        switch behavior {
        case .isolated:
            for (p, _) in pieces { out.append(p) }
        case .removed:
            for (p, isMatch) in pieces where !isMatch { out.append(p) }
        case .contiguous:
            var prevMatch = false
            var acc = [Range<Int>]()
            for (p, isMatch) in pieces {
                if isMatch && prevMatch, let last = acc.last {
                    acc[acc.count - 1] = last.lowerBound..<p.upperBound
                } else {
                    acc.append(p)
                }
                prevMatch = isMatch
            }
            out.append(contentsOf: acc)
        case .mergedWithPrevious:
            var prevMatch = false
            var acc = [Range<Int>]()
            for (p, isMatch) in pieces {
                if isMatch && !prevMatch, let last = acc.last {
                    acc[acc.count - 1] = last.lowerBound..<p.upperBound
                } else {
                    acc.append(p)
                }
                prevMatch = isMatch
            }
            out.append(contentsOf: acc)
        case .mergedWithNext:
            var prevMatch = false
            var acc = [Range<Int>]()
            for (p, isMatch) in pieces.reversed() {
                if isMatch && !prevMatch, let last = acc.last {
                    acc[acc.count - 1] = p.lowerBound..<last.upperBound
                } else {
                    acc.append(p)
                }
                prevMatch = isMatch
            }
            out.append(contentsOf: acc.reversed())
        }
    }

    func apply(_ t: ScalarText, _ r: Range<Int>, _ out: inout [Range<Int>]) {
        switch self {
        case let .split(.scanner(s), behavior, invert) where behavior == .isolated && !invert:
            s.split(t, r.lowerBound, r.upperBound, into: &out)
        case let .split(pattern, behavior, invert):
            var matches = Splitter.matches(pattern, t, r)
            if invert {
                var inv = [Range<Int>](); var pos = r.lowerBound
                for m in matches { if m.lowerBound > pos { inv.append(pos..<m.lowerBound) }; pos = m.upperBound }
                if pos < r.upperBound { inv.append(pos..<r.upperBound) }
                matches = inv
            }
            Splitter.assemble(r, matches, behavior, &out)
        case let .digits(individual):
            var matches = [Range<Int>]()
            var i = r.lowerBound
            while i < r.upperBound {
                if t.cls[i] & CharClass.number != 0 {
                    var e = i + 1
                    if !individual { while e < r.upperBound && t.cls[e] & CharClass.number != 0 { e += 1 } }
                    matches.append(i..<e); i = e
                } else {
                    i += 1
                }
            }
            Splitter.assemble(r, matches, .isolated, &out)
        case .whitespace:
            // \w+|[^\w\s]+ ; \w = letters, marks, numbers, connector punctuation.
            let W = CharClass.letter | CharClass.number | CharClass.mark | CharClass.connector
            var i = r.lowerBound
            while i < r.upperBound {
                let k = t.cls[i]
                if k & W != 0 {
                    var e = i + 1; while e < r.upperBound && t.cls[e] & W != 0 { e += 1 }
                    out.append(i..<e); i = e
                } else if k & CharClass.space == 0 {
                    var e = i + 1
                    while e < r.upperBound && t.cls[e] & (W | CharClass.space) == 0 { e += 1 }
                    out.append(i..<e); i = e
                } else {
                    i += 1
                }
            }
        case .whitespaceSplit:
            var i = r.lowerBound
            while i < r.upperBound {
                if t.cls[i] & CharClass.space != 0 { i += 1; continue }
                var e = i + 1; while e < r.upperBound && t.cls[e] & CharClass.space == 0 { e += 1 }
                out.append(i..<e); i = e
            }
        case let .punctuation(behavior):
            var matches = [Range<Int>]()
            for i in r where t.cls[i] & CharClass.punct != 0 || Splitter.isSymbolPunct(t.sc[i]) {
                matches.append(i..<(i + 1))
            }
            Splitter.assemble(r, matches, behavior, &out)
        case let .metaspace(rep):
            var matches = [Range<Int>]()
            for i in r where t.sc[i] == rep { matches.append(i..<(i + 1)) }
            Splitter.assemble(r, matches, .mergedWithNext, &out)
        }
    }

    /// Rust's `char::is_ascii_punctuation` includes the ASCII symbols, which `\p{P}` does not.
    static func isSymbolPunct(_ v: UInt32) -> Bool {
        v < 128 && CharClass.asciiTable[Int(v)] & CharClass.punct != 0
    }

    static func matches(_ pattern: SplitPattern, _ t: ScalarText, _ r: Range<Int>) -> [Range<Int>] {
        var out = [Range<Int>]()
        switch pattern {
        case let .scanner(s):
            s.split(t, r.lowerBound, r.upperBound, into: &out)
        case let .literal(lit):
            guard !lit.isEmpty else { return [] }
            var i = r.lowerBound
            while i + lit.count <= r.upperBound {
                var ok = true
                for k in 0..<lit.count where t.sc[i + k] != lit[k] { ok = false; break }
                if ok { out.append(i..<(i + lit.count)); i += lit.count } else { i += 1 }
            }
        case let .regex(re):
            // Fallback for patterns without a scanner: NSRegularExpression over the piece.
            let s = String(decoding: t.byteSlice(r), as: UTF8.self)
            let ns = s as NSString
            // Map UTF-16 offsets back to scalar indices.
            var u16ToScalar = [Int](repeating: 0, count: ns.length + 1)
            var u = 0
            for (k, scalar) in s.unicodeScalars.enumerated() {
                let w = scalar.value > 0xFFFF ? 2 : 1
                for d in 0..<w { u16ToScalar[u + d] = k }
                u += w
            }
            u16ToScalar[ns.length] = r.count
            for m in re.matches(in: s, range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
                out.append(
                    (r.lowerBound + u16ToScalar[m.range.location])..<(r.lowerBound
                        + u16ToScalar[m.range.location + m.range.length]))
            }
        }
        return out
    }
}

/// Segment-level rewriting done before splitting (only valid as the first pre-tokenizer).
struct SegmentTransform {
    /// ByteLevel `add_prefix_space`: prepend a space unless the segment starts with one.
    var addPrefixSpace = false
    /// Metaspace: replacement scalar for spaces, and its prepend scheme.
    var metaspace: UInt32? = nil
    var metaspacePrepend: PrependScheme = .always
    /// Prepend even when the text already starts with a space (SentencePiece / llama.cpp, and
    /// the Hugging Face `Prepend` normalizer), instead of Hugging Face Metaspace's rule.
    var metaspaceForcePrepend = false

    enum PrependScheme: String { case always, first, never }

    var isIdentity: Bool { !addPrefixSpace && metaspace == nil }

    func apply(_ bytes: [UInt8], isFirst: Bool) -> [UInt8] {
        var b = bytes
        if addPrefixSpace && b.first != 32 { b.insert(32, at: 0) }
        if let rep = metaspace {
            let repBytes = Array(String(Unicode.Scalar(rep)!).utf8)
            var out = [UInt8](); out.reserveCapacity(b.count + 8)
            let prepend = metaspacePrepend == .always || (metaspacePrepend == .first && isFirst)
            if prepend && (metaspaceForcePrepend || (!b.starts(with: repBytes) && b.first != 32)) {
                out.append(contentsOf: repBytes)
            }
            for x in b { if x == 32 { out.append(contentsOf: repBytes) } else { out.append(x) } }
            b = out
        }
        return b
    }
}
