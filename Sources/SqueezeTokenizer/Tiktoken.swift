import Foundation

/// The pre-tokenizer regex of a tiktoken encoding.
public enum TiktokenPattern: String, Sendable, CaseIterable {
    /// `gpt2`, `r50k_base`, `p50k_base`: `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    case gpt2
    /// `cl100k_base`: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    case cl100k

    var splitter: Splitter {
        switch self {
        case .gpt2: return .split(.scanner(.gpt2), .isolated, invert: false)
        case .cl100k: return .split(.scanner(.llama3(maxDigits: 3)), .isolated, invert: false)
        }
    }

    /// The pattern tiktoken uses for a `.tiktoken` file named after one of its encodings
    /// (`r50k_base`, `p50k_base`, `gpt2` → `.gpt2`; anything else → `.cl100k`).
    public static func forFile(named name: String) -> TiktokenPattern {
        let base = name.lowercased()
        return base.hasPrefix("r50k") || base.hasPrefix("p50k") || base.hasPrefix("gpt2") ? .gpt2 : .cl100k
    }
}

/// tiktoken's mergeable ranks: token bytes → rank (the rank is also the token id).
public struct TiktokenRanks: Sendable {
    /// Token bytes → rank.
    public var ranks: [[UInt8]: Int]
    /// The file the ranks came from.
    public var source: String

    public init(ranks: [[UInt8]: Int], source: String) { self.ranks = ranks; self.source = source }

    /// One more than the highest rank.
    public var count: Int { (ranks.values.max() ?? -1) + 1 }

    /// Reads a `.tiktoken` file: one `base64(token bytes) rank` line per token (tiktoken's
    /// `load_tiktoken_bpe` format). Errors name the file and line.
    public init(tiktokenFile path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TokenizerError.unreadable(file: path, reason: error.localizedDescription)
        }
        var ranks = [[UInt8]: Int](minimumCapacity: data.count / 12)
        var lineNo = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            var l = line
            if l.last == UInt8(ascii: "\r") { l = l.dropLast() }
            if l.isEmpty { continue }
            let parts = l.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
            guard parts.count == 2 else {
                throw TokenizerError.malformed(
                    file: path, reason: "line \(lineNo): expected 'base64 rank', got \(parts.count) fields")
            }
            guard let tok = Data(base64Encoded: Data(parts[0])) else {
                throw TokenizerError.malformed(file: path, reason: "line \(lineNo): invalid base64 token")
            }
            guard let rank = Int(String(decoding: parts[1], as: UTF8.self)), rank >= 0 else {
                throw TokenizerError.malformed(file: path, reason: "line \(lineNo): rank is not a non-negative integer")
            }
            // Ranks index a table of one entry per rank: bounded by the file's size, a rank near
            // 2^31 in a small file is refused instead of allocating tens of GB.
            guard rank < min(data.count, Int(Int32.max)) else {
                throw TokenizerError.malformed(
                    file: path,
                    reason: "line \(lineNo): rank \(rank) is out of range (0..<\(min(data.count, Int(Int32.max))))")
            }
            guard !tok.isEmpty else {
                throw TokenizerError.malformed(file: path, reason: "line \(lineNo): empty token")
            }
            ranks[[UInt8](tok)] = rank
        }
        guard !ranks.isEmpty else { throw TokenizerError.malformed(file: path, reason: "no ranks") }
        self.init(ranks: ranks, source: path)
    }

    /// Ranks from a GPT-2 `vocab.json` (= OpenAI's `encoder.json`): the id of each byte-level
    /// token is its rank (`<|endoftext|>` and other non-byte-level entries are left out).
    public init(gpt2VocabJSON path: String) throws {
        let (vj, fileBytes) = try readJSONSized(path)
        var ranks = [[UInt8]: Int](minimumCapacity: vj.count)
        for (k, v) in vj.pairs {
            let id = try checkedTokenId(v, limit: fileBytes, file: path, field: "vocab[\(k)]")
            if k == "<|endoftext|>" { continue }
            guard let bytes = ByteLevelMap.decode(k) else { continue }
            ranks[bytes] = id
        }
        self.init(ranks: ranks, source: path)
    }
}

