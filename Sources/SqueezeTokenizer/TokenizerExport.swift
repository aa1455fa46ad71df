import Foundation
import SqueezeFormats

/// Writes a GGUF vocabulary (`tokenizer.ggml.*`) as Hugging Face `tokenizer.json` +
/// `tokenizer_config.json`, in the shape transformers builds from the same GGUF metadata:
///
/// - `gpt2` (byte-level BPE): the vocabulary and merges; the pre-tokenizer llama.cpp uses for
///   `tokenizer.ggml.pre` (a `Split` regex then `ByteLevel`, or `ByteLevel` with GPT-2's regex, with
///   `Digits` first for the SmolLM/StarCoder family); `ByteLevel` decoder.
/// - `llama` (SentencePiece): BPE with byte fallback and merges recovered from the scores;
///   `Metaspace` (prepend first, no split); the Replace/ByteFallback/Fuse/Strip decoder.
///
/// Control tokens become special added tokens, user-defined tokens plain added tokens; BOS/EOS
/// are added by a `TemplateProcessing` post-processor when the GGUF says so
/// (`tokenizer.ggml.add_bos_token`, else llama.cpp's default for the pre-tokenizer).
public enum TokenizerExport {
    /// `tokenizer.json` and `tokenizer_config.json` for the vocabulary of the GGUF at `path`.
    public static func files(forGGUF path: String) throws -> [String: Data] {
        let g: GGUFFile
        do { g = try GGUFFile(path: path) } catch { throw TokenizerError.unreadable(file: path, reason: "\(error)") }
        return try files(for: g)
    }

    /// `tokenizer.json` and `tokenizer_config.json` for the vocabulary of a GGUF file.
    public static func files(for gguf: GGUFFile) throws -> [String: Data] {
        let (tj, cfg) = try json(for: gguf)
        let opts: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        return [
            "tokenizer.json": try JSONSerialization.data(withJSONObject: tj, options: opts),
            "tokenizer_config.json": try JSONSerialization.data(
                withJSONObject: cfg, options: opts.union(.prettyPrinted)),
        ]
    }

    static func split(_ regex: String) -> [String: Any] {
        ["type": "Split", "pattern": ["Regex": regex], "behavior": "Isolated", "invert": false]
    }
    static func byteLevel(useRegex: Bool) -> [String: Any] {
        ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": useRegex]
    }

    /// The `pre_tokenizer` object for a llama.cpp pre-tokenizer name (the same groups as the GGUF loader).
    static func preTokenizer(
        _ name: String, file: String
    ) throws -> (json: [String: Any], ignoreMerges: Bool, addBOS: Bool?) {
        let p = try Tokenizer.ggufPreTokenizer(name, file: file)
        var steps = [[String: Any]]()
        for (k, s) in p.splitters.enumerated() {
            switch s {
            case .split(.scanner(.gpt2), .isolated, false):
                // Last: ByteLevel with GPT-2's regex splits and maps bytes at once; otherwise a Split.
                steps.append(k == p.splitters.count - 1 ? byteLevel(useRegex: true) : split(ScanRegex.gpt2Pattern))
            case .split(.scanner(.llama3(let d)), .isolated, false):
                steps.append(split(d == 1 ? ScanRegex.qwen2Pattern : ScanRegex.llama3Pattern))
            case .split(.regex(let re), .isolated, false): steps.append(split(re.pattern))
            case .digits(let individual): steps.append(["type": "Digits", "individual_digits": individual])
            default:
                throw TokenizerError.unsupportedComponent(
                    file: file, component: "tokenizer.ggml.pre export", name: name)
            }
        }
        if steps.last?["type"] as? String != "ByteLevel" { steps.append(byteLevel(useRegex: false)) }
        let json: [String: Any] = steps.count == 1 ? steps[0] : ["type": "Sequence", "pretokenizers": steps]
        return (json, p.ignoreMerges, p.addBOS)
    }

