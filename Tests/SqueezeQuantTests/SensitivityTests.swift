import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels
import SqueezeQuant
import Testing

/// A tensor source over buffers the test owns.
final class OwnedSource: TensorSource {
    var buffers: [String: (AlignedBuffer<Float>, [Int])] = [:]
    let ropeLayout: RopeLayout
    var path: String { "(test)" }
    var tensorNames: [String] { buffers.keys.sorted() }
    init(layout: RopeLayout) { ropeLayout = layout }
    func contains(_ name: String) -> Bool { buffers[name] != nil }
    func tensor(_ name: String) throws -> Tensor {
        guard let (b, s) = buffers[name] else { throw ModelError.missingTensor(file: path, tensor: name) }
        return .owning(b, name: name, dtype: .f32, shape: s)
    }
}

enum TinyModel {
    static let config = ModelConfig(
        vocabSize: 29, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4,
        numKVHeads: 2, headDim: 8, rmsNormEps: 1e-5, ropeTheta: 10000,
        maxPositionEmbeddings: 40, tieWordEmbeddings: true)

    /// Random weights in Hugging Face layout; with `.interleaved`, the same model with Q and K rows
    /// permuted to llama.cpp's layout (as a GGUF file stores it).
    static func source(layout: RopeLayout, seed: UInt64 = 11) -> OwnedSource {
        var s = seed
        func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
        let c = config
        let src = OwnedSource(layout: layout)
        func add(_ name: String, _ shape: [Int], scale: Float, offset: Float = 0, permuteHeads: Int? = nil) {
            let n = shape.reduce(1, *)
            var v = (0..<n).map { _ in offset + scale * next() }
            if let heads = permuteHeads, layout == .interleaved {
                let map = RopePermutation.ggufRowForHFRow(heads: heads, headDim: c.headDim)
                let cols = shape[1]
                var p = v
                for hf in 0..<shape[0] { for j in 0..<cols { p[map[hf] * cols + j] = v[hf * cols + j] } }
                v = p
            }
            src.buffers[name] = (AlignedBuffer(v), shape)
        }
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, f = c.intermediateSize
        add("model.embed_tokens.weight", [c.vocabSize, h], scale: 1.5)
        add("model.norm.weight", [h], scale: 0.2, offset: 1)
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [h], scale: 0.2, offset: 1)
            add(p + "post_attention_layernorm.weight", [h], scale: 0.2, offset: 1)
            add(p + "self_attn.q_proj.weight", [qd, h], scale: 0.6, permuteHeads: c.numHeads)
            add(p + "self_attn.k_proj.weight", [kvd, h], scale: 0.6, permuteHeads: c.numKVHeads)
            add(p + "self_attn.v_proj.weight", [kvd, h], scale: 0.4)
            add(p + "self_attn.o_proj.weight", [h, qd], scale: 0.4)
            add(p + "mlp.gate_proj.weight", [f, h], scale: 0.4)
            add(p + "mlp.up_proj.weight", [f, h], scale: 0.4)
            add(p + "mlp.down_proj.weight", [h, f], scale: 0.4)
        }
        return src
    }

    static func model(layout: RopeLayout = .halves) throws -> DecoderModel {
        try DecoderModel(config: config, source: source(layout: layout))
    }

    static let tokens: [Int] = (0..<200).map { ($0 * 7 + $0 / 3) % 29 }
}