extension Tokenizer {
    /// A tiktoken encoding: rank-based byte-level BPE (the adjacent pair whose concatenated bytes
    /// have the lowest rank merges first; a piece that is itself a token is taken whole), the
    /// encoding's pre-tokenizer regex, and special tokens matched before the regex (as
    /// `encode(text, allowed_special="all")`). `eosToken`, if among the special tokens, is EOS.
    public convenience init(
        tiktoken: TiktokenRanks, pattern: TiktokenPattern, specialTokens: [String: Int],
        eosToken: String? = "<|endoftext|>", padToken: String? = nil
    ) throws {
        let file = tiktoken.source
        let n = tiktoken.count
        for b in 0..<256 where tiktoken.ranks[[UInt8(b)]] == nil {
            throw TokenizerError.malformed(file: file, reason: String(format: "no rank for the single byte 0x%02X", b))
        }
        // Ranks are Int32 ids; one out of range would trap below.
        if let bad = tiktoken.ranks.values.first(where: { $0 < 0 || $0 >= Int(Int32.max) }) {
            throw TokenizerError.malformed(file: file, reason: "rank \(bad) is out of range")
        }
        var vocab = Vocab(minimumCapacity: tiktoken.ranks.count)
        var idToToken = [String](repeating: "", count: n)
        for (bytes, rank) in tiktoken.ranks {
            let s = String(decoding: ByteLevelMap.encode(bytes), as: UTF8.self)
            vocab[s] = Int32(rank)
            idToToken[rank] = s
        }
        // Merges implied by the ranks: every split of a token into two tokens merges to it, at its rank.
        var merges = [UInt64: UInt64](minimumCapacity: tiktoken.ranks.count * 2)
        for (bytes, rank) in tiktoken.ranks where bytes.count >= 2 {
            for k in 1..<bytes.count {
                guard let a = tiktoken.ranks[Array(bytes[..<k])], let b = tiktoken.ranks[Array(bytes[k...])] else {
                    continue
                }
                merges[BPEModel.pairKey(Int32(a), Int32(b))] = (UInt64(rank) << 32) | UInt64(rank)
            }
        }
        let model = BPEModel(
            idToToken: idToToken, vocab: vocab, merges: merges, byteLevel: true, byteFallback: false,
            unkId: nil, fuseUnk: false, ignoreMerges: true)
        var added = [AddedToken]()
        for (content, id) in specialTokens.sorted(by: { $0.value < $1.value }) {
            guard id >= 0 else {
                throw TokenizerError.malformed(file: file, reason: "special token \(content) has a negative id")
            }
            if let clash = tiktoken.ranks.first(where: { $0.value == id }) {
                throw TokenizerError.malformed(
                    file: file, reason: "special token \(content) id \(id) is also the rank of \(clash.key)")
            }
            added.append(AddedToken(content: content, bytes: Array(content.utf8), id: id, special: true))
        }
        let eos = eosToken.flatMap { specialTokens[$0] }
        let pad = padToken.flatMap { specialTokens[$0] }
        var strings: [String: String] = [:]
        if let e = eosToken, eos != nil { strings["eos_token"] = e }
        if let p = padToken, pad != nil { strings["pad_token"] = p }
        try self.init(
            source: file, model: model, normalizer: nil, transform: SegmentTransform(), splitters: [pattern.splitter],
            added: added, template: nil, decoder: .byteLevel, bos: nil, eos: eos, unk: nil, pad: pad,
            eosIds: [], addBOS: false, addEOS: false, chatTemplate: nil, specialTokenStrings: strings)
    }

    /// Loads a `.tiktoken` file with tiktoken's pattern for its name (see `TiktokenPattern.forFile`).
    /// A file named `cl100k_base.tiktoken` gets cl100k_base's special tokens; otherwise
    /// `<|endoftext|>` is numbered right after the ranks, as in tiktoken's `gpt2`/`r50k_base`.
    public convenience init(tiktokenPath: String) throws {
        let r = try TiktokenRanks(tiktokenFile: tiktokenPath)
        let name = URL(fileURLWithPath: tiktokenPath).lastPathComponent
        var special = ["<|endoftext|>": r.count]
        if name.lowercased().hasPrefix("cl100k_base") && r.count == 100256 {
            special = [
                "<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276,
            ]
        }
        try self.init(tiktoken: r, pattern: TiktokenPattern.forFile(named: name), specialTokens: special)
    }