    static func json(for gguf: GGUFFile) throws -> ([String: Any], [String: Any]) {
        let g = try GGUFTokenizerMetadata(gguf)
        let file = g.file, tokens = g.tokens, bos = g.bos, eos = g.eos, unk = g.unk, pad = g.pad

        var vocab = [String: Any](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = i }
        let added: [[String: Any]] = g.addedTokens.map {
            [
                "id": $0.id, "content": $0.content, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": $0.special,
            ]
        }
        var model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "continuing_subword_prefix": NSNull(),
            "end_of_word_suffix": NSNull(), "vocab": vocab,
        ]
        var root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "normalizer": NSNull(),
        ]
        var addBOS: Bool
        switch g.kind {
        case "gpt2":
            let merges = try g.merges()
            let pre = try preTokenizer(g.preTokenizer, file: file)
            model["merges"] = merges
            model["unk_token"] = g.name(unk) ?? NSNull()
            model["fuse_unk"] = false
            model["byte_fallback"] = false
            model["ignore_merges"] = pre.ignoreMerges
            root["pre_tokenizer"] = pre.json
            root["decoder"] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true]
            addBOS = pre.addBOS ?? false
        case "llama":
            let scores = try g.scores()
            // Merges recovered from the vocabulary: every split of a normal token into two normal
            // tokens, best score first (transformers' generate_merges does the same).
            var list = [(score: Double, id: Int, left: Int, right: Int, a: String, b: String)]()
            g.forEachPieceSplit(g.pieceIds) { i, ia, ib, a, b in
                list.append((i < scores.count ? scores[i] : 0, i, ia, ib, a, b))
            }
            list.sort { ($0.score, -$0.id, -$0.left, -$0.right) > ($1.score, -$1.id, -$1.left, -$1.right) }
            model["merges"] = list.map { [$0.a, $0.b] }
            model["unk_token"] = NSNull()
            model["fuse_unk"] = true
            model["byte_fallback"] = true
            model["ignore_merges"] = false
            let prefix = g.addSpacePrefix
            root["pre_tokenizer"] = [
                "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prefix ? "first" : "never",
                "split": false,
            ]
            var dec: [[String: Any]] = [
                ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "],
                ["type": "ByteFallback"], ["type": "Fuse"],
            ]
            if prefix { dec.append(["type": "Strip", "content": " ", "start": 1, "stop": 0]) }
            root["decoder"] = ["type": "Sequence", "decoders": dec]
            addBOS = true
        default:
            throw TokenizerError.unsupportedComponent(file: file, component: "tokenizer.ggml.model", name: g.kind)
        }
        if let b = g.addBOS { addBOS = b }
        let addEOS = g.addEOS ?? false
        let bosName = addBOS ? g.name(bos) : nil, eosName = addEOS ? g.name(eos) : nil
        if bosName != nil || eosName != nil {
            func sp(_ n: String, _ type: Int) -> [String: Any] { ["SpecialToken": ["id": n, "type_id": type]] }
            func seq(_ s: String, _ type: Int) -> [String: Any] { ["Sequence": ["id": s, "type_id": type]] }
            var single = [[String: Any]](), pair = [[String: Any]]()
            if let b = bosName { single.append(sp(b, 0)) }
            single.append(seq("A", 0))
            if let e = eosName { single.append(sp(e, 0)) }
            pair = single
            if let b = bosName { pair.append(sp(b, 1)) }
            pair.append(seq("B", 1))
            if let e = eosName { pair.append(sp(e, 1)) }
            var specials = [String: Any]()
            for (n, id) in [(bosName, bos), (eosName, eos)] {
                if let n, let id { specials[n] = ["id": n, "ids": [id], "tokens": [n]] }
            }
            root["post_processor"] = [
                "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials,
            ]
        } else {
            root["post_processor"] = NSNull()
        }
        root["model"] = model
        root["added_tokens"] = added

        var cfg: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": addBOS, "add_eos_token": addEOS,
            "clean_up_tokenization_spaces": false,
        ]
        if let n = g.name(bos) { cfg["bos_token"] = n }
        if let n = g.name(eos) { cfg["eos_token"] = n }
        if let n = g.name(unk) { cfg["unk_token"] = n }
        if let n = g.name(pad) { cfg["pad_token"] = n }
        if let t = g.chatTemplate { cfg["chat_template"] = t }
        let md = g.metadata
        if let arch = md["general.architecture"]?.string, let ctx = md["\(arch).context_length"]?.int {
            cfg["model_max_length"] = ctx
        }
        return (root, cfg)
    }
}
