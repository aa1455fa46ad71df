import Foundation
import SqueezeFormats

/// One message of a chat conversation.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// A tokenizer that gives the same ids as the Hugging Face `tokenizers` library: byte-level BPE
/// (GPT-2, Llama-3, Qwen2, SmolLM) and SentencePiece-style BPE with byte fallback (Llama-2,
/// Mistral), loaded from `tokenizer.json` (+ `tokenizer_config.json`) or from GGUF metadata.
public final class Tokenizer: @unchecked Sendable {
    /// The file the tokenizer was loaded from.
    public let source: String
    let model: BPEModel
    let normalizer: Normalizer?
    let transform: SegmentTransform
    let splitters: [Splitter]
    let added: AddedTokenMatcher
    let addedById: [Int: AddedToken]
    /// Post-processor template for one sequence (nil: none).
    let template: [TemplatePiece]?
    let decoder: Decoder?

    public let bosTokenId: Int?
    public let eosTokenId: Int?
    public let unkTokenId: Int?
    public let padTokenId: Int?
    /// Every id that ends generation (EOS and the ids of the generation config).
    public var eosTokenIds: Set<Int>
    /// Whether `encode(_:addSpecialTokens: true)` puts BOS first.
    public let addBOS: Bool
    /// Whether `encode(_:addSpecialTokens: true)` puts EOS last.
    public let addEOS: Bool
    /// The Jinja chat template, if the model has one.
    public let chatTemplate: String?
    /// `chatTemplate` parsed once, when the tokenizer loads.
    let compiledChatTemplate: ChatTemplate?
    /// Named special token strings (`bos_token`, `eos_token`, ...) passed to chat templates.
    public let specialTokenStrings: [String: String]

    /// Number of ids (model vocabulary plus added tokens).
    public var vocabSize: Int { max(model.idToToken.count, (addedById.keys.max() ?? -1) + 1) }

    init(
        source: String, model: BPEModel, normalizer: Normalizer?, transform: SegmentTransform,
        splitters: [Splitter], added: [AddedToken], template: [TemplatePiece]?, decoder: Decoder?,
        bos: Int?, eos: Int?, unk: Int?, pad: Int?, eosIds: Set<Int>, addBOS: Bool, addEOS: Bool,
        chatTemplate: String?, specialTokenStrings: [String: String], chatTemplatePlace: String = "chat_template"
    ) throws {
        self.source = source
        self.model = model
        self.normalizer = normalizer
        self.transform = transform
        self.splitters = splitters
        self.added = AddedTokenMatcher(added)
        var byId: [Int: AddedToken] = [:]
        for t in added { byId[t.id] = t }
        self.addedById = byId
        self.template = template
        self.decoder = decoder
        self.bosTokenId = bos; self.eosTokenId = eos; self.unkTokenId = unk; self.padTokenId = pad
        self.eosTokenIds = eosIds.union(eos.map { [$0] } ?? [])
        self.addBOS = addBOS; self.addEOS = addEOS
        self.chatTemplate = chatTemplate
        // Parsed here so a broken template is refused when the model loads, naming where it is.
        do { self.compiledChatTemplate = try chatTemplate.map { try ChatTemplate($0) } } catch let
            TokenizerError.template(reason)
        {
            throw TokenizerError.badChatTemplate(file: source, where: chatTemplatePlace, reason: reason)
        }
        self.specialTokenStrings = specialTokenStrings
    }

    // MARK: Loading

