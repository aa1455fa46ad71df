import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels

/// Activations of the family-specific pieces of a block that the backward pass needs, kept by the
/// training forward per slot of `TrainingWorkspace` (`slot(li)`: every block's, or one block's at a
/// time), with buffers of one element for the pieces a family does not have.
struct FamilyRecordBuffers {
    /// Queries and keys before their per-head norms (Qwen3, Gemma 3), per slot [tokens, qd] and
    /// [tokens, kvd].
    let qRaw, kRaw: [AlignedBuffer<Float>]
    /// 1/rms of each (token, head) row of those norms, per slot.
    let qScale, kScale: [AlignedBuffer<Float>]
    /// The attention and MLP outputs before Gemma's norms after them, per slot [tokens, hidden], and
    /// those norms' 1/rms per token.
    let attnOut, mlpOut, attnOutScale, mlpOutScale: [AlignedBuffer<Float>]
    /// The mean slot of `NormStats`, never written by an RMSNorm.
    let noMean: AlignedBuffer<Float>

    init(config c: ModelConfig, tokens T: Int, slots: Int) {
        func bufs(_ n: Int, _ on: Bool) -> [AlignedBuffer<Float>] {
            (0..<slots).map { _ in AlignedBuffer<Float>(count: on ? n : 1) }
        }
        let hd = c.headDim
        qRaw = bufs(T * c.numHeads * hd, c.qkNorm)
        kRaw = bufs(T * c.numKVHeads * hd, c.qkNorm)
        qScale = bufs(T * c.numHeads, c.qkNorm)
        kScale = bufs(T * c.numKVHeads, c.qkNorm)
        attnOut = bufs(T * c.hiddenSize, c.sandwichNorms)
        mlpOut = bufs(T * c.hiddenSize, c.sandwichNorms)
        attnOutScale = bufs(T, c.sandwichNorms)
        mlpOutScale = bufs(T, c.sandwichNorms)
        noMean = AlignedBuffer(count: 1)
    }

    func qStats(_ s: Int) -> NormStats { NormStats(scale: qScale[s].pointer, mean: noMean.pointer) }
    func kStats(_ s: Int) -> NormStats { NormStats(scale: kScale[s].pointer, mean: noMean.pointer) }
    func postAttnStats(_ s: Int) -> NormStats { NormStats(scale: attnOutScale[s].pointer, mean: noMean.pointer) }
    func postMLPStats(_ s: Int) -> NormStats { NormStats(scale: mlpOutScale[s].pointer, mean: noMean.pointer) }

    /// Bytes held.
    var byteCount: Int {
        4
            * ([qRaw, kRaw, qScale, kScale, attnOut, mlpOut, attnOutScale, mlpOutScale].joined().reduce(0) {
                $0 + $1.count
            } + 1)
    }

    /// Bytes the buffers for `slots` slots of windows of `tokens` tokens of a model of `config` hold.
    static func byteCount(config c: ModelConfig, tokens T: Int, slots: Int) -> Int {
        let hd = c.headDim
        let qk = c.qkNorm ? T * (c.numHeads * hd + c.numKVHeads * hd + c.numHeads + c.numKVHeads) : 4
        let sandwich = c.sandwichNorms ? 2 * T * (c.hiddenSize + 1) : 4
        return 4 * (slots * (qk + sandwich) + 1)
    }
}

extension DecoderModel {
    /// The per-head norms of the queries and keys in `ws.q` and `ws.k` (T rows), in place; the
    /// training forward keeps their inputs and statistics.
    func headNorms(_ a: Attention, _ li: Int, _ T: Int, _ ws: Workspace, record: ForwardRecorder?) {
        let hd = config.headDim, nh = config.numHeads, nkv = config.numKVHeads
        let fr = record?.ws.family, s = record?.ws.slot(li) ?? 0
        if let qn = a.qNorm {
            fr?.qRaw[s].pointer.update(from: ws.q.pointer, count: T * nh * hd)
            qn.apply(ws.q.pointer, ws.q.pointer, rows: T * nh, width: hd, stats: fr?.qStats(s))
        }
        if let kn = a.kNorm {
            fr?.kRaw[s].pointer.update(from: ws.k.pointer, count: T * nkv * hd)
            kn.apply(ws.k.pointer, ws.k.pointer, rows: T * nkv, width: hd, stats: fr?.kStats(s))
        }
    }

