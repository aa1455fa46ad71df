import Foundation
import SqueezeTokenizer
import Testing

/// tokenizer.json with SentencePiece-style BPE and byte fallback (transformers' conversion of
/// llama.cpp's llama-spm vocabulary), in three pipeline variants, against Python `tokenizers`.
@Suite struct SentencePieceJSONTests {
    @Test func variantsMatchPythonTokenizers() throws {
        guard let gz = Fx.gunzip(Fx.path("llama_spm_hf/tokenizer.json.gz"), as: "spm-tokenizer.json") else {
            print("skipping: cannot decompress llama_spm_hf/tokenizer.json.gz (gzip missing?)"); return
        }
        // Patch the pipeline by appending members to the top-level object (the last member of a
        // name wins, as in Python's json), so that the vocabulary text is left untouched.
        var base = try String(contentsOfFile: gz, encoding: .utf8)
        while base.last?.isWhitespace == true { base.removeLast() }
        base.removeLast()  // the closing brace
        let fx = Fx.json("llama_spm_hf_fixtures.json")
        let variants = fx["variants"] as! [String: [String: Any]]
        let cases = fx["cases"] as! [String: [[String: Any]]]
        for (name, patch) in variants.sorted(by: { $0.key < $1.key }) {
            var text = base
            for (k, v) in patch {
                let value =
                    v is NSNull
                    ? "null" : String(decoding: try JSONSerialization.data(withJSONObject: v), as: UTF8.self)
                text += ", \"\(k)\": \(value)"
            }
            text += "}"
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-spm-\(getpid())-\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let file = dir.appendingPathComponent("tokenizer.json")
            try Data(text.utf8).write(to: file)
            let tok = try Tokenizer.load(path: file.path)
            for c in cases[name]! {
                let text = c["text"] as! String
                let ids = tok.encode(text, addSpecialTokens: false)
                #expect(ids == c["ids"] as! [Int], "\(name): \(text.debugDescription)")
                #expect(tok.encode(text) == c["ids_special"] as! [Int], "\(name) special: \(text.debugDescription)")
                #expect(tok.decode(ids) == c["decoded"] as! String, "\(name) decode: \(text.debugDescription)")
                let s = StreamingDecoder(tokenizer: tok)
                var streamed = ""
                for id in ids { streamed += s.push(id) }
                streamed += s.flush()
                #expect(streamed == tok.decode(ids), "\(name) streaming: \(text.debugDescription)")
            }
        }
    }
}
