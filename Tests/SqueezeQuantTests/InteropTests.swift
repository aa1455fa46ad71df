import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import Testing

/// SqueezeLLM's chunked gradient files as a sensitivity source, and the vLLM export.
@Suite(.serialized) struct InteropTests {
    static let gradients = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.path + "/gradients"

    /// layer_N.pt chunks (F32 and BF16, made by chunk_models.py's torch.save of a dict q..down) give
    /// exactly the values of the same gradients saved as safetensors under Hugging Face names; one
    /// layer_N.pt file means its directory.
    @Test func gradientChunksReadAsSensitivity() throws {
        let config = try ModelConfig(configFile: Self.gradients + "/model/config.json")
        let chunks = try SensitivityFile(path: Self.gradients)
        #expect(chunks.origin == .squeezeLLMGradientChunks)
        try chunks.validate(config: config)
        let single = try SensitivityFile(path: Self.gradients + "/layer_1.pt")
        #expect(single.origin == .squeezeLLMGradientChunks)
        let st = try SensitivityFile(path: Self.gradients + "/gradients.safetensors")
        for l in 0..<config.numLayers {
            for kind in LinearKind.allCases {
                let a = try chunks.values(layer: l, kind: kind, config: config)
                let b = try st.values(layer: l, kind: kind, config: config)
                #expect(a == b, "layer \(l) \(kind)")
                #expect(a.contains { $0 > 0 })
            }
        }
        #expect(try chunks.tensor(layer: 1, kind: .down, config: config).dtype == .bf16)
    }

