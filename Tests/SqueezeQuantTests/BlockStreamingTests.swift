import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels
import SqueezeQuant
import SqueezeTestSupport
import Testing

/// The block-streamed sensitivity pass (`Sensitivity.compute`: windows through the model one block
/// at a time, each block's internals recomputed from its saved input for its backward) against the
/// whole-model backward (`lossAndBackward` over a `TrainingWorkspace(keepsAllBlocks: true)`: one
/// forward keeping every block's activations, no recomputation, window by window).
@Suite(.serialized) struct BlockStreamingTests {
    /// Sum over `windows` of each window's squared gradients from the whole-model backward.
    static func wholeModelFisher(_ model: DecoderModel, _ windows: [[Int]]) throws -> SensitivityAccumulator {
        let acc = SensitivityAccumulator(model: model, mode: .fisher)
        let ws = TrainingWorkspace(model: model, maxTokens: windows.map(\.count).max()!, keepsAllBlocks: true)
        for w in windows { try model.lossAndBackward(tokens: w, workspace: ws, sink: acc) }
        return acc
    }

    /// Every tensor of `a` within `tol` of its largest |value| of `b`'s; returns the worst ratio.
    @discardableResult
    static func expectClose(
        _ a: SensitivityAccumulator, _ b: SensitivityAccumulator, tol: Float, _ label: String
    ) -> Float {
        var worst: Float = 0
        for l in 0..<a.model.layers.count {
            for kind in a.model.config.linearKinds {
                let x = a.values(layer: l, kind: kind), y = b.values(layer: l, kind: kind)
                #expect(x.count == y.count && !x.isEmpty, "\(label) \(l) \(kind)")
                let top = y.map { abs($0) }.max() ?? 0
                #expect(top > 0, "\(label) \(l) \(kind): all zero")
                var d: Float = 0
                for i in 0..<min(x.count, y.count) { d = max(d, abs(x[i] - y[i])) }
                worst = max(worst, d / top)
                #expect(d <= tol * top, "\(label) block \(l) \(kind): max |difference| \(d) of \(top)")
            }
        }
        return worst
    }

    /// Windows of `n` tokens cut from `ids` (wrapping), at a few offsets.
    static func windows(_ ids: [Int], count: Int, length n: Int) -> [[Int]] {
        (0..<count).map { i in (0..<n).map { ids[(i * 5 + $0) % ids.count] } }
    }

    /// Each family fixture: block-streamed Fisher (one lane and two) equals the whole-model Fisher
    /// to 1e-6 of each tensor's largest value; the losses agree.
    @Test(arguments: FamilyFixtures.names)
    func blockStreamedFisherEqualsWholeModel(_ family: String) throws {
        let ref = try FamilyFixtures.reference(family)
        let ids = try ref.tensor("input_ids").toIntArray()
        let model = try Sensitivity.loadModel(path: FamilyFixtures.dir(family))
        let w = Self.windows(ids, count: 3, length: ids.count)
        let whole = try Self.wholeModelFisher(model, w)
        for lanes in [1, 2] {
            let streamed = try Sensitivity.compute(
                model: model, windows: w, mode: .fisher, lanes: lanes, pass: .blockStreamed)
            #expect(streamed.losses.count == 3)
            Self.expectClose(streamed, whole, tol: 1e-6, "\(family) lanes \(lanes)")
        }
    }

    /// The real test model (30 blocks): the same equality over two windows of 48 tokens.
    @Test(.enabled(if: TestModel.available, TestModel.skipNote))
    func blockStreamedFisherEqualsWholeModelOnTheTestModel() throws {
        let model = try Sensitivity.loadModel(path: TestModel.path!)
        let w = Self.windows((0..<400).map { ($0 * 37 + 11) % 5000 }, count: 2, length: 48)
        let whole = try Self.wholeModelFisher(model, w)
        let streamed = try Sensitivity.compute(model: model, windows: w, mode: .fisher, lanes: 1, pass: .blockStreamed)
        Self.expectClose(streamed, whole, tol: 1e-6, "test model")
        // The whole-model pass of `compute` (the automatic choice for this model) is the reference's.
        #expect(Sensitivity.automaticPass(model: model, windows: w, mode: .fisher, lanes: 2) == .wholeModel)
        let viaCompute = try Sensitivity.compute(model: model, windows: w, mode: .fisher, lanes: 1, pass: .wholeModel)
        Self.expectClose(viaCompute, whole, tol: 0, "whole-model pass")
    }

