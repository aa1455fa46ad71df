import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels
import SqueezeQuant
import Testing

/// A tiny random Llama written by the test (hidden 64, 2 layers), for end-to-end pipeline checks.
enum TinyLlama {
    static let config: [String: Any] = [
        "model_type": "llama", "vocab_size": 50, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
        "max_position_embeddings": 128, "rope_theta": 10000.0,
    ]

    static func make(in dir: String, seed: UInt64 = 1) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try writeJSON(config, to: dir + "/config.json")
        var rng = SplitMix64(seed: seed)
        var shapes: [(String, [Int])] = [
            ("model.embed_tokens.weight", [50, 64]), ("model.norm.weight", [64]), ("lm_head.weight", [50, 64]),
        ]
        for l in 0..<2 {
            let p = "model.layers.\(l)."
            shapes += [
                (p + "input_layernorm.weight", [64]), (p + "post_attention_layernorm.weight", [64]),
                (p + "self_attn.q_proj.weight", [64, 64]), (p + "self_attn.k_proj.weight", [32, 64]),
                (p + "self_attn.v_proj.weight", [32, 64]), (p + "self_attn.o_proj.weight", [64, 64]),
                (p + "mlp.gate_proj.weight", [96, 64]), (p + "mlp.up_proj.weight", [96, 64]),
                (p + "mlp.down_proj.weight", [64, 96]),
            ]
        }
        let ts = shapes.map { n, s -> Tensor in
            let count = s.reduce(1, *)
            let v: [Float] =
                s.count == 1
                ? (0..<count).map { _ in Float(1 + 0.1 * rng.normal()) }
                : (0..<count).map { _ in Float(0.15 * rng.normal() + (rng.uniform() < 0.01 ? 1.5 : 0)) }
            return Tensor.f32(name: n, shape: s, values: v)
        }
        try SafeTensorsWriter.write(tensors: ts, to: dir + "/model.safetensors")
    }

    static func logits(_ m: DecoderModel, _ ids: [Int]) throws -> [Float] {
        let c = KVCache(config: m.config, capacity: ids.count), w = Workspace(model: m, maxTokens: ids.count)
        try m.forward(tokens: ids, cache: c, workspace: w, logits: .all)
        return Array(w.logits.buffer.prefix(ids.count * m.config.vocabSize))
    }
}

func tempPath(_ tag: String) -> String { NSTemporaryDirectory() + "squeeze-\(tag)-\(UUID().uuidString)" }

