import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import Testing

/// SqueezeLLM `.pt` checkpoints made with the reference's packing (scripts/fixtures/make_squeezellm_fixtures.py)
/// load and reproduce the logits transformers computes with the dequantized weights
/// W = lut[row, idx] + sparse (+ the hybrid kernel's dense rows).
///
/// Tolerance: same argmax at every position, max |logit difference| <= 1e-4 (logits are O(1);
/// Squeeze's exact float-table kernels and PyTorch's F32 matmuls differ in summation order only;
/// about 6e-7 is seen).
@Suite struct SqueezeLLMCheckpointTests {
    static let dir = Fixtures.url("squeezellm").path
    static let tolerance: Float = 1e-4

    static func reference(_ key: String) throws -> (tokens: [Int], logits: [Float], vocab: Int) {
        let j = try Fixtures.json("squeezellm/reference_logits.json")
        return (
            (j["tokens"] as! [NSNumber]).map { $0.intValue }, (j[key] as! [NSNumber]).map { $0.floatValue },
            (j["vocab"] as! NSNumber).intValue
        )
    }

    static func logits(_ m: DecoderModel, _ ids: [Int]) throws -> [Float] {
        let c = KVCache(config: m.config, capacity: ids.count), w = Workspace(model: m, maxTokens: ids.count)
        try m.forward(tokens: ids, cache: c, workspace: w, logits: .all)
        return Array(w.logits.buffer.prefix(ids.count * m.config.vocabSize))
    }

