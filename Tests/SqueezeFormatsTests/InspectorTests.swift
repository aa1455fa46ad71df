import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// ModelInspector against what the reference libraries report about the same files.
@Suite struct InspectorTests {
    @Test func describesSafetensorsWithConfig() throws {
        let tmp = try TempDir()
        try FileManager.default.copyItem(
            atPath: Fixtures.path("dtypes.safetensors"), toPath: tmp.file("model.safetensors"))
        try Data(
            "{\"hidden_size\": 576, \"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"tie_word_embeddings\": true, \"rope_scaling\": null}"
                .utf8
        )
        .write(to: URL(fileURLWithPath: tmp.file("config.json")))
        let exp = try Fixtures.json("dtypes_expected.json")
        let tensors = exp["tensors"] as! [String: [String: Any]]
        let params = tensors.values.reduce(0) { $0 + ($1["shape"] as! [Int]).reduce(1, *) }
        let bytes = tensors.values.reduce(0) { s, t in
            let o = t["data_offsets"] as! [Int]; return s + o[1] - o[0]
        }

        let text = try ModelInspector.describe(path: tmp.file("model.safetensors"))
        #expect(text.contains("format: safetensors"))
        #expect(text.contains("hidden_size = 576"))
        #expect(text.contains("model_type = llama"))
        #expect(text.contains("tie_word_embeddings = true"))
        #expect(text.contains("rope_scaling = null"))
        #expect(text.contains("architectures = [\"LlamaForCausalLM\"]"))
        #expect(text.contains("source = make_safetensors_fixtures.py"))
        for n in tensors.keys { #expect(text.contains(n)) }
        #expect(text.contains("total: \(tensors.count) tensors, \(params) parameters, \(bytes) bytes"))

        let json =
            try JSONSerialization.jsonObject(with: Data(ModelInspector.describeJSON(path: tmp.path).utf8))
            as! [String: Any]
        #expect(json["format"] as? String == "safetensors")
        let totals = json["totals"] as! [String: Int]
        #expect(totals == ["tensors": tensors.count, "parameters": params, "bytes": bytes])
        #expect((json["config"] as! [String: Any])["hidden_size"] as? Int == 576)
        #expect((json["metadata"] as! [String: String]) == (exp["metadata"] as! [String: String]))
        let rows = json["tensors"] as! [[String: Any]]
        #expect(rows.map { $0["name"] as! String } == exp["order"] as! [String])
        for r in rows {
            let e = tensors[r["name"] as! String]!
            #expect(r["type"] as? String == e["dtype"] as? String)
            #expect(r["shape"] as? [Int] == e["shape"] as? [Int])
        }
    }

    @Test func describesShardedDirectory() throws {
        let exp = try Fixtures.json("sharded_expected.json")
        let wm = exp["weight_map"] as! [String: String]
        let json =
            try JSONSerialization.jsonObject(
                with: Data(ModelInspector.describeJSON(path: Fixtures.path("sharded")).utf8)) as! [String: Any]
        #expect(json["format"] as? String == "safetensors (sharded)")
        #expect(Set(json["files"] as! [String]) == Set(wm.values).union(["model.safetensors.index.json"]))
        let rows = json["tensors"] as! [[String: Any]]
        #expect(Set(rows.map { $0["name"] as! String }) == Set(wm.keys))
        for r in rows { #expect(r["file"] as? String == wm[r["name"] as! String]) }
        let text = try ModelInspector.describe(path: Fixtures.path("sharded"))
        #expect(text.contains("files (3)"))
    }

    @Test func describesGGUF() throws {
        let exp = try Fixtures.json("quant_types_expected.json")
        let tensors = exp["tensors"] as! [[String: Any]]
        let json =
            try JSONSerialization.jsonObject(
                with: Data(ModelInspector.describeJSON(path: Fixtures.path("quant_types.gguf")).utf8)) as! [String: Any]
        #expect(json["format"] as? String == "GGUF")
        #expect(json["version"] as? Int == exp["version"] as? Int)
        #expect(Set((json["metadata"] as! [String: Any]).keys) == Set(exp["metadata_keys"] as! [String]))
        let rows = json["tensors"] as! [[String: Any]]
        #expect(rows.count == tensors.count)
        for (r, e) in zip(rows, tensors) {
            #expect(r["name"] as? String == e["name"] as? String)
            #expect(r["type"] as? String == e["type"] as? String)
            #expect(r["shape"] as? [Int] == e["shape"] as? [Int])
            #expect(r["bytes"] as? Int == e["bytes"] as? Int)
        }
        let totalBytes = tensors.reduce(0) { $0 + ($1["bytes"] as! Int) }
        #expect((json["totals"] as! [String: Int])["bytes"] == totalBytes)
        let text = try ModelInspector.describe(path: Fixtures.path("quant_types.gguf"))
        #expect(text.contains("format: GGUF v3"))
        #expect(text.contains("general.architecture = \"squeeze-test\""))
        #expect(text.contains("total: 15 tensors, \(15 * 1024) parameters, \(totalBytes) bytes"))
    }

    @Test func describesRealModelArraysSummarized() throws {
        guard let model = TestModel.path else { return }
        let text = try ModelInspector.describe(path: model)
        #expect(text.contains("total: 272 tensors"))
        #expect(text.contains("tokenizer.ggml.tokens = ["))
        #expect(text.contains("(49152 items)"))
        #expect(text.contains("token_embd.weight"))
        #expect(text.contains("Q8_0"))
    }
}