    /// Loads a tokenizer from a directory (tokenizer.json [+ tokenizer_config.json,
    /// generation_config.json]; an XGen directory with its gpt2 ranks; vocab.json + merges.txt; a
    /// .gguf; a .tiktoken file), a tokenizer.json file, a .gguf file or a .tiktoken file.
    public static func load(path: String) throws -> Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw TokenizerError.unreadable(file: path, reason: "no such file or directory")
        }
        if isDir.boolValue {
            let dir = URL(fileURLWithPath: path)
            let tj = dir.appendingPathComponent("tokenizer.json").path
            if FileManager.default.fileExists(atPath: tj) { return try Tokenizer(jsonPath: tj) }
            if isXGenDirectory(dir) { return try Tokenizer(xgenDirectory: path) }
            let vj = dir.appendingPathComponent("vocab.json").path, mt = dir.appendingPathComponent("merges.txt").path
            if FileManager.default.fileExists(atPath: vj) && FileManager.default.fileExists(atPath: mt) {
                return try Tokenizer(vocabPath: vj, mergesPath: mt)
            }
            let ggufs =
                (try? FileManager.default.contentsOfDirectory(atPath: path))?.filter { $0.hasSuffix(".gguf") }.sorted()
                ?? []
            if let g = ggufs.first {
                return try Tokenizer(gguf: try GGUFFile(path: dir.appendingPathComponent(g).path))
            }
            let tks =
                (try? FileManager.default.contentsOfDirectory(atPath: path))?.filter { $0.hasSuffix(".tiktoken") }
                .sorted() ?? []
            if let t = tks.first { return try Tokenizer(tiktokenPath: dir.appendingPathComponent(t).path) }
            throw TokenizerError.unreadable(
                file: path, reason: "no tokenizer.json, vocab.json + merges.txt, .gguf or .tiktoken in the directory")
        }
        if path.hasSuffix(".gguf") {
            do { return try Tokenizer(gguf: try GGUFFile(path: path)) } catch let e as TokenizerError { throw e } catch
            { throw TokenizerError.unreadable(file: path, reason: "\(error)") }
        }
        if path.hasSuffix(".tiktoken") { return try Tokenizer(tiktokenPath: path) }
        return try Tokenizer(jsonPath: path)
    }

    // MARK: Encoding

    /// Encodes text to ids. `addSpecialTokens` applies the post-processor (BOS/EOS as the model
    /// wants); `parseSpecial` false treats special-token text as plain text.
    public func encode(_ text: String, addSpecialTokens: Bool = true, parseSpecial: Bool = true) -> [Int] {
        var ids = [Int]()
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        let bytes = Array(text.utf8)
        for seg in added.split(bytes, skipSpecial: !parseSpecial) {
            switch seg {
            case let .token(id): ids.append(id)
            case let .text(slice, isFirst):
                var seg = Array(slice)
                if let n = normalizer {
                    seg = Array(n.apply(String(decoding: seg, as: UTF8.self)).utf8)
                }
                if !transform.isIdentity { seg = transform.apply(seg, isFirst: isFirst) }
                encodeSegment(seg, into: &ids)
            }
        }
        guard addSpecialTokens else { return ids }
        if let template {
            var out = [Int](); out.reserveCapacity(ids.count + 2)
            for p in template {
                switch p {
                case .sequence: out.append(contentsOf: ids)
                case let .special(s): out.append(contentsOf: s)
                }
            }
            return out
        }
        if addBOS, let b = bosTokenId { ids.insert(b, at: 0) }
        if addEOS, let e = eosTokenId { ids.append(e) }
        return ids
    }

    private func encodeSegment(_ seg: [UInt8], into ids: inout [Int]) {
        if seg.isEmpty { return }
        if splitters.isEmpty { model.encode(seg[...], into: &ids); return }
        let t = ScalarText(bytes: seg)
        if splitters.count == 1, case let .split(.scanner(s), .isolated, false) = splitters[0] {
            var pieces = [Range<Int>](); pieces.reserveCapacity(t.count / 4 + 1)
            s.split(t, 0, t.count, into: &pieces)
            for p in pieces { model.encode(t.byteSlice(p), into: &ids) }
            return
        }
        var pieces = [0..<t.count]
        for s in splitters { pieces = s.apply(t, pieces) }
        for p in pieces { model.encode(t.byteSlice(p), into: &ids) }
    }

    /// Encodes the bytes of a file; fails on invalid UTF-8, naming the file and offset.
    public func encode(fileBytes: [UInt8], file: String, addSpecialTokens: Bool = true) throws -> [Int] {
        if let bad = firstInvalidUTF8(fileBytes) { throw TokenizerError.invalidUTF8(file: file, byteOffset: bad) }
        return encode(String(decoding: fileBytes, as: UTF8.self), addSpecialTokens: addSpecialTokens)
    }

    // MARK: Decoding

    /// The vocabulary string of an id (byte-level tokens in the GPT-2 alphabet); "" if out of range.
    public func tokenString(_ id: Int) -> String {
        if let a = addedById[id] { return a.content }
        guard id >= 0 && id < model.idToToken.count else { return "" }
        return model.idToToken[id]
    }

    /// The id of a vocabulary string or added token.
    public func tokenId(_ token: String) -> Int? {
        if let a = added.tokens.first(where: { $0.content.utf8.elementsEqual(token.utf8) }) { return a.id }
        return model.vocab[token].map(Int.init)
    }

    /// Whether an id is a special added token (skipped by `decode(_:skipSpecialTokens: true)`).
    public func isSpecial(_ id: Int) -> Bool { addedById[id]?.special ?? false }

    /// Decodes ids to text, as the Hugging Face decoder chain does.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens = [String](); tokens.reserveCapacity(ids.count)
        for id in ids {
            if skipSpecialTokens && isSpecial(id) { continue }
            tokens.append(tokenString(id))
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}
