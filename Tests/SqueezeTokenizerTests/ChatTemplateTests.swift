import Foundation
import SqueezeTokenizer
import Testing

@Suite struct ChatTemplateTests {
    static let fx = Fx.json("chat_fixtures.json")

    static func messages(_ name: String) -> [ChatMessage] {
        let convs = fx["conversations"] as! [String: [[String: String]]]
        return convs[name]!.map { ChatMessage(role: $0["role"]!, content: $0["content"]!) }
    }

    @Test func matchesTransformers() throws {
        let templates = Self.fx["templates"] as! [String: [String: String]]
        for c in Self.fx["cases"] as! [[String: Any]] {
            let name = c["template"] as! String
            let t = templates[name]!
            let tmpl = try ChatTemplate(t["template"]!)
            let msgs = Self.messages(c["conversation"] as! String)
            let agp = c["add_generation_prompt"] as! Bool
            let extra = ["bos_token": t["bos_token"]!, "eos_token": t["eos_token"]!]
            let label = "\(name)/\(c["conversation"] as! String)/\(agp)"
            if let expected = c["expected"] as? String {
                #expect(try tmpl.render(messages: msgs, addGenerationPrompt: agp, extra: extra) == expected, "\(label)")
            } else {
                let err = c["error"] as! String
                #expect(throws: TokenizerError.templateException(err), "\(label)") {
                    try tmpl.render(messages: msgs, addGenerationPrompt: agp, extra: extra)
                }
            }
        }
    }

    @Test func smolLM2TokenizerTemplate() throws {
        let tok = Fx.smol
        let msgs = Self.messages("multi")
        let text = try tok.applyChatTemplate(messages: msgs, addGenerationPrompt: true)
        let expected =
            (Self.fx["cases"] as! [[String: Any]]).first {
                $0["template"] as? String == "smollm2" && $0["conversation"] as? String == "multi"
                    && $0["add_generation_prompt"] as? Bool == true
            }!["expected"] as! String
        #expect(text == expected)
        #expect(text.hasSuffix("<|im_start|>assistant\n"))
    }

    @Test func unsupportedConstructsAreErrors() {
        #expect(throws: TokenizerError.self) { try ChatTemplate("{% include 'x' %}") }
        #expect(throws: TokenizerError.self) {
            try ChatTemplate("{{ x | nosuchfilter }}").render(messages: [], addGenerationPrompt: false)
        }
        #expect(throws: TokenizerError.self) { try ChatTemplate("{% if x %}unclosed") }
        #expect(throws: TokenizerError.self) { try ChatTemplate("{{ 'a' ") }
    }

    @Test func namespaceAndMacros() throws {
        let t = try ChatTemplate(
            """
            {%- set ns = namespace(found=false, n=0) -%}
            {%- for m in messages -%}{%- if m.role == 'system' -%}{%- set ns.found = true -%}{%- endif -%}{%- set ns.n = ns.n + 1 -%}{%- endfor -%}
            {%- macro show(x, suffix='!') -%}[{{ x }}{{ suffix }}]{%- endmacro -%}
            {{ ns.found }} {{ ns.n }} {{ show('a') }}{{ show('b', suffix='?') }}{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}
            """)
        let out = try t.render(messages: Self.messages("system"), addGenerationPrompt: false)
        #expect(out == "True 4 [a!][b?]02")
    }

    /// `e` and `escape` escape HTML as Jinja does; `safe` passes the text on. Expected output from
    /// Python: markupsafe.escape('<a href="x">\'&\'</a>').
    @Test func escapeFilters() throws {
        let src = "<a href=\"x\">'&'</a>"
        let want = "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        for f in ["e", "escape"] {
            let t = try ChatTemplate("{{ messages[0].content | \(f) }}")
            #expect(
                try t.render(messages: [ChatMessage(role: "user", content: src)], addGenerationPrompt: false) == want)
        }
        let t = try ChatTemplate("{{ messages[0].content | safe }}")
        #expect(try t.render(messages: [ChatMessage(role: "user", content: src)], addGenerationPrompt: false) == src)
    }
}

