import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels

// The backward pass's math, one function per piece: the head (LM head, project_out, final norm),
// and each block as its MLP half then its attention half. A new kind of block adds its pieces here
// and a case to `blockBackward`; the drivers (`lossAndBackward`, `Sensitivity.compute`) are not
// concerned.

extension DecoderModel {
    /// From the logits' gradient (in `ws.logits`, P = T - 1 rows) through the LM head, project_out
    /// and the final norm to the gradient at the last block's output, into `w`'s gradient.
    func headBackward(_ w: WindowActivations, _ ws: TrainingWorkspace) throws {
        let c = config
        let T = w.tokens.count, P = T - 1
        let h = c.hiddenSize, V = c.vocabSize
        let logits = ws.logits.pointer
        let dxn = ws.dxn.pointer, dx = w.grad.pointer
        if let po = projectOut {
            let ew = c.embeddingWidth
            try inputGradient(
                lmHead, name: c.lmHeadName, ws, dY: logits, lddy: V, tokens: P, dX: ws.dProj.pointer, lddx: ew)
            try inputGradient(
                po, name: c.tensorPrefix + "project_out.weight", ws, dY: ws.dProj.pointer, lddy: ew, tokens: P,
                dX: dxn, lddx: h)
        } else {
            try inputGradient(lmHead, name: c.lmHeadName, ws, dY: logits, lddy: V, tokens: P, dX: dxn, lddx: h)
        }
        for i in 0..<h { dxn[P * h + i] = 0 }
        if let finalNorm {
            dx.update(repeating: 0, count: T * h)
            finalNorm.backward(
                w.input(layers.count), stats: NormStats(scale: ws.rmsF.pointer, mean: ws.meanF.pointer),
                dxn, dx, rows: T, width: h, pool: pool)
        } else {
            dx.update(from: dxn, count: T * h)
        }
    }

    /// The backward of block `li` with its internals in `ws`: `w`'s gradient goes from the block's
    /// output to its input, and each linear weight's gradient goes to `sink`.
    func blockBackward(_ li: Int, _ w: WindowActivations, _ ws: TrainingWorkspace, _ sink: GradientSink?) throws {
        try mlpHalfBackward(li, w, ws, sink)
        try attentionHalfBackward(li, w, ws, sink)
    }

    /// From the gradient at block `li`'s output to the gradient at `mid` (the residual stream after
    /// attention): the MLP, its norm and residual, and for post-LN blocks the attention norm.
    func mlpHalfBackward(_ li: Int, _ w: WindowActivations, _ ws: TrainingWorkspace, _ sink: GradientSink?) throws {
        let c = config
        let T = w.tokens.count
        let h = c.hiddenSize, ffn = c.intermediateSize
        let layer = layers[li]
        let s = ws.slot(li)
        let dx = w.grad.pointer, dxn = ws.dxn.pointer, tmp = ws.tmp.pointer
        let stats1 = NormStats(scale: ws.rms1[s].pointer, mean: ws.mean1[s].pointer)
        let stats2 = NormStats(scale: ws.rms2[s].pointer, mean: ws.mean2[s].pointer)
        let pre = c.preNorm
        // MLP: out = mid + down(act(...)) (pre-LN) or out = norm2(xn2 + down(act(...))) (post-LN).
        // dOut: the gradient at the MLP's output (before the residual add).
        let dOut: UnsafeMutablePointer<Float>
        if pre {
            dOut = dx
        } else {
            tmp.update(repeating: 0, count: T * h)
            layer.mlpNorm.backward(ws.post[s].pointer, stats: stats2, dx, tmp, rows: T, width: h, pool: pool)
            dOut = tmp
        }
        let g = ws.gate[s].pointer, u = ws.up[s].pointer, a = ws.act.pointer
        let dg = ws.dg.pointer, du = ws.du.pointer, xn2 = ws.xn2[s].pointer
        // The MLP's activation again (the forward keeps only its inputs).
        switch layer.mlp {
        case .gated: gatedActivation(g, u, a, T * ffn)
        case let .plain(_, _, activation): activation.apply(u, a, T * ffn)
        }
        // Through Gemma's norm after the MLP, when the block has one.
        let dDown = postNormBackward(layer.postMLPNorm, ws, li, attention: false, dOut, T)
        sink?.accept(layer: li, kind: .down, dY: dDown, lddy: h, x: a, ldx: ffn, tokens: T)
        try blockInputGradient(li, .down, ws, dY: dDown, lddy: h, tokens: T, dX: dg, lddx: ffn)
        switch layer.mlp {
        case .gated:
            gatedBackward(g, u, dg, du, T * ffn)
            sink?.accept(layer: li, kind: .gate, dY: dg, lddy: ffn, x: xn2, ldx: h, tokens: T)
            sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
            try blockInputGradient(li, .gate, ws, dY: dg, lddy: ffn, tokens: T, dX: dxn, lddx: h)
            try blockInputGradient(li, .up, ws, dY: du, lddy: ffn, tokens: T, dX: dxn, lddx: h, add: true)
        case let .plain(_, _, activation):
            activation.backward(u, dg, du, T * ffn)
            sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
            try blockInputGradient(li, .up, ws, dY: du, lddy: ffn, tokens: T, dX: dxn, lddx: h)
        }
        if pre {
            layer.mlpNorm.backward(ws.mid[s].pointer, stats: stats2, dxn, dx, rows: T, width: h, pool: pool)
        } else {
            // d(xn2) = residual + MLP path; then through norm1 to d(mid).
            for i in 0..<(T * h) { dxn[i] += tmp[i] }
            dx.update(repeating: 0, count: T * h)
            layer.attentionNorm.backward(ws.mid[s].pointer, stats: stats1, dxn, dx, rows: T, width: h, pool: pool)
        }
    }

