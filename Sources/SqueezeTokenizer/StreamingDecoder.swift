import Foundation

/// Turns ids into text one token at a time. Text is emitted only when it ends in a complete
/// character (a byte-level or byte-fallback token that ends mid-character waits for the next
/// one), and the concatenation of everything emitted plus `flush()` equals `decode(ids)`.
///
/// Each step decodes only the tokens emitted by the previous step plus the pending ones (as the
/// Hugging Face `DecodeStream` does), so that position-dependent decoder rules (such as the
/// leading space a SentencePiece decoder strips from the first token) apply exactly as in a
/// one-shot decode, at O(1) amortized cost per token.
public final class StreamingDecoder {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var prefix = ""
    private var prefixIndex = 0
    /// After this many undecodable pending tokens, text is emitted anyway (it is then invalid
    /// UTF-8 in the one-shot decode too).
    private static let maxPending = 16

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the text that became complete (possibly empty).
    public func push(_ id: Int) -> String {
        ids.append(id)
        let s = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        let p = prefix.utf8.count
        if s.utf8.count > p && (!s.hasSuffix("\u{FFFD}") || ids.count - prefixIndex > StreamingDecoder.maxPending) {
            let new = String(decoding: Array(s.utf8.dropFirst(p)), as: UTF8.self)
            ids.removeFirst(prefixIndex)
            prefix = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
            prefixIndex = ids.count
            return new
        }
        return ""
    }

    /// Returns any pending text and resets the decoder.
    public func flush() -> String {
        let s = tokenizer.decode(ids, skipSpecialTokens: skipSpecialTokens)
        let p = prefix.utf8.count
        let rest = s.utf8.count > p ? String(decoding: Array(s.utf8.dropFirst(p)), as: UTF8.self) : ""
        ids.removeAll(); prefix = ""; prefixIndex = 0
        return rest
    }
}
