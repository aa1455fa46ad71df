import Foundation
import SqueezeFormats

/// The `tokenizer.ggml.*` metadata of a GGUF file, read and checked once for both `Tokenizer(gguf:)`
/// and its Hugging Face export (`TokenizerExport`).
struct GGUFTokenizerMetadata {
    let file: String
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE with merges) or "llama" (SentencePiece scores).
    let kind: String
    let tokens: [String]
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte); 1 when absent.
    let types: [Int]
    let bos, eos, pad: Int?
    /// The unknown token: `tokenizer.ggml.unknown_token_id`, else (SentencePiece) the token "<unk>".
    let unk: Int?
    /// `tokenizer.ggml.eot_token_id` and `eom_token_id`, which also end generation.
    let endTokens: Set<Int>
    /// `tokenizer.ggml.pre` ("default" when absent).
    let preTokenizer: String
    let addSpacePrefix: Bool
    /// `tokenizer.ggml.add_bos_token` / `add_eos_token` when the file says.
    let addBOS, addEOS: Bool?
    let chatTemplate: String?
    let metadata: [String: GGUFValue]

    init(_ gguf: GGUFFile) throws {
        file = gguf.path
        let md = gguf.metadata
        metadata = md
        guard let k = md["tokenizer.ggml.model"]?.string else {
            throw TokenizerError.malformed(file: file, reason: "no tokenizer.ggml.model")
        }
        guard let t = md["tokenizer.ggml.tokens"]?.stringArray, !t.isEmpty else {
            throw TokenizerError.malformed(file: file, reason: "no tokenizer.ggml.tokens")
        }
        // Ids are stored as Int32 in the vocabulary.
        guard t.count < Int(Int32.max) else {
            throw TokenizerError.malformed(file: file, reason: "tokenizer.ggml.tokens has \(t.count) entries")
        }
        kind = k
        tokens = t
        types = md["tokenizer.ggml.token_type"]?.array?.map { $0.int ?? 1 } ?? Array(repeating: 1, count: t.count)
        // A special id outside the vocabulary is ignored, as llama.cpp does (it warns and uses none).
        func id(_ key: String) -> Int? { md[key]?.int.flatMap { $0 >= 0 && $0 < t.count ? $0 : nil } }
        bos = id("tokenizer.ggml.bos_token_id")
        eos = id("tokenizer.ggml.eos_token_id")
        pad = id("tokenizer.ggml.padding_token_id")
        unk = id("tokenizer.ggml.unknown_token_id") ?? (k == "llama" ? t.firstIndex(of: "<unk>") : nil)
        endTokens = Set([id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")].compactMap { $0 })
        preTokenizer = md["tokenizer.ggml.pre"]?.string ?? "default"
        addSpacePrefix = md["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        addBOS = md["tokenizer.ggml.add_bos_token"]?.bool
        addEOS = md["tokenizer.ggml.add_eos_token"]?.bool
        chatTemplate = md["tokenizer.chat_template"]?.string
    }

    /// The token string of `id`, nil when absent or out of range.
    func name(_ id: Int?) -> String? { id.flatMap { $0 >= 0 && $0 < tokens.count ? tokens[$0] : nil } }

    /// Control tokens (special) and user-defined tokens (not special), the added tokens of a Hugging Face tokenizer.
    var addedTokens: [(id: Int, content: String, special: Bool)] {
        tokens.enumerated().compactMap { i, t in
            i < types.count && (types[i] == 3 || types[i] == 4) && !t.isEmpty ? (i, t, types[i] == 3) : nil
        }
    }

    /// `tokenizer.ggml.merges` of a "gpt2" tokenizer.
    func merges() throws -> [String] {
        guard let m = metadata["tokenizer.ggml.merges"]?.stringArray else {
            throw TokenizerError.malformed(file: file, reason: "no tokenizer.ggml.merges")
        }
        return m
    }

    /// `tokenizer.ggml.scores` of a "llama" tokenizer.
    func scores() throws -> [Double] {
        guard let s = metadata["tokenizer.ggml.scores"]?.array?.map({ $0.double ?? 0 }) else {
            throw TokenizerError.malformed(file: file, reason: "no tokenizer.ggml.scores")
        }
        return s
    }

    /// Whether token `i` takes part in SentencePiece merges (normal, user-defined or undefined type).
    func isPiece(_ i: Int) -> Bool { i < types.count ? (types[i] == 1 || types[i] == 4 || types[i] == 0) : true }

    /// The id of each piece token's string (its first occurrence), compared byte-wise as `Vocab` does.
    var pieceIds: Vocab {
        var ids = Vocab(minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where isPiece(i) && ids[t] == nil { ids[t] = Int32(i) }
        return ids
    }

    /// Every split of a piece token into two piece tokens (ids from `pieceIds`), the merges a SentencePiece vocabulary
    /// implies (as transformers' `generate_merges` finds them): `body(token, left, right, a, b)` with
    /// a + b the token's string.
    func forEachPieceSplit(
        _ pieceId: Vocab,
        _ body: (_ token: Int, _ left: Int, _ right: Int, _ a: String, _ b: String) -> Void
    ) {
        for (i, t) in tokens.enumerated() where isPiece(i) {
            let u = Array(t.unicodeScalars)
            guard u.count >= 2 else { continue }
            for k in 1..<u.count {
                var a = String.UnicodeScalarView(), b = String.UnicodeScalarView()
                a.append(contentsOf: u[0..<k]); b.append(contentsOf: u[k...])
                let sa = String(a), sb = String(b)
                guard let ia = pieceId[sa], let ib = pieceId[sb] else { continue }
                body(i, Int(ia), Int(ib), sa, sb)
            }
        }
    }
}
