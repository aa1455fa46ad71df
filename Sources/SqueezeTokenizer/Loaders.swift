import Foundation
import SqueezeFormats

typealias JSONObject = OrderedObject

/// Reads the parts of a tokenizer.json pipeline, with errors naming the file and component.
struct JSONPipelineReader {
    let file: String
    /// Bound on ids the file names (its size in bytes; see `checkedTokenId`).
    var idLimit = Int(Int32.max)

    func fail(_ reason: String) -> TokenizerError { .malformed(file: file, reason: reason) }

    func normalizer(_ j: Any?) throws -> Normalizer? {
        guard let j, !(j is NSNull) else { return nil }
        guard let o = j as? JSONObject, let type = o["type"] as? String else { throw fail("normalizer without a type") }
        switch type {
        case "Sequence":
            guard let list = o["normalizers"] as? [Any] else { throw fail("Sequence normalizer without 'normalizers'") }
            return .sequence(try list.compactMap { try normalizer($0) })
        case "NFC": return .nfc
        case "NFKC": return .nfkc
        case "NFD": return .nfd
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend":
            guard let p = o["prepend"] as? String else { throw fail("Prepend normalizer without 'prepend'") }
            return .prepend(p)
        case "Replace":
            let content = o["content"] as? String ?? ""
            guard let pat = o["pattern"] as? JSONObject else { throw fail("Replace normalizer without 'pattern'") }
            if let s = pat["String"] as? String { return .replaceLiteral(s, content) }
            if let r = pat["Regex"] as? String {
                do { return .replaceRegex(try NSRegularExpression(pattern: r), content) } catch {
                    throw fail("Replace normalizer: invalid regex \(r)")
                }
            }
            throw fail("Replace normalizer: pattern is neither String nor Regex")
        case "Strip":
            return .strip(left: o["strip_left"] as? Bool ?? true, right: o["strip_right"] as? Bool ?? true)
        default:
            throw TokenizerError.unsupportedComponent(file: file, component: "normalizer", name: type)
        }
    }

    /// Returns the segment transform, the splitters, and whether the model is byte-level.
    func preTokenizer(_ j: Any?) throws -> (SegmentTransform, [Splitter], Bool) {
        var transform = SegmentTransform()
        var splitters = [Splitter]()
        var byteLevel = false
        guard let j, !(j is NSNull) else { return (transform, splitters, false) }
        var flat = [JSONObject]()
        func flatten(_ x: Any) throws {
            guard let o = x as? JSONObject, let type = o["type"] as? String else {
                throw fail("pre_tokenizer without a type")
            }
            if type == "Sequence" {
                guard let list = o["pretokenizers"] as? [Any] else {
                    throw fail("Sequence pre_tokenizer without 'pretokenizers'")
                }
                for e in list { try flatten(e) }
            } else {
                flat.append(o)
            }
        }
        try flatten(j)
        for (idx, o) in flat.enumerated() {
            let type = o["type"] as! String
            switch type {
            case "ByteLevel":
                byteLevel = true
                if o["add_prefix_space"] as? Bool ?? false {
                    guard idx == 0 else {
                        throw TokenizerError.unsupportedComponent(
                            file: file, component: "pre_tokenizer",
                            name: "ByteLevel(add_prefix_space) after another pre-tokenizer")
                    }
                    transform.addPrefixSpace = true
                }
                if o["use_regex"] as? Bool ?? true {
                    splitters.append(.split(.scanner(.gpt2), .isolated, invert: false))
                }
            case "Split":
                let behavior = SplitBehavior(rawValue: o["behavior"] as? String ?? "Isolated")
                guard let behavior else { throw fail("Split: unknown behavior \(o["behavior"] ?? "")") }
                let invert = o["invert"] as? Bool ?? false
                guard let pat = o["pattern"] as? JSONObject else { throw fail("Split pre_tokenizer without 'pattern'") }
                if let s = pat["String"] as? String {
                    splitters.append(.split(.literal(s.unicodeScalars.map { $0.value }), behavior, invert: invert))
                } else if let r = pat["Regex"] as? String {
                    if let scanner = ScanRegex.known(r) {
                        splitters.append(.split(.scanner(scanner), behavior, invert: invert))
                    } else {
                        do {
                            splitters.append(
                                .split(.regex(try NSRegularExpression(pattern: r)), behavior, invert: invert))
                        } catch {
                            throw TokenizerError.unsupportedComponent(
                                file: file, component: "pre_tokenizer Split regex", name: r)
                        }
                    }
                } else {
                    throw fail("Split: pattern is neither String nor Regex")
                }
            case "Digits":
                splitters.append(.digits(individual: o["individual_digits"] as? Bool ?? false))
            case "Whitespace": splitters.append(.whitespace)
            case "WhitespaceSplit": splitters.append(.whitespaceSplit)
            case "Punctuation":
                splitters.append(
                    .punctuation(SplitBehavior(rawValue: o["behavior"] as? String ?? "Isolated") ?? .isolated))
            case "Metaspace":
                guard idx == 0 else {
                    throw TokenizerError.unsupportedComponent(
                        file: file, component: "pre_tokenizer", name: "Metaspace after another pre-tokenizer")
                }
                let repString = o["replacement"] as? String ?? "\u{2581}"
                guard repString.unicodeScalars.count == 1, let rep = repString.unicodeScalars.first?.value else {
                    throw fail("Metaspace pre_tokenizer: replacement '\(repString)' is not one character")
                }
                transform.metaspace = rep
                if let scheme = o["prepend_scheme"] as? String {
                    guard let s = SegmentTransform.PrependScheme(rawValue: scheme) else {
                        throw fail("Metaspace: unknown prepend_scheme \(scheme)")
                    }
                    transform.metaspacePrepend = s
                } else {
                    transform.metaspacePrepend = (o["add_prefix_space"] as? Bool ?? true) ? .always : .never
                }
                if o["split"] as? Bool ?? true { splitters.append(.metaspace(rep)) }
            default:
                throw TokenizerError.unsupportedComponent(file: file, component: "pre_tokenizer", name: type)
            }
        }
        return (transform, splitters, byteLevel)
    }

