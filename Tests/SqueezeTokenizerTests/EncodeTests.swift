import Foundation
import SqueezeFormats
import SqueezeTokenizer
import Testing

@Suite struct SmolLM2Tests {
    static let cases: [[String: Any]] = Fx.json("smollm2_fixtures.json")["cases"] as! [[String: Any]]

    @Test func idsWithAndWithoutSpecialTokens() {
        let tok = Fx.smol
        for c in Self.cases {
            let text = c["text"] as! String
            #expect(
                tok.encode(text, addSpecialTokens: false) == c["ids_no_special"] as! [Int], "\(text.debugDescription)")
            #expect(tok.encode(text) == c["ids_default"] as! [Int], "\(text.debugDescription)")
        }
    }

    @Test func tokenStringsAndDecode() {
        let tok = Fx.smol
        for c in Self.cases {
            let ids = c["ids_no_special"] as! [Int]
            #expect(ids.map(tok.tokenString) == c["tokens"] as! [String])
            #expect(tok.decode(ids) == c["decoded"] as! String)
            if c["roundtrip"] as! Bool { #expect(tok.decode(ids) == c["text"] as! String) }
        }
    }

    @Test func streamingEqualsOneShot() {
        let tok = Fx.smol
        for c in Self.cases {
            let ids = c["ids_no_special"] as! [Int]
            let s = StreamingDecoder(tokenizer: tok)
            var text = ""
            for id in ids { text += s.push(id) }
            text += s.flush()
            #expect(text == tok.decode(ids), "\(c["text"] as! String)")
        }
    }

    @Test func specialTokenIds() {
        let tok = Fx.smol
        #expect(tok.bosTokenId == 1 && tok.eosTokenId == 2 && tok.unkTokenId == 0 && tok.padTokenId == 2)
        #expect(!tok.addBOS)
        #expect(tok.vocabSize == 49152)
        #expect(tok.encode("<|im_start|>user\nHi<|im_end|>") == [1, 4093, 198, 26843, 2])
        #expect(tok.decode([1, 4093, 198, 26843, 2], skipSpecialTokens: true) == "user\nHi")
        #expect(tok.decode([1, 4093, 198, 26843, 2]) == "<|im_start|>user\nHi<|im_end|>")
    }

    @Test func ggufTokenizerMatchesJSON() throws {
        guard let path = Fx.modelPath else { return }
        let g = try Tokenizer(gguf: try GGUFFile(path: path))
        let j = Fx.smol
        #expect(g.bosTokenId == 1 && g.eosTokenId == 2 && g.unkTokenId == 0 && g.padTokenId == 2)
        #expect(!g.addBOS)
        #expect(g.chatTemplate == j.chatTemplate)
        for c in Self.cases {
            let text = c["text"] as! String
            #expect(
                g.encode(text, addSpecialTokens: false) == c["ids_no_special"] as! [Int], "\(text.debugDescription)")
            #expect(g.decode(c["ids_no_special"] as! [Int]) == c["decoded"] as! String)
        }
    }
}

@Suite struct GPT2Tests {
    @Test func idsMatchPythonTokenizers() {
        let tok = Fx.gpt2
        let cases = Fx.json("gpt2_fixtures.json")["cases"] as! [[String: Any]]
        for c in cases {
            let text = c["text"] as! String
            let ids = tok.encode(text, addSpecialTokens: false)
            #expect(ids == c["ids"] as! [Int], "\(text.debugDescription)")
            #expect(tok.decode(ids) == c["decoded"] as! String)
            #expect(tok.decode(ids, skipSpecialTokens: true) == c["decoded_skip_special"] as! String)
            #expect(tok.decode(ids) == text)  // byte-level BPE is lossless
        }
    }
}

@Suite struct LlamaCppVocabTests {
    func check(_ name: String) throws {
        guard let path = Fx.llamaVocab(name) else {
            print("skipping \(name): cannot decompress its vocabulary (gzip missing?)"); return
        }
        let tok = try Tokenizer(gguf: try GGUFFile(path: path))
        for (text, expected) in Fx.llamaVectors(name) {
            let ids = tok.encode(text, addSpecialTokens: false, parseSpecial: false)
            #expect(ids == expected, "\(name): \(text.debugDescription)")
            let s = StreamingDecoder(tokenizer: tok)
            var streamed = ""
            for id in ids { streamed += s.push(id) }
            streamed += s.flush()
            #expect(streamed == tok.decode(ids), "\(name) streaming: \(text.debugDescription)")
        }
    }
    @Test func gpt2() throws { try check("gpt-2") }
    @Test func llamaSPM() throws { try check("llama-spm") }
    @Test func llamaBPE() throws { try check("llama-bpe") }
    @Test func qwen2() throws { try check("qwen2") }

    @Test func byteLevelRoundTrip() throws {
        for name in ["gpt-2", "llama-bpe", "qwen2"] {
            guard let path = Fx.llamaVocab(name) else { continue }
            let tok = try Tokenizer(gguf: try GGUFFile(path: path))
            for (text, _) in Fx.llamaVectors(name) {
                #expect(
                    tok.decode(tok.encode(text, addSpecialTokens: false, parseSpecial: false)) == text,
                    "\(name): \(text.debugDescription)")
            }
        }
    }

    @Test func spmDecodeAndByteFallback() throws {
        let tok = try Tokenizer(gguf: try GGUFFile(path: Fx.llamaVocab("llama-spm")!))
        #expect(tok.addBOS && tok.bosTokenId == 1 && tok.eosTokenId == 2)
        let text = "Hello world 🦙 ⌘ 𝔘"
        let ids = tok.encode(text)
        #expect(ids.first == 1)
        #expect(tok.decode(ids, skipSpecialTokens: true) == text)
        // Byte-fallback tokens: <0xF0><0x9F>... stream without broken characters.
        let s = StreamingDecoder(tokenizer: tok)
        var pieces = [String]()
        for id in ids { pieces.append(s.push(id)) }
        pieces.append(s.flush())
        #expect(!pieces.joined().contains("\u{FFFD}"))
        #expect(pieces.joined() == tok.decode(ids))
    }
}