@Suite struct ErrorTests {
    func tempFile(_ name: String, _ contents: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-tok-err-\(getpid())-\(name)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let p = dir.appendingPathComponent("tokenizer.json").path
        FileManager.default.createFile(atPath: p, contents: Data(contents.utf8))
        return p
    }

    @Test func malformedJSON() {
        let p = tempFile("bad", "{\"model\": {\"type\": \"BPE\", ")
        do { _ = try Tokenizer.load(path: p); Issue.record("no error for malformed JSON") } catch let
            TokenizerError.malformed(file, reason)
        {
            #expect(file == p && reason.hasPrefix("invalid JSON"), "\(reason)")
        } catch { Issue.record("unexpected error \(error)") }
        let q = tempFile("novocab", #"{"model": {"type": "BPE", "merges": []}}"#)
        #expect(throws: TokenizerError.malformed(file: q, reason: "model.vocab missing or not an object")) {
            try Tokenizer.load(path: q)
        }
    }

    @Test func unknownComponents() {
        let base = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
        let p1 = tempFile("pre", base + #", "pre_tokenizer": {"type": "BertPreTokenizer"}}"#)
        #expect(
            throws: TokenizerError.unsupportedComponent(file: p1, component: "pre_tokenizer", name: "BertPreTokenizer")
        ) { try Tokenizer.load(path: p1) }
        let p2 = tempFile("model", #"{"model": {"type": "Unigram", "vocab": []}}"#)
        #expect(throws: TokenizerError.unsupportedComponent(file: p2, component: "model", name: "Unigram")) {
            try Tokenizer.load(path: p2)
        }
        let p3 = tempFile("dec", base + #", "decoder": {"type": "CTC"}}"#)
        #expect(throws: TokenizerError.unsupportedComponent(file: p3, component: "decoder", name: "CTC")) {
            try Tokenizer.load(path: p3)
        }
        let p4 = tempFile("norm", base + #", "normalizer": {"type": "Precompiled"}}"#)
        #expect(throws: TokenizerError.unsupportedComponent(file: p4, component: "normalizer", name: "Precompiled")) {
            try Tokenizer.load(path: p4)
        }
        // A merge of tokens missing from the vocabulary.
        let p5 = tempFile("merge", #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "z"]]}}"#)
        #expect(throws: TokenizerError.self) { try Tokenizer.load(path: p5) }
        // Both merge forms.
        let p6 = tempFile(
            "forms",
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3, "abc": 4}, "merges": ["a b", ["ab", "c"]]}}"#
        )
        #expect((try? Tokenizer.load(path: p6))?.encode("abcab") == [4, 2])
    }

    @Test func unknownGGUFPreTokenizer() {
        #expect(throws: TokenizerError.unknownPreTokenizer(file: "x.gguf", name: "no-such-pre")) {
            _ = try Tokenizer.ggufPreTokenizerCheck("no-such-pre", file: "x.gguf")
        }
        #expect((try? Tokenizer.ggufPreTokenizerCheck("smollm", file: "x.gguf")) != nil)
    }

    @Test func invalidUTF8File() {
        let bytes: [UInt8] = Array("ok ".utf8) + [0xC3, 0x28] + Array(" more".utf8)
        #expect(throws: TokenizerError.invalidUTF8(file: "in.txt", byteOffset: 3)) {
            try Fx.smol.encode(fileBytes: bytes, file: "in.txt")
        }
    }

    @Test func unkWithoutByteFallback() throws {
        let p = tempFile(
            "unk",
            #"{"model": {"type": "BPE", "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3}, "merges": ["a b"], "unk_token": "<unk>", "byte_fallback": false, "fuse_unk": true}}"#
        )
        let tok = try Tokenizer.load(path: p)
        #expect(tok.encode("abxyab") == [3, 0, 3])
    }
}