    func decoder(_ j: Any?) throws -> Decoder? {
        guard let j, !(j is NSNull) else { return nil }
        guard let o = j as? JSONObject, let type = o["type"] as? String else { throw fail("decoder without a type") }
        switch type {
        case "Sequence":
            guard let list = o["decoders"] as? [Any] else { throw fail("Sequence decoder without 'decoders'") }
            return .sequence(try list.compactMap { try decoder($0) })
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Metaspace":
            let rep = o["replacement"] as? String ?? "\u{2581}"
            guard rep.unicodeScalars.count == 1 else {
                throw fail("Metaspace decoder: replacement '\(rep)' is not one character")
            }
            let scheme =
                o["prepend_scheme"] as? String ?? ((o["add_prefix_space"] as? Bool ?? true) ? "always" : "never")
            return .metaspace(replacement: rep, stripFirst: scheme != "never")
        case "Strip":
            let c = (o["content"] as? String ?? " ").first ?? " "
            return .strip(content: c, start: jsonInt(o["start"]) ?? 0, stop: jsonInt(o["stop"]) ?? 0)
        case "Replace":
            guard let pat = o["pattern"] as? JSONObject, let s = pat["String"] as? String else {
                throw TokenizerError.unsupportedComponent(
                    file: file, component: "decoder", name: "Replace with a regex pattern")
            }
            return .replace(pattern: s, content: o["content"] as? String ?? "")
        default:
            throw TokenizerError.unsupportedComponent(file: file, component: "decoder", name: type)
        }
    }