    /// The special tokens XGen-7B (Salesforce `tokenization_xgen.py`) numbers after its
    /// whitespace ranks, in order.
    public static let xgenSpecialTokens = [
        "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>", "<gh_stars>",
        "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
        "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>", "<commit_msg>",
        "<commit_after>", "<reponame>",
    ]

    /// XGen-7B's tokenizer (`XgenTokenizer`) over the ranks of tiktoken's `gpt2` encoding: the gpt2
    /// pattern; `<|endoftext|>` right after the base ranks (50256 for the real gpt2 ranks); runs of
    /// 31 down to 2 spaces, then 9 down to 2 tabs, appended as mergeable ranks from the base
    /// vocabulary size on (50257...); then the FIM/metadata special tokens (`xgenSpecialTokens`).
    /// `<|endoftext|>` is EOS and padding; no BOS is added.
    public convenience init(xgenBase base: TiktokenRanks) throws {
        var ranks = base
        let endOfText = base.count
        var next = endOfText + 1
        for n in stride(from: 31, through: 2, by: -1) {
            ranks.ranks[[UInt8](repeating: 32, count: n)] = next; next += 1
        }
        for n in stride(from: 9, through: 2, by: -1) { ranks.ranks[[UInt8](repeating: 9, count: n)] = next; next += 1 }
        var special = ["<|endoftext|>": endOfText]
        for s in Tokenizer.xgenSpecialTokens { special[s] = next; next += 1 }
        try self.init(
            tiktoken: ranks, pattern: .gpt2, specialTokens: special, eosToken: "<|endoftext|>",
            padToken: "<|endoftext|>")
    }

    /// Whether a model directory holds an XGen tokenizer (`tokenizer_config.json` names
    /// `XgenTokenizer` as its class or in `auto_map`).
    static func isXGenDirectory(_ dir: URL) -> Bool {
        let cfg = dir.appendingPathComponent("tokenizer_config.json").path
        guard FileManager.default.fileExists(atPath: cfg), let o = try? readJSON(cfg) else { return false }
        if o["tokenizer_class"] as? String == "XgenTokenizer" { return true }
        if let am = o["auto_map"] as? JSONObject, let at = am["AutoTokenizer"] as? [Any],
            at.contains(where: { ($0 as? String)?.hasSuffix(".XgenTokenizer") ?? false })
        {
            return true
        }
        return false
    }

    /// Loads XGen's tokenizer from a model directory. XGen's Hugging Face repositories ship no
    /// vocabulary (tiktoken downloads `gpt2` at run time), so the directory must hold the gpt2
    /// ranks: a `.tiktoken` file (`gpt2.tiktoken` or `r50k_base.tiktoken` preferred), or GPT-2's
    /// `vocab.json` (OpenAI's `encoder.json`).
    public convenience init(xgenDirectory path: String) throws {
        let dir = URL(fileURLWithPath: path)
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        let tk = files.filter { $0.hasSuffix(".tiktoken") }
        let preferred = ["gpt2.tiktoken", "r50k_base.tiktoken"].first(where: tk.contains) ?? tk.first
        if let f = preferred {
            try self.init(xgenBase: try TiktokenRanks(tiktokenFile: dir.appendingPathComponent(f).path))
        } else if files.contains("vocab.json") {
            try self.init(xgenBase: try TiktokenRanks(gpt2VocabJSON: dir.appendingPathComponent("vocab.json").path))
        } else {
            throw TokenizerError.unreadable(
                file: path,
                reason:
                    "XGen tokenizer: no gpt2 ranks (gpt2.tiktoken, r50k_base.tiktoken or GPT-2 vocab.json) in the directory; XGen's repository does not ship them, tiktoken downloads them"
            )
        }
    }
}
