import Foundation
import SqueezeCore
import SqueezeKernels
import SqueezeModels
import Testing

/// Gradient check of the backward pass: the analytic gradients (F32, the model's kernels) of the mean
/// next-token cross-entropy against central finite differences of an independent forward pass written
/// here in Float64, on a tiny random model, for every linear weight of every block (all coordinates)
/// and for the embedding output. Variants cover both RoPE layouts, grouped-query attention, a sliding
/// window and attention biases.
@Suite struct BackwardGradientTests {
    /// A tensor source over buffers the test owns (the model wraps them without copying).
    final class OwnedSource: TensorSource {
        var buffers: [String: (AlignedBuffer<Float>, [Int])] = [:]
        let ropeLayout: RopeLayout
        var path: String { "(test)" }
        var tensorNames: [String] { Array(buffers.keys) }
        init(layout: RopeLayout) { ropeLayout = layout }
        func contains(_ name: String) -> Bool { buffers[name] != nil }
        func tensor(_ name: String) throws -> Tensor {
            guard let (b, s) = buffers[name] else { throw ModelError.missingTensor(file: path, tensor: name) }
            return .owning(b, name: name, dtype: .f32, shape: s)
        }
        func values(_ name: String) -> [Double] { buffers[name]!.0.toArray().map(Double.init) }
    }