    func postProcessor(_ j: Any?, tokenId: (String) -> Int?) throws -> [TemplatePiece]? {
        guard let j, !(j is NSNull) else { return nil }
        guard let o = j as? JSONObject, let type = o["type"] as? String else {
            throw fail("post_processor without a type")
        }
        switch type {
        case "ByteLevel": return nil
        case "Sequence":
            guard let list = o["processors"] as? [Any] else {
                throw fail("Sequence post_processor without 'processors'")
            }
            var result: [TemplatePiece]? = nil
            for p in list { if let t = try postProcessor(p, tokenId: tokenId) { result = t } }
            return result
        case "TemplateProcessing":
            guard let single = o["single"] as? [Any] else { throw fail("TemplateProcessing without 'single'") }
            let specials = o["special_tokens"] as? JSONObject ?? [:]
            var out = [TemplatePiece]()
            for item in single {
                guard let it = item as? JSONObject else { throw fail("TemplateProcessing: bad item") }
                if it["Sequence"] != nil {
                    out.append(.sequence)
                } else if let sp = it["SpecialToken"] as? JSONObject, let name = sp["id"] as? String {
                    if let st = specials[name] as? JSONObject, let idList = st["ids"] as? [Any] {
                        out.append(
                            .special(
                                try idList.map {
                                    try checkedTokenId(
                                        $0, limit: idLimit, file: file, field: "post_processor \(name) ids")
                                }))
                    } else if let id = tokenId(name) {
                        out.append(.special([id]))
                    } else {
                        throw fail("TemplateProcessing: unknown special token \(name)")
                    }
                } else {
                    throw fail("TemplateProcessing: bad item")
                }
            }
            return out
        case "RobertaProcessing", "BertProcessing":
            guard let cls = o["cls"] as? [Any], let sep = o["sep"] as? [Any],
                cls.last != nil, sep.last != nil
            else { throw fail("\(type) without cls/sep") }
            let clsId = try checkedTokenId(cls.last, limit: idLimit, file: file, field: "post_processor cls")
            let sepId = try checkedTokenId(sep.last, limit: idLimit, file: file, field: "post_processor sep")
            return [.special([clsId]), .sequence, .special([sepId])]
        default:
            throw TokenizerError.unsupportedComponent(file: file, component: "post_processor", name: type)
        }
    }
}

func readJSON(_ path: String) throws -> JSONObject { try readJSONSized(path).object }

/// Reads a JSON object file and its size in bytes (the bound for ids read from it).
func readJSONSized(_ path: String) throws -> (object: JSONObject, bytes: Int) {
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw TokenizerError.unreadable(file: path, reason: error.localizedDescription)
    }
    let obj: Any
    do { obj = try JSONParser.parse([UInt8](data)) } catch let f as JSONParser.Failure {
        throw TokenizerError.malformed(file: path, reason: "invalid JSON (\(f.what) at byte \(f.offset))")
    }
    guard let o = obj as? JSONObject else {
        throw TokenizerError.malformed(file: path, reason: "top level is not a JSON object")
    }
    return (o, data.count)
}

/// A token id read from a file: an integer in 0..<min(`limit`, Int32.max). `limit` is the file's
/// size in bytes, so an id of 2e9 in a small file cannot make the id-to-token table huge.
func checkedTokenId(_ v: Any?, limit: Int, file: String, field: String) throws -> Int {
    guard let id = jsonInt(v) else { throw TokenizerError.malformed(file: file, reason: "\(field) is not an integer") }
    guard id >= 0, id < min(limit, Int(Int32.max)) else {
        throw TokenizerError.malformed(
            file: file, reason: "\(field) = \(id) is out of range (0..<\(min(limit, Int(Int32.max))))")
    }
    return id
}

/// A special token field of tokenizer_config.json: a string or an object with `content`.
private func tokenContent(_ x: Any?) -> String? {
    if let s = x as? String { return s }
    if let o = x as? JSONObject { return o["content"] as? String }
    return nil
}

