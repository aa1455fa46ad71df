import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels

/// Receives each linear weight's gradient as its two factors, dW = dY^T X, with dY [tokens, rows]
/// (row stride `lddy`) and X [tokens, columns] (row stride `ldx`), the moment the backward pass
/// forms them. Rows are in the model's own order (for GGUF-loaded models, Q and K rows are in the
/// interleaved layout). The pointers are valid only during the call.
public protocol GradientSink: AnyObject {
    func accept(
        layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int,
        x: UnsafePointer<Float>, ldx: Int, tokens: Int)
}

/// Activations of one window kept by the training forward (the inference forward run with a
/// `ForwardRecorder`) for the backward pass, and the scratch the backward pass needs. Memory: per
/// layer about (5 h + 2 qd + 2 kvd + 2 ffn) floats per token, plus [tokens, vocab] logits and one
/// inference workspace and F32 KV cache; nothing is allocated per call.
public final class TrainingWorkspace: @unchecked Sendable {
    /// The longest window this workspace holds.
    public let maxTokens: Int
    // Per layer: residual input, its norm output, Q and K after RoPE, V, attention output, residual
    // after attention, the MLP's input, gate and up projections, and the norms' statistics.
    let res: [AlignedBuffer<Float>]  // numLayers + 1: res[l] is the input of block l; res[L] the final state
    let xn1, q, k, v, att, mid, xn2, gate, up: [AlignedBuffer<Float>]
    let rms1, rms2: [AlignedBuffer<Float>]
    /// LayerNorm means (unused for RMSNorm) and, for post-LN blocks, the sum before the MLP norm.
    let mean1, mean2, post: [AlignedBuffer<Float>]
    let rmsF, meanF: AlignedBuffer<Float>
    /// The forward pass's workspace (its RoPE tables serve the backward too) and KV cache.
    let inference: Workspace
    let cache: KVCache
    let dProj: AlignedBuffer<Float>
    /// After `trainingForward`, the logits [tokens, vocab]; after `lossAndBackward`, the loss's
    /// gradient with respect to the first tokens - 1 rows.
    public let logits: AlignedBuffer<Float>
    // Backward scratch.
    let dx, dxn, dAtt, dq, dk, dv, act, dg, du, tmp: AlignedBuffer<Float>
    let dKh, dVh: AlignedBuffer<Float>  // [numHeads, maxTokens, headDim]
    var attScratch: [AlignedBuffer<Float>] = []  // per thread: P and dP for one query block
    /// What the family-specific pieces keep (BackwardParts.swift).
    let family: FamilyRecordBuffers
    static let queryBlock = 64

    /// Seconds of the last `lossAndBackward`'s forward part (training forward, logits and loss).
    public internal(set) var lastForwardSeconds = 0.0
    /// Seconds of the last `lossAndBackward`'s backward part (from the logits' gradient to the embeddings).
    public internal(set) var lastBackwardSeconds = 0.0

    /// Gradient of the loss with respect to the embedding output (the input of block 0), [tokens, hidden],
    /// valid after `lossAndBackward`.
    public var embeddingGradient: UnsafePointer<Float> { UnsafePointer(dx.pointer) }

