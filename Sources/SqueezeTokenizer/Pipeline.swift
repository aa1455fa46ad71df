import Foundation

/// A text normalizer from tokenizer.json.
indirect enum Normalizer {
    case sequence([Normalizer])
    case nfc, nfkc, nfd, nfkd
    case prepend(String)
    case replaceLiteral(String, String)
    case replaceRegex(NSRegularExpression, String)
    case lowercase
    case strip(left: Bool, right: Bool)

    func apply(_ s: String) -> String {
        switch self {
        case let .sequence(list): return list.reduce(s) { $1.apply($0) }
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .replaceLiteral(a, b): return a.isEmpty ? s : s.replacingOccurrences(of: a, with: b)
        case let .replaceRegex(re, b):
            let ns = s as NSString
            return re.stringByReplacingMatches(
                in: s, range: NSRange(location: 0, length: ns.length),
                withTemplate: NSRegularExpression.escapedTemplate(for: b))
        case .lowercase: return s.lowercased()
        case let .strip(left, right):
            var u = Substring(s).unicodeScalars
            if left { while let f = u.first, f.properties.isWhitespace { u.removeFirst() } }
            if right { while let l = u.last, l.properties.isWhitespace { u.removeLast() } }
            return String(u)
        }
    }
}

/// A decoder from tokenizer.json, applied to the list of token strings (`decode_chain`).
indirect enum Decoder {
    case sequence([Decoder])
    case byteLevel
    case byteFallback
    case metaspace(replacement: String, stripFirst: Bool)
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    case replace(pattern: String, content: String)

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case let .sequence(list):
            return list.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens {
                if let b = ByteLevelMap.decode(t) {
                    bytes.append(contentsOf: b)
                } else {
                    bytes.append(contentsOf: Array(t.utf8))
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .byteFallback:
            var out = [String](); var pending = [UInt8]()
            func flush() {
                if pending.isEmpty { return }
                if firstInvalidUTF8(pending) == nil {
                    out.append(String(decoding: pending, as: UTF8.self))
                } else {
                    out.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Decoder.byteToken(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case let .metaspace(rep, stripFirst):
            return tokens.enumerated().map { i, t in
                var s = t.replacingOccurrences(of: rep, with: " ")
                if i == 0 && stripFirst && s.hasPrefix(" ") { s.removeFirst() }
                return s
            }
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { t in
                var chars = Array(t)
                var s = 0
                while s < start && s < chars.count && chars[s] == content { s += 1 }
                chars.removeFirst(s)
                var e = 0
                while e < stop && !chars.isEmpty && chars[chars.count - 1] == content { chars.removeLast(); e += 1 }
                return String(chars)
            }
        case let .replace(pattern, content):
            return tokens.map { $0.replacingOccurrences(of: pattern, with: content) }
        }
    }

    /// The byte of a `<0xNN>` token.
    static func byteToken(_ t: String) -> UInt8? {
        let u = t.utf8
        guard u.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">") else { return nil }
        return UInt8(t.dropFirst(3).prefix(2), radix: 16)
    }
}

/// A token added on top of the model's vocabulary, matched in the text before the model runs.
struct AddedToken {
    var content: String
    var bytes: [UInt8]
    var id: Int
    var special: Bool
    var lstrip = false
    var rstrip = false
    var singleWord = false
    var normalized = false
}

/// Finds added tokens in text: leftmost-longest, honouring lstrip/rstrip/single_word.
struct AddedTokenMatcher {
    let tokens: [AddedToken]
    private var byFirstByte: [[Int]] = Array(repeating: [], count: 256)

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        for (i, t) in tokens.enumerated() where !t.bytes.isEmpty { byFirstByte[Int(t.bytes[0])].append(i) }
        for b in 0..<256 { byFirstByte[b].sort { tokens[$0].bytes.count > tokens[$1].bytes.count } }
    }

    var isEmpty: Bool { tokens.isEmpty }

    enum Segment { case text(ArraySlice<UInt8>, isFirst: Bool), token(Int) }

    private static func isWordByte(_ bytes: [UInt8], before i: Int) -> Bool {
        guard i > 0 else { return false }
        var k = i - 1
        while k > 0 && bytes[k] & 0xC0 == 0x80 { k -= 1 }
        let s = String(decoding: bytes[k..<i], as: UTF8.self).unicodeScalars.first!
        return isWord(s)
    }
    private static func isWordByte(_ bytes: [UInt8], at i: Int) -> Bool {
        guard i < bytes.count else { return false }
        var e = i + 1
        while e < bytes.count && bytes[e] & 0xC0 == 0x80 { e += 1 }
        let s = String(decoding: bytes[i..<e], as: UTF8.self).unicodeScalars.first!
        return isWord(s)
    }
    private static func isWord(_ s: Unicode.Scalar) -> Bool {
        let c = CharClass.classify(s.value)
        return c & (CharClass.letter | CharClass.number | CharClass.mark | CharClass.connector) != 0
    }
    private static func isSpace(_ b: UInt8) -> Bool { b == 32 || (b >= 9 && b <= 13) }

    /// Splits `bytes` into text segments and added-token ids. `skipSpecial` leaves special tokens as text.
    func split(_ bytes: [UInt8], skipSpecial: Bool) -> [Segment] {
        var out = [Segment]()
        if tokens.isEmpty { return bytes.isEmpty ? [] : [.text(bytes[...], isFirst: true)] }
        var textStart = 0
        var i = 0
        let n = bytes.count
        while i < n {
            let cands = byFirstByte[Int(bytes[i])]
            var matched: Int? = nil
            if !cands.isEmpty {
                for ci in cands {
                    let t = tokens[ci]
                    if skipSpecial && t.special { continue }
                    let len = t.bytes.count
                    guard i + len <= n, bytes[i..<(i + len)].elementsEqual(t.bytes) else { continue }
                    if t.singleWord
                        && (AddedTokenMatcher.isWordByte(bytes, before: i)
                            || AddedTokenMatcher.isWordByte(bytes, at: i + len))
                    {
                        continue
                    }
                    matched = ci; break
                }
            }
            guard let ci = matched else { i += 1; continue }
            let t = tokens[ci]
            var s = i, e = i + t.bytes.count
            if t.lstrip { while s > textStart && AddedTokenMatcher.isSpace(bytes[s - 1]) { s -= 1 } }
            if t.rstrip { while e < n && AddedTokenMatcher.isSpace(bytes[e]) { e += 1 } }
            if s > textStart { out.append(.text(bytes[textStart..<s], isFirst: textStart == 0)) }
            out.append(.token(t.id))
            i = e; textStart = e
        }
        if textStart < n { out.append(.text(bytes[textStart..<n], isFirst: textStart == 0)) }
        return out
    }
}

/// The post-processor's template for a single sequence.
enum TemplatePiece { case sequence, special([Int]) }