extension Tokenizer {
    /// Loads tokenizer.json; reads tokenizer_config.json and generation_config.json next to it if present.
    public convenience init(jsonPath: String) throws {
        let (root, fileBytes) = try readJSONSized(jsonPath)
        let r = JSONPipelineReader(file: jsonPath, idLimit: fileBytes)
        guard let m = root["model"] as? JSONObject else { throw r.fail("missing 'model'") }
        let mtype = m["type"] as? String ?? (m["merges"] != nil ? "BPE" : "unknown")
        guard mtype == "BPE" else {
            throw TokenizerError.unsupportedComponent(file: jsonPath, component: "model", name: mtype)
        }
        guard let vocabObj = m["vocab"] as? JSONObject else { throw r.fail("model.vocab missing or not an object") }
        if let d = m["dropout"], !(d is NSNull) {
            throw TokenizerError.unsupportedComponent(file: jsonPath, component: "model", name: "BPE with dropout")
        }
        if let p = m["continuing_subword_prefix"] as? String, !p.isEmpty {
            throw TokenizerError.unsupportedComponent(
                file: jsonPath, component: "model", name: "BPE with continuing_subword_prefix")
        }
        if let p = m["end_of_word_suffix"] as? String, !p.isEmpty {
            throw TokenizerError.unsupportedComponent(
                file: jsonPath, component: "model", name: "BPE with end_of_word_suffix")
        }

        var vocab = Vocab(minimumCapacity: vocabObj.count)
        var maxId = -1
        for (k, v) in vocabObj.pairs {
            let id = try checkedTokenId(v, limit: fileBytes, file: jsonPath, field: "model.vocab[\(k)]")
            vocab[k] = Int32(id); maxId = max(maxId, id)
        }
        var idToToken = [String](repeating: "", count: maxId + 1)
        for (k, id) in vocab { idToToken[Int(id)] = k }

        var addedTokens = [AddedToken]()
        if let list = root["added_tokens"] as? [Any] {
            for x in list {
                guard let o = x as? JSONObject, let content = o["content"] as? String, o["id"] != nil else {
                    throw r.fail("added_tokens: entry without content/id")
                }
                let id = try checkedTokenId(
                    o["id"], limit: fileBytes, file: jsonPath, field: "added_tokens[\(content)].id")
                addedTokens.append(
                    AddedToken(
                        content: content, bytes: Array(content.utf8), id: id,
                        special: o["special"] as? Bool ?? false, lstrip: o["lstrip"] as? Bool ?? false,
                        rstrip: o["rstrip"] as? Bool ?? false, singleWord: o["single_word"] as? Bool ?? false,
                        normalized: o["normalized"] as? Bool ?? false))
            }
        }
        let (transform, splitters, byteLevel) = try r.preTokenizer(root["pre_tokenizer"])
        let normalizer = try r.normalizer(root["normalizer"])
        let decoder = try r.decoder(root["decoder"])

        guard let mergesAny = m["merges"] as? [Any] else { throw r.fail("model.merges missing or not a list") }
        var merges = [UInt64: UInt64](minimumCapacity: mergesAny.count)
        for (rank, x) in mergesAny.enumerated() {
            let a: String, b: String
            if let s = x as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw r.fail("merge \(rank) '\(s)' is not two tokens") }
                a = String(parts[0]); b = String(parts[1])
            } else if let arr = x as? [Any], arr.count == 2, let s0 = arr[0] as? String, let s1 = arr[1] as? String {
                a = s0; b = s1
            } else {
                throw r.fail("merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard let ia = vocab[a], let ib = vocab[b], let ic = vocab[a + b] else {
                throw r.fail("merge \(rank) (\(a) \(b)) uses a token missing from the vocabulary")
            }
            let key = BPEModel.pairKey(ia, ib)
            if merges[key] == nil { merges[key] = (UInt64(rank) << 32) | UInt64(UInt32(ic)) }
        }
        let unkName = m["unk_token"] as? String
        let unkId = unkName.flatMap { vocab[$0] }
        let model = BPEModel(
            idToToken: idToToken, vocab: vocab, merges: merges, byteLevel: byteLevel,
            byteFallback: m["byte_fallback"] as? Bool ?? false, unkId: unkId,
            fuseUnk: m["fuse_unk"] as? Bool ?? false, ignoreMerges: m["ignore_merges"] as? Bool ?? false)
        func idOf(_ s: String) -> Int? {
            addedTokens.first(where: { $0.content.utf8.elementsEqual(s.utf8) })?.id ?? vocab[s].map(Int.init)
        }
        var template = try r.postProcessor(root["post_processor"], tokenId: idOf)

