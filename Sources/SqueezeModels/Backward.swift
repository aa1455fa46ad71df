import Foundation
import CSqueezeKernels
import SqueezeCore
import SqueezeKernels

/// The seven linear layers of a Llama block, in the order of `DecoderLayer.linears`.
public enum LinearKind: Int, CaseIterable, Sendable {
    case q, k, v, o, gate, up, down

    /// The Hugging Face name suffix after `model.layers.N.` (without `.weight`).
    public var huggingFaceSuffix: String {
        switch self {
        case .q: return "self_attn.q_proj"
        case .k: return "self_attn.k_proj"
        case .v: return "self_attn.v_proj"
        case .o: return "self_attn.o_proj"
        case .gate: return "mlp.gate_proj"
        case .up: return "mlp.up_proj"
        case .down: return "mlp.down_proj"
        }
    }

    /// The full Hugging Face weight name for block `layer`.
    public func weightName(layer: Int) -> String { "model.layers.\(layer).\(huggingFaceSuffix).weight" }

    /// The operator of this kind in `layer`, nil when the block has none (the gate of a ReLU/GELU MLP).
    public func optionalOp(in layer: DecoderLayer) -> LinearOperator? {
        self == .gate ? layer.gateOp : op(in: layer)
    }

    /// The operator of this kind in `layer` (the gate only in SwiGLU blocks).
    public func op(in layer: DecoderLayer) -> LinearOperator {
        switch self {
        case .q: return layer.q
        case .k: return layer.k
        case .v: return layer.v
        case .o: return layer.o
        case .gate: return layer.gate
        case .up: return layer.up
        case .down: return layer.down
        }
    }
}

/// Receives each linear weight's gradient as its two factors, dW = dY^T X, with dY [tokens, rows]
/// (row stride `lddy`) and X [tokens, columns] (row stride `ldx`), the moment the backward pass
/// forms them. Rows are in the model's own order (for GGUF-loaded models, Q and K rows are in the
/// interleaved layout). The pointers are valid only during the call.
public protocol GradientSink: AnyObject {
    func accept(layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int,
                x: UnsafePointer<Float>, ldx: Int, tokens: Int)
}

/// Activations of one window kept by the training-mode forward pass for the backward pass, and the
/// scratch the backward pass needs. Memory: per layer about (4 h + 2 qd + 2 kvd + 2 ffn) floats per
/// token, plus [tokens, vocab] logits; nothing is allocated per call.
public final class TrainingWorkspace: @unchecked Sendable {
    /// The longest window this workspace holds.
    public let maxTokens: Int
    // Per layer: residual input, its RMSNorm output and scale, Q and K after RoPE, V, attention output,
    // residual after attention, its RMSNorm output and scale, gate and up projections.
    let res: [AlignedBuffer<Float>]      // numLayers + 1: res[l] is the input of block l; res[L] the final state
    let xn1, q, k, v, att, mid, xn2, gate, up: [AlignedBuffer<Float>]
    let rms1, rms2: [AlignedBuffer<Float>]
    /// LayerNorm means (unused for RMSNorm) and, for post-LN blocks, the sum before the MLP norm.
    let mean1, mean2, post: [AlignedBuffer<Float>]
    let xnF, rmsF, meanF: AlignedBuffer<Float>
    /// Embeddings before project_in, and the final state after project_out ([tokens, embeddingWidth]).
    let projIn, projF, dProj: AlignedBuffer<Float>
    /// Logits, then (in the backward pass) their gradient: [maxTokens, vocab].
    let logits: AlignedBuffer<Float>
    // Backward scratch.
    let dx, dxn, dAtt, dq, dk, dv, act, dg, du, tmp: AlignedBuffer<Float>
    let dKh, dVh: AlignedBuffer<Float>  // [numHeads, maxTokens, headDim]
    let cosT, sinT: AlignedBuffer<Float>
    var attScratch: [AlignedBuffer<Float>] = [] // per thread: P and dP for one query block
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
        xn1 = bufs(T * h); q = bufs(T * qd); k = bufs(T * kvd); v = bufs(T * kvd); att = bufs(T * qd)
        mid = bufs(T * h); xn2 = bufs(T * h); gate = bufs(T * ffn); up = bufs(T * ffn)
        rms1 = bufs(T); rms2 = bufs(T)
        let ln = c.normKind == .layerNorm
        mean1 = bufs(ln ? T : 1); mean2 = bufs(ln ? T : 1); post = bufs(c.preNorm ? 1 : T * h)
        xnF = AlignedBuffer(count: T * h); rmsF = AlignedBuffer(count: T); meanF = AlignedBuffer(count: T)
        let ew = c.embeddingDim == nil ? 1 : T * c.embeddingWidth
        projIn = AlignedBuffer(count: ew); projF = AlignedBuffer(count: ew); dProj = AlignedBuffer(count: ew)
        logits = AlignedBuffer(count: T * c.vocabSize)
        dx = AlignedBuffer(count: T * h); dxn = AlignedBuffer(count: T * max(h, qd))
        dAtt = AlignedBuffer(count: T * qd); dq = AlignedBuffer(count: T * qd)
        dk = AlignedBuffer(count: T * kvd); dv = AlignedBuffer(count: T * kvd)
        act = AlignedBuffer(count: T * ffn); dg = AlignedBuffer(count: T * ffn); du = AlignedBuffer(count: T * ffn)
        tmp = AlignedBuffer(count: T * max(h, qd, ffn))
        dKh = AlignedBuffer(count: c.numHeads * T * c.headDim); dVh = AlignedBuffer(count: c.numHeads * T * c.headDim)
        cosT = AlignedBuffer(count: T * c.headDim / 2); sinT = AlignedBuffer(count: T * c.headDim / 2)
    }

    func ensureAttentionScratch(threads: Int) {
        if attScratch.count >= threads { return }
        attScratch = (0..<threads).map { _ in AlignedBuffer<Float>(count: 2 * TrainingWorkspace.queryBlock * maxTokens) }
    }

    /// Bytes held.
    public var byteCount: Int {
        let lists = [res, xn1, q, k, v, att, mid, xn2, gate, up, rms1, rms2, mean1, mean2, post]
        let singles = [xnF, rmsF, meanF, projIn, projF, dProj, logits, dx, dxn, dAtt, dq, dk, dv, act, dg, du, tmp, dKh, dVh, cosT, sinT] + attScratch
        return 4 * (lists.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } + singles.reduce(0) { $0 + $1.count })
    }
}