    struct Rng {
        var s: UInt64
        mutating func uniform() -> Double {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53)
        }
        mutating func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * .pi * uniform()) }
    }

    static func tinyConfig(window: Int?) -> ModelConfig {
        var c = ModelConfig(
            vocabSize: 23, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 4,
            numKVHeads: 2, headDim: 4, rmsNormEps: 1e-5, ropeTheta: 10000,
            maxPositionEmbeddings: 64, tieWordEmbeddings: true)
        c.slidingWindow = window
        return c
    }

    static func makeSource(_ c: ModelConfig, layout: RopeLayout, bias: Bool, seed: UInt64) -> OwnedSource {
        var rng = Rng(s: seed)
        let src = OwnedSource(layout: layout)
        func add(_ name: String, _ shape: [Int], scale: Double, offset: Double = 0) {
            let n = shape.reduce(1, *)
            src.buffers[name] = (AlignedBuffer((0..<n).map { _ in Float(offset + scale * rng.normal()) }), shape)
        }
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, f = c.intermediateSize
        add("model.embed_tokens.weight", [c.vocabSize, h], scale: 1)
        add("model.norm.weight", [h], scale: 0.1, offset: 1)
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "post_attention_layernorm.weight", [h], scale: 0.1, offset: 1)
            add(p + "self_attn.q_proj.weight", [qd, h], scale: 0.5)
            add(p + "self_attn.k_proj.weight", [kvd, h], scale: 0.5)
            add(p + "self_attn.v_proj.weight", [kvd, h], scale: 0.3)
            add(p + "self_attn.o_proj.weight", [h, qd], scale: 0.3)
            add(p + "mlp.gate_proj.weight", [f, h], scale: 0.3)
            add(p + "mlp.up_proj.weight", [f, h], scale: 0.3)
            add(p + "mlp.down_proj.weight", [h, f], scale: 0.3)
            if bias {
                add(p + "self_attn.q_proj.bias", [qd], scale: 0.2)
                add(p + "self_attn.k_proj.bias", [kvd], scale: 0.2)
                add(p + "self_attn.v_proj.bias", [kvd], scale: 0.2)
            }
        }
        return src
    }

    /// The forward pass in Float64, written from the model's definition (not from the Swift F32 code).
    struct Reference {
        let c: ModelConfig
        let layout: RopeLayout
        var w: [String: [Double]]

        func matT(_ x: [[Double]], _ name: String, rows: Int) -> [[Double]] {
            let m = w[name]!, cols = x[0].count
            return x.map { row in (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + m[r * cols + $1] * row[$1] } } }
        }
        func norm(_ x: [[Double]], _ name: String) -> [[Double]] {
            let g = w[name]!
            return x.map { row in
                let s = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(row.count) + c.rmsNormEps).squareRoot()
                return row.indices.map { row[$0] * s * g[$0] }
            }
        }
        func rope(_ x: [[Double]], heads: Int) -> [[Double]] {
            let hd = c.headDim, half = hd / 2
            return x.enumerated().map { t, row in
                var o = row
                for hh in 0..<heads {
                    for i in 0..<half {
                        let f = 1 / pow(c.ropeTheta, Double(2 * i) / Double(hd))
                        let a = Double(t) * f
                        let ia = hh * hd + (layout == .interleaved ? 2 * i : i)
                        let ib = hh * hd + (layout == .interleaved ? 2 * i + 1 : i + half)
                        o[ia] = row[ia] * cos(a) - row[ib] * sin(a)
                        o[ib] = row[ia] * sin(a) + row[ib] * cos(a)
                    }
                }
                return o
            }
        }
        func addBias(_ x: [[Double]], _ name: String) -> [[Double]] {
            guard let b = w[name] else { return x }
            return x.map { row in row.indices.map { row[$0] + b[$0] } }
        }

        /// Mean next-token cross-entropy; `dx0` is added to the embedding output.
        func loss(_ tokens: [Int], dx0: [[Double]]? = nil) -> Double {
            let h = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads, T = tokens.count
            let emb = w["model.embed_tokens.weight"]!
            var x = tokens.map { Array(emb[($0 * h)..<($0 * h + h)]) }
            if let d = dx0 { x = x.indices.map { t in (0..<h).map { x[t][$0] + d[t][$0] } } }
            for l in 0..<c.numLayers {
                let p = "model.layers.\(l)."
                let xn = norm(x, p + "input_layernorm.weight")
                let q = rope(
                    addBias(matT(xn, p + "self_attn.q_proj.weight", rows: nh * hd), p + "self_attn.q_proj.bias"),
                    heads: nh)
                let k = rope(
                    addBias(matT(xn, p + "self_attn.k_proj.weight", rows: nkv * hd), p + "self_attn.k_proj.bias"),
                    heads: nkv)
                let v = addBias(matT(xn, p + "self_attn.v_proj.weight", rows: nkv * hd), p + "self_attn.v_proj.bias")
                var att = [[Double]](repeating: [Double](repeating: 0, count: nh * hd), count: T)
                for hh in 0..<nh {
                    let g = hh / (nh / nkv)
                    for i in 0..<T {
                        let lo = c.slidingWindow.map { max(0, i - $0 + 1) } ?? 0
                        var s = [Double](repeating: -.infinity, count: T)
                        for j in lo...i {
                            s[j] =
                                (0..<hd).reduce(0.0) { $0 + q[i][hh * hd + $1] * k[j][g * hd + $1] }
                                / Double(hd).squareRoot()
                        }
                        let mx = s.max()!
                        let e = s.map { exp($0 - mx) }
                        let z = e.reduce(0, +)
                        for d in 0..<hd {
                            att[i][hh * hd + d] = (0..<T).reduce(0.0) { $0 + e[$1] / z * v[$1][g * hd + d] }
                        }
                    }
                }
                let o = matT(att, p + "self_attn.o_proj.weight", rows: h)
                x = x.indices.map { t in (0..<h).map { x[t][$0] + o[t][$0] } }
                let xn2 = norm(x, p + "post_attention_layernorm.weight")
                let gt = matT(xn2, p + "mlp.gate_proj.weight", rows: c.intermediateSize)
                let up = matT(xn2, p + "mlp.up_proj.weight", rows: c.intermediateSize)
                let a = gt.indices.map { t in gt[t].indices.map { gt[t][$0] / (1 + exp(-gt[t][$0])) * up[t][$0] } }
                let dn = matT(a, p + "mlp.down_proj.weight", rows: h)
                x = x.indices.map { t in (0..<h).map { x[t][$0] + dn[t][$0] } }
            }
            let xf = norm(x, "model.norm.weight")
            var total = 0.0
            for t in 0..<(T - 1) {
                let z = (0..<c.vocabSize).map { r in (0..<h).reduce(0.0) { $0 + emb[r * h + $1] * xf[t][$1] } }
                let mx = z.max()!
                total += log(z.reduce(0) { $0 + exp($1 - mx) }) + mx - z[tokens[t + 1]]
            }
            return total / Double(T - 1)
        }
    }

    /// Stores each weight gradient dY^T X (the F32 kernels, store mode).
    final class GradientStore: GradientSink {
        var grads: [String: [Float]] = [:]
        let model: DecoderModel
        init(model: DecoderModel) { self.model = model }
        func accept(
            layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
            tokens: Int
        ) {
            let op = model.layers[layer].op(kind)!
            var g = [Float](repeating: .nan, count: op.rows * op.columns)
            g.withUnsafeMutableBufferPointer { gb in
                BackwardKernels.weightGradient(
                    dY: dY, lddy: lddy, x: x, ldx: ldx, tokens: tokens, rows: op.rows,
                    columns: op.columns, out: gb.baseAddress!, mode: .store, pool: model.pool)
            }
            grads[ModelFamily.llama.weightName(layer: layer, kind: kind)!] = g
        }
    }

    static func relativeError(_ a: [Double], _ b: [Double]) -> Double {
        let num = zip(a, b).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
        let den = b.reduce(0.0) { $0 + $1 * $1 }.squareRoot()
        return num / max(den, 1e-30)
    }

    /// Tolerance: relative L2 error per tensor below 3e-5 (F32 analytic gradients against Float64
    /// central differences with step 1e-5; measured worst per variant 0.7e-6, 1.3e-6 and 3.9e-6), and
    /// every coordinate within 1e-4 of the largest gradient entry of its tensor.
    @Test(arguments: [(RopeLayout.halves, false, false), (.interleaved, false, false), (.halves, true, true)])
    func analyticGradientsMatchFiniteDifferences(layout: RopeLayout, window: Bool, bias: Bool) throws {
        let c = Self.tinyConfig(window: window ? 3 : nil)
        let src = Self.makeSource(c, layout: layout, bias: bias, seed: 7)
        let model = try DecoderModel(config: c, source: src)
        let tokens = [3, 17, 5, 0, 22, 9, 9, 14]
        let ws = TrainingWorkspace(model: model, maxTokens: 16)
        let store = GradientStore(model: model)
        let loss = try model.lossAndBackward(tokens: tokens, workspace: ws, sink: store)

        var ref = Reference(c: c, layout: layout, w: [:])
        for name in src.tensorNames { ref.w[name] = src.values(name) }
        let refLoss = ref.loss(tokens)
        #expect(abs(loss - refLoss) <= 1e-5 * refLoss, "F32 loss \(loss) vs Float64 reference \(refLoss)")
        #expect(abs(try model.trainingLoss(tokens: tokens, workspace: ws) - refLoss) <= 1e-5 * refLoss)

        let eps = 1e-5
        var worst = 0.0
        for l in 0..<c.numLayers {
            for kind in LinearKind.allCases {
                let name = ModelFamily.llama.weightName(layer: l, kind: kind)!
                let analytic = try #require(store.grads[name]).map(Double.init)
                let base = ref.w[name]!
                var fd = [Double](repeating: 0, count: base.count)
                var r = ref
                for i in base.indices {
                    r.w[name]![i] = base[i] + eps
                    let lp = r.loss(tokens)
                    r.w[name]![i] = base[i] - eps
                    let lm = r.loss(tokens)
                    r.w[name]![i] = base[i]
                    fd[i] = (lp - lm) / (2 * eps)
                }
                let rel = Self.relativeError(analytic, fd)
                let scale = fd.map(abs).max()!
                let maxAbs = zip(analytic, fd).map { abs($0 - $1) }.max()!
                worst = max(worst, rel)
                #expect(scale > 1e-6, "\(name): gradient is vanishingly small (\(scale)); the check would be empty")
                #expect(rel < 3e-5, "\(name): relative L2 error \(rel)")
                #expect(maxAbs <= 1e-4 * scale, "\(name): max abs error \(maxAbs), largest entry \(scale)")
            }
        }
        // Gradient with respect to the embedding output (through every block's norms, RoPE and attention).
        let T = tokens.count, h = c.hiddenSize
        let analytic = (0..<(T * h)).map { Double(ws.embeddingGradient[$0]) }
        var fd = [Double](repeating: 0, count: T * h)
        for i in 0..<(T * h) {
            var d = [[Double]](repeating: [Double](repeating: 0, count: h), count: T)
            d[i / h][i % h] = eps
            let lp = ref.loss(tokens, dx0: d)
            d[i / h][i % h] = -eps
            fd[i] = (lp - ref.loss(tokens, dx0: d)) / (2 * eps)
        }
        let rel = Self.relativeError(analytic, fd)
        #expect(rel < 3e-5, "embedding output: relative L2 error \(rel)")
        print(
            "gradient check (\(layout), window \(window), bias \(bias)): worst weight relative error \(worst), embedding \(rel)"
        )
    }

    @Test func trainingForwardMatchesInferenceForward() throws {
        let c = Self.tinyConfig(window: nil)
        let model = try DecoderModel(config: c, source: Self.makeSource(c, layout: .halves, bias: false, seed: 3))
        let tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        let ws = TrainingWorkspace(model: model, maxTokens: 16)
        let lossT = try model.trainingLoss(tokens: tokens, workspace: ws)
        let cache = KVCache(config: c, capacity: 16), iws = Workspace(model: model, maxTokens: 16)
        try model.forward(tokens: tokens, cache: cache, workspace: iws, logits: .all)
        var s = 0.0
        for t in 0..<(tokens.count - 1) {
            let row = Array(iws.logits.buffer[(t * c.vocabSize)..<((t + 1) * c.vocabSize)]).map(Double.init)
            let mx = row.max()!
            s += log(row.reduce(0) { $0 + exp($1 - mx) }) + mx - row[tokens[t + 1]]
        }
        #expect(abs(lossT - s / Double(tokens.count - 1)) < 1e-5)
    }

    @Test func badWindowsAreRejected() throws {
        let c = Self.tinyConfig(window: nil)
        let model = try DecoderModel(config: c, source: Self.makeSource(c, layout: .halves, bias: false, seed: 1))
        let ws = TrainingWorkspace(model: model, maxTokens: 8)
        #expect(throws: ModelError.self) { try model.lossAndBackward(tokens: [1], workspace: ws, sink: nil) }
        #expect(throws: ModelError.self) {
            try model.lossAndBackward(tokens: Array(repeating: 1, count: 9), workspace: ws, sink: nil)
        }
        #expect(throws: ModelError.self) { try model.lossAndBackward(tokens: [1, 99], workspace: ws, sink: nil) }
        let big = TrainingWorkspace(model: model, maxTokens: 80)
        let e = #expect(throws: ModelError.self) {
            try model.lossAndBackward(tokens: Array(repeating: 1, count: 65), workspace: big, sink: nil)
        }
        #expect(e?.description.contains("64") == true)
    }

    /// BF16 weights are used as stored (converted panel by panel inside the backward's products):
    /// the gradients equal those of the same values held as F32 (the BF16-rounded weights widened),
    /// within 1e-4 of each tensor's largest entry. A weight the backward cannot read (a Q8 head) is
    /// refused by name.
    @Test func bf16WeightsRunAndQuantizedOnesAreRefusedByName() throws {
        let c = Self.tinyConfig(window: nil)
        let src = Self.makeSource(c, layout: .halves, bias: false, seed: 1)
        // Values representable in BF16, so that both models hold the same weights.
        let rounded = OwnedSource(layout: .halves)
        for (name, (b, shape)) in src.buffers {
            let t = try Tensor.owning(b, name: name, dtype: .f32, shape: shape).converted(to: .bf16)
            rounded.buffers[name] = (AlignedBuffer(t.toFloatArray()), shape)
        }
        let bf16 = try DecoderModel(config: c, source: rounded, options: LoadOptions(weightDType: .bf16))
        #expect(bf16.layers.allSatisfy { $0.linears.allSatisfy { $0.1.kind == "bf16" } })
        let f32 = try DecoderModel(config: c, source: rounded)
        let tokens = [1, 2, 3, 7, 11, 4]
        let a = GradientStore(model: bf16), b = GradientStore(model: f32)
        let la = try bf16.lossAndBackward(
            tokens: tokens, workspace: TrainingWorkspace(model: bf16, maxTokens: 8), sink: a)
        let lb = try f32.lossAndBackward(
            tokens: tokens, workspace: TrainingWorkspace(model: f32, maxTokens: 8), sink: b)
        #expect(abs(la - lb) <= 1e-5 * lb)
        #expect(a.grads.count == 14)
        for (name, g) in b.grads {
            let top = g.map { abs($0) }.max()!
            let got = try #require(a.grads[name])
            #expect(zip(got, g).allSatisfy { abs($0 - $1) <= 1e-4 * top }, "\(name)")
        }
        let q8 = try DecoderModel(
            config: c, source: Self.makeSource(c, layout: .halves, bias: false, seed: 1),
            options: LoadOptions(head: .q8))
        let ws = TrainingWorkspace(model: q8, maxTokens: 8)
        let e = #expect(throws: ModelError.self) {
            try q8.lossAndBackward(tokens: [1, 2, 3], workspace: ws, sink: nil)
        }
        #expect(e?.description.contains("lm_head.weight") == true)
    }
}