    /// From the gradient at `mid` to the gradient at block `li`'s input: the norm after attention
    /// (Gemma), the output projection, attention, RoPE, the per-head Q/K norms (Qwen3, Gemma 3), the
    /// Q/K/V projections, the attention norm (pre-LN) and the residual.
    func attentionHalfBackward(
        _ li: Int, _ w: WindowActivations, _ ws: TrainingWorkspace, _ sink: GradientSink?
    ) throws {
        let c = config
        let T = w.tokens.count
        let h = c.hiddenSize, nh = c.numHeads, nkv = c.numKVHeads
        let qd = nh * c.headDim, kvd = nkv * c.headDim
        let layer = layers[li]
        let s = ws.slot(li)
        let dx = w.grad.pointer, dxn = ws.dxn.pointer
        let pre = c.preNorm
        // mid = x + o(attention(rope(q), rope(k), v)); dx holds d(mid).
        let att = ws.att[s].pointer
        let attnIn = pre ? ws.xn1[s].pointer : w.input(li)
        let dO = postNormBackward(layer.postAttentionNorm, ws, li, attention: true, dx, T)
        sink?.accept(layer: li, kind: .o, dY: dO, lddy: h, x: att, ldx: qd, tokens: T)
        try blockInputGradient(li, .o, ws, dY: dO, lddy: h, tokens: T, dX: ws.dAtt.pointer, lddx: qd)
        attentionBackward(ws, li, T)
        let dq = ws.dq.pointer, dk = ws.dk.pointer, dv = ws.dv.pointer
        sink?.accept(layer: li, kind: .v, dY: dv, lddy: kvd, x: attnIn, ldx: h, tokens: T)
        if usesRope {
            let (cosT, sinT) = ropeTables(ws.inference, layer: li)
            rope(dq, rows: T, heads: nh, cos: cosT, sin: sinT, inverse: true)
            rope(dk, rows: T, heads: nkv, cos: cosT, sin: sinT, inverse: true)
        }
        headNormsBackward(ws, li, T)
        sink?.accept(layer: li, kind: .q, dY: dq, lddy: qd, x: attnIn, ldx: h, tokens: T)
        sink?.accept(layer: li, kind: .k, dY: dk, lddy: kvd, x: attnIn, ldx: h, tokens: T)
        try blockInputGradient(li, .q, ws, dY: dq, lddy: qd, tokens: T, dX: dxn, lddx: h)
        try blockInputGradient(li, .k, ws, dY: dk, lddy: kvd, tokens: T, dX: dxn, lddx: h, add: true)
        try blockInputGradient(li, .v, ws, dY: dv, lddy: kvd, tokens: T, dX: dxn, lddx: h, add: true)
        if pre {
            layer.attentionNorm.backward(
                w.input(li), stats: NormStats(scale: ws.rms1[s].pointer, mean: ws.mean1[s].pointer), dxn, dx, rows: T,
                width: h, pool: pool)
        } else {
            for i in 0..<(T * h) { dx[i] += dxn[i] }
        }
    }

    /// Scaled, masked (causal, sliding window) and softmaxed scores of queries [t0, t0+m) of `head`
    /// against keys [0, S) into `p` [m, S].
    func attentionProbabilities(
        _ ws: TrainingWorkspace, _ li: Int, head: Int, t0: Int, m: Int, S: Int,
        _ p: UnsafeMutablePointer<Float>
    ) {
        let c = config
        let hd = c.headDim, qd = c.numHeads * hd, kvd = c.numKVHeads * hd
        let kvh = head / (c.numHeads / c.numKVHeads)
        let scale = attentionScale
        let cap = c.attentionSoftcap.map(Float.init)
        let s = ws.slot(li)
        sq_gemm_f32(
            ws.q[s].pointer + t0 * qd + head * hd, Int64(qd), ws.k[s].pointer + kvh * hd, Int64(kvd),
            p, Int64(S), Int64(m), Int64(hd), 0, Int64(S))
        let window = layers[li].attention.window
        for i in 0..<m {
            let row = p + i * S
            let pos = t0 + i
            let lo = window.map { max(0, pos - $0 + 1) } ?? 0
            if let cap {
                for j in 0..<S { row[j] = (j > pos || j < lo) ? -Float.infinity : cap * tanhf(row[j] * scale / cap) }
            } else {
                for j in 0..<S { row[j] = (j > pos || j < lo) ? -Float.infinity : row[j] * scale }
            }
            _ = sq_softmax_f32(row, Int64(S))
        }
    }