    /// Takes `ws.dq` and `ws.dk` (gradients of the normed queries and keys, before RoPE) back through
    /// the per-head norms, in place; nothing when the block has none.
    func headNormsBackward(_ ws: TrainingWorkspace, _ li: Int, _ T: Int) {
        let a = layers[li].attention
        let hd = config.headDim, nh = config.numHeads, nkv = config.numKVHeads
        let fr = ws.family, tmp = ws.tmp.pointer, s = ws.slot(li)
        // Norm.backward accumulates into its output: a zeroed scratch, then copied back.
        if let qn = a.qNorm {
            tmp.update(repeating: 0, count: T * nh * hd)
            qn.backward(
                fr.qRaw[s].pointer, stats: fr.qStats(s), ws.dq.pointer, tmp, rows: T * nh, width: hd, pool: pool)
            ws.dq.pointer.update(from: tmp, count: T * nh * hd)
        }
        if let kn = a.kNorm {
            tmp.update(repeating: 0, count: T * nkv * hd)
            kn.backward(
                fr.kRaw[s].pointer, stats: fr.kStats(s), ws.dk.pointer, tmp, rows: T * nkv, width: hd, pool: pool)
            ws.dk.pointer.update(from: tmp, count: T * nkv * hd)
        }
    }
}

extension DecoderModel {
    /// The gradient at the input of Gemma's norm after a block's attention (`attention`) or MLP, from
    /// `dy` at its output: into `ws.tmp`, returned; `dy` itself when the block has no such norm.
    func postNormBackward(
        _ norm: Norm?, _ ws: TrainingWorkspace, _ li: Int, attention: Bool, _ dy: UnsafeMutablePointer<Float>, _ T: Int
    ) -> UnsafeMutablePointer<Float> {
        guard let norm else { return dy }
        let h = config.hiddenSize, fr = ws.family, out = ws.tmp.pointer, s = ws.slot(li)
        out.update(repeating: 0, count: T * h)
        norm.backward(
            (attention ? fr.attnOut : fr.mlpOut)[s].pointer,
            stats: attention ? fr.postAttnStats(s) : fr.postMLPStats(s), dy, out, rows: T, width: h, pool: pool)
        return out
    }

    /// From dA (the gradient of act(g) * u, in `dg`) to the gradients of the gate `dg` (in place) and
    /// up `du` projections, for the config's gated activation (SiLU or tanh GELU).
    func gatedBackward(
        _ g: UnsafeMutablePointer<Float>, _ u: UnsafeMutablePointer<Float>, _ dg: UnsafeMutablePointer<Float>,
        _ du: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        let gelu = config.activation == .gegluTanh
        pool.parallelFor(n, minBlock: 8192) { r, _ in
            let o = r.lowerBound
            guard gelu else {
                sq_silu_mul_backward_f32(g + o, u + o, dg + o, du + o, Int64(r.count))
                return
            }
            let c = Activation.geluC
            for i in r {
                let x = g[i], da = dg[i]
                let th = tanhf(c * (x + 0.044715 * x * x * x))
                let act = 0.5 * x * (1 + th)
                let dact = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)
                du[i] = da * act
                dg[i] = da * u[i] * dact
            }
        }
    }

    /// Runs `body` (which turns a row of logits into the loss's gradient with respect to them) and,
    /// with final-logit soft-capping, takes that gradient through the cap: d/dz cap tanh(z / cap) =
    /// 1 - (logit / cap)^2 with the capped logits as they were before `body`.
    func softcapGradient(_ row: UnsafeMutablePointer<Float>, _ V: Int, _ body: () -> Void) {
        guard let c = config.finalLogitSoftcap else {
            body()
            return
        }
        let cap = Float(c)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: V) { saved in
            let s = saved.baseAddress!
            s.update(from: row, count: V)
            body()
            for i in 0..<V {
                let t = s[i] / cap
                row[i] *= 1 - t * t
            }
        }
    }
}
