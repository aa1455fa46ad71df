import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import Testing

@Suite(.serialized, .enabled(if: TestModel.available, TestModel.skipNote))
struct ConversionTests {
    /// GGUF -> Hugging Face safetensors (Q/K un-permuted to rotate-half) -> load: the logits equal
    /// the GGUF model's (same F32 weights; only the RoPE pairing convention differs, so the
    /// difference is float rounding, bounded by 1e-3 on logits of range ~40).
    @Test func ggufAndConvertedSafetensorsGiveTheSameLogits() throws {
        let path = try #require(TestModel.path)
        let out = NSTemporaryDirectory() + "squeeze-convert-\(getpid())"
        try? FileManager.default.removeItem(atPath: out)
        defer { try? FileManager.default.removeItem(atPath: out) }
        try GGUFConverter.convert(gguf: path, to: out, dtype: .f32)
        #expect(FileManager.default.fileExists(atPath: out + "/config.json"))
        let st = try SafeTensorsModel(path: out)
        #expect(st.tensorNames.count == 272)
        let a = try ModelLoader.load(path: path)
        let b = try ModelLoader.load(path: out)
        #expect(a.config == b.config)
        let ids = [504, 414, 46682, 18669, 314, 3807, 281, 260, 2240, 282]
        func logits(_ m: DecoderModel) throws -> [Float] {
            let c = KVCache(config: m.config, capacity: ids.count), w = Workspace(model: m, maxTokens: ids.count)
            try m.forward(tokens: ids, cache: c, workspace: w, logits: .all)
            return Array(w.logits.buffer.prefix(ids.count * m.config.vocabSize))
        }
        let la = try logits(a), lb = try logits(b)
        var worst: Float = 0
        for i in 0..<la.count { worst = max(worst, abs(la[i] - lb[i])) }
        #expect(worst < 1e-3, "max |difference| \(worst)")
        // Writing over an existing output is refused.
        #expect(throws: ModelError.self) { try GGUFConverter.convert(gguf: path, to: out, dtype: .f16) }
    }
}
