import Foundation
import SqueezeConvert
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import Testing

/// The family fixtures of SqueezeModelsTests (scripts/fixtures/make_family_fixtures.py), read from the source tree.
enum FamilyFixtures {
    static let names = [
        "llama", "llamabias", "llama3rope", "llamadyn", "mistral", "qwen2", "qwen2sw", "qwen3", "gemma2", "gemma3",
        "phi3", "phi3long", "opt", "opt350m", "gpt2",
    ]
    static func dir(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SqueezeModelsTests/Fixtures/families/\(name)").path
    }
    static func reference(_ name: String) throws -> SafeTensorsModel {
        try SafeTensorsModel(path: dir(name) + "/reference.safetensors")
    }
}

/// Every family through the SqueezeLLM pipeline: Fisher sensitivity (`squeeze sensitivity`'s library
/// path) against torch's squared gradients, then sensitivity-weighted quantization with a sparse part,
/// then the quantized directory loaded and run.
@Suite(.serialized)
struct FamilyQuantizeTests {
    /// The sensitivity file holds one tensor per stored linear weight, under the checkpoint's names
    /// and shapes (GPT-2: c_attn [in, 3 out], Conv1D orientation), matching transformers' squared
    /// gradients of the same window (1e-3 of each tensor's largest value).
    @Test(arguments: FamilyFixtures.names)
    func sensitivityFileMatchesTransformers(_ family: String) throws {
        let ref = try FamilyFixtures.reference(family)
        let ids = try ref.tensor("input_ids").toIntArray()
        let model = try Sensitivity.loadModel(path: FamilyFixtures.dir(family))
        let acc = try Sensitivity.compute(model: model, windows: [ids], mode: .fisher)
        let dir = temporaryDirectory("family-sens")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try acc.write(to: dir + "/s.safetensors")
        let file = try SafeTensorsModel(path: dir + "/s.safetensors")
        let want = ref.tensorNames.filter { $0.hasPrefix("sqgrad.") }
        #expect(Set(file.tensorNames) == Set(want.map { String($0.dropFirst("sqgrad.".count)) }))
        for r in want {
            let name = String(r.dropFirst("sqgrad.".count))
            let w = try ref.tensor(r), g = try file.tensor(name)
            #expect(g.shape == w.shape, "\(family) \(name)")
            let wv = w.toFloatArray(), gv = g.toFloatArray()
            let top = wv.max() ?? 0
            var worst: Float = 0
            for i in 0..<min(wv.count, gv.count) { worst = max(worst, abs(wv[i] - gv[i])) }
            #expect(worst <= 1e-3 * top, "\(family) \(name): max |difference| \(worst) of \(top)")
        }
        #expect(try SensitivityFile(path: dir + "/s.safetensors").validate(config: model.config) == ())
    }