    /// With an output file, each block is written as soon as it is complete and freed: the file
    /// equals (bytes) the one written from a run that kept every block, and the run holds no block
    /// at its end. Activations mode likewise.
    @Test func streamedFileEqualsHeldRun() throws {
        let model = try TinyModel.model()
        let w = (0..<3).map { Array(TinyModel.tokens[($0 * 17)..<($0 * 17 + 24)]) }
        let d = temporaryDirectory("stream-file")
        defer { try? FileManager.default.removeItem(atPath: d) }
        for mode in SensitivityMode.allCases {
            let held = try Sensitivity.compute(model: model, windows: w, mode: mode, lanes: 1, pass: .blockStreamed)
            try held.write(to: d + "/held.safetensors", metadata: ["k": "v"])
            let streamed = try Sensitivity.compute(
                model: model, windows: w, mode: mode, lanes: 1, pass: .blockStreamed,
                output: SensitivityOutput(path: d + "/streamed.safetensors", metadata: ["k": "v"]))
            if mode == .fisher { #expect((0..<2).allSatisfy { !streamed.holdsBlock($0) }) }
            let a = try Data(contentsOf: URL(fileURLWithPath: d + "/held.safetensors"))
            let b = try Data(contentsOf: URL(fileURLWithPath: d + "/streamed.safetensors"))
            #expect(a == b, "\(mode)")
            let f = try SensitivityFile(path: d + "/streamed.safetensors")
            try f.validate(config: model.config)
        }
    }

    /// Writes a Llama checkpoint of `config` with random F16 weights to `dir`.
    static func writeF16Checkpoint(_ c: ModelConfig, to dir: String, seed: UInt64 = 5) throws {
        var s = seed
        func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        var tensors: [Tensor] = []
        func add(_ name: String, _ shape: [Int], scale: Float, offset: Float = 0) {
            let n = shape.reduce(1, *)
            let v = (0..<n).map { _ in offset + scale * next() }
            tensors.append(try! Tensor.f32(name: name, shape: shape, values: v).converted(to: .f16))
        }
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, f = c.intermediateSize
        add("model.embed_tokens.weight", [c.vocabSize, h], scale: 1)
        add("model.norm.weight", [h], scale: 0.1, offset: 1)
        add("lm_head.weight", [c.vocabSize, h], scale: 0.05)
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "post_attention_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "self_attn.q_proj.weight", [qd, h], scale: 0.05)
            add(p + "self_attn.k_proj.weight", [kvd, h], scale: 0.05)
            add(p + "self_attn.v_proj.weight", [kvd, h], scale: 0.05)
            add(p + "self_attn.o_proj.weight", [h, qd], scale: 0.05)
            add(p + "mlp.gate_proj.weight", [f, h], scale: 0.05)
            add(p + "mlp.up_proj.weight", [f, h], scale: 0.05)
            add(p + "mlp.down_proj.weight", [h, f], scale: 0.03)
        }
        try SafeTensorsWriter.write(tensors: tensors, to: dir + "/model.safetensors")
        let cfg: [String: Any] = [
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": c.vocabSize,
            "hidden_size": h, "intermediate_size": f, "num_hidden_layers": c.numLayers,
            "num_attention_heads": c.numHeads, "num_key_value_heads": c.numKVHeads, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": false,
            "torch_dtype": "float16",
        ]
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
    }

    /// A model stored as F16 runs the sensitivity pass on its mapped F16 weights: every linear
    /// weight stays an F16 view of the file (no F32 copy at load), the only F32 weight data of the
    /// run is the backward's bounded panel (`convertedWeightBytes`: 16 MiB here, against 4 bytes x
    /// 29M parameters = 117 MB for an F32 copy; its 8192 x 1024 weights take two panels each), and
    /// the result equals that of the same model converted to F32 at load (1e-4 of each tensor's
    /// largest value: the forward's F16 and F32 kernels sum in different orders).
    @Test func f16ModelRunsWithoutAnF32Copy() throws {
        let c = ModelConfig(
            vocabSize: 64, hiddenSize: 1024, intermediateSize: 8192, numLayers: 1, numHeads: 8, numKVHeads: 4,
            headDim: 128, rmsNormEps: 1e-5, ropeTheta: 10000, maxPositionEmbeddings: 64, tieWordEmbeddings: false)
        let d = temporaryDirectory("f16-sens")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try Self.writeF16Checkpoint(c, to: d)
        let model = try Sensitivity.loadModel(path: d)
        var params = 0
        for (_, op) in model.layers[0].linears {
            let dm = try #require(op as? DenseMatrix)
            #expect(dm.tensor.dtype == .f16 && dm.tensor.owner is MappedFile)
            params += op.rows * op.columns
        }
        #expect((model.lmHead as? DenseMatrix)?.tensor.dtype == .f16)
        let w = (0..<2).map { i in (0..<12).map { (i * 7 + $0 * 3) % 64 } }
        let acc = try Sensitivity.compute(model: model, windows: w, mode: .fisher, lanes: 1, pass: .blockStreamed)
        #expect(acc.convertedWeightBytes > 0 && acc.convertedWeightBytes <= 4 * TrainingWorkspace.panelFloats)
        #expect(acc.convertedWeightBytes * 4 < 4 * params)
        let f32 = try ModelLoader.load(path: d, options: LoadOptions(weightDType: .f32))
        let ref = try Sensitivity.compute(model: f32, windows: w, mode: .fisher, lanes: 1, pass: .blockStreamed)
        #expect(ref.convertedWeightBytes == 0)
        for (a, b) in zip(acc.losses, ref.losses) { #expect(abs(a - b) <= 1e-5 * abs(b)) }
        Self.expectClose(acc, ref, tol: 1e-4, "f16 vs f32")
    }
}