@Suite struct PythonRandomTests {
    /// Values printed by CPython 3 (`random.seed(s)`; `getrandbits`, `randint`).
    @Test func matchesCPython() {
        var r = PythonRandom(seed: 0)
        #expect((0..<3).map { _ in r.getrandbits(32) } == [3_626_764_237, 1_654_615_998, 3_255_389_356])
        r = PythonRandom(seed: 0)
        #expect(
            (0..<8).map { _ in r.randint(0, 133_296 - 513) } == [
                100_989, 110_250, 10_612, 67_873, 127_383, 106_151, 79_511, 124_937,
            ])
        r = PythonRandom(seed: 12_345_678_901)
        #expect((0..<8).map { _ in r.randint(0, 10) } == [9, 5, 6, 5, 8, 1, 2, 5])
        #expect(r.getrandbits(64) == 6_896_223_236_414_216_872)
    }

    /// The fixture's two windows start at 403958 and 441001 of wiki.train.txt: the first two draws
    /// of the reference's sampler with seed 0 (for streams of 540k to 700k tokens; wiki.train.txt has about 540k).
    @Test func samplerReproducesTheFixtureWindows() throws {
        for n in [540_000, 560_000, 700_000] {
            let s = try WindowSampler.starts(tokenCount: n, seqlen: 512, samples: 100, seed: 0)
            #expect(Array(s.prefix(2)) == [403_958, 441_001])
            #expect(s.allSatisfy { $0 >= 0 && $0 + 512 < n })
        }
        #expect(throws: SensitivityError.calibrationTooShort(tokens: 512, seqlen: 512)) {
            try WindowSampler.starts(tokenCount: 512, seqlen: 512, samples: 1, seed: 0)
        }
    }

    @Test func sha256() {
        #expect(
            SHA256Digest.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256Digest.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        let long = [UInt8](repeating: 0x61, count: 1_000)
        #expect(SHA256Digest.hex(long) == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}

@Suite struct SensitivityTests {
    /// The Fisher of two windows equals the sum of each window's squared gradient formed separately.
    @Test func fisherIsTheSumOfSquaredGradients() throws {
        let model = try TinyModel.model()
        let w1 = Array(TinyModel.tokens[0..<24]), w2 = Array(TinyModel.tokens[50..<74])
        let acc = try Sensitivity.compute(model: model, windows: [w1, w2], mode: .fisher)
        #expect(acc.windows == 2 && acc.tokens == 48 && acc.losses.count == 2)
        final class Store: GradientSink {
            var g: [String: [Float]] = [:]
            let m: DecoderModel
            init(_ m: DecoderModel) { self.m = m }
            func accept(
                layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
                tokens: Int
            ) {
                let op = m.layers[layer].op(kind)!
                var out = [Float](repeating: 0, count: op.rows * op.columns)
                out.withUnsafeMutableBufferPointer {
                    BackwardKernels.weightGradient(
                        dY: dY, lddy: lddy, x: x, ldx: ldx, tokens: tokens, rows: op.rows,
                        columns: op.columns, out: $0.baseAddress!, mode: .store, pool: nil)
                }
                g[ModelFamily.llama.weightName(layer: layer, kind: kind)!] = out
            }
        }
        let ws = TrainingWorkspace(model: model, maxTokens: 24)
        let s1 = Store(model), s2 = Store(model)
        try model.lossAndBackward(tokens: w1, workspace: ws, sink: s1)
        try model.lossAndBackward(tokens: w2, workspace: ws, sink: s2)
        for l in 0..<2 {
            for kind in LinearKind.allCases {
                let name = ModelFamily.llama.weightName(layer: l, kind: kind)!
                let a = s1.g[name]!, b = s2.g[name]!
                var want = [Double](repeating: 0, count: a.count)
                for i in a.indices { let x = Double(a[i]), y = Double(b[i]); want[i] = x * x + y * y }
                let got = acc.values(layer: l, kind: kind)
                let scale = want.max()!
                #expect(scale > 0)
                #expect(zip(got, want).allSatisfy { abs(Double($0) - $1) <= 1e-5 * scale }, "\(name)")
            }
        }
    }

    /// Windows run in parallel lanes (one thread each, own accumulator) give the sums of the one-lane
    /// run, losses in window order, and an error in any lane stops the run with that error.
    @Test func lanesGiveTheSameSums() throws {
        let model = try TinyModel.model()
        let w = (0..<5).map { Array(TinyModel.tokens[($0 * 13)..<($0 * 13 + 20)]) }
        for mode in SensitivityMode.allCases {
            let one = try Sensitivity.compute(model: model, windows: w, mode: mode, lanes: 1)
            let three = try Sensitivity.compute(model: model, windows: w, mode: mode, lanes: 3)
            #expect(three.windows == 5 && three.tokens == 100 && three.losses.count == (mode == .fisher ? 5 : 0))
            #expect(zip(one.losses, three.losses).allSatisfy { abs($0 - $1) <= 1e-6 * abs($0) })
            for l in 0..<2 {
                for kind in LinearKind.allCases {
                    let a = one.values(layer: l, kind: kind), b = three.values(layer: l, kind: kind)
                    let scale = a.map { abs($0) }.max()!
                    #expect(scale > 0 && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-5 * scale }, "\(mode) \(l) \(kind)")
                }
            }
        }
        var bad = w
        bad[3][7] = 99
        let e = #expect(throws: ModelError.self) {
            try Sensitivity.compute(model: model, windows: bad, mode: .fisher, lanes: 2)
        }
        #expect(e?.description.contains("99") == true)
        #expect(
            Sensitivity.automaticLanes(model: model, windows: w, mode: .fisher) == min(model.pool.defaultThreads, 5))
    }

    /// A GGUF-layout model (Q/K rows permuted, interleaved RoPE) is the same function as its HF-layout
    /// twin; its Fisher, written in HF row order, matches the twin's.
    @Test func ggufLayoutIsWrittenInHuggingFaceRowOrder() throws {
        let hf = try TinyModel.model(layout: .halves), gg = try TinyModel.model(layout: .interleaved)
        let w = [Array(TinyModel.tokens[3..<35])]
        let a = try Sensitivity.compute(model: hf, windows: w, mode: .fisher)
        let b = try Sensitivity.compute(model: gg, windows: w, mode: .fisher)
        #expect(abs(a.losses[0] - b.losses[0]) < 1e-5)
        for l in 0..<2 {
            for kind in LinearKind.allCases {
                let x = a.values(layer: l, kind: kind), y = b.values(layer: l, kind: kind)
                let scale = Double(x.max()!)
                #expect(
                    zip(x, y).allSatisfy { abs(Double($0) - Double($1)) <= 1e-4 * scale },
                    "\(ModelFamily.llama.weightName(layer: l, kind: kind)!)")
            }
        }
        // The import turns HF order back into the GGUF order of the model's own rows.
        let d = temporaryDirectory("sens-gguf")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try b.write(to: d + "/s.safetensors")
        let f = try SensitivityFile(path: d + "/s.safetensors")
        let back = try f.values(layer: 1, kind: .q, config: gg.config, rowOrder: .interleaved)
        let ownOrder = b.values(layer: 1, kind: .q)  // HF order
        let map = RopePermutation.ggufRowForHFRow(heads: 4, headDim: 8)
        for hfRow in 0..<32 { for j in 0..<32 { #expect(back[map[hfRow] * 32 + j] == ownOrder[hfRow * 32 + j]) } }
    }

    @Test func outputHasTheModelsNamesShapesAndMetadata() throws {
        let model = try TinyModel.model()
        let d = temporaryDirectory("sens-out")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let opts = SensitivityOptions(samples: 3, seqlen: 16, seed: 5)
        let acc = try Sensitivity.compute(model: model, tokens: TinyModel.tokens, options: opts)
        let meta = Sensitivity.metadata(
            options: opts, calibrationPath: "/x/cal.txt", calibrationSHA256: "ab",
            tokenCount: TinyModel.tokens.count, modelPath: "/m/tiny")
        for dtype in [DType.f32, .bf16] {
            let p = d + "/fisher-\(dtype.rawValue).safetensors"
            try acc.write(to: p, dtype: dtype, metadata: meta)
            let st = try SafeTensorsFile(path: p)
            #expect(st.tensorNames.count == 14)
            for l in 0..<2 {
                for kind in LinearKind.allCases {
                    let op = model.layers[l].op(kind)!
                    let info = try #require(st.info(ModelFamily.llama.weightName(layer: l, kind: kind)!))
                    #expect(info.shape == [op.rows, op.columns] && info.dtype == dtype)
                    let got = try st.tensor(ModelFamily.llama.weightName(layer: l, kind: kind)!).toFloatArray()
                    let want = acc.values(layer: l, kind: kind)
                    let tol: Float = dtype == .f32 ? 0 : 1.0 / 128
                    #expect(zip(got, want).allSatisfy { abs($0 - $1) <= tol * abs($1) })
                }
            }
            #expect(st.metadata["samples"] == "3" && st.metadata["seqlen"] == "16" && st.metadata["seed"] == "5")
            #expect(st.metadata["calibration_sha256"] == "ab" && st.metadata["mode"] == "fisher")
            let f = try SensitivityFile(path: p)
            #expect(f.origin == .squeeze && !f.isPerColumn)
            try f.validate(config: model.config)
        }
        #expect(throws: SensitivityError.unsupportedOutputDType(.f16)) {
            try acc.write(to: d + "/x.safetensors", dtype: .f16)
        }
    }

    /// Activations mode: the mean of x_j^2 over all tokens of each linear layer's input, one value
    /// per column; checked for layer 0's q (RMSNorm of the embeddings, computed here in Double).
    @Test func activationsModeIsTheMeanSquaredInput() throws {
        let model = try TinyModel.model()
        let src = TinyModel.source(layout: .halves)
        let w = [Array(TinyModel.tokens[0..<10]), Array(TinyModel.tokens[20..<30])]
        let acc = try Sensitivity.compute(model: model, windows: w, mode: .activations)
        #expect(acc.shape(layer: 0, kind: .down) == [1, 48])
        let h = 32
        let emb = src.buffers["model.embed_tokens.weight"]!.0.toArray(),
            g = src.buffers["model.layers.0.input_layernorm.weight"]!.0.toArray()
        var want = [Double](repeating: 0, count: h)
        for id in w.joined() {
            let row = (0..<h).map { Double(emb[id * h + $0]) }
            let r = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(h) + 1e-5).squareRoot()
            for j in 0..<h { want[j] += pow(row[j] * r * Double(g[j]), 2) / 20 }
        }
        let got = acc.values(layer: 0, kind: .q)
        #expect(zip(got, want).allSatisfy { abs(Double($0) - $1) <= 1e-5 * max($1, 1e-3) })
        #expect(acc.values(layer: 1, kind: .k) == acc.values(layer: 1, kind: .v))
        let d = temporaryDirectory("sens-act")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try acc.write(to: d + "/a.safetensors")
        let f = try SensitivityFile(path: d + "/a.safetensors")
        #expect(f.isPerColumn)
        try f.validate(config: model.config)
        let full = try f.values(layer: 0, kind: .gate, config: model.config)
        #expect(full.count == 48 * 32 && Array(full[32..<64]) == Array(full[0..<32]))
    }

    @Test func clearErrors() throws {
        let model = try TinyModel.model()
        // Calibration text shorter than one window.
        let e1 = #expect(throws: SensitivityError.self) {
            try Sensitivity.compute(
                model: model, tokens: Array(TinyModel.tokens[0..<16]),
                options: SensitivityOptions(samples: 2, seqlen: 16))
        }
        #expect(e1?.description.contains("16 tokens") == true)
        // Window longer than the model's context (40).
        let e2 = #expect(throws: SensitivityError.self) {
            try Sensitivity.compute(
                model: model, tokens: TinyModel.tokens, options: SensitivityOptions(samples: 2, seqlen: 41))
        }
        #expect(e2?.description.contains("context of 40") == true)
        // A model of an unsupported architecture.
        let d = temporaryDirectory("sens-arch")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try writeJSON(["model_type": "gpt_neox", "vocab_size": 16, "hidden_size": 8], to: d + "/config.json")
        try SafeTensorsWriter.write(
            tensors: [Tensor.f32(name: "x", shape: [1], values: [0])], to: d + "/model.safetensors")
        let e3 = #expect(throws: ModelError.self) { try Sensitivity.loadModel(path: d) }
        #expect(e3?.description.contains("unsupported model architecture 'gpt_neox'") == true)
        // A quantized weight (here a Q8 head) cannot be differentiated: named error.
        let q8 = try DecoderModel(
            config: TinyModel.config, source: TinyModel.source(layout: .halves), options: LoadOptions(head: .q8)
        )
        let e4 = #expect(throws: ModelError.self) {
            try Sensitivity.compute(
                model: q8, tokens: TinyModel.tokens, options: SensitivityOptions(samples: 1, seqlen: 8))
        }
        #expect(e4?.description.contains("lm_head.weight") == true)
    }
}