        // tokenizer_config.json and generation_config.json next to tokenizer.json.
        let dir = URL(fileURLWithPath: jsonPath).deletingLastPathComponent()
        let cfgPath = dir.appendingPathComponent("tokenizer_config.json").path
        var cfg: JSONObject = [:]
        if FileManager.default.fileExists(atPath: cfgPath) { cfg = try readJSON(cfgPath) }
        var strings: [String: String] = [:]
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let s = tokenContent(cfg[key]) { strings[key] = s }
        }
        if strings["unk_token"] == nil, let u = unkName { strings["unk_token"] = u }
        let bos = strings["bos_token"].flatMap(idOf)
        let eos = strings["eos_token"].flatMap(idOf)
        let unk = strings["unk_token"].flatMap(idOf) ?? unkId.map(Int.init)
        let pad = strings["pad_token"].flatMap(idOf)
        var chat: String? = nil
        var chatPlace = "\(cfgPath) chat_template"
        if let s = cfg["chat_template"] as? String {
            chat = s
        } else if let list = cfg["chat_template"] as? [Any] {
            for x in list {
                if let o = x as? JSONObject, o["name"] as? String == "default" { chat = o["template"] as? String }
            }
        }
        if chat == nil {
            let jinja = dir.appendingPathComponent("chat_template.jinja").path
            if let s = try? String(contentsOfFile: jinja, encoding: .utf8) { chat = s; chatPlace = jinja }
        }
        // Without a post-processor, tokenizer_config's add_bos_token/add_eos_token decide.
        let cfgBOS = cfg["add_bos_token"] as? Bool ?? false
        let cfgEOS = cfg["add_eos_token"] as? Bool ?? false
        if template == nil && (cfgBOS || cfgEOS) {
            var t = [TemplatePiece]()
            if cfgBOS, let b = bos { t.append(.special([b])) }
            t.append(.sequence)
            if cfgEOS, let e = eos { t.append(.special([e])) }
            template = t
        }
        var addBOS = false, addEOS = false
        if let t = template {
            if case let .special(ids)? = t.first, let b = bos, ids.first == b { addBOS = true }
            if case let .special(ids)? = t.last, let e = eos, ids.last == e { addEOS = true }
        }
        var eosIds = Set<Int>()
        let genPath = dir.appendingPathComponent("generation_config.json").path
        if FileManager.default.fileExists(atPath: genPath), let g = try? readJSON(genPath) {
            if let one = jsonInt(g["eos_token_id"]) { eosIds.insert(one) }
            if let many = g["eos_token_id"] as? [Any] { eosIds.formUnion(many.compactMap(jsonInt)) }
        }
        try self.init(
            source: jsonPath, model: model, normalizer: normalizer, transform: transform, splitters: splitters,
            added: addedTokens, template: template, decoder: decoder, bos: bos, eos: eos, unk: unk, pad: pad,
            eosIds: eosIds, addBOS: addBOS, addEOS: addEOS, chatTemplate: chat, specialTokenStrings: strings,
            chatTemplatePlace: chatPlace)
    }

    /// The pre-tokenizer that llama.cpp uses for a GGUF `tokenizer.ggml.pre` name, as splitters,
    /// plus whether merges are ignored for whole-word vocabulary hits and whether BOS is added.
    static func ggufPreTokenizer(
        _ name: String, file: String
    ) throws -> (splitters: [Splitter], ignoreMerges: Bool, addBOS: Bool?) {
        let gpt2: Splitter = .split(.scanner(.gpt2), .isolated, invert: false)
        switch name {
        case "default", "":
            func re(_ p: String) -> Splitter {
                .split(.regex(try! NSRegularExpression(pattern: p)), .isolated, invert: false)
            }
            return ([re(#"[\p{P}\$\+<=>\^~\|]+"#), gpt2, re(#"\p{N}+"#), re("[0-9][0-9][0-9]")], false, nil)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2":
            return ([.split(.scanner(.llama3(maxDigits: 3)), .isolated, invert: false)], true, true)
        case "dbrx", "smaug-bpe", "chatglm-bpe":
            return ([.split(.scanner(.llama3(maxDigits: 3)), .isolated, invert: false)], false, nil)
        case "qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan", "kormo":
            return ([.split(.scanner(.llama3(maxDigits: 1)), .isolated, invert: false)], false, nil)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "mpt", "olmo", "jais",
            "roberta-bpe", "jina-v1-en", "jina-v2-code", "exaone4", "trillion", "granite-docling", "mellum",
            "modern-bert", "gigachat", "a.x-4.0":
            return ([gpt2], false, nil)
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "mellum2":
            return ([.digits(individual: true), gpt2], false, nil)
        default:
            throw TokenizerError.unknownPreTokenizer(file: file, name: name)
        }
    }

    /// Builds the tokenizer stored in a GGUF file's metadata (`tokenizer.ggml.*`).
    public convenience init(gguf: GGUFFile) throws {
        let g = try GGUFTokenizerMetadata(gguf)
        let file = g.file, tokens = g.tokens
        func fail(_ r: String) -> TokenizerError { .malformed(file: file, reason: r) }
        var vocab = Vocab(minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where vocab[t] == nil { vocab[t] = Int32(i) }
        // Control tokens are special added tokens; user-defined tokens are plain added tokens.
        let added = g.addedTokens.map {
            AddedToken(content: $0.content, bytes: Array($0.content.utf8), id: $0.id, special: $0.special)
        }
        let model: BPEModel
        var splitters = [Splitter]()
        var transform = SegmentTransform()
        let decoder: Decoder
        var addBOS: Bool
        switch g.kind {
        case "gpt2":
            let mergeList = try g.merges()
            var merges = [UInt64: UInt64](minimumCapacity: mergeList.count)
            for (rank, s) in mergeList.enumerated() {
                let u = Array(s.unicodeScalars)
                guard u.count >= 3, let sp = u.dropFirst().firstIndex(of: " ") else {
                    throw fail("merge \(rank) '\(s)' is not two tokens")
                }
                var a = String.UnicodeScalarView(), b = String.UnicodeScalarView()
                a.append(contentsOf: u[0..<sp]); b.append(contentsOf: u[(sp + 1)...])
                guard let ia = vocab[String(a)], let ib = vocab[String(b)], let ic = vocab[String(a) + String(b)] else {
                    throw fail("merge \(rank) '\(s)' uses a token missing from the vocabulary")
                }
                let key = BPEModel.pairKey(ia, ib)
                if merges[key] == nil { merges[key] = (UInt64(rank) << 32) | UInt64(UInt32(ic)) }
            }
            let p = try Tokenizer.ggufPreTokenizer(g.preTokenizer, file: file)
            splitters = p.splitters
            addBOS = p.addBOS ?? false
            model = BPEModel(
                idToToken: tokens, vocab: vocab, merges: merges, byteLevel: true, byteFallback: false,
                unkId: g.unk.map(Int32.init), fuseUnk: false, ignoreMerges: p.ignoreMerges)
            decoder = .byteLevel
        case "llama":
            let scores = try g.scores()
            // SentencePiece merges the adjacent pair whose concatenation has the highest score:
            // express that as ranks (dense, by descending score) over every split of every token.
            let distinct = Array(Set(scores)).sorted(by: >)
            var rankOf = [Double: Int](minimumCapacity: distinct.count)
            for (r, s) in distinct.enumerated() { rankOf[s] = r }
            let pieceIds = g.pieceIds
            var merges = [UInt64: UInt64](minimumCapacity: tokens.count * 4)
            g.forEachPieceSplit(pieceIds) { i, ia, ib, _, _ in
                let rank = UInt64(rankOf[i < scores.count ? scores[i] : 0] ?? 0)
                let key = BPEModel.pairKey(Int32(ia), Int32(ib))
                if merges[key] == nil { merges[key] = (rank << 32) | UInt64(UInt32(i)) }
            }
            var modelVocab = pieceIds
            for b in 0..<256 { let s = String(format: "<0x%02X>", b); if let id = vocab[s] { modelVocab[s] = id } }
            model = BPEModel(
                idToToken: tokens, vocab: modelVocab, merges: merges, byteLevel: false, byteFallback: true,
                unkId: g.unk.map(Int32.init), fuseUnk: false, ignoreMerges: false)
            transform.metaspace = 0x2581
            if g.addSpacePrefix {
                transform.metaspacePrepend = .always
                transform.metaspaceForcePrepend = true
            } else {
                transform.metaspacePrepend = .never
            }
            addBOS = true
            decoder = .sequence([
                .replace(pattern: "\u{2581}", content: " "), .byteFallback, .fuse,
                .strip(content: " ", start: 1, stop: 0),
            ])
        default:
            throw TokenizerError.unsupportedComponent(file: file, component: "tokenizer.ggml.model", name: g.kind)
        }
        if let b = g.addBOS { addBOS = b }
        let addEOS = g.addEOS ?? false
        let bos = g.bos, eos = g.eos, unk = g.unk, pad = g.pad
        var strings: [String: String] = [:]
        strings["bos_token"] = g.name(bos); strings["eos_token"] = g.name(eos)
        strings["unk_token"] = g.name(unk); strings["pad_token"] = g.name(pad)
        let eosIds = g.endTokens
        try self.init(
            source: file, model: model, normalizer: nil, transform: transform, splitters: splitters,
            added: added, template: nil, decoder: decoder, bos: bos, eos: eos, unk: unk, pad: pad,
            eosIds: eosIds, addBOS: addBOS && bos != nil, addEOS: addEOS && eos != nil,
            chatTemplate: g.chatTemplate, specialTokenStrings: strings, chatTemplatePlace: "tokenizer.chat_template")
    }
}

extension Tokenizer {
    /// Loads a GPT-2 style tokenizer from `vocab.json` and `merges.txt` (byte-level BPE, the GPT-2
    /// regex, `<|endoftext|>` as the special token when the vocabulary has it).
    public convenience init(vocabPath: String, mergesPath: String) throws {
        let (vj, fileBytes) = try readJSONSized(vocabPath)
        var vocab = Vocab(minimumCapacity: vj.count)
        var maxId = -1
        for (k, v) in vj.pairs {
            let id = try checkedTokenId(v, limit: fileBytes, file: vocabPath, field: "vocab[\(k)]")
            vocab[k] = Int32(id); maxId = max(maxId, id)
        }
        var idToToken = [String](repeating: "", count: maxId + 1)
        for (k, id) in vocab { idToToken[Int(id)] = k }
        let text: String
        do { text = try String(contentsOfFile: mergesPath, encoding: .utf8) } catch {
            throw TokenizerError.unreadable(file: mergesPath, reason: error.localizedDescription)
        }
        var merges = [UInt64: UInt64]()
        var rank = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#version") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw TokenizerError.malformed(file: mergesPath, reason: "line '\(line)' is not two tokens")
            }
            let a = String(parts[0]), b = String(parts[1])
            guard let ia = vocab[a], let ib = vocab[b], let ic = vocab[a + b] else {
                throw TokenizerError.malformed(
                    file: mergesPath, reason: "merge '\(line)' uses a token missing from vocab.json")
            }
            let key = BPEModel.pairKey(ia, ib)
            if merges[key] == nil { merges[key] = (UInt64(rank) << 32) | UInt64(UInt32(ic)) }
            rank += 1
        }
        let model = BPEModel(
            idToToken: idToToken, vocab: vocab, merges: merges, byteLevel: true, byteFallback: false,
            unkId: nil, fuseUnk: false, ignoreMerges: false)
        var added = [AddedToken]()
        var strings: [String: String] = [:]
        var eot: Int? = nil
        if let id = vocab["<|endoftext|>"] {
            added.append(
                AddedToken(content: "<|endoftext|>", bytes: Array("<|endoftext|>".utf8), id: Int(id), special: true))
            eot = Int(id)
            for k in ["bos_token", "eos_token", "unk_token"] { strings[k] = "<|endoftext|>" }
        }
        try self.init(
            source: vocabPath, model: model, normalizer: nil, transform: SegmentTransform(),
            splitters: [.split(.scanner(.gpt2), .isolated, invert: false)], added: added, template: nil,
            decoder: .byteLevel, bos: eot, eos: eot, unk: eot, pad: nil, eosIds: [], addBOS: false, addEOS: false,
            chatTemplate: nil, specialTokenStrings: strings)
    }
}

extension Tokenizer {
    /// Checks that llama.cpp's pre-tokenizer name `name` (GGUF `tokenizer.ggml.pre`) is known;
    /// returns a short description of the pre-tokenizer it maps to.
    public static func ggufPreTokenizerCheck(_ name: String, file: String) throws -> String {
        let p = try ggufPreTokenizer(name, file: file)
        return p.splitters.map { "\($0)" }.joined(separator: " + ")
    }
}