/// Observes each linear layer's input X [tokens, columns] (row stride `ldx`) during a training-mode
/// forward pass (q, k and v share one input, as do gate and up; each kind is reported).
public typealias LinearInputObserver = (_ layer: Int, _ kind: LinearKind, _ x: UnsafePointer<Float>, _ ldx: Int, _ tokens: Int) -> Void

extension DecoderModel {
    /// The dense F32 weight of `kind` in block `layer`, as the backward pass needs it.
    func denseF32(_ layer: Int, _ kind: LinearKind) throws -> UnsafePointer<Float> {
        let op = kind.op(in: layers[layer])
        guard let d = op as? DenseMatrix, d.tensor.dtype == .f32 else {
            throw ModelError.unsupportedWeight(file: "(loaded model)", tensor: config.weightName(layer: layer, kind: kind) ?? "\(kind)",
                                               detail: "the backward pass needs dense F32 weights, this one is '\(op.kind)'; load the model with LoadOptions(weightDType: .f32)")
        }
        return d.tensor.data.assumingMemoryBound(to: Float.self)
    }

    /// Checks that the backward pass can run on this model: every linear weight and the LM head dense F32.
    public func checkTrainable() throws {
        for l in 0..<layers.count { for kind in config.linearKinds { _ = try denseF32(l, kind) } }
        if let po = projectOut, !((po as? DenseMatrix)?.tensor.dtype == .f32) {
            throw ModelError.unsupportedWeight(file: "(loaded model)", tensor: config.tensorPrefix + "project_out.weight",
                                               detail: "the backward pass needs a dense F32 project_out; load the model with LoadOptions(weightDType: .f32)")
        }
        guard let d = lmHead as? DenseMatrix, d.tensor.dtype == .f32 else {
            throw ModelError.unsupportedWeight(file: "(loaded model)", tensor: "lm_head.weight",
                                               detail: "the backward pass needs a dense F32 LM head, this one is '\(lmHead.kind)'; load the model with LoadOptions(weightDType: .f32)")
        }
    }