@Suite(.serialized) struct QuantizePipelineTests {
    /// 3- and 4-bit, dense and sparse: the output has SqueezeLLM's tensors with the right dtypes and
    /// shapes; the quantized model's logits (exact float-table kernels) equal the logits of its
    /// dequantized F32 checkpoint run through the dense path (tolerance 1e-3 on logits of size ~5:
    /// the two differ only by float summation order and the sparse values' separate addition).
    @Test(arguments: [(4, false), (3, false), (4, true), (3, true)])
    func quantizedModelRunsAndMatchesItsDequantization(bits: Int, sparse: Bool) throws {
        let src = tempPath("tiny"), out = tempPath("q"), deq = tempPath("dq")
        defer { for p in [src, out, deq] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = bits
        if sparse { o.outliers = OutlierSelector.sparsity(percent: 2.0) }
        let rep = try ModelQuantizer.quantize(model: src, output: out, options: o)
        #expect(rep.tensors.count == 14)
        // Bits per weight counts the packed indices, the FP16 tables (2^b x 16 bits per row) and the sparse part.
        var bytes = 0, weights = 0
        for t in rep.tensors {
            bytes += t.rows * t.columns * bits / 8 + t.rows * (1 << bits) * 2
            if sparse { bytes += (t.rows + 1) * 4 + t.sparseCount * (4 + 2) }
            weights += t.rows * t.columns
        }
        #expect(abs(rep.bitsPerWeight - Double(bytes * 8) / Double(weights)) < 1e-9)
        if sparse { #expect(rep.totalSparse > 0) }
        let st = try SafeTensorsModel(path: out)
        let p = "model.layers.1.mlp.down_proj"
        #expect(try st.tensor(p + ".qweight").dtype == .i32)
        #expect(try st.tensor(p + ".qweight").shape == [96 * bits / 32, 64])
        #expect(try st.tensor(p + ".lookup_table").shape == [64, 1 << bits])
        #expect(try st.tensor(p + ".lookup_table").dtype == .f16)
        #expect(st.contains(p + ".vals") == sparse)
        #expect(!st.contains(p + ".weight"))
        #expect(try st.tensor("model.embed_tokens.weight").dtype == .f32)
        let cfg =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json")))
            as! [String: Any]
        let qc = cfg["quantization_config"] as! [String: Any]
        #expect(qc["quant_method"] as? String == "squeezellm")
        #expect((qc["wbits"] as? NSNumber)?.intValue == bits)

        let qm = try ModelLoader.load(path: out, options: LoadOptions(lutMode: .float))
        #expect(qm.layers[0].op(.q)!.kind.hasPrefix("lut\(bits)"))
        try ModelDequantizer.dequantize(directory: out, output: deq, dtype: .f32)
        let dm = try ModelLoader.load(path: deq)
        #expect(dm.layers[0].op(.q)!.kind == "f32")
        let ids = [1, 7, 22, 3, 49, 0, 12]
        let a = try TinyLlama.logits(qm, ids), b = try TinyLlama.logits(dm, ids)
        var worst: Float = 0
        for i in 0..<a.count { worst = max(worst, abs(a[i] - b[i])) }
        #expect(worst < 1e-3, "max |difference| \(worst)")
        // The fast int8 path stays close: relative L2 error of the logits below 15%. Its tables are int8
        // with one scale per row, so a row whose table spans an outlier (this model has 1% weights at
        // 10 sigma) gets a coarse step for its small centroids; activations add about 0.4% per product.
        // The real model's perplexity cost of the fast path is measured in README.
        let fm = try ModelLoader.load(path: out, options: LoadOptions(lutMode: .int8))
        let f = try TinyLlama.logits(fm, ids)
        var num = 0.0, den = 0.0
        for i in 0..<a.count { num += Double(a[i] - f[i]) * Double(a[i] - f[i]); den += Double(a[i]) * Double(a[i]) }
        #expect((num / den).squareRoot() < 0.15, "int8 path relative L2 error \((num / den).squareRoot())")
    }

    /// The sparse part plus the dense look-up reproduces every kept weight (FP32 values: exactly
    /// up to one FP32 rounding of the difference).
    @Test func denseAndSparseReproduceKeptWeights() throws {
        let src = tempPath("tiny"), out = tempPath("q"), deq = tempPath("dq")
        defer { for p in [src, out, deq] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = 3
        o.outliers = OutlierSelector(sensitiveFraction: 0, threshold: .fraction(0.05))
        o.sparseDType = .f32
        _ = try ModelQuantizer.quantize(model: src, output: out, options: o)
        try ModelDequantizer.dequantize(directory: out, output: deq, dtype: .f32)
        let orig = try SafeTensorsModel(path: src), st = try SafeTensorsModel(path: out),
            dq = try SafeTensorsModel(path: deq)
        let p = "model.layers.0.self_attn.o_proj"
        let w = try orig.tensor(p + ".weight").toFloatArray(), d = try dq.tensor(p + ".weight").toFloatArray()
        let rows = try st.tensor(p + ".rows").toIntArray(), cols = try st.tensor(p + ".cols").toIntArray()
        #expect(cols.count > 0)
        for r in 0..<64 {
            for j in rows[r]..<rows[r + 1] {
                let i = r * 64 + cols[j]
                #expect(abs(d[i] - w[i]) <= abs(w[i]) * 1.2e-7, "kept weight (\(r), \(cols[j]))")
            }
        }
    }

    @Test func badOptionsAndInputsGiveClearErrors() throws {
        let src = tempPath("tiny")
        defer { try? FileManager.default.removeItem(atPath: src) }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = 5
        #expect(throws: QuantizePipelineError.self) {
            try ModelQuantizer.quantize(model: src, output: tempPath("x"), options: o)
        }
        o.bits = 4
        // Output exists.
        let e1 = #expect(throws: QuantizePipelineError.self) {
            try ModelQuantizer.quantize(model: src, output: src, options: o)
        }
        #expect(e1?.description.contains("already exists") == true)
        // Unwritable output.
        #expect(throws: (any Error).self) {
            try ModelQuantizer.quantize(model: src, output: "/proc/squeeze-out", options: o)
        }
        // A sensitivity file whose shape does not match.
        let sens = tempPath("sens") + ".safetensors"
        defer { try? FileManager.default.removeItem(atPath: sens) }
        var ts: [Tensor] = []
        for l in 0..<2 {
            for (n, s) in [
                ("self_attn.q_proj", [64, 64]), ("self_attn.k_proj", [32, 64]), ("self_attn.v_proj", [32, 64]),
                ("self_attn.o_proj", [64, 64]), ("mlp.gate_proj", [96, 64]), ("mlp.up_proj", [96, 64]),
                ("mlp.down_proj", [64, 97]),
            ] {
                ts.append(
                    Tensor.f32(
                        name: "model.layers.\(l).\(n).weight", shape: s,
                        values: [Float](repeating: 1, count: s.reduce(1, *))))
            }
        }
        try SafeTensorsWriter.write(tensors: ts, to: sens)
        o.sensitivity = .file(sens)
        let out = tempPath("q")
        let e2 = #expect(throws: SensitivityError.self) {
            try ModelQuantizer.quantize(model: src, output: out, options: o)
        }
        #expect(e2?.description.contains("model.layers.0.mlp.down_proj.weight") == true)
        #expect(!FileManager.default.fileExists(atPath: out))
        // A missing tensor in the sensitivity file.
        try SafeTensorsWriter.write(tensors: Array(ts.dropFirst()), to: sens)
        let e3 = #expect(throws: SensitivityError.self) {
            try ModelQuantizer.quantize(model: src, output: out, options: o)
        }
        #expect(e3?.description.contains("q_proj") == true)
        // Quantizing an already quantized model is refused.
        o.sensitivity = .none
        _ = try ModelQuantizer.quantize(model: src, output: out, options: o)
        defer { try? FileManager.default.removeItem(atPath: out) }
        #expect(throws: ModelError.self) { try ModelQuantizer.quantize(model: out, output: tempPath("qq"), options: o) }
    }

    /// A run that fails mid-way (a NaN sensitivity in the last layer, found after earlier layers were
    /// written) leaves neither the output directory nor its temporary directory behind.
    @Test func failureMidwayLeavesNothing() throws {
        let src = tempPath("tiny"), out = tempPath("q"), sens = tempPath("sens") + ".safetensors"
        defer { for p in [src, out, sens] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var ts: [Tensor] = []
        for l in 0..<2 {
            for (n, s) in [
                ("self_attn.q_proj", [64, 64]), ("self_attn.k_proj", [32, 64]), ("self_attn.v_proj", [32, 64]),
                ("self_attn.o_proj", [64, 64]), ("mlp.gate_proj", [96, 64]), ("mlp.up_proj", [96, 64]),
                ("mlp.down_proj", [64, 96]),
            ] {
                var v = [Float](repeating: 1, count: s.reduce(1, *))
                if l == 1 && n == "mlp.down_proj" { v[17] = .nan }
                ts.append(Tensor.f32(name: "model.layers.\(l).\(n).weight", shape: s, values: v))
            }
        }
        try SafeTensorsWriter.write(tensors: ts, to: sens)
        var o = QuantizeOptions()
        o.sensitivity = .file(sens)
        var layersDone = 0
        #expect(throws: (any Error).self) {
            try ModelQuantizer.quantize(model: src, output: out, options: o) { _, _, name, _, _ in
                if name.hasSuffix("_proj") { layersDone += 1 }
            }
        }
        #expect(layersDone >= 10, "the failure came after \(layersDone) layers were written")
        #expect(!FileManager.default.fileExists(atPath: out))
        #expect(!FileManager.default.fileExists(atPath: ModelQuantizer.temporaryDirectory(for: out)))
    }

    /// A sensitivity file steers the k-means: weights with large sensitivity get smaller error.
    @Test func sensitivityLowersWeightedError() throws {
        let src = tempPath("tiny"), a = tempPath("qa"), b = tempPath("qb"), sens = tempPath("sens") + ".safetensors"
        defer { for p in [src, a, b, sens] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var rng = SplitMix64(seed: 9)
        var ts: [Tensor] = []
        for l in 0..<2 {
            for (n, s) in [
                ("self_attn.q_proj", [64, 64]), ("self_attn.k_proj", [32, 64]), ("self_attn.v_proj", [32, 64]),
                ("self_attn.o_proj", [64, 64]), ("mlp.gate_proj", [96, 64]), ("mlp.up_proj", [96, 64]),
                ("mlp.down_proj", [64, 96]),
            ] {
                ts.append(
                    Tensor.f32(
                        name: "model.layers.\(l).\(n).weight", shape: s,
                        values: (0..<s.reduce(1, *)).map { _ in Float(pow(rng.uniform(), 8)) }))
            }
        }
        try SafeTensorsWriter.write(tensors: ts, to: sens)
        var o = QuantizeOptions()
        o.bits = 3
        o.sensitivity = .file(sens)
        let withS = try ModelQuantizer.quantize(model: src, output: a, options: o)
        // Same weights quantized without sensitivity, then scored with it.
        o.sensitivity = .none
        _ = try ModelQuantizer.quantize(model: src, output: b, options: o)
        try? FileManager.default.removeItem(atPath: b)
        var total = 0.0
        let orig = try SafeTensorsModel(path: src), sf = try SafeTensorsModel(path: sens)
        for t in ts {
            let name = t.name, rows = t.shape[0], cols = t.shape[1]
            let w = try orig.tensor(name).toFloatArray(), f = try sf.tensor(name).toFloatArray()
            let q = try NonUniformQuantizer.quantizeMatrix(
                weights: w, sensitivity: .uniform, rows: rows, cols: cols, bits: 3)
            let dq = q.dequantized()
            for i in 0..<w.count { total += Double(f[i]) * Double(w[i] - dq[i]) * Double(w[i] - dq[i]) }
        }
        #expect(withS.totalWeightedError < total, "\(withS.totalWeightedError) vs \(total)")
    }
}