    /// Activations mode: one [1, in-features] tensor per stored linear weight (GPT-2's c_attn once),
    /// equal to the mean x^2 per column of that layer's input as the training forward pass sees it
    /// (checked for the first block's attention input, which is the norm of the embeddings for pre-LN
    /// families and the embeddings themselves for post-LN OPT), and the quantizer accepts the file.
    @Test(arguments: FamilyFixtures.names)
    func activationSensitivityPerFamily(_ family: String) throws {
        let ref = try FamilyFixtures.reference(family)
        let ids = try ref.tensor("input_ids").toIntArray()
        let model = try Sensitivity.loadModel(path: FamilyFixtures.dir(family))
        let acc = try Sensitivity.compute(model: model, windows: [ids], mode: .activations)
        let dir = temporaryDirectory("family-act")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try acc.write(to: dir + "/a.safetensors")
        let file = try SafeTensorsModel(path: dir + "/a.safetensors")
        let c = model.config
        #expect(file.tensorNames.count == c.allLinearTensors.count)
        for t in c.allLinearTensors { #expect(file.info(t.weightName)?.shape == [1, t.columns], "\(t.weightName)") }
        // Block 0's attention input, recomputed here from the embeddings.
        let ws = TrainingWorkspace(model: model, maxTokens: ids.count)
        var seen: [Float]?
        try model.trainingForward(tokens: ids, workspace: ws) { l, k, x, ldx, n in
            guard l == 0, k == .q else { return }
            var m = [Float](repeating: 0, count: c.hiddenSize)
            for t in 0..<n { for j in 0..<c.hiddenSize { m[j] += x[t * ldx + j] * x[t * ldx + j] / Float(n) } }
            seen = m
        }
        let got = try file.tensor(c.allLinearTensors[0].weightName).toFloatArray()
        let want = try #require(seen)
        for j in 0..<want.count { #expect(abs(got[j] - want[j]) <= 1e-5 * max(1, want[j])) }
        // Independent check of the input itself: pre-LN inputs are normalised, post-LN inputs are not.
        let meanSq = want.reduce(0, +) / Float(want.count)
        if c.preNorm && c.normKind == .rms { #expect(meanSq > 0.3 && meanSq < 3, "\(meanSq)") }
        var o = QuantizeOptions()
        o.sensitivity = .file(dir + "/a.safetensors")
        let rep = try ModelQuantizer.quantize(model: FamilyFixtures.dir(family), output: dir + "/q", options: o)
        #expect(rep.tensors.count == c.allLinearTensors.count)
    }

    /// Quantizes with the Fisher sensitivity at 4 and 3 bits and 1% dense-and-sparse; the quantized
    /// directory loads, its linear layers are look-up-table operators, and:
    /// - it computes exactly what its dequantized weights compute (`ModelDequantizer` to F32, loaded as
    ///   a plain checkpoint; float-table kernels): logits within 1e-4 of the largest |logit|. This checks
    ///   the layout end to end (names, GPT-2's fused and transposed c_attn, sparse rows) free of
    ///   quantization noise;
    /// - its logits stay near the original model's: finite, mean |difference| below 25% (4-bit) or 55%
    ///   (3-bit) of the mean |logit|. The bounds are loose because the fixtures' weights are i.i.d.
    ///   Gaussian rows of 32-128 values (no structure for the tables to exploit).
    @Test(arguments: FamilyFixtures.names.flatMap { [($0, 4), ($0, 3)] })
    func quantizesAndRunsQuantized(_ family: String, _ bits: Int) throws {
        let src = FamilyFixtures.dir(family)
        let ref = try FamilyFixtures.reference(family)
        let ids = try ref.tensor("input_ids").toIntArray()
        let refLogits = try ref.tensor("logits").toFloatArray()
        let dir = temporaryDirectory("family-quant")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try Sensitivity.loadModel(path: src)
        try Sensitivity.compute(model: model, windows: [ids], mode: .fisher).write(to: dir + "/s.safetensors")
        var o = QuantizeOptions()
        o.bits = bits
        o.sensitivity = .file(dir + "/s.safetensors")
        o.outliers = OutlierSelector.sparsity(percent: 1.0)
        let out = dir + "/q"
        let rep = try ModelQuantizer.quantize(model: src, output: out, options: o)
        #expect(rep.tensors.count == model.config.allLinearTensors.count)
        #expect(rep.tensors.map(\.name) == model.config.allLinearTensors.map(\.prefix))

        let q = try ModelLoader.load(path: out)
        #expect(q.config.family == model.config.family)
        // The written config keeps the attention windows and the RoPE scaling.
        #expect(
            q.config.slidingWindow == model.config.slidingWindow
                && q.config.slidingWindowLayers == model.config.slidingWindowLayers)
        #expect(q.config.ropeScaling == model.config.ropeScaling)
        for l in q.layers { #expect(l.linears.allSatisfy { $0.1.kind.hasPrefix("lut\(bits)") }) }
        let T = ids.count, V = q.config.vocabSize
        let cache = KVCache(config: q.config, capacity: T)
        let ws = Workspace(model: q, maxTokens: T)
        try q.forward(tokens: ids, cache: cache, workspace: ws, logits: .all)
        let deq = dir + "/deq"
        try ModelDequantizer.dequantize(directory: out, output: deq, dtype: .f32)
        let dm = try ModelLoader.load(path: deq)
        let qf = try ModelLoader.load(path: out, options: LoadOptions(lutMode: .float))
        let w1 = Workspace(model: dm, maxTokens: T), w2 = Workspace(model: qf, maxTokens: T)
        try dm.forward(tokens: ids, cache: KVCache(config: dm.config, capacity: T), workspace: w1, logits: .all)
        try qf.forward(tokens: ids, cache: KVCache(config: qf.config, capacity: T), workspace: w2, logits: .all)
        var exact: Float = 0, top: Float = 0
        for i in 0..<(T * V) { exact = max(exact, abs(w1.logits[i] - w2.logits[i])); top = max(top, abs(w1.logits[i])) }
        #expect(
            exact <= 1e-4 * top, "\(family) \(bits)-bit: quantized vs dequantized max |difference| \(exact) of \(top)")

        var diff = 0.0, mag = 0.0, same = 0
        for t in 0..<T {
            var a = 0, b = 0
            for i in 0..<V {
                let x = ws.logits[t * V + i], y = refLogits[t * V + i]
                #expect(x.isFinite)
                diff += Double(abs(x - y)); mag += Double(abs(y))
                if x > ws.logits[t * V + a] { a = i }
                if y > refLogits[t * V + b] { b = i }
            }
            if a == b { same += 1 }
        }
        #expect(
            diff / mag < (bits == 4 ? 0.25 : 0.55),
            "\(family) \(bits)-bit: mean |logit difference| / mean |logit| = \(diff / mag)")
        // Argmax agreement is reported, not asserted: with i.i.d. random weights the top logits are often
        // within the quantization error of each other.
        print(
            "\(family) \(bits)-bit: relative logit error \(diff / mag), same argmax at \(same) of \(T) positions, quantized vs dequantized \(exact)"
        )
    }
}
