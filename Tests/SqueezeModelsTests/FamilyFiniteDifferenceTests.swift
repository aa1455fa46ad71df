import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels
import Testing

/// A way of driving the backward pass over one window.
enum BackwardPath: String, CaseIterable, Sendable {
    /// `lossAndBackward` with every block's internals kept from its one forward.
    case wholeModel
    /// `lossAndBackward` with one block's internals at a time, recomputed from its saved input.
    case recomputed
    /// The block-by-block API as the block-streamed sensitivity pass drives it, with a second window
    /// interleaved at every step, so that each block's internals are recomputed from its saved input.
    case blockStreamed

    /// The loss of `tokens` under `model`, its weight gradients handed to `sink`.
    func lossAndBackward(_ model: DecoderModel, tokens: [Int], sink: GradientSink) throws -> Double {
        let T = tokens.count, L = model.layers.count
        switch self {
        case .wholeModel, .recomputed:
            let ws = TrainingWorkspace(model: model, maxTokens: T, keepsAllBlocks: self == .wholeModel)
            return try model.lossAndBackward(tokens: tokens, workspace: ws, sink: sink)
        case .blockStreamed:
            let ws = TrainingWorkspace(model: model, maxTokens: T)
            let w = WindowActivations(model: model, tokens: tokens)
            // Its gradients go nowhere; it only takes the workspace's one slot in turn.
            let other = WindowActivations(model: model, tokens: tokens.reversed())
            for x in [w, other] { try model.embed(x, workspace: ws) }
            for li in 0..<L { for x in [w, other] { model.forwardBlock(li, window: x, workspace: ws) } }
            let loss = try model.headLossAndBackward(window: w, workspace: ws)
            try model.headLossAndBackward(window: other, workspace: ws)
            for li in stride(from: L - 1, through: 0, by: -1) {
                try model.backwardBlock(li, window: w, workspace: ws, sink: sink)
                try model.backwardBlock(li, window: other, workspace: ws, sink: nil)
            }
            return loss
        }
    }
}

/// Finite differences of the loss, computed by the model's own forward, against the backward's
/// gradients for the families whose blocks have pieces of their own (qwen3: per-head q/k norms;
/// gemma2: norms after attention and the MLP, GeGLU, a sliding window, attention and final-logit
/// soft-capping; gemma3: gemma2's block with q/k norms and a local RoPE base; phi3: fused qkv_proj and
/// gate_up_proj, whose gradient covers each whole stored tensor, and a sliding window; phi3long: LongRoPE
/// past its original context, whose attention factor scales cos and sin), through each way of driving
/// the backward.
@Suite(.serialized)
struct FamilyFiniteDifferenceTests {
    /// Keeps each weight's gradient dY^T X.
    final class Store: GradientSink {
        let model: DecoderModel
        var grads: [String: [Float]] = [:]
        init(_ m: DecoderModel) { model = m }
        func accept(
            layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
            tokens: Int
        ) {
            let op = model.layers[layer].op(kind)!
            var g = [Float](repeating: .nan, count: op.rows * op.columns)
            g.withUnsafeMutableBufferPointer { gb in
                BackwardKernels.weightGradient(
                    dY: dY, lddy: lddy, x: x, ldx: ldx, tokens: tokens, rows: op.rows, columns: op.columns,
                    out: gb.baseAddress!, mode: .store, pool: nil)
            }
            // A fused tensor (Phi-3's qkv_proj, gate_up_proj) gets each operator's rows at its offset.
            let slot = model.config.linearSlot(layer: layer, kind: kind)!
            let name = slot.prefix + ".weight"
            var full = grads[name] ?? [Float](repeating: .nan, count: slot.tensorRows * slot.columns)
            full.replaceSubrange(
                (slot.rowOffset * slot.columns)..<((slot.rowOffset + slot.rows) * slot.columns), with: g)
            grads[name] = full
        }
    }

    /// For every linear weight W with gradient G: the central difference (L(W + eps S) - L(W - eps S))
    /// / (2 eps) along S = sign(G) against the analytic sum of |G|, within 1% (eps 1e-3; measured
    /// worst: qwen3 4.6e-3, gemma2 5.2e-4, gemma3 2.9e-4, phi3 8.0e-3, phi3long 2.4e-3).
    @Test(arguments: ["qwen3", "gemma2", "gemma3", "phi3", "phi3long"], BackwardPath.allCases)
    func gradientsMatchFiniteDifferences(_ family: String, path: BackwardPath) throws {
        let fx = try FamilyFixture(family)
        let st = try SafeTensorsModel(path: fx.dir)
        // Weights the test owns and the model wraps without copying, so they can be moved in place.
        let src = BackwardGradientTests.OwnedSource(layout: .halves)
        for name in st.tensorNames {
            let t = try st.tensor(name)
            src.buffers[name] = (AlignedBuffer(t.toFloatArray()), t.shape)
        }
        let config = try ModelConfig(configFile: fx.dir + "/config.json")
        let model = try DecoderModel(config: config, source: src)
        let store = Store(model)
        let loss = try path.lossAndBackward(model, tokens: fx.ids, sink: store)
        #expect(abs(loss - fx.loss) <= 1e-4 * max(1, abs(fx.loss)), "\(family) \(path): loss \(loss) vs \(fx.loss)")
        let ws = TrainingWorkspace(model: model, maxTokens: fx.ids.count)
        let eps: Float = 1e-3
        var worst = 0.0
        for l in 0..<config.numLayers {
            for t in config.linearTensors(layer: l) {
                let name = t.weightName
                let g = try #require(store.grads[name], "\(family) \(path): no gradient for \(name)")
                let w = try #require(src.buffers[name]).0
                #expect(w.count == g.count && !g.contains { $0.isNaN }, "\(name)")
                let base = w.toArray()
                func shifted(_ s: Float) throws -> Double {
                    for i in 0..<g.count { w[i] = base[i] + s * eps * (g[i] < 0 ? -1 : 1) }
                    defer { for i in 0..<g.count { w[i] = base[i] } }
                    return try model.trainingLoss(tokens: fx.ids, workspace: ws)
                }
                let fd = (try shifted(1) - shifted(-1)) / (2 * Double(eps))
                let analytic = g.reduce(0.0) { $0 + Double(abs($1)) }
                let rel = abs(fd - analytic) / analytic
                worst = max(worst, rel)
                #expect(
                    analytic > 1e-3, "\(family) \(name): gradient too small (\(analytic)) for the check to mean much")
                #expect(rel <= 1e-2, "\(family) \(path) \(name): finite difference \(fd), analytic \(analytic)")
            }
        }
        print("\(family) \(path): worst relative difference from finite differences \(worst)")
    }
}
