import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import Testing

@Suite(.serialized) struct GPTQPipelineTests {
    /// `squeezellm-gptq` on the tiny Llama: block 0's q, k and v (whose input, the normed embeddings,
    /// the test computes itself) have a lower output error sum_t ||(W - Q) x_t||^2 over the
    /// calibration tokens than `squeezellm`'s, dense and with a sparse part; `--refit-tables` alone
    /// lowers it too; the directory records the method.
    @Test(arguments: [false, true])
    func lowersBlockZeroOutputError(sparse: Bool) throws {
        let src = tempPath("tiny"), dirs = (0..<3).map { _ in tempPath("q") },
            deqs = (0..<3).map { _ in tempPath("dq") }
        defer { for p in [src] + dirs + deqs { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src, seed: 7)
        var rng = SplitMix64(seed: 11)
        let windows = (0..<8).map { _ in (0..<24).map { _ in Int(rng.next() % 50) } }
        var errors: [[Double]] = []
        for (i, (method, refit)) in [(QuantMethod.squeezellm, false), (.squeezellmGPTQ, false), (.squeezellm, true)]
            .enumerated()
        {
            var o = QuantizeOptions()
            o.bits = 3
            o.method = method
            o.refitTables = refit
            o.calibrationWindows = method == .squeezellm && !refit ? nil : windows
            if sparse { o.outliers = OutlierSelector.sparsity(percent: 2.0) }
            _ = try ModelQuantizer.quantize(model: src, output: dirs[i], options: o)
            let cfg =
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dirs[i] + "/config.json")))
                as! [String: Any]
            let qc = cfg["quantization_config"] as! [String: Any]
            #expect(qc["method"] as? String == method.rawValue)
            #expect((qc["refit_tables"] as? Bool ?? false) == (method == .squeezellmGPTQ || refit))
            try ModelDequantizer.dequantize(directory: dirs[i], output: deqs[i], dtype: .f32)
            errors.append(try blockZeroErrors(original: src, quantized: deqs[i], windows: windows))
        }
        for (k, name) in ["q", "k", "v"].enumerated() {
            #expect(errors[1][k] < errors[0][k], "\(name): gptq \(errors[1][k]) vs squeezellm \(errors[0][k])")
            #expect(errors[2][k] <= errors[0][k], "\(name): refit \(errors[2][k]) vs squeezellm \(errors[0][k])")
        }
    }

    /// Calibrated quantization without calibration windows, or with `layers`, is a typed error.
    @Test func needsCalibration() throws {
        let src = tempPath("tiny"), out = tempPath("q")
        defer { for p in [src, out] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.method = .squeezellmGPTQ
        #expect(throws: QuantizePipelineError.self) { try ModelQuantizer.quantize(model: src, output: out, options: o) }
        o.calibrationWindows = [[1, 2, 3]]
        o.layers = 0...0
        #expect(throws: QuantizePipelineError.self) { try ModelQuantizer.quantize(model: src, output: out, options: o) }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// sum over tokens of ||(W - Q) x||^2 for block 0's q, k, v, x the RMS-normed embeddings.
    func blockZeroErrors(original: String, quantized: String, windows: [[Int]]) throws -> [Double] {
        let a = try SafeTensorsModel(path: original), b = try SafeTensorsModel(path: quantized)
        let emb = try a.tensor("model.embed_tokens.weight").toFloatArray()
        let g = try a.tensor("model.layers.0.input_layernorm.weight").toFloatArray()
        let h = 64
        var xs: [[Double]] = []
        for w in windows {
            for t in w {
                let e = (0..<h).map { Double(emb[t * h + $0]) }
                let s = 1 / ((e.reduce(0) { $0 + $1 * $1 } / Double(h)) + 1e-5).squareRoot()
                xs.append((0..<h).map { e[$0] * s * Double(g[$0]) })
            }
        }
        return try ["q_proj", "k_proj", "v_proj"].map { p in
            let name = "model.layers.0.self_attn.\(p).weight"
            let w = try a.tensor(name).toFloatArray(), q = try b.tensor(name).toFloatArray()
            let rows = w.count / h
            var total = 0.0
            for x in xs {
                for r in 0..<rows {
                    var y = 0.0
                    for c in 0..<h { y += (Double(w[r * h + c]) - Double(q[r * h + c])) * x[c] }
                    total += y * y
                }
            }
            return total
        }
    }
}