    static func checkAgainstReference(
        _ m: DecoderModel, _ key: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (ids, want, V) = try reference(key)
        let got = try logits(m, ids)
        #expect(got.count == want.count, sourceLocation: sourceLocation)
        var worst: Float = 0
        for t in 0..<ids.count {
            let g = got[(t * V)..<((t + 1) * V)], w = want[(t * V)..<((t + 1) * V)]
            #expect(
                g.indices.max(by: { g[$0] < g[$1] }) == w.indices.max(by: { w[$0] < w[$1] }), "\(key): argmax at \(t)",
                sourceLocation: sourceLocation)
            for (a, b) in zip(g, w) { worst = max(worst, abs(a - b)) }
        }
        #expect(worst <= tolerance, "\(key): max logit difference \(worst)", sourceLocation: sourceLocation)
        print("\(key): max logit difference \(worst) over \(ids.count) positions")
        // The quantization must matter: the reference differs from the unquantized model's logits.
        let orig = try reference("original").logits
        #expect(zip(want, orig).map { abs($0 - $1) }.max()! > 10 * tolerance, sourceLocation: sourceLocation)
    }

    /// 3-bit dense, 4-bit dense and 4-bit sparse (CSR + balanced startrows in layer 0, hybrid
    /// full_rows in layer 1), opened directly from the .pt (quant_config.json and config.json beside it).
    @Test(arguments: [("w3", "sq-tiny-w3-s0.pt", 3), ("w4", "sq-tiny-w4-s0.pt", 4), ("w4s", "sq-tiny-w4-s20.pt", 4)])
    func loadsAndReproducesReferenceLogits(key: String, file: String, bits: Int) throws {
        let path = Self.dir + "/\(key)/\(file)"
        #expect(ModelLoader.isPyTorchCheckpoint(path))
        let ck = try SqueezeLLMCheckpoint(path: path)
        #expect(ck.bits == bits)
        #expect(ck.quantizedLayers.count == 14)
        let m = try ModelLoader.load(path: path, options: LoadOptions(lutMode: .float))
        try Self.checkAgainstReference(m, key)
        #expect(ModelLoader.tokenizerPath(for: path) == Self.dir + "/\(key)")
    }

    /// Hybrid layout: full_rows are added to the CSR part (the fixture's layer 1 has full rows whose
    /// rows hold no CSR values, plus one extra value); sparse_threshold counts are checked.
    @Test func hybridRowsAreFoldedIntoTheSparsePart() throws {
        let ck = try SqueezeLLMCheckpoint(path: Self.dir + "/w4s/sq-tiny-w4-s20.pt")
        let layer = "model.layers.1.self_attn.q_proj"
        let idx = try ck.checkpoint.tensor(layer + ".full_row_indices").toIntArray()
        let fr = try ck.checkpoint.tensor(layer + ".full_rows")
        let csrRows = try ck.checkpoint.tensor(layer + ".rows").toIntArray()
        let f = try ck.folded(layer)
        let topX = fr.shape[1]
        let frv = fr.toFloatArray()
        var added = 0
        for (j, r) in idx.enumerated() {
            #expect(csrRows[r + 1] - csrRows[r] == 0, "the CSR part has no values in a full row")
            let nonzero = (0..<fr.shape[0]).filter { frv[$0 * topX + j] != 0 }
            added += nonzero.count
            #expect(Int(f.rows[r + 1] - f.rows[r]) == nonzero.count)
            #expect(Array(f.cols[Int(f.rows[r])..<Int(f.rows[r + 1])]) == nonzero.map { Int32($0) })
        }
        #expect(f.vals.count == (try ck.checkpoint.tensor(layer + ".vals").elementCount) + added)
        #expect(
            ck.checkpoint.int("sparse_threshold." + layer) == (try ck.checkpoint.tensor(layer + ".vals").elementCount))
        #expect(!ck.tensorNames.contains { $0.hasSuffix(".full_rows") || $0.hasSuffix(".startrows") })
    }

    /// A LLaMA-v1-style checkpoint (quantized layers only) needs --base; with it, the logits match.
    @Test func quantizedOnlyCheckpointTakesTheRestFromBase() throws {
        let path = Self.dir + "/w4v1/sq-tiny-w4-s0.pt"
        do {
            _ = try SqueezeLLMCheckpoint(path: path)
            Issue.record("opened without a config")
        } catch let e as SqueezeLLMImportError {
            #expect(e.description.contains("--base"))
        }
        let ck = try SqueezeLLMCheckpoint(path: path, base: Self.dir + "/base")
        #expect(ck.contains("model.embed_tokens.weight") && !ck.contains("model.layers.0.self_attn.q_proj.weight"))
        try Self.checkAgainstReference(try ck.loadModel(options: LoadOptions(lutMode: .float)), "w4v1")
    }

    /// convert --from-squeezellm writes a Squeeze directory that loads and gives the same logits.
    @Test(arguments: [
        ("w4s", "sq-tiny-w4-s20.pt", false), ("w3", "sq-tiny-w3-s0.pt", false), ("w4v1", "sq-tiny-w4-s0.pt", true),
    ])
    func convertedDirectoryLoadsWithTheSameLogits(key: String, file: String, needsBase: Bool) throws {
        let out = NSTemporaryDirectory() + "squeeze-convert-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        try SqueezeLLMConverter.convert(
            checkpoint: Self.dir + "/\(key)/\(file)", base: needsBase ? Self.dir + "/base" : nil, output: out)
        let cfg =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json")))
            as! [String: Any]
        let qc = cfg["quantization_config"] as! [String: Any]
        #expect(qc["quant_method"] as? String == "squeezellm")
        let st = try SafeTensorsModel(path: out)
        #expect(
            !st.tensorNames.contains {
                $0.hasSuffix(".full_rows") || $0.hasSuffix(".startrows") || $0.contains("sparse_threshold")
            })
        #expect(st.contains("model.layers.0.mlp.down_proj.qweight") && st.contains("model.embed_tokens.weight"))
        #expect(st.contains("model.layers.1.self_attn.q_proj.rows") == (key == "w4s"))
        #expect(!FileManager.default.fileExists(atPath: out + ".partial-\(getpid())"))
        try Self.checkAgainstReference(try ModelLoader.load(path: out, options: LoadOptions(lutMode: .float)), key)
    }

    /// quant_config.json that disagrees with the tables is refused, naming both.
    @Test func quantConfigMismatchIsRefused() throws {
        let tmp = NSTemporaryDirectory() + "squeeze-qc-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.copyItem(atPath: Self.dir + "/w4", toPath: tmp)
        try Data(#"{"wbits": 3}"#.utf8).write(to: URL(fileURLWithPath: tmp + "/quant_config.json"))
        do {
            _ = try SqueezeLLMCheckpoint(path: tmp + "/sq-tiny-w4-s0.pt")
            Issue.record("mismatch accepted")
        } catch let SqueezeLLMImportError.badQuantConfig(f, d) {
            #expect(f.hasSuffix("quant_config.json") && d.contains("wbits is 3"))
        }
    }

    /// A plain state dict without qweight is not taken for a SqueezeLLM checkpoint.
    @Test func plainStateDictIsNotASqueezeLLMCheckpoint() throws {
        let p =
            Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path + "/squeezellm/base/model.safetensors"
        #expect(!ModelLoader.isPyTorchCheckpoint(p))
    }
}