    func validateWindow(_ tokens: [Int], _ ws: TrainingWorkspace) throws {
        guard tokens.count >= 2 else {
            throw ModelError.invalidArgument("a training window needs at least 2 tokens, got \(tokens.count)")
        }
        guard tokens.count <= ws.maxTokens else {
            throw ModelError.invalidArgument("window of \(tokens.count) tokens exceeds the training workspace (\(ws.maxTokens))")
        }
        // Dynamic NTK RoPE is made to run past max_position_embeddings (its original context).
        guard tokens.count <= config.contextLimit ?? Int.max else {
            throw ModelError.contextOverflow(requested: tokens.count, limit: config.maxPositionEmbeddings)
        }
        for t in tokens where t < 0 || t >= config.vocabSize {
            throw ModelError.invalidArgument("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
        }
    }

    /// Training-mode forward pass over one window: keeps every activation the backward pass needs in `ws`
    /// and, when `observer` is given, shows it each linear layer's input. Computes no logits.
    public func trainingForward(tokens: [Int], workspace ws: TrainingWorkspace, observer: LinearInputObserver? = nil) throws {
        try validateWindow(tokens, ws)
        let c = config
        let T = tokens.count
        let h = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads
        let qd = nh * hd, kvd = nkv * hd, ffn = c.intermediateSize
        let x0 = ws.res[0].pointer
        if let pin = projectIn {
            let ew = c.embeddingWidth
            for (t, id) in tokens.enumerated() { embedding.convertToFloat(into: ws.projIn.pointer + t * ew, offset: id * ew, count: ew) }
            pin.gemm(ws.projIn.pointer, ldx: ew, m: T, x0, ldy: h, pool: pool)
        } else {
            for (t, id) in tokens.enumerated() { embedding.convertToFloat(into: x0 + t * h, offset: id * h, count: h) }
        }
        if let pe = positionEmbedding, let off = c.learnedPositionOffset {
            for t in 0..<T {
                let row = pe.pointer + (t + off) * h, xr = x0 + t * h
                for j in 0..<h { xr[j] += row[j] }
            }
        } else {
            let freqs = frequencies(forLength: T)
            let half = hd / 2
            for t in 0..<T {
                for i in 0..<half {
                    let a = Float(t) * freqs[i]
                    ws.cosT[t * half + i] = Float(cos(Double(a)))
                    ws.sinT[t * half + i] = Float(sin(Double(a)))
                }
            }
        }
        let tmp = ws.tmp.pointer
        let pre = c.preNorm
        for (li, layer) in layers.enumerated() {
            let x = ws.res[li].pointer, xn1 = ws.xn1[li].pointer
            let attnIn: UnsafeMutablePointer<Float>
            if pre {
                normForward(x, layer.attnNorm.pointer, layer.attnNormBias?.pointer, xn1, ws.rms1[li].pointer, ws.mean1[li].pointer, T, h)
                attnIn = xn1
            } else {
                attnIn = x
            }
            observer?(li, .q, attnIn, h, T); observer?(li, .k, attnIn, h, T); observer?(li, .v, attnIn, h, T)
            let q = ws.q[li].pointer, k = ws.k[li].pointer, v = ws.v[li].pointer
            layer.q.gemm(attnIn, ldx: h, m: T, q, ldy: qd, pool: pool)
            layer.k.gemm(attnIn, ldx: h, m: T, k, ldy: kvd, pool: pool)
            layer.v.gemm(attnIn, ldx: h, m: T, v, ldy: kvd, pool: pool)
            if let b = layer.qBias { addRowVector(q, b.pointer, T, qd) }
            if let b = layer.kBias { addRowVector(k, b.pointer, T, kvd) }
            if let b = layer.vBias { addRowVector(v, b.pointer, T, kvd) }
            if usesRope {
                rope(q, T, nh, ws, inverse: false)
                rope(k, T, nkv, ws, inverse: false)
            }
            let att = ws.att[li].pointer
            attentionForward(ws, li, T)
            observer?(li, .o, att, qd, T)
            layer.o.gemm(att, ldx: qd, m: T, tmp, ldy: h, pool: pool)
            if let b = layer.oBias { addRowVector(tmp, b.pointer, T, h) }
            let mid = ws.mid[li].pointer
            for i in 0..<(T * h) { mid[i] = x[i] + tmp[i] }

            // Pre-LN: xn2 = norm2(mid). Post-LN: xn2 = norm1(mid), the MLP's input and residual.
            let xn2 = ws.xn2[li].pointer
            if pre {
                normForward(mid, layer.ffnNorm.pointer, layer.ffnNormBias?.pointer, xn2, ws.rms2[li].pointer, ws.mean2[li].pointer, T, h)
            } else {
                normForward(mid, layer.attnNorm.pointer, layer.attnNormBias?.pointer, xn2, ws.rms1[li].pointer, ws.mean1[li].pointer, T, h)
            }
            if layer.gateOp != nil { observer?(li, .gate, xn2, h, T) }
            observer?(li, .up, xn2, h, T)
            let g = ws.gate[li].pointer, u = ws.up[li].pointer
            let a = ws.act.pointer
            layer.up.gemm(xn2, ldx: h, m: T, u, ldy: ffn, pool: pool)
            if let gate = layer.gateOp {
                gate.gemm(xn2, ldx: h, m: T, g, ldy: ffn, pool: pool)
                if let b = layer.gateBias { addRowVector(g, b.pointer, T, ffn) }
                if let b = layer.upBias { addRowVector(u, b.pointer, T, ffn) }
                pool.parallelFor(T * ffn, minBlock: 8192) { r, _ in
                    sq_silu_mul_f32(g + r.lowerBound, u + r.lowerBound, a + r.lowerBound, Int64(r.count))
                }
            } else {
                if let b = layer.upBias { addRowVector(u, b.pointer, T, ffn) }
                DecoderModel.activate(c.activation, u, a, T * ffn)
            }
            observer?(li, .down, a, ffn, T)
            layer.down.gemm(a, ldx: ffn, m: T, tmp, ldy: h, pool: pool)
            if let b = layer.downBias { addRowVector(tmp, b.pointer, T, h) }
            let out = ws.res[li + 1].pointer
            if pre {
                for i in 0..<(T * h) { out[i] = mid[i] + tmp[i] }
            } else {
                let p = ws.post[li].pointer
                for i in 0..<(T * h) { p[i] = xn2[i] + tmp[i] }
                normForward(p, layer.ffnNorm.pointer, layer.ffnNormBias?.pointer, out, ws.rms2[li].pointer, ws.mean2[li].pointer, T, h)
            }
        }
        let last = ws.res[layers.count].pointer
        if c.hasFinalNorm {
            normForward(last, norm.pointer, normBias?.pointer, ws.xnF.pointer, ws.rmsF.pointer, ws.meanF.pointer, T, h)
        } else {
            ws.xnF.pointer.update(from: last, count: T * h)
        }
        if let po = projectOut { po.gemm(ws.xnF.pointer, ldx: h, m: T, ws.projF.pointer, ldy: c.embeddingWidth, pool: pool) }
    }

    /// The LM head's input rows of the training workspace and their width.
    func headInput(_ ws: TrainingWorkspace) -> (UnsafeMutablePointer<Float>, Int) {
        projectOut == nil ? (ws.xnF.pointer, config.hiddenSize) : (ws.projF.pointer, config.embeddingWidth)
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
        let lm = (lmHead as! DenseMatrix).tensor.data.assumingMemoryBound(to: Float.self)
        let (headIn, hw) = headInput(ws)

        // Logits for the P predicting positions, then dL/dlogits = (softmax - onehot) / P in place.
        let logits = ws.logits.pointer
        lmHead.gemm(headIn, ldx: hw, m: P, logits, ldy: V, pool: pool)
        var losses = [Double](repeating: 0, count: P)
        losses.withUnsafeMutableBufferPointer { lb in
            let lp = lb.baseAddress!
            pool.parallelFor(P, minBlock: 4) { r, _ in
                for t in r {
                    let row = logits + t * V
                    let target = tokens[t + 1]
                    let zt = row[target]
                    let inv = 1 / Float(P)
                    let lse = sq_softmax_scaled_f32(row, Int64(V), inv)
                    lp[t] = Double(lse) - Double(zt)
                    row[target] -= inv
                }
            }
        }
        let loss = losses.reduce(0, +) / Double(P)
        let clock1 = DispatchTime.now().uptimeNanoseconds

        // Through the LM head, project_out and the final norm.
        let dxn = ws.dxn.pointer, dx = ws.dx.pointer, tmp = ws.tmp.pointer
        if let po = projectOut {
            let ew = c.embeddingWidth
            let w = (po as! DenseMatrix).tensor.data.assumingMemoryBound(to: Float.self)
            BackwardKernels.inputGradient(dY: logits, lddy: V, m: P, weight: lm, rows: V, columns: ew, dX: ws.dProj.pointer, lddx: ew, pool: pool)
            BackwardKernels.inputGradient(dY: ws.dProj.pointer, lddy: ew, m: P, weight: w, rows: ew, columns: h, dX: dxn, lddx: h, pool: pool)
        } else {
            BackwardKernels.inputGradient(dY: logits, lddy: V, m: P, weight: lm, rows: V, columns: h, dX: dxn, lddx: h, pool: pool)
        }
        for i in 0..<h { dxn[P * h + i] = 0 }
        if c.hasFinalNorm {
            dx.update(repeating: 0, count: T * h)
            normBackward(ws.res[layers.count].pointer, norm.pointer, ws.rmsF.pointer, ws.meanF.pointer, dxn, dx, T, h)
        } else {
            dx.update(from: dxn, count: T * h)
        }
        let pre = c.preNorm

        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            let layer = layers[li]
            // MLP: out = mid + down(act(...)) (pre-LN) or out = norm2(xn2 + down(act(...))) (post-LN).
            // dOut: the gradient at the MLP's output (before the residual add).
            let dOut: UnsafeMutablePointer<Float>
            if pre {
                dOut = dx
            } else {
                tmp.update(repeating: 0, count: T * h)
                normBackward(ws.post[li].pointer, layer.ffnNorm.pointer, ws.rms2[li].pointer, ws.mean2[li].pointer, dx, tmp, T, h)
                dOut = tmp
            }
            let g = ws.gate[li].pointer, u = ws.up[li].pointer, a = ws.act.pointer
            let dg = ws.dg.pointer, du = ws.du.pointer, xn2 = ws.xn2[li].pointer
            if layer.gateOp != nil {
                pool.parallelFor(T * ffn, minBlock: 8192) { r, _ in
                    sq_silu_mul_f32(g + r.lowerBound, u + r.lowerBound, a + r.lowerBound, Int64(r.count))
                }
            } else {
                DecoderModel.activate(c.activation, u, a, T * ffn)
            }
            sink?.accept(layer: li, kind: .down, dY: dOut, lddy: h, x: a, ldx: ffn, tokens: T)
            BackwardKernels.inputGradient(dY: dOut, lddy: h, m: T, weight: try denseF32(li, .down), rows: h, columns: ffn,
                                          dX: dg, lddx: ffn, pool: pool)
            if layer.gateOp != nil {
                pool.parallelFor(T * ffn, minBlock: 8192) { r, _ in
                    let o = r.lowerBound
                    sq_silu_mul_backward_f32(g + o, u + o, dg + o, du + o, Int64(r.count))
                }
                sink?.accept(layer: li, kind: .gate, dY: dg, lddy: ffn, x: xn2, ldx: h, tokens: T)
                sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
                BackwardKernels.inputGradient(dY: dg, lddy: ffn, m: T, weight: try denseF32(li, .gate), rows: ffn, columns: h,
                                              dX: dxn, lddx: h, pool: pool)
                BackwardKernels.inputGradient(dY: du, lddy: ffn, m: T, weight: try denseF32(li, .up), rows: ffn, columns: h,
                                              dX: dxn, lddx: h, mode: .add, pool: pool)
            } else {
                DecoderModel.activationBackward(c.activation, u, dg, du, T * ffn)
                sink?.accept(layer: li, kind: .up, dY: du, lddy: ffn, x: xn2, ldx: h, tokens: T)
                BackwardKernels.inputGradient(dY: du, lddy: ffn, m: T, weight: try denseF32(li, .up), rows: ffn, columns: h,
                                              dX: dxn, lddx: h, pool: pool)
            }
            if pre {
                normBackward(ws.mid[li].pointer, layer.ffnNorm.pointer, ws.rms2[li].pointer, ws.mean2[li].pointer, dxn, dx, T, h)
            } else {
                // d(xn2) = residual + MLP path; then through norm1 to d(mid).
                for i in 0..<(T * h) { dxn[i] += tmp[i] }
                dx.update(repeating: 0, count: T * h)
                normBackward(ws.mid[li].pointer, layer.attnNorm.pointer, ws.rms1[li].pointer, ws.mean1[li].pointer, dxn, dx, T, h)
            }

            // Attention: mid = x + o(attention(rope(q), rope(k), v)); dx holds d(mid).
            let att = ws.att[li].pointer
            let attnIn = pre ? ws.xn1[li].pointer : ws.res[li].pointer
            sink?.accept(layer: li, kind: .o, dY: dx, lddy: h, x: att, ldx: qd, tokens: T)
            BackwardKernels.inputGradient(dY: dx, lddy: h, m: T, weight: try denseF32(li, .o), rows: h, columns: qd,
                                          dX: ws.dAtt.pointer, lddx: qd, pool: pool)
            attentionBackward(ws, li, T)
            let dq = ws.dq.pointer, dk = ws.dk.pointer, dv = ws.dv.pointer
            sink?.accept(layer: li, kind: .v, dY: dv, lddy: kvd, x: attnIn, ldx: h, tokens: T)
            if usesRope {
                rope(dq, T, nh, ws, inverse: true)
                rope(dk, T, nkv, ws, inverse: true)
            }
            sink?.accept(layer: li, kind: .q, dY: dq, lddy: qd, x: attnIn, ldx: h, tokens: T)
            sink?.accept(layer: li, kind: .k, dY: dk, lddy: kvd, x: attnIn, ldx: h, tokens: T)
            BackwardKernels.inputGradient(dY: dq, lddy: qd, m: T, weight: try denseF32(li, .q), rows: qd, columns: h,
                                          dX: dxn, lddx: h, pool: pool)
            BackwardKernels.inputGradient(dY: dk, lddy: kvd, m: T, weight: try denseF32(li, .k), rows: kvd, columns: h,
                                          dX: dxn, lddx: h, mode: .add, pool: pool)
            BackwardKernels.inputGradient(dY: dv, lddy: kvd, m: T, weight: try denseF32(li, .v), rows: kvd, columns: h,
                                          dX: dxn, lddx: h, mode: .add, pool: pool)
            if pre {
                normBackward(ws.res[li].pointer, layer.attnNorm.pointer, ws.rms1[li].pointer, ws.mean1[li].pointer, dxn, dx, T, h)
            } else {
                for i in 0..<(T * h) { dx[i] += dxn[i] }
            }
        }
        ws.lastForwardSeconds = Double(clock1 - clock0) / 1e9
        ws.lastBackwardSeconds = Double(DispatchTime.now().uptimeNanoseconds - clock1) / 1e9
        return loss
    }

