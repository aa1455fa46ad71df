import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeTokenizer
import Testing

/// GGUF → Hugging Face conversion against transformers' own GGUF loading, on a tiny random Llama
/// (Fixtures/gguf_hf, made by scripts/fixtures/make_gguf_hf_fixtures.py: llama.cpp's Q/K permutation,
/// grouped-query attention, untied head, F16 weights, a byte-level BPE vocabulary with the
/// llama-bpe pre-tokenizer and BOS).
@Suite struct GGUFToHFTests {
    static let ref: [String: Any] = try! Fixtures.json("gguf_hf/reference.json")

    func converted(_ dtype: DType) throws -> String {
        let out = NSTemporaryDirectory() + "squeeze-gguf-hf-\(getpid())-\(dtype.rawValue)-\(UUID().uuidString)"
        let gguf = Fixtures.url("gguf_hf/tiny-llama.gguf").path
        try GGUFConverter.convert(
            gguf: gguf, to: out, dtype: dtype, extraFiles: try GGUFConverter.tokenizerFiles(forGGUF: gguf))
        return out
    }

    func logits(_ m: DecoderModel, _ ids: [Int]) throws -> [Float] {
        let c = KVCache(config: m.config, capacity: ids.count), w = Workspace(model: m, maxTokens: ids.count)
        try m.forward(tokens: ids, cache: c, workspace: w, logits: .all)
        return Array(w.logits.buffer.prefix(ids.count * m.config.vocabSize))
    }

    /// F32 output: the converted directory, loaded by Squeeze, gives transformers-from-GGUF's logits
    /// at every position within 1e-4 (the same F16-exact weights in F32; only summation order
    /// differs; logits span about ±1.2) and the same argmax at every position.
    @Test func convertedLogitsMatchTransformersGGUFLoading() throws {
        let out = try converted(.f32)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let m = try ModelLoader.load(path: out)
        let ids = (Self.ref["ids"] as! [[Int]])[0]
        let want = (Self.ref["logits"] as! [Double]).map(Float.init)
        let v = (Self.ref["config"] as! [String: Any])["vocab_size"] as! Int
        #expect(want.count == ids.count * v)
        let got = try logits(m, ids)
        var worst: Float = 0
        for i in 0..<want.count { worst = max(worst, abs(got[i] - want[i])) }
        #expect(worst < 1e-4, "max |logit difference| \(worst)")
        for p in 0..<ids.count {
            let g = got[(p * v)..<((p + 1) * v)], w = want[(p * v)..<((p + 1) * v)]
            #expect(
                g.firstIndex(of: g.max()!)! - p * v == w.firstIndex(of: w.max()!)! - p * v, "argmax at position \(p)")
        }
    }

    /// F16 output: same argmax everywhere, logits within 2e-3 of the reference.
    @Test func f16OutputStaysClose() throws {
        let out = try converted(.f16)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let st = try SafeTensorsModel(path: out)
        #expect(st.tensorNames.count == 21)
        let m = try ModelLoader.load(path: out)
        let ids = (Self.ref["ids"] as! [[Int]])[0]
        let want = (Self.ref["logits"] as! [Double]).map(Float.init)
        let got = try logits(m, ids)
        var worst: Float = 0
        for i in 0..<want.count { worst = max(worst, abs(got[i] - want[i])) }
        #expect(worst < 2e-3, "max |logit difference| \(worst)")
    }

    /// config.json carries the fields transformers read from the GGUF.
    @Test func configMatchesTransformers() throws {
        let out = try converted(.f32)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))
        let cfg = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let want = Self.ref["config"] as! [String: Any]
        for key in [
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id",
        ] {
            #expect(cfg[key] as? Int == want[key] as? Int, "\(key)")
        }
        #expect(cfg["tie_word_embeddings"] as? Bool == want["tie_word_embeddings"] as? Bool)
        #expect(abs((cfg["rms_norm_eps"] as! Double) - (want["rms_norm_eps"] as! Double)) < 1e-9)
        #expect(cfg["rope_theta"] as? Double == Self.ref["rope_theta"] as? Double)
        #expect(cfg["model_type"] as? String == "llama")
        #expect(cfg["architectures"] as? [String] == ["LlamaForCausalLM"])
        #expect(cfg["torch_dtype"] as? String == "float32")
    }

    /// The written tokenizer.json + tokenizer_config.json encode like transformers' GGUF tokenizer,
    /// with and without special tokens, and name the same BOS/EOS.
    @Test func writtenTokenizerMatchesTransformers() throws {
        let out = try converted(.f16)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let tok = try Tokenizer.load(path: out)
        let t = Self.ref["tokenizer"] as! [String: Any]
        #expect(tok.specialTokenStrings["bos_token"] == t["bos_token"] as? String)
        #expect(tok.specialTokenStrings["eos_token"] == t["eos_token"] as? String)
        #expect(tok.addBOS)
        for c in t["cases"] as! [[String: Any]] {
            let text = c["text"] as! String
            #expect(tok.encode(text) == c["ids"] as! [Int], "\(text.debugDescription)")
            #expect(
                tok.encode(text, addSpecialTokens: false) == c["ids_no_special"] as! [Int], "\(text.debugDescription)")
            #expect(tok.decode(c["ids_no_special"] as! [Int]) == text)
        }
        // The GGUF's own tokenizer agrees with the exported one.
        let g = try Tokenizer.load(path: Fixtures.url("gguf_hf/tiny-llama.gguf").path)
        for c in t["cases"] as! [[String: Any]] {
            #expect(g.encode(c["text"] as! String) == tok.encode(c["text"] as! String))
        }
    }
}