    /// From dAtt (gradient of the attention output) to dq, dk (after RoPE) and dv.
    func attentionBackward(_ ws: TrainingWorkspace, _ li: Int, _ T: Int) {
        let c = config
        let hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads, qd = nh * hd, kvd = nkv * hd, group = nh / nkv
        let qb = TrainingWorkspace.queryBlock
        let nBlocks = (T + qb - 1) / qb
        let scale = attentionScale
        let cap = c.attentionSoftcap.map(Float.init)
        ws.ensureAttentionScratch(threads: pool.threadCount)
        let s = ws.slot(li)
        let q = ws.q[s].pointer, k = ws.k[s].pointer, v = ws.v[s].pointer
        let dAtt = ws.dAtt.pointer, dq = ws.dq.pointer, dKh = ws.dKh.pointer, dVh = ws.dVh.pointer
        let maxT = ws.maxTokens
        pool.run(tasks: nh) { head, thread in
            let kvh = head / group
            let dKp = dKh + head * maxT * hd, dVp = dVh + head * maxT * hd
            dKp.update(repeating: 0, count: T * hd)
            dVp.update(repeating: 0, count: T * hd)
            let p = ws.attScratch[thread].pointer, dp = p + qb * maxT, z = dp + qb * maxT
            for blk in 0..<nBlocks {
                let t0 = blk * qb, t1 = min(T, t0 + qb), m = t1 - t0, S = t1
                self.attentionProbabilities(ws, li, head: head, t0: t0, m: m, S: S, p)
                let dO = dAtt + t0 * qd + head * hd
                // dP = dO V^T
                sq_gemm_f32(dO, Int64(qd), v + kvh * hd, Int64(kvd), dp, Int64(S), Int64(m), Int64(hd), 0, Int64(S))
                // dS = P (dP - rowsum(P dP)) * scale, times the soft-cap's derivative 1 - tanh^2.
                if let cap {
                    sq_gemm_f32(
                        q + t0 * qd + head * hd, Int64(qd), k + kvh * hd, Int64(kvd), z, Int64(S), Int64(m), Int64(hd),
                        0, Int64(S))
                }
                for i in 0..<m {
                    let pr = p + i * S, dr = dp + i * S, zr = z + i * S
                    let d = sq_dot_f32(pr, dr, Int64(S))
                    if let cap {
                        for j in 0..<S {
                            let th = tanhf(zr[j] * scale / cap)
                            dr[j] = pr[j] * (dr[j] - d) * scale * (1 - th * th)
                        }
                    } else {
                        for j in 0..<S { dr[j] = pr[j] * (dr[j] - d) * scale }
                    }
                }
                // dQ = dS K ; dK += dS^T Q ; dV += P^T dO
                BackwardKernels.gemm(
                    dp, sai: S, sap: 1, k + kvh * hd, ldb: kvd, dq + t0 * qd + head * hd, ldo: qd,
                    m: m, k: S, n: hd, mode: .store, pool: nil)
                BackwardKernels.gemm(
                    dp, sai: 1, sap: S, q + t0 * qd + head * hd, ldb: qd, dKp, ldo: hd,
                    m: S, k: m, n: hd, mode: .add, pool: nil)
                BackwardKernels.gemm(
                    p, sai: 1, sap: S, dO, ldb: qd, dVp, ldo: hd,
                    m: S, k: m, n: hd, mode: .add, pool: nil)
            }
        }
        // Sum the heads of each group into dk, dv.
        let dk = ws.dk.pointer, dv = ws.dv.pointer
        pool.parallelFor(T, minBlock: 16) { r, _ in
            for t in r {
                for g in 0..<nkv {
                    let ok = dk + t * kvd + g * hd, ov = dv + t * kvd + g * hd
                    for d in 0..<hd { ok[d] = 0; ov[d] = 0 }
                    for hh in (g * group)..<((g + 1) * group) {
                        let sk = dKh + hh * maxT * hd + t * hd, sv = dVh + hh * maxT * hd + t * hd
                        for d in 0..<hd { ok[d] += sk[d]; ov[d] += sv[d] }
                    }
                }
            }
        }
    }
}
