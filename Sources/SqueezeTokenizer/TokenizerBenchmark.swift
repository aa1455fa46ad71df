import Foundation

/// The logic behind `squeeze tokenize`: reading input, formatting ids or pieces, and timing.
public enum TokenizeTool {
    /// Reads a text file as UTF-8, failing with the file name and offset of the first invalid byte.
    public static func readText(file: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw TokenizerError.unreadable(file: file, reason: "cannot open")
        }
        let bytes = [UInt8](data)
        if let bad = firstInvalidUTF8(bytes) { throw TokenizerError.invalidUTF8(file: file, byteOffset: bad) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A printable form of a piece of text: escapes for control characters, quotes around it.
    public static func quoted(_ s: String) -> String {
        var out = "'"
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case "'": out += "\\'"
            case "\\": out += "\\\\"
            default:
                if u.value < 0x20 || u.value == 0x7F { out += String(format: "\\x%02x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "'"
    }

    /// The report `squeeze tokenize` prints: ids on one line (`idsOnly`), or one line per token
    /// with its id, vocabulary string and decoded text; then the counts.
    public static func report(tokenizer: Tokenizer, text: String, idsOnly: Bool, addSpecialTokens: Bool, countOnly: Bool = false) -> String {
        let ids = tokenizer.encode(text, addSpecialTokens: addSpecialTokens)
        var lines = [String]()
        if !countOnly {
            if idsOnly {
                lines.append(ids.map(String.init).joined(separator: " "))
            } else {
                for id in ids {
                    lines.append("\(id)\t\(quoted(tokenizer.tokenString(id)))\t\(quoted(tokenizer.decode([id])))")
                }
            }
        }
        lines.append("\(ids.count) tokens, \(text.utf8.count) bytes, \(text.unicodeScalars.count) characters")
        return lines.joined(separator: "\n")
    }

    /// Encoding throughput of one thread.
    public struct BenchResult: Sendable {
        public var bytes: Int
        public var tokens: Int
        /// Seconds of the first encode (cold word cache).
        public var firstSeconds: Double
        /// Median seconds over the repeats after the first.
        public var medianSeconds: Double
        public var megabytesPerSecond: Double { Double(bytes) / medianSeconds / 1e6 }
        public var tokensPerSecond: Double { Double(tokens) / medianSeconds }
        public var description: String {
            String(format: "swift squeeze: %d bytes, %d tokens; first run %.3f s (%.2f MB/s); median %.3f s: %.2f MB/s, %.0f tokens/s (1 thread)",
                   bytes, tokens, firstSeconds, Double(bytes) / firstSeconds / 1e6, medianSeconds, megabytesPerSecond, tokensPerSecond)
        }
    }

    /// Encodes `text` `repeats` times on the calling thread (no special tokens added).
    public static func bench(tokenizer: Tokenizer, text: String, repeats: Int = 5) -> BenchResult {
        var times = [Double]()
        var count = 0
        for _ in 0..<max(repeats, 2) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            count = tokenizer.encode(text, addSpecialTokens: false).count
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        let warm = times.dropFirst().sorted()
        return BenchResult(bytes: text.utf8.count, tokens: count, firstSeconds: times[0], medianSeconds: warm[warm.count / 2])
    }
}