    /// Name and shape checks: a model with another layer count, a chunk with an unknown key.
    @Test func gradientChunksMustMatchTheModel() throws {
        let tmp = tempPath("grad")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        for f in ["layer_0.pt", "layer_1.pt"] {
            try FileManager.default.copyItem(atPath: Self.gradients + "/" + f, toPath: tmp + "/" + f)
        }
        try FileManager.default.copyItem(atPath: Self.gradients + "/layer_0.pt", toPath: tmp + "/layer_2.pt")
        let config = try ModelConfig(configFile: Self.gradients + "/model/config.json")
        do {
            try SensitivityFile(path: tmp).validate(config: config)
            Issue.record("3 chunks accepted for a 2-layer model")
        } catch let SensitivityError.notASensitivityFile(_, d) {
            #expect(d.contains("the model has 2 layers"))
        }
        // A model whose q_proj is another shape.
        var obj =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: Self.gradients + "/model/config.json"))) as! [String: Any]
        obj["hidden_size"] = 32
        obj["head_dim"] = 8
        try writeJSON(obj, to: tmp + "/config.json")
        try FileManager.default.removeItem(atPath: tmp + "/layer_2.pt")
        do {
            try SensitivityFile(path: tmp).validate(config: try ModelConfig(configFile: tmp + "/config.json"))
            Issue.record("wrong shapes accepted")
        } catch let SensitivityError.shapeMismatch(_, t, _, _) {
            #expect(t == "model.layers.0.self_attn.q_proj.weight")
        }
        // A torch.save dict that is not a gradient chunk: a SqueezeLLM checkpoint renamed layer_0.pt.
        let odd = tempPath("odd")
        defer { try? FileManager.default.removeItem(atPath: odd) }
        try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
        let stateDict = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SqueezeFormatsTests/Fixtures/pytorch/state_dict.pt").path
        try FileManager.default.copyItem(atPath: stateDict, toPath: odd + "/layer_0.pt")
        do {
            _ = try SensitivityFile(path: odd)
            Issue.record("a state dict accepted as a gradient chunk")
        } catch let SensitivityError.notASensitivityFile(_, d) {
            #expect(d.contains("unexpected key"))
        }
    }

    /// quantize --sensitivity DIR_of_layer_N.pt gives the same model as the same gradients in safetensors.
    @Test func quantizeWithGradientChunks() throws {
        let a = tempPath("qa"), b = tempPath("qb"), c = tempPath("qc")
        defer { for p in [a, b, c] { try? FileManager.default.removeItem(atPath: p) } }
        var o = QuantizeOptions()
        o.bits = 4
        o.sensitivity = .file(Self.gradients)
        _ = try ModelQuantizer.quantize(model: Self.gradients + "/model", output: a, options: o)
        o.sensitivity = .file(Self.gradients + "/gradients.safetensors")
        _ = try ModelQuantizer.quantize(model: Self.gradients + "/model", output: b, options: o)
        o.sensitivity = .none
        _ = try ModelQuantizer.quantize(model: Self.gradients + "/model", output: c, options: o)
        let sa = try SafeTensorsModel(path: a), sb = try SafeTensorsModel(path: b), sc = try SafeTensorsModel(path: c)
        var differsFromUnweighted = 0
        for n in sa.tensorNames where n.hasSuffix(".qweight") || n.hasSuffix(".lookup_table") {
            #expect(try sa.tensor(n).toFloatArray() == sb.tensor(n).toFloatArray(), "\(n)")
            if try sa.tensor(n).toFloatArray() != sc.tensor(n).toFloatArray() { differsFromUnweighted += 1 }
        }
        #expect(differsFromUnweighted > 0, "the gradients must change the k-means result")
        let cfg =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: a + "/config.json")))
            as! [String: Any]
        #expect(((cfg["quantization_config"] as! [String: Any])["sensitivity"] as! String).contains("gradients"))
    }

    /// An independent decoder written from vLLM's `NUQ4MatMulKernel` (csrc/quantization/squeezellm):
    /// `mat` is int32 [in/8, out]; for output column `col` and word row r, nibble t (bits 4t..4t+3)
    /// indexes `lookup_table[col * 16 + nibble]` (half) and multiplies input 8r + t.
    static func vllmDequantize(qweight: [Int32], lut: [UInt16], inWords: Int, out: Int) -> [Float] {
        var w = [Float](repeating: 0, count: out * inWords * 8)
        for col in 0..<out {
            for r in 0..<inWords {
                let word = UInt32(bitPattern: qweight[r * out + col])
                for t in 0..<8 {
                    let nib = Int((word >> UInt32(4 * t)) & 0xF)
                    w[col * inWords * 8 + 8 * r + t] = Float(Float16(bitPattern: lut[col * 16 + nib]))
                }
            }
        }
        return w
    }

    /// export --format vllm: quant_config.json {"wbits": 4}, qweight I32 [in/8, out], lookup_table F16
    /// [out, 16], every other tensor equal; decoding the export with vLLM's kernel semantics gives
    /// exactly the weights `squeeze dequantize` gives for the source directory.
    @Test func vllmExportDecodesToTheSourceWeights() throws {
        let src = tempPath("tiny"), q = tempPath("q4"), out = tempPath("vllm"), deq = tempPath("deq")
        defer { for p in [src, q, out, deq] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = 4
        _ = try ModelQuantizer.quantize(model: src, output: q, options: o)
        let rep = try VLLMExporter.export(directory: q, output: out)
        #expect(rep.quantizedLayers == 14)
        #expect(!rep.warnings.isEmpty)  // 64 and 96 are not multiples of vLLM's 128-wide blocks
        let qc =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/quant_config.json")))
            as! [String: Any]
        #expect(qc.count == 1 && (qc["wbits"] as? Int) == 4)
        try ModelDequantizer.dequantize(directory: q, output: deq, dtype: .f32)
        let ex = try SafeTensorsModel(path: out), dq = try SafeTensorsModel(path: deq),
            sq = try SafeTensorsModel(path: q)
        var layers = 0
        for n in ex.tensorNames where n.hasSuffix(".qweight") {
            let p = String(n.dropLast(".qweight".count))
            let qw = try ex.tensor(n), lt = try ex.tensor(p + ".lookup_table")
            #expect(qw.dtype == .i32 && lt.dtype == .f16)
            let out = lt.shape[0]
            #expect(lt.shape == [out, 16] && qw.shape[1] == out)
            let words = UnsafeBufferPointer(start: qw.data.assumingMemoryBound(to: Int32.self), count: qw.elementCount)
            let halves = UnsafeBufferPointer(
                start: lt.data.assumingMemoryBound(to: UInt16.self), count: lt.elementCount)
            let w = Self.vllmDequantize(qweight: Array(words), lut: Array(halves), inWords: qw.shape[0], out: out)
            let ref = try dq.tensor(p + ".weight")
            #expect(ref.shape == [out, qw.shape[0] * 8])
            #expect(w == ref.toFloatArray(), "\(p)")
            layers += 1
        }
        #expect(layers == 14)
        for n in sq.tensorNames where !n.hasSuffix(".qweight") && !n.hasSuffix(".lookup_table") {
            #expect(try ex.tensor(n).toFloatArray() == sq.tensor(n).toFloatArray(), "\(n)")
        }
    }

    /// 3-bit and sparse models are refused with vLLM's reason; nothing is left behind.
    @Test(arguments: [(3, false), (4, true)])
    func vllmExportRefusesWhatVLLMCannotLoad(bits: Int, sparse: Bool) throws {
        let src = tempPath("tiny"), q = tempPath("q"), out = tempPath("vllm")
        defer { for p in [src, q, out] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = bits
        if sparse { o.outliers = OutlierSelector.sparsity(percent: 1.0) }
        _ = try ModelQuantizer.quantize(model: src, output: q, options: o)
        do {
            _ = try VLLMExporter.export(directory: q, output: out)
            Issue.record("exported a \(bits)-bit\(sparse ? " sparse" : "") model")
        } catch let VLLMExportError.unsupported(_, d) {
            #expect(d.contains(sparse ? "sparse" : "4-bit"))
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(!FileManager.default.fileExists(atPath: out + ".partial-\(getpid())"))
    }
}