/// Importing other tools' outputs as `--sensitivity`.
@Suite struct SensitivityImportTests {
    func weights(
        _ c: ModelConfig, dtype: DType, extra: Bool, skip: String? = nil, badShape: String? = nil
    ) throws -> [Tensor] {
        var out: [Tensor] = []
        if extra {
            out.append(
                Tensor.f32(
                    name: "model.embed_tokens.weight", shape: [c.vocabSize, c.hiddenSize],
                    values: .init(repeating: 1, count: c.vocabSize * c.hiddenSize)))
        }
        for l in 0..<c.numLayers {
            for kind in LinearKind.allCases {
                let name = ModelFamily.llama.weightName(layer: l, kind: kind)!
                if name == skip { continue }
                var (r, cols) = SensitivityFile.shape(kind, c)
                if name == badShape { r += 1 }
                let t = Tensor.f32(
                    name: name, shape: [r, cols], values: (0..<(r * cols)).map { Float($0 % 13) * 1e-6 })
                out.append(try t.converted(to: dtype))
            }
            if extra {
                out.append(
                    Tensor.f32(
                        name: "model.layers.\(l).input_layernorm.weight", shape: [c.hiddenSize],
                        values: .init(repeating: 1, count: c.hiddenSize)))
            }
        }
        return out
    }