    /// Allocates the buffers for windows of up to `maxTokens` tokens of `model`.
    public init(model: DecoderModel, maxTokens: Int) {
        let c = model.config
        let T = max(1, maxTokens)
        self.maxTokens = T
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, ffn = c.intermediateSize
        func bufs(_ n: Int, _ count: Int = c.numLayers) -> [AlignedBuffer<Float>] {
            (0..<count).map { _ in AlignedBuffer<Float>(count: n) }
        }
        res = bufs(T * h, c.numLayers + 1)
        xn1 = bufs(c.preNorm ? T * h : 1); q = bufs(T * qd); k = bufs(T * kvd); v = bufs(T * kvd); att = bufs(T * qd)
        mid = bufs(T * h); xn2 = bufs(T * h); gate = bufs(c.activation.isGated ? T * ffn : 1); up = bufs(T * ffn)
        rms1 = bufs(T); rms2 = bufs(T)
        let ln = c.normKind == .layerNorm
        mean1 = bufs(ln ? T : 1); mean2 = bufs(ln ? T : 1); post = bufs(c.preNorm ? 1 : T * h)
        rmsF = AlignedBuffer(count: T); meanF = AlignedBuffer(count: T)
        inference = Workspace(model: model, maxTokens: T, logitRows: 1)
        cache = KVCache(config: c, capacity: T, precision: .f32)
        dProj = AlignedBuffer(count: c.embeddingDim == nil ? 1 : T * c.embeddingWidth)
        logits = AlignedBuffer(count: T * c.vocabSize)
        dx = AlignedBuffer(count: T * h); dxn = AlignedBuffer(count: T * max(h, qd))
        dAtt = AlignedBuffer(count: T * qd); dq = AlignedBuffer(count: T * qd)
        dk = AlignedBuffer(count: T * kvd); dv = AlignedBuffer(count: T * kvd)
        act = AlignedBuffer(count: T * ffn); dg = AlignedBuffer(count: T * ffn); du = AlignedBuffer(count: T * ffn)
        tmp = AlignedBuffer(count: T * max(h, qd, ffn))
        dKh = AlignedBuffer(count: c.numHeads * T * c.headDim); dVh = AlignedBuffer(count: c.numHeads * T * c.headDim)
        family = FamilyRecordBuffers(config: c, tokens: T)
    }

    func ensureAttentionScratch(threads: Int) {
        if attScratch.count >= threads { return }
        attScratch = (0..<threads).map { _ in AlignedBuffer<Float>(count: 3 * TrainingWorkspace.queryBlock * maxTokens)
        }
    }

    /// Bytes held.
    public var byteCount: Int {
        let lists = [res, xn1, q, k, v, att, mid, xn2, gate, up, rms1, rms2, mean1, mean2, post]
        let singles = [rmsF, meanF, dProj, logits, dx, dxn, dAtt, dq, dk, dv, act, dg, du, tmp, dKh, dVh] + attScratch
        let ws = inference
        let inferenceBuffers =
            [ws.x, ws.xn, ws.q, ws.k, ws.v, ws.att, ws.gate, ws.up, ws.proj, ws.logits, ws.cosT, ws.sinT]
            + ws.scores + ws.keyScratch
        return 4
            * (lists.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } + singles.reduce(0) { $0 + $1.count }
                + inferenceBuffers.reduce(0) { $0 + $1.count }) + cache.byteCount + family.byteCount
    }
}

/// What a training forward keeps: the workspace its activations go to and the observer of each
/// linear layer's input.
struct ForwardRecorder {
    let ws: TrainingWorkspace
    let observer: LinearInputObserver?

    /// Where block `li`'s activations go.
    func layer(_ li: Int) -> LayerRecord {
        LayerRecord(
            res: ws.res[li].pointer, xn1: ws.xn1[li].pointer, q: ws.q[li].pointer, k: ws.k[li].pointer,
            v: ws.v[li].pointer, att: ws.att[li].pointer, mid: ws.mid[li].pointer, xn2: ws.xn2[li].pointer,
            gate: ws.gate[li].pointer, up: ws.up[li].pointer, post: ws.post[li].pointer,
            stats1: NormStats(scale: ws.rms1[li].pointer, mean: ws.mean1[li].pointer),
            stats2: NormStats(scale: ws.rms2[li].pointer, mean: ws.mean2[li].pointer), observer: observer)
    }
}

/// One block's activations in a `TrainingWorkspace` (see there), as the forward pass copies them in.
struct LayerRecord {
    let res, xn1, q, k, v, att, mid, xn2, gate, up, post: UnsafeMutablePointer<Float>
    let stats1, stats2: NormStats
    let observer: LinearInputObserver?
}

/// Observes each linear layer's input X [tokens, columns] (row stride `ldx`) during a training-mode
/// forward pass (q, k and v share one input, as do gate and up; each kind is reported).
public typealias LinearInputObserver = (
    _ layer: Int, _ kind: LinearKind, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int
) -> Void

