import Foundation

/// Character classes used by the pre-tokenizer scanners (bit set).
enum CharClass {
    static let letter: UInt8 = 1  // \p{L}
    static let number: UInt8 = 2  // \p{N}
    static let space: UInt8 = 4  // \s (White_Space)
    static let crlf: UInt8 = 8  // \r or \n
    static let mark: UInt8 = 16  // \p{M}
    static let punct: UInt8 = 32  // \p{P} or ASCII punctuation
    static let connector: UInt8 = 64  // \p{Pc}
    static let numDigit: UInt8 = 128  // Nd

    static func classify(_ v: UInt32) -> UInt8 {
        if v < 128 { return asciiTable[Int(v)] }
        guard let s = Unicode.Scalar(v) else { return 0 }
        var c: UInt8 = 0
        let p = s.properties
        if p.isWhitespace { c |= space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: c |= letter
        case .decimalNumber: c |= number | numDigit
        case .letterNumber, .otherNumber: c |= number
        case .nonspacingMark, .spacingMark, .enclosingMark: c |= mark
        case .connectorPunctuation: c |= punct | connector
        case .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
            .finalPunctuation, .otherPunctuation:
            c |= punct
        default: break
        }
        return c
    }

    static let asciiTable: [UInt8] = {
        var t = [UInt8](repeating: 0, count: 128)
        for v in 0..<128 {
            let ch = UInt8(v)
            var c: UInt8 = 0
            if (ch >= 65 && ch <= 90) || (ch >= 97 && ch <= 122) { c |= letter }
            if ch >= 48 && ch <= 57 { c |= number | numDigit }
            if (ch >= 9 && ch <= 13) || ch == 32 { c |= space }
            if ch == 10 || ch == 13 { c |= crlf }
            if (ch >= 33 && ch <= 47) || (ch >= 58 && ch <= 64) || (ch >= 91 && ch <= 96) || (ch >= 123 && ch <= 126) {
                c |= punct
            }
            if ch == 95 { c |= connector }
            t[v] = c
        }
        return t
    }()
}

/// A run of text decoded once into scalars with their classes and byte offsets, so that
/// pre-tokenizers can split it by scalar index without re-decoding.
struct ScalarText {
    var bytes: [UInt8]
    /// Scalar values.
    var sc: [UInt32]
    /// Class bits per scalar.
    var cls: [UInt8]
    /// Byte offset of each scalar, plus a final entry equal to `bytes.count`.
    var off: [Int32]

    init(bytes: [UInt8]) {
        self.bytes = bytes
        let n = bytes.count
        var sc = [UInt32](); sc.reserveCapacity(n)
        var cls = [UInt8](); cls.reserveCapacity(n)
        var off = [Int32](); off.reserveCapacity(n + 1)
        bytes.withUnsafeBufferPointer { b in
            var i = 0
            while i < n {
                let b0 = b[i]
                off.append(Int32(i))
                if b0 < 0x80 {
                    sc.append(UInt32(b0)); cls.append(CharClass.asciiTable[Int(b0)]); i += 1; continue
                }
                var v: UInt32; var len: Int
                if b0 >= 0xF0 {
                    v = UInt32(b0 & 0x07); len = 4
                } else if b0 >= 0xE0 {
                    v = UInt32(b0 & 0x0F); len = 3
                } else {
                    v = UInt32(b0 & 0x1F); len = 2
                }
                var k = 1
                while k < len && i + k < n { v = (v << 6) | UInt32(b[i + k] & 0x3F); k += 1 }
                sc.append(v); cls.append(CharClass.classify(v)); i += len
            }
        }
        off.append(Int32(n))
        self.sc = sc; self.cls = cls; self.off = off
    }

    var count: Int { sc.count }

    func byteSlice(_ r: Range<Int>) -> ArraySlice<UInt8> {
        bytes[Int(off[r.lowerBound])..<Int(off[r.upperBound])]
    }
}

/// GPT-2's reversible byte-to-unicode map used by byte-level BPE.
enum ByteLevelMap {
    /// Byte → scalar.
    static let byteToScalar: [UInt32] = {
        var bs: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var t = [UInt32](repeating: 0, count: 256)
        for (b, c) in zip(bs, cs) { t[b] = UInt32(c) }
        return t
    }()
    /// Scalar → byte, for scalars below 324.
    static let scalarToByte: [Int16] = {
        var t = [Int16](repeating: -1, count: 324)
        for b in 0..<256 { t[Int(byteToScalar[b])] = Int16(b) }
        return t
    }()
    /// UTF-8 encoding of each byte's scalar.
    static let byteToUTF8: [[UInt8]] = byteToScalar.map { Array(String(Unicode.Scalar($0)!).utf8) }

    /// Maps raw bytes to the byte-level alphabet (as UTF-8).
    static func encode<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var out = [UInt8](); out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: byteToUTF8[Int(b)]) }
        return out
    }

    /// Maps a byte-level token string back to raw bytes; nil if a scalar is outside the alphabet.
    static func decode(_ s: String) -> [UInt8]? {
        var out = [UInt8](); out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            let v = Int(u.value)
            guard v < 324, scalarToByte[v] >= 0 else { return nil }
            out.append(UInt8(scalarToByte[v]))
        }
        return out
    }
}

/// The first invalid UTF-8 byte offset in `bytes`, or nil if valid.
func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 { i += 1; continue }
        var len = 0; var minV: UInt32 = 0; var v: UInt32 = 0
        if b0 >= 0xC2 && b0 <= 0xDF {
            len = 2; minV = 0x80; v = UInt32(b0 & 0x1F)
        } else if b0 >= 0xE0 && b0 <= 0xEF {
            len = 3; minV = 0x800; v = UInt32(b0 & 0x0F)
        } else if b0 >= 0xF0 && b0 <= 0xF4 {
            len = 4; minV = 0x10000; v = UInt32(b0 & 0x07)
        } else {
            return i
        }
        if i + len > n { return i }
        for k in 1..<len {
            let b = bytes[i + k]
            if b & 0xC0 != 0x80 { return i }
            v = (v << 6) | UInt32(b & 0x3F)
        }
        if v < minV || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) { return i }
        i += len
    }
    return nil
}