    @Test func squeezeLLMCheckpointDirectory() throws {
        let c = TinyModel.config
        let d = temporaryDirectory("sens-sqllm")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try writeJSON(c.huggingFaceJSON(), to: d + "/config.json")
        try SafeTensorsWriter.write(
            tensors: try weights(c, dtype: .bf16, extra: true), metadata: ["format": "pt"], to: d + "/model.safetensors"
        )
        let f = try SensitivityFile(path: d)
        #expect(f.origin == .squeezeLLMCheckpoint && !f.isPerColumn)
        try f.validate(config: c)
        let v = try f.values(layer: 1, kind: .down, config: c)
        #expect(v.count == 32 * 48 && abs(v[5] - 5e-6) < 5e-8)
    }

    @Test func mlxGradientFile() throws {
        let c = TinyModel.config
        let d = temporaryDirectory("sens-mlx")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let p = d + "/tiny-grads.safetensors"
        try SafeTensorsWriter.write(
            tensors: try weights(c, dtype: .f32, extra: false),
            metadata: ["nsamples": "100", "seed": "42", "seqlen": "512"], to: p)
        let f = try SensitivityFile(path: p)
        #expect(f.origin == .mlx)
        try f.validate(config: c)
    }

    @Test func mismatchesAreNamed() throws {
        let c = TinyModel.config
        let d = temporaryDirectory("sens-bad")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try SafeTensorsWriter.write(
            tensors: try weights(c, dtype: .f32, extra: false, skip: "model.layers.1.mlp.up_proj.weight"),
            to: d + "/a.safetensors")
        #expect(
            throws: SensitivityError.missingTensor(
                file: d + "/a.safetensors", tensor: "model.layers.1.mlp.up_proj.weight")
        ) {
            try SensitivityFile(path: d + "/a.safetensors").validate(config: c)
        }
        try SafeTensorsWriter.write(
            tensors: try weights(c, dtype: .f32, extra: false, badShape: "model.layers.0.self_attn.k_proj.weight"),
            to: d + "/b.safetensors")
        let e = #expect(throws: SensitivityError.self) {
            try SensitivityFile(path: d + "/b.safetensors").validate(config: c)
        }
        #expect(
            e?.description.contains("model.layers.0.self_attn.k_proj.weight") == true
                && e?.description.contains("[16, 32]") == true)
        // A model with more layers than the file.
        var bigger = c
        bigger.numLayers = 3
        #expect(
            throws: SensitivityError.missingTensor(
                file: d + "/a.safetensors", tensor: "model.layers.1.mlp.up_proj.weight")
        ) {
            try SensitivityFile(path: d + "/a.safetensors").validate(config: bigger)
        }
        // Negative values.
        var ts = try weights(c, dtype: .f32, extra: false)
        ts[0] = Tensor.f32(
            name: ts[0].name, shape: ts[0].shape, values: [-1] + .init(repeating: 0, count: ts[0].elementCount - 1))
        try SafeTensorsWriter.write(tensors: ts, to: d + "/c.safetensors")
        #expect(throws: SensitivityError.self) {
            try SensitivityFile(path: d + "/c.safetensors").values(layer: 0, kind: .q, config: c)
        }
        #expect(throws: SensitivityError.self) { try SensitivityFile(path: d + "/nothing.safetensors") }
    }
}
