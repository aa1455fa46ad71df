import Foundation
import SqueezeFormats
import SqueezeTokenizer

/// What `squeeze tokenize` prints: ids or pieces, counts, and encoding speed.
public enum TokenizeOutput {
    /// A printable form of a piece of text: escapes for control characters, quotes around it.
    public static func quoted(_ s: String) -> String { TextEscaping.pythonRepr(s, quote: "'") }

    /// Ids on one line (`idsOnly`), or one line per token with its id, vocabulary string and
    /// decoded text; then the counts.
    public static func report(
        tokenizer: Tokenizer, text: String, idsOnly: Bool, addSpecialTokens: Bool, countOnly: Bool = false
    ) -> String {
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

    /// One line of encoding speed.
    public static func describe(_ r: TokenizerBenchmark.Result) -> String {
        String(
            format:
                "swift squeeze: %d bytes, %d tokens; first run %.3f s (%.2f MB/s); median %.3f s: %.2f MB/s, %.0f tokens/s (1 thread)",
            r.bytes, r.tokens, r.firstSeconds, Double(r.bytes) / r.firstSeconds / 1e6, r.medianSeconds,
            r.megabytesPerSecond,
            r.tokensPerSecond)
    }
}
