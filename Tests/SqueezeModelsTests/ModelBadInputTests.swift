import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import Testing

/// Bad input to model loading: each a typed error naming the file and tensor or field.
@Suite struct ModelBadInputTests {
    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "squeeze-bad-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
    static let goodConfig: [String: Any] = [
        "model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5, "tie_word_embeddings": true,
    ]
    func tinyWeights(_ dir: String, skip: String? = nil, badShape: String? = nil) throws {
        let shapes: [(String, [Int])] = [
            ("model.embed_tokens.weight", [16, 8]), ("model.norm.weight", [8]),
            ("model.layers.0.input_layernorm.weight", [8]), ("model.layers.0.post_attention_layernorm.weight", [8]),
            ("model.layers.0.self_attn.q_proj.weight", [8, 8]), ("model.layers.0.self_attn.k_proj.weight", [4, 8]),
            ("model.layers.0.self_attn.v_proj.weight", [4, 8]), ("model.layers.0.self_attn.o_proj.weight", [8, 8]),
            ("model.layers.0.mlp.gate_proj.weight", [12, 8]), ("model.layers.0.mlp.up_proj.weight", [12, 8]),
            ("model.layers.0.mlp.down_proj.weight", [8, 12]),
        ]
        let ts = shapes.filter { $0.0 != skip }.map { n, s -> Tensor in
            let shape = n == badShape ? [s[0] + 1] + s.dropFirst() : s
            return Tensor.f32(name: n, shape: shape, values: (0..<shape.reduce(1, *)).map { Float($0 % 7) * 0.01 })
        }
        try SafeTensorsWriter.write(tensors: ts, to: dir + "/model.safetensors")
    }

    @Test func tinyModelLoadsAndRuns() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try writeJSON(Self.goodConfig, to: d + "/config.json")
        try tinyWeights(d)
        let m = try ModelLoader.load(path: d)
        let c = KVCache(config: m.config, capacity: 4), w = Workspace(model: m, maxTokens: 4)
        try m.forward(tokens: [1, 2, 3], cache: c, workspace: w, logits: .last)
        #expect(w.logits.buffer.prefix(16).allSatisfy { $0.isFinite })
        // The context is full.
        #expect(throws: ModelError.self) { try m.forward(tokens: [1, 2], cache: c, workspace: w, logits: .last) }
        c.reset()
        // A token id outside the vocabulary.
        #expect(throws: ModelError.self) { try m.forward(tokens: [99], cache: c, workspace: w, logits: .last) }
    }

    @Test func missingTensorIsNamed() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try writeJSON(Self.goodConfig, to: d + "/config.json")
        try tinyWeights(d, skip: "model.layers.0.mlp.up_proj.weight")
        let e = #expect(throws: ModelError.self) { try ModelLoader.load(path: d) }
        #expect(e?.description.contains("model.layers.0.mlp.up_proj.weight") == true)
    }

    @Test func shapeMismatchIsNamed() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try writeJSON(Self.goodConfig, to: d + "/config.json")
        try tinyWeights(d, badShape: "model.layers.0.self_attn.k_proj.weight")
        let e = #expect(throws: ModelError.self) { try ModelLoader.load(path: d) }
        #expect(e?.description.contains("k_proj") == true)
        #expect(e?.description.contains("[4, 8]") == true)
    }

    @Test(arguments: [
        ("model_type", "gpt_neox" as Any), ("hidden_size", "big" as Any), ("num_key_value_heads", 3 as Any),
    ])
    func badConfigFieldsAreNamed(field: String, value: Any) throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        var cfg = Self.goodConfig
        cfg[field] = value
        try writeJSON(cfg, to: d + "/config.json")
        try tinyWeights(d)
        let e = #expect(throws: ModelError.self) { try ModelLoader.load(path: d) }
        #expect(e?.description.contains(field) == true || e?.description.contains("gpt_neox") == true)
    }

    @Test func missingConfigFieldIsNamed() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        var cfg = Self.goodConfig
        cfg.removeValue(forKey: "intermediate_size")
        try writeJSON(cfg, to: d + "/config.json")
        let e = #expect(throws: ModelError.self) { try ModelLoader.load(path: d) }
        #expect(e?.description.contains("intermediate_size") == true)
        #expect(e?.description.contains("config.json") == true)
    }

    @Test func notAModel() throws {
        #expect(throws: ModelError.self) { try ModelLoader.load(path: "/nonexistent/model.gguf") }
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        #expect(throws: ModelError.self) { try ModelLoader.load(path: d) }
    }

    @Test func ropePermutationIsABijectionThatPairsDimensions() {
        let map = RopePermutation.ggufRowForHFRow(heads: 3, headDim: 8)
        #expect(Set(map).count == 24)
        // HF row i pairs with i + 4 (rotate-half); they must come from GGUF rows 2j and 2j+1.
        for h in 0..<3 { for i in 0..<4 { #expect(map[h * 8 + i] + 1 == map[h * 8 + i + 4]) } }
    }
}