extension DecoderModel {
    /// The dense F32 weight of `kind` in block `layer`, as the backward pass needs it.
    /// dX = dY W (or dX += dY W when `add`) for block `li`'s `kind` linear layer over `tokens` rows.
    func blockInputGradient(
        _ li: Int, _ kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int, tokens: Int, rows: Int, columns: Int,
        dX: UnsafeMutablePointer<Float>, lddx: Int, add: Bool = false
    ) throws {
        BackwardKernels.inputGradient(
            dY: dY, lddy: lddy, m: tokens, weight: try denseF32(li, kind), rows: rows, columns: columns,
            dX: dX, lddx: lddx, mode: add ? .add : .store, pool: pool)
    }

    func denseF32(_ layer: Int, _ kind: LinearKind) throws -> UnsafePointer<Float> {
        let name = config.weightName(layer: layer, kind: kind) ?? "\(kind) of block \(layer)"
        guard let op = layers[layer].op(kind) else {
            throw ModelError.missingTensor(file: "(loaded model)", tensor: name)
        }
        return try Self.denseF32(op, name: name)
    }

    /// The weight of `op` when it is dense F32; throws naming `name` otherwise.
    static func denseF32(_ op: LinearOperator, name: String) throws -> UnsafePointer<Float> {
        guard let d = op as? DenseMatrix, d.tensor.dtype == .f32 else {
            throw ModelError.unsupportedWeight(
                file: "(loaded model)", tensor: name,
                detail:
                    "the backward pass needs dense F32 weights, this one is '\(op.kind)'; load the model with LoadOptions(weightDType: .f32)"
            )
        }
        return UnsafePointer(d.tensor.data.assumingMemoryBound(to: Float.self))
    }

    /// Checks that the backward pass can run on this model: every linear weight and the LM head dense F32.
    public func checkTrainable() throws {
        for l in 0..<layers.count { for kind in config.linearKinds { _ = try denseF32(l, kind) } }
        if let po = projectOut { _ = try Self.denseF32(po, name: config.tensorPrefix + "project_out.weight") }
        _ = try Self.denseF32(lmHead, name: config.lmHeadName)
    }

