import Foundation
import SqueezeTokenizer
import Testing

/// tiktoken-format ranks (rank-based byte-level BPE) against tiktoken's own `Encoding`
/// (fixtures from scripts/fixtures/make_xgen_fixtures.py, tiktoken 0.14.0).
@Suite struct TiktokenTests {
    static let fx = Fx.json("tiktoken_fixtures.json")
    static let xfx = Fx.json("xgen_fixtures.json")

    static func check(_ tok: Tokenizer, _ cases: [[String: Any]]) {
        for c in cases {
            let text = c["text"] as! String
            let ids = c["ids"] as! [Int]
            #expect(tok.encode(text) == ids, "\(text.debugDescription)")
            #expect(
                tok.encode(text, addSpecialTokens: false, parseSpecial: false) == c["ids_no_special"] as! [Int],
                "\(text.debugDescription) (special tokens as text)")
            #expect(tok.decode(ids) == c["decoded"] as! String, "\(text.debugDescription)")
            #expect(tok.decode(ids) == text, "round trip \(text.debugDescription)")
        }
    }

    @Test func cl100kPatternMatchesTiktoken() throws {
        let special = (Self.fx["special_tokens"] as! [String: Any]).mapValues { $0 as! Int }
        let ranks = try TiktokenRanks(tiktokenFile: Fx.path(Self.fx["file"] as! String))
        #expect(ranks.count == 3256)
        let tok = try Tokenizer(tiktoken: ranks, pattern: .cl100k, specialTokens: special)
        #expect(tok.eosTokenId == special["<|endoftext|>"])
        #expect(tok.bosTokenId == nil && !tok.addBOS)
        Self.check(tok, Self.fx["cases"] as! [[String: Any]])
    }

    @Test func xgenDirectoryMatchesReference() throws {
        let tok = try Tokenizer.load(path: Fx.path("xgen"))
        let special = (Self.xfx["special_tokens"] as! [String: Any]).mapValues { $0 as! Int }
        #expect(tok.vocabSize == Self.xfx["n_vocab"] as! Int)
        for (s, id) in special {
            #expect(tok.tokenId(s) == id, "\(s)")
            #expect(tok.isSpecial(id))
        }
        // <|endoftext|> right after the base ranks is EOS and padding; nothing is added around a sequence.
        #expect(tok.eosTokenId == 3256 && tok.padTokenId == 3256 && tok.bosTokenId == nil)
        #expect(!tok.addBOS && !tok.addEOS)
        // Whitespace runs are ranks (merged by BPE), not special tokens.
        #expect(tok.tokenId(String(repeating: " ", count: 31).unicodeScalars.map { _ in "Ġ" }.joined()) == 3257)
        #expect(!tok.isSpecial(3257))
        Self.check(tok, Self.xfx["cases"] as! [[String: Any]])
        #expect(tok.decode([3256, 3257], skipSpecialTokens: true) == String(repeating: " ", count: 31))
    }

    @Test func tiktokenFileLoadsByPath() throws {
        // The generic `.tiktoken` loader: the name decides the pattern (cl100k unless r50k/p50k/gpt2),
        // <|endoftext|> after the ranks.
        let tok = try Tokenizer.load(path: Fx.path("tiktoken/small.tiktoken"))
        #expect(tok.eosTokenId == 3256)
        #expect(TiktokenPattern.forFile(named: "r50k_base.tiktoken") == .gpt2)
        #expect(TiktokenPattern.forFile(named: "cl100k_base.tiktoken") == .cl100k)
        let special = (Self.fx["special_tokens"] as! [String: Any]).mapValues { $0 as! Int }
        for c in Self.fx["cases"] as! [[String: Any]]
        where !special.keys.contains(where: { (c["text"] as! String).contains($0) }) {
            #expect(tok.encode(c["text"] as! String) == c["ids"] as! [Int])
        }
    }

    @Test func malformedRanksAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-tiktoken-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ text: String) -> String {
            let p = dir.appendingPathComponent(name).path
            FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
            return p
        }
        let bad = write("bad.tiktoken", "IQ== 0\nnot-base64!! 1\n")
        #expect { try TiktokenRanks(tiktokenFile: bad) } throws: { e in
            "\(e)".contains("bad.tiktoken") && "\(e)".contains("line 2")
        }
        let noRank = write("norank.tiktoken", "IQ== x\n")
        #expect(throws: TokenizerError.self) { try TiktokenRanks(tiktokenFile: noRank) }
        // Ranks that miss a single byte cannot encode every text: refused, naming the byte.
        let partial = write("partial.tiktoken", "IQ== 0\nIg== 1\n")
        #expect { try Tokenizer(tiktokenPath: partial) } throws: { e in "\(e)".contains("0x00") }
        // An XGen directory without the gpt2 ranks says what is missing.
        let x = dir.appendingPathComponent("xgen")
        try FileManager.default.createDirectory(at: x, withIntermediateDirectories: true)
        _ = write("xgen/tokenizer_config.json", #"{"tokenizer_class": "XgenTokenizer"}"#)
        #expect { try Tokenizer.load(path: x.path) } throws: { e in "\(e)".contains("gpt2.tiktoken") }
    }
}