    /// du = dact * act'(u) for the non-gated MLPs.
    static func activationBackward(_ a: MLPActivation, _ u: UnsafePointer<Float>, _ dact: UnsafePointer<Float>,
                                   _ du: UnsafeMutablePointer<Float>, _ n: Int) {
        switch a {
        case .relu: for i in 0..<n { du[i] = u[i] > 0 ? dact[i] : 0 }
        case .geluTanh:
            let c: Float = 0.7978845608028654
            for i in 0..<n {
                let x = u[i]
                let th = tanhf(c * (x + 0.044715 * x * x * x))
                let d = 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x)
                du[i] = dact[i] * d
            }
        case .swiglu: fatalError("SwiGLU needs the gate")
        }
    }

    /// Mean next-token cross-entropy of one window, forward only (through the training-mode forward).
    public func trainingLoss(tokens: [Int], workspace ws: TrainingWorkspace) throws -> Double {
        try trainingForward(tokens: tokens, workspace: ws)
        let T = tokens.count, P = T - 1, V = config.vocabSize
        let logits = ws.logits.pointer
        let (headIn, hw) = headInput(ws)
        lmHead.gemm(headIn, ldx: hw, m: P, logits, ldy: V, pool: pool)
        var s = 0.0
        for t in 0..<P {
            let row = logits + t * V
            s += Double(sq_logsumexp_f32(row, Int64(V))) - Double(row[tokens[t + 1]])
        }
        return s / Double(P)
    }

    // MARK: - Pieces

    /// RMSNorm: out = x * r * w per row, r = 1 / sqrt(mean(x^2) + eps) kept in `rms`. LayerNorm:
    /// out = (x - mu) * r * w + b, r = 1 / sqrt(var(x) + eps), with mu kept in `mean` and r in `rms`.
    func normForward(_ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>?,
                     _ out: UnsafeMutablePointer<Float>, _ rms: UnsafeMutablePointer<Float>, _ mean: UnsafeMutablePointer<Float>,
                     _ T: Int, _ n: Int) {
        let eps = Float(config.rmsNormEps)
        let layerNorm = config.normKind == .layerNorm
        pool.parallelFor(T, minBlock: 16) { r, _ in
            for t in r {
                let row = x + t * n, o = out + t * n
                if layerNorm {
                    var mu: Float = 0
                    for i in 0..<n { mu += row[i] }
                    mu /= Float(n)
                    var v: Float = 0
                    for i in 0..<n { let d = row[i] - mu; v += d * d }
                    let scale = 1 / (v / Float(n) + eps).squareRoot()
                    rms[t] = scale
                    mean[t] = mu
                    for i in 0..<n { o[i] = (row[i] - mu) * scale * w[i] + (b?[i] ?? 0) }
                } else {
                    let ss = sq_dot_f32(row, row, Int64(n))
                    let scale = 1 / (ss / Float(n) + eps).squareRoot()
                    rms[t] = scale
                    for i in 0..<n { o[i] = row[i] * scale * w[i] }
                }
            }
        }
    }

    /// dx += (d norm(x) / dx)^T dy. RMSNorm: dx_i += r w_i dy_i - x_i r^3 / n * sum_j dy_j w_j x_j.
    /// LayerNorm (xh = (x - mu) r, g = dy w): dx_i += r (g_i - mean(g) - xh_i mean(g xh)).
    func normBackward(_ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>, _ rms: UnsafeMutablePointer<Float>,
                      _ mean: UnsafeMutablePointer<Float>, _ dy: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                      _ T: Int, _ n: Int) {
        let layerNorm = config.normKind == .layerNorm
        pool.parallelFor(T, minBlock: 16) { r, _ in
            for t in r {
                let xr = x + t * n, dyr = dy + t * n, dxr = dx + t * n
                let s = rms[t]
                if layerNorm {
                    let mu = mean[t]
                    var sg: Float = 0, sgx: Float = 0
                    for i in 0..<n { let g = dyr[i] * w[i]; sg += g; sgx += g * (xr[i] - mu) * s }
                    let mg = sg / Float(n), mgx = sgx / Float(n)
                    for i in 0..<n { dxr[i] += s * (dyr[i] * w[i] - mg - (xr[i] - mu) * s * mgx) }
                } else {
                    var dot: Float = 0
                    for i in 0..<n { dot += dyr[i] * w[i] * xr[i] }
                    let c = dot * s * s * s / Float(n)
                    for i in 0..<n { dxr[i] += s * w[i] * dyr[i] - xr[i] * c }
                }
            }
        }
    }

    func addRowVector(_ y: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        for t in 0..<T { let r = y + t * n; for i in 0..<n { r[i] += b[i] } }
    }

    /// Rotates pairs by +angle (forward) or -angle (`inverse`, the backward of the rotation), in the model's layout.
    func rope(_ v: UnsafeMutablePointer<Float>, _ T: Int, _ heads: Int, _ ws: TrainingWorkspace, inverse: Bool) {
        let hd = config.headDim, half = hd / 2
        let interleaved = ropeLayout == .interleaved
        let sign: Float = inverse ? -1 : 1
        let cosT = ws.cosT.pointer, sinT = ws.sinT.pointer
        pool.parallelFor(T, minBlock: 32) { r, _ in
            for t in r {
                let cs = cosT + t * half, sn = sinT + t * half
                for hh in 0..<heads {
                    let p = v + (t * heads + hh) * hd
                    for i in 0..<half {
                        let ia = interleaved ? 2 * i : i, ib = interleaved ? 2 * i + 1 : i + half
                        let a = p[ia], b = p[ib], c = cs[i], s = sign * sn[i]
                        p[ia] = a * c - b * s
                        p[ib] = a * s + b * c
                    }
                }
            }
        }
    }

    /// Scaled, masked (causal, sliding window) and softmaxed scores of queries [t0, t0+m) of `head`
    /// against keys [0, S) into `p` [m, S].
    func attentionProbabilities(_ ws: TrainingWorkspace, _ li: Int, head: Int, t0: Int, m: Int, S: Int,
                                _ p: UnsafeMutablePointer<Float>) {
        let c = config
        let hd = c.headDim, qd = c.numHeads * hd, kvd = c.numKVHeads * hd
        let kvh = head / (c.numHeads / c.numKVHeads)
        let scale = 1 / Float(hd).squareRoot()
        sq_gemm_f32(ws.q[li].pointer + t0 * qd + head * hd, Int64(qd), ws.k[li].pointer + kvh * hd, Int64(kvd),
                    p, Int64(S), Int64(m), Int64(hd), 0, Int64(S))
        let window = c.slidingWindow(forLayer: li)
        for i in 0..<m {
            let row = p + i * S
            let pos = t0 + i
            let lo = window.map { max(0, pos - $0 + 1) } ?? 0
            for j in 0..<S { row[j] = (j > pos || j < lo) ? -Float.infinity : row[j] * scale }
            _ = sq_softmax_f32(row, Int64(S))
        }
    }

    /// att[t, head] = softmax(q k^T / sqrt(d)) v, per head, over stored (RoPE'd) q, k and v.
    func attentionForward(_ ws: TrainingWorkspace, _ li: Int, _ T: Int) {
        let c = config
        let hd = c.headDim, nh = c.numHeads, qd = nh * hd, kvd = c.numKVHeads * hd, group = nh / c.numKVHeads
        let qb = TrainingWorkspace.queryBlock
        let nBlocks = (T + qb - 1) / qb
        ws.ensureAttentionScratch(threads: pool.threadCount)
        let v = ws.v[li].pointer, att = ws.att[li].pointer
        pool.run(tasks: nh * nBlocks) { task, thread in
            let head = task / nBlocks, blk = task % nBlocks
            let t0 = blk * qb, t1 = min(T, t0 + qb), m = t1 - t0, S = t1
            let p = ws.attScratch[thread].pointer
            self.attentionProbabilities(ws, li, head: head, t0: t0, m: m, S: S, p)
            let kvh = head / group
            BackwardKernels.gemm(p, sai: S, sap: 1, v + kvh * hd, ldb: kvd, att + t0 * qd + head * hd, ldo: qd,
                                 m: m, k: S, n: hd, mode: .store, pool: nil)
        }
    }

    /// From dAtt (gradient of the attention output) to dq, dk (after RoPE) and dv.
    func attentionBackward(_ ws: TrainingWorkspace, _ li: Int, _ T: Int) {
        let c = config
        let hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads, qd = nh * hd, kvd = nkv * hd, group = nh / nkv
        let qb = TrainingWorkspace.queryBlock
        let nBlocks = (T + qb - 1) / qb
        let scale = 1 / Float(hd).squareRoot()
        ws.ensureAttentionScratch(threads: pool.threadCount)
        let q = ws.q[li].pointer, k = ws.k[li].pointer, v = ws.v[li].pointer
        let dAtt = ws.dAtt.pointer, dq = ws.dq.pointer, dKh = ws.dKh.pointer, dVh = ws.dVh.pointer
        let maxT = ws.maxTokens
        pool.run(tasks: nh) { head, thread in
            let kvh = head / group
            let dKp = dKh + head * maxT * hd, dVp = dVh + head * maxT * hd
            dKp.update(repeating: 0, count: T * hd)
            dVp.update(repeating: 0, count: T * hd)
            let p = ws.attScratch[thread].pointer, dp = p + qb * maxT
            for blk in 0..<nBlocks {
                let t0 = blk * qb, t1 = min(T, t0 + qb), m = t1 - t0, S = t1
                self.attentionProbabilities(ws, li, head: head, t0: t0, m: m, S: S, p)
                let dO = dAtt + t0 * qd + head * hd
                // dP = dO V^T
                sq_gemm_f32(dO, Int64(qd), v + kvh * hd, Int64(kvd), dp, Int64(S), Int64(m), Int64(hd), 0, Int64(S))
                // dS = P (dP - rowsum(P dP)) * scale
                for i in 0..<m {
                    let pr = p + i * S, dr = dp + i * S
                    let d = sq_dot_f32(pr, dr, Int64(S))
                    for j in 0..<S { dr[j] = pr[j] * (dr[j] - d) * scale }
                }
                // dQ = dS K ; dK += dS^T Q ; dV += P^T dO
                BackwardKernels.gemm(dp, sai: S, sap: 1, k + kvh * hd, ldb: kvd, dq + t0 * qd + head * hd, ldo: qd,
                                     m: m, k: S, n: hd, mode: .store, pool: nil)
                BackwardKernels.gemm(dp, sai: 1, sap: S, q + t0 * qd + head * hd, ldb: qd, dKp, ldo: hd,
                                     m: S, k: m, n: hd, mode: .add, pool: nil)
                BackwardKernels.gemm(p, sai: 1, sap: S, dO, ldb: qd, dVp, ldo: hd,
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