    func validateWindow(_ tokens: [Int], _ ws: TrainingWorkspace) throws {
        guard tokens.count >= 2 else {
            throw ModelError.invalidArgument("a training window needs at least 2 tokens, got \(tokens.count)")
        }
        guard tokens.count <= ws.maxTokens else {
            throw ModelError.invalidArgument(
                "window of \(tokens.count) tokens exceeds the training workspace (\(ws.maxTokens))")
        }
        // Dynamic NTK RoPE is made to run past max_position_embeddings (its original context).
        guard tokens.count <= config.contextLimit ?? Int.max else {
            throw ModelError.contextOverflow(requested: tokens.count, limit: config.maxPositionEmbeddings)
        }
        for t in tokens where t < 0 || t >= config.vocabSize {
            throw ModelError.invalidArgument("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
        }
    }

    /// Training forward over one window: the inference forward (`run`, so its logits are bit-identical
    /// to `forward`'s) with every activation the backward pass needs kept in `ws`; `observer`, when
    /// given, sees each linear layer's input. With `computeLogits`, the logits of every position land
    /// in `ws.logits` ([tokens, vocab]).
    public func trainingForward(
        tokens: [Int], workspace ws: TrainingWorkspace, computeLogits: Bool = true,
        observer: LinearInputObserver? = nil
    ) throws {
        try validateWindow(tokens, ws)
        ws.cache.reset()
        let iw = ws.inference
        iw.segments.removeAll(keepingCapacity: true)
        iw.segments.append(Segment(cache: ws.cache, start: 0, count: tokens.count))
        run(
            tokens[...], segments: iw.segments, ws: iw, logits: computeLogits ? .all : .none,
            logitsOut: ws.logits.pointer,
            record: ForwardRecorder(ws: ws, observer: observer))
    }

    /// Mean next-token cross-entropy of the window (positions 0..<T-1 predict tokens 1..<T, as Hugging
    /// Face's `model(x, labels=x).loss`), and its gradient through the whole model: each linear weight's
    /// gradient is handed to `sink` as dY and X (see `GradientSink`), block by block from the last, and
    /// never stored. Embeddings and norm weights get no gradient; the gradient with respect to the
    /// embedding output is left in `ws.embeddingGradient`. Needs dense F32 weights (`checkTrainable`).
    @discardableResult
    public func lossAndBackward(tokens: [Int], workspace ws: TrainingWorkspace, sink: GradientSink?) throws -> Double {
        try checkTrainable()
        let clock0 = DispatchTime.now().uptimeNanoseconds
        try trainingForward(tokens: tokens, workspace: ws)
        let c = config
        let T = tokens.count, P = T - 1
        let h = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads
        let qd = nh * hd, kvd = nkv * hd, ffn = c.intermediateSize, V = c.vocabSize
        let lm = try Self.denseF32(lmHead, name: c.lmHeadName)

        // dL/dlogits = (softmax - onehot) / P in place, for the P predicting positions.
        let logits = ws.logits.pointer
        var losses = [Double](repeating: 0, count: P)
        losses.withUnsafeMutableBufferPointer { lb in
            let lp = lb.baseAddress!
            pool.parallelFor(P, minBlock: 4) { r, _ in
                for t in r {
                    let row = logits + t * V
                    let target = tokens[t + 1]
                    let zt = row[target]
                    let inv = 1 / Float(P)
                    softcapGradient(row, V) {
                        let lse = sq_softmax_scaled_f32(row, Int64(V), inv)
                        lp[t] = Double(lse) - Double(zt)
                        row[target] -= inv
                    }
                }
            }
        }
        let loss = losses.reduce(0, +) / Double(P)
        let clock1 = DispatchTime.now().uptimeNanoseconds

        // Through the LM head, project_out and the final norm.
        let dxn = ws.dxn.pointer, dx = ws.dx.pointer, tmp = ws.tmp.pointer
        if let po = projectOut {
            let ew = c.embeddingWidth
            let w = try Self.denseF32(po, name: c.tensorPrefix + "project_out.weight")
            BackwardKernels.inputGradient(
                dY: logits, lddy: V, m: P, weight: lm, rows: V, columns: ew, dX: ws.dProj.pointer, lddx: ew, pool: pool)
            BackwardKernels.inputGradient(
                dY: ws.dProj.pointer, lddy: ew, m: P, weight: w, rows: ew, columns: h, dX: dxn, lddx: h, pool: pool)
        } else {
            BackwardKernels.inputGradient(
                dY: logits, lddy: V, m: P, weight: lm, rows: V, columns: h, dX: dxn, lddx: h, pool: pool)
        }
        for i in 0..<h { dxn[P * h + i] = 0 }
        if let finalNorm {
            dx.update(repeating: 0, count: T * h)
            finalNorm.backward(
                ws.res[layers.count].pointer, stats: NormStats(scale: ws.rmsF.pointer, mean: ws.meanF.pointer),
                dxn, dx, rows: T, width: h, pool: pool)
        } else {
            dx.update(from: dxn, count: T * h)
        }
        let pre = c.preNorm

        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[li]
            let stats1 = NormStats(scale: ws.rms1[li].pointer, mean: ws.mean1[li].pointer)
            let stats2 = NormStats(scale: ws.rms2[li].pointer, mean: ws.mean2[li].pointer)
            // MLP: out = mid + down(act(...)) (pre-LN) or out = norm2(xn2 + down(act(...))) (post-LN).
            // dOut: the gradient at the MLP's output (before the residual add).
            let dOut: UnsafeMutablePointer<Float>
            if pre {
                dOut = dx
            } else {
                tmp.update(repeating: 0, count: T * h)
                layer.mlpNorm.backward(ws.post[li].pointer, stats: stats2, dx, tmp, rows: T, width: h, pool: pool)
                dOut = tmp
            }
            let g = ws.gate[li].pointer, u = ws.up[li].pointer, a = ws.act.pointer
            let dg = ws.dg.pointer, du = ws.du.pointer, xn2 = ws.xn2[li].pointer
            // The MLP's activation again (the forward keeps only its inputs).
            switch layer.mlp {
            case .gated: gatedActivation(g, u, a, T * ffn)
            case let .plain(_, _, activation): activation.apply(u, a, T * ffn)
            }
            let dDown = postNormBackward(layer.postMLPNorm, ws, li, attention: false, dOut, T)
            sink?.accept(layer: li, kind: .down, dY: dDown, lddy: h, x: a, ldx: ffn, tokens: T)
            try blockInputGradient(li, .down, dY: dDown, lddy: h, tokens: T, rows: h, columns: ffn, dX: dg, lddx: ffn)
            switch layer.mlp {
            case .gated:
                gatedBackward(g, u, dg, du, T * ffn)
                sink?.accept(layer: li, kind: .gate, dY: dg, lddy: ffn, x: xn2, ldx: h, tokens: T)
                sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
                try blockInputGradient(li, .gate, dY: dg, lddy: ffn, tokens: T, rows: ffn, columns: h, dX: dxn, lddx: h)
                try blockInputGradient(
                    li, .up, dY: du, lddy: ffn, tokens: T, rows: ffn, columns: h, dX: dxn, lddx: h, add: true)
            case let .plain(_, _, activation):
                activation.backward(u, dg, du, T * ffn)
                sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
                try blockInputGradient(li, .up, dY: du, lddy: ffn, tokens: T, rows: ffn, columns: h, dX: dxn, lddx: h)
            }
            if pre {
                layer.mlpNorm.backward(ws.mid[li].pointer, stats: stats2, dxn, dx, rows: T, width: h, pool: pool)
            } else {
                // d(xn2) = residual + MLP path; then through norm1 to d(mid).
                for i in 0..<(T * h) { dxn[i] += tmp[i] }
                dx.update(repeating: 0, count: T * h)
                layer.attentionNorm.backward(ws.mid[li].pointer, stats: stats1, dxn, dx, rows: T, width: h, pool: pool)
            }

            // Attention: mid = x + o(attention(rope(q), rope(k), v)); dx holds d(mid).
            let att = ws.att[li].pointer
            let attnIn = pre ? ws.xn1[li].pointer : ws.res[li].pointer
            let dO = postNormBackward(layer.postAttentionNorm, ws, li, attention: true, dx, T)
            sink?.accept(layer: li, kind: .o, dY: dO, lddy: h, x: att, ldx: qd, tokens: T)
            try blockInputGradient(
                li, .o, dY: dO, lddy: h, tokens: T, rows: h, columns: qd, dX: ws.dAtt.pointer, lddx: qd)
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
            try blockInputGradient(li, .q, dY: dq, lddy: qd, tokens: T, rows: qd, columns: h, dX: dxn, lddx: h)
            try blockInputGradient(
                li, .k, dY: dk, lddy: kvd, tokens: T, rows: kvd, columns: h, dX: dxn, lddx: h, add: true)
            try blockInputGradient(
                li, .v, dY: dv, lddy: kvd, tokens: T, rows: kvd, columns: h, dX: dxn, lddx: h, add: true)
            if pre {
                layer.attentionNorm.backward(ws.res[li].pointer, stats: stats1, dxn, dx, rows: T, width: h, pool: pool)
            } else {
                for i in 0..<(T * h) { dx[i] += dxn[i] }
            }
        }
        ws.lastForwardSeconds = Double(clock1 - clock0) / 1e9
        ws.lastBackwardSeconds = Double(DispatchTime.now().uptimeNanoseconds - clock1) / 1e9
        return loss
    }

    /// Mean next-token cross-entropy of one window, forward only (through the training-mode forward).
    public func trainingLoss(tokens: [Int], workspace ws: TrainingWorkspace) throws -> Double {
        try trainingForward(tokens: tokens, workspace: ws)
        let T = tokens.count, P = T - 1, V = config.vocabSize
        let logits = ws.logits.pointer
        var s = 0.0
        for t in 0..<P {
            let row = logits + t * V
            s += Double(sq_logsumexp_f32(row, Int64(V))) - Double(row[tokens[t + 1]])
        }
        return s / Double(P)
    }

    // MARK: - Pieces

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
        sq_gemm_f32(
            ws.q[li].pointer + t0 * qd + head * hd, Int64(qd), ws.k[li].pointer + kvh * hd, Int64(kvd),
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
        let q = ws.q[li].pointer, k = ws.k[li].pointer, v = ws.v[li].pointer
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
