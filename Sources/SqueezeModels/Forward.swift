import Foundation
import CSqueezeKernels
import SqueezeCore
import SqueezeKernels

/// The keys and values of one sequence, for every layer.
/// Invariant: positions 0..<length are filled. F32 keys are stored head-major, [kvHeads, capacity,
/// headDim], so each KV head's keys are one contiguous stream (interleaved [position, kvDim] rows
/// made the decode scores a strided read at about half the speed). F16 keys are stored in tiles of
/// `SQ_KT` (32) positions per KV head, each tile dimension-major ([kvHeads, tiles, headDim, 32], see
/// sq_attention.h): decode scores then take eight keys per vector, with no horizontal sums, for all
/// the query heads of a KV head at once. V is stored transposed, [kvDim, capacity], so attention's
/// weighted sum runs over contiguous rows. Q8 caches store keys (in the same tiles) and values as
/// int8 with one F32 scale per position and KV head (`sq_attention.h`).
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public let kvDim: Int
    /// How keys and values are stored.
    public let precision: KVCachePrecision
    /// Number of positions filled.
    public internal(set) var length = 0
    /// F32 (empty otherwise): keys [kvHeads, capacity, headDim] and values transposed [kvDim,
    /// capacity] per layer.
    let k: [AlignedBuffer<Float>]
    let vt: [AlignedBuffer<Float>]
    /// F16 (IEEE half bits; empty otherwise): keys in tiles [kvHeads, keyTiles, headDim, SQ_KT] and
    /// values transposed [kvDim, capacity].
    let k16: [AlignedBuffer<UInt16>]
    let vt16: [AlignedBuffer<UInt16>]
    /// Q8 (empty otherwise): keys in tiles as `k16`, values transposed as `vt16`, and their scales
    /// [kvHeads, keyTiles * SQ_KT] and [kvHeads, capacity].
    let k8: [AlignedBuffer<Int8>]
    let vt8: [AlignedBuffer<Int8>]
    let ks: [AlignedBuffer<Float>]
    let vs: [AlignedBuffer<Float>]
    /// Tiles of `SQ_KT` positions per KV head in `k16` and `k8` (capacity rounded up).
    let keyTiles: Int

    /// Allocates a cache for `capacity` positions of `config`'s model.
    public init(config: ModelConfig, capacity: Int, precision: KVCachePrecision = .f32) {
        self.capacity = capacity
        self.precision = precision
        kvDim = config.numKVHeads * config.headDim
        let n = capacity * kvDim, layers = config.numLayers
        keyTiles = (capacity + Int(SQ_KT) - 1) / Int(SQ_KT)
        let tiled = config.numKVHeads * keyTiles * Int(SQ_KT) * config.headDim
        func buffers<T>(_ count: Int, _ used: Bool) -> [AlignedBuffer<T>] {
            used ? (0..<layers).map { _ in AlignedBuffer<T>(count: count) } : []
        }
        k = buffers(n, precision == .f32)
        vt = buffers(n, precision == .f32)
        k16 = buffers(tiled, precision == .f16)
        vt16 = buffers(n, precision == .f16)
        k8 = buffers(tiled, precision == .q8)
        vt8 = buffers(n, precision == .q8)
        ks = buffers(config.numKVHeads * keyTiles * Int(SQ_KT), precision == .q8)
        vs = buffers(config.numKVHeads * capacity, precision == .q8)
    }

    /// Forgets all positions (the memory is kept).
    public func reset() { length = 0 }
    /// Drops positions from `n` on (keeps the first n).
    public func truncate(to n: Int) { length = min(length, max(0, n)) }
    /// Bytes held.
    public var byteCount: Int {
        (k + vt + ks + vs).reduce(0) { $0 + $1.count * 4 } + (k16 + vt16).reduce(0) { $0 + $1.count * 2 }
            + (k8 + vt8).reduce(0) { $0 + $1.count }
    }
}

/// How a `KVCache` stores keys and values.
public enum KVCachePrecision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// 32-bit floats: the activations as computed.
    case f32
    /// IEEE half precision (llama.cpp's default): half the memory and half the bytes that attention
    /// reads per token; keys and values are rounded once, when appended.
    case f16
    /// 8-bit integers with one F32 scale per key or value vector (per position and KV head), as
    /// llama.cpp's q8_0 cache types: about a quarter of F32's memory and attention reads.
    case q8

    /// Bytes per stored value (scales not included).
    public var bytes: Int { self == .f32 ? 4 : (self == .f16 ? 2 : 1) }
    public var description: String { rawValue }
}

/// Which positions' logits a forward pass computes.
public enum LogitsMode: Sendable {
    case none, last, all
}

/// Scratch buffers for forward passes of up to `maxTokens` tokens at once. Reused across calls:
/// no allocation per token. One workspace serves one forward pass at a time.
public final class Workspace: @unchecked Sendable {
    public let maxTokens: Int
    let x, xn, q, k, v, att, gate, up: AlignedBuffer<Float>
    /// Token embeddings before project_in and the final state after project_out (OPT-350m style).
    let proj: AlignedBuffer<Float>
    /// Logits: [maxTokens, vocab] for `.all`, the first row for `.last`.
    public let logits: AlignedBuffer<Float>
    let maxLogitRows: Int
    let cosT, sinT: AlignedBuffer<Float>
    /// RoPE inverse frequencies of the sequence being filled in (dynamic NTK scaling depends on its length).
    let freqs: AlignedBuffer<Float>
    /// Per-thread attention scratch (scores for a block of queries).
    var scores: [AlignedBuffer<Float>] = []
    var scoresCapacity = 0
    /// Per-thread F32 copy of one KV head's F16 or Q8 keys (then of its Q8 values), one row per
    /// dimension, for the prefill products.
    var keyScratch: [AlignedBuffer<Float>] = []
    var keyScratchCapacity = 0
    /// The current pass's sequences, reused from pass to pass.
    var segments: [DecoderModel.Segment] = []
    static let queryBlock = 64

    /// Allocates buffers for `model` and chunks of up to `maxTokens` tokens; `logitRows` rows of logits.
    public init(model: DecoderModel, maxTokens: Int, logitRows: Int? = nil) {
        let c = model.config
        self.maxTokens = maxTokens
        let qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        x = AlignedBuffer(count: maxTokens * c.hiddenSize)
        xn = AlignedBuffer(count: maxTokens * max(c.hiddenSize, qd))
        q = AlignedBuffer(count: maxTokens * qd)
        k = AlignedBuffer(count: maxTokens * kvd)
        v = AlignedBuffer(count: maxTokens * kvd)
        att = AlignedBuffer(count: maxTokens * qd)
        gate = AlignedBuffer(count: maxTokens * c.intermediateSize)
        up = AlignedBuffer(count: maxTokens * c.intermediateSize)
        proj = AlignedBuffer(count: c.embeddingDim == nil ? 1 : maxTokens * c.embeddingWidth)
        maxLogitRows = logitRows ?? maxTokens
        logits = AlignedBuffer(count: maxLogitRows * c.vocabSize)
        cosT = AlignedBuffer(count: maxTokens * c.headDim / 2)
        sinT = AlignedBuffer(count: maxTokens * c.headDim / 2)
        freqs = AlignedBuffer(count: max(1, c.headDim / 2))
    }

    /// Makes the per-thread score and key scratch hold `context` positions. They grow geometrically
    /// (at least doubling), so decoding, whose context grows by one position per token, reallocates
    /// them O(log n) times instead of on every token.
    func ensureScores(context: Int, threads: Int, headDim: Int) {
        let need = Workspace.queryBlock * context
        if scoresCapacity < need || scores.count < threads {
            let cap = max(need, 2 * scoresCapacity)
            scores = (0..<threads).map { _ in AlignedBuffer<Float>(count: cap) }
            scoresCapacity = cap
        }
        let keys = headDim * (context + Int(SQ_KT))
        if keyScratchCapacity < keys || keyScratch.count < threads {
            let cap = max(keys, 2 * keyScratchCapacity)
            keyScratch = (0..<threads).map { _ in AlignedBuffer<Float>(count: cap) }
            keyScratchCapacity = cap
        }
    }
}

extension DecoderModel {
    /// Runs `tokens` (positions cache.length ..< cache.length + count) through the model, appending
    /// their keys and values to `cache`. Logits land in `ws.logits` ([rows, vocab]): for `.last` the
    /// last token's in row 0, for `.all` one row per token. Inputs longer than the workspace are
    /// processed in chunks (then `.all` needs logit rows for every token).
    public func forward(tokens: [Int], cache: KVCache, workspace ws: Workspace, logits mode: LogitsMode) throws {
        guard !tokens.isEmpty else { return }
        guard cache.length + tokens.count <= cache.capacity else {
            throw ModelError.contextOverflow(requested: cache.length + tokens.count, limit: cache.capacity)
        }
        if config.learnedPositionOffset != nil && cache.length + tokens.count > config.maxPositionEmbeddings {
            // Learned position tables end there.
            throw ModelError.contextOverflow(requested: cache.length + tokens.count, limit: config.maxPositionEmbeddings)
        }
        if mode == .all && tokens.count > ws.maxLogitRows {
            throw ModelError.invalidArgument("workspace holds \(ws.maxLogitRows) rows of logits, \(tokens.count) requested")
        }
        for t in tokens where t < 0 || t >= config.vocabSize {
            throw ModelError.invalidArgument("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
        }
        var start = 0
        while start < tokens.count {
            let n = min(ws.maxTokens, tokens.count - start)
            let chunk = tokens[start..<(start + n)]
            let isLast = start + n == tokens.count
            let m: LogitsMode = mode == .all ? .all : (isLast ? mode : .none)
            forwardChunk(chunk, cache: cache, ws: ws, logits: m, logitRowOffset: mode == .all ? start : 0)
            start += n
        }
    }

    /// Runs one token for each of several sequences at once (batched decoding): token i is appended
    /// to `caches[i]` at its current length. Logits land in `ws.logits`, one row per sequence.
    /// Linear layers run as one matrix-matrix product over the batch, so each weight tile is read once.
    public func forwardBatch(tokens: [Int], caches: [KVCache], workspace ws: Workspace) throws {
        guard tokens.count == caches.count, !tokens.isEmpty else {
            throw ModelError.invalidArgument("forwardBatch: \(tokens.count) tokens for \(caches.count) caches")
        }
        guard tokens.count <= ws.maxTokens, tokens.count <= ws.maxLogitRows else {
            throw ModelError.invalidArgument("batch of \(tokens.count) exceeds the workspace (\(ws.maxTokens) tokens)")
        }
        for i in caches.indices {
            for j in caches.indices where j > i && caches[i] === caches[j] {
                throw ModelError.invalidArgument("forwardBatch: each sequence needs its own cache")
            }
        }
        for (t, c) in zip(tokens, caches) {
            guard t >= 0 && t < config.vocabSize else {
                throw ModelError.invalidArgument("token id \(t) is outside the vocabulary (0..<\(config.vocabSize))")
            }
            guard c.length < c.capacity else { throw ModelError.contextOverflow(requested: c.length + 1, limit: c.capacity) }
            if config.learnedPositionOffset != nil && c.length >= config.maxPositionEmbeddings {
                throw ModelError.contextOverflow(requested: c.length + 1, limit: config.maxPositionEmbeddings)
            }
        }
        // The workspace's segment list is reused from step to step (no allocation per decoded token).
        ws.segments.removeAll(keepingCapacity: true)
        for (i, c) in caches.enumerated() { ws.segments.append(Segment(cache: c, start: i, count: 1)) }
        let segs = ws.segments
        run(tokens[...], segments: segs, ws: ws, logits: .all, logitRowOffset: 0)
    }

    /// A run of consecutive tokens of one sequence inside a forward pass.
    struct Segment {
        let cache: KVCache
        /// Index of the segment's first token in the pass.
        let start: Int
        let count: Int
    }

    func forwardChunk(_ tokens: ArraySlice<Int>, cache: KVCache, ws: Workspace, logits mode: LogitsMode, logitRowOffset: Int) {
        ws.segments.removeAll(keepingCapacity: true)
        ws.segments.append(Segment(cache: cache, start: 0, count: tokens.count))
        run(tokens, segments: ws.segments, ws: ws, logits: mode,
            logitRowOffset: logitRowOffset)
    }

    func run(_ tokens: ArraySlice<Int>, segments: [Segment], ws: Workspace, logits mode: LogitsMode, logitRowOffset: Int) {
        let c = config
        let T = tokens.count
        let h = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads
        let qd = nh * hd, kvd = nkv * hd, ffn = c.intermediateSize
        let x = ws.x.pointer, xn = ws.xn.pointer

        // Embeddings (through project_in when narrower), plus learned positions.
        if let pin = projectIn {
            let ew = c.embeddingWidth
            for (t, id) in tokens.enumerated() { embedding.convertToFloat(into: ws.proj.pointer + t * ew, offset: id * ew, count: ew) }
            pin.gemm(ws.proj.pointer, ldx: ew, m: T, x, ldy: h, pool: pool)
        } else {
            for (t, id) in tokens.enumerated() { embedding.convertToFloat(into: x + t * h, offset: id * h, count: h) }
        }
        var maxContext = 0
        for seg in segments { maxContext = max(maxContext, seg.cache.length + seg.count) }
        if let pe = positionEmbedding, let off = c.learnedPositionOffset {
            for seg in segments {
                for i in 0..<seg.count {
                    let row = pe.pointer + (seg.cache.length + i + off) * h, xr = x + (seg.start + i) * h
                    for j in 0..<h { xr[j] += row[j] }
                }
            }
        } else {
            // RoPE tables: each token's absolute position in its sequence.
            let half = hd / 2
            for seg in segments {
                let p0 = seg.cache.length
                let freqs = ws.freqs.pointer
                frequencies(forLength: p0 + seg.count, into: freqs)
                for i in 0..<seg.count {
                    let t = seg.start + i
                    let pos = Float(p0 + i)
                    for j in 0..<half {
                        let a = pos * freqs[j]
                        ws.cosT[t * half + j] = Float(cos(Double(a)))
                        ws.sinT[t * half + j] = Float(sin(Double(a)))
                    }
                }
            }
        }
        ws.ensureScores(context: maxContext, threads: pool.threadCount, headDim: c.headDim)
        let rope = usesRope, pre = c.preNorm

        for (li, layer) in layers.enumerated() {
            // Attention block (pre-LN: x + attn(norm(x)); post-LN: norm(x + attn(x))).
            let attnIn: UnsafeMutablePointer<Float>
            if pre { norm(x, layer.attnNorm.pointer, layer.attnNormBias?.pointer, xn, T, h); attnIn = xn } else { attnIn = x }
            layer.q.gemm(attnIn, ldx: h, m: T, ws.q.pointer, ldy: qd, pool: pool)
            layer.k.gemm(attnIn, ldx: h, m: T, ws.k.pointer, ldy: kvd, pool: pool)
            layer.v.gemm(attnIn, ldx: h, m: T, ws.v.pointer, ldy: kvd, pool: pool)
            if let b = layer.qBias { addBias(ws.q.pointer, b.pointer, T, qd) }
            if let b = layer.kBias { addBias(ws.k.pointer, b.pointer, T, kvd) }
            if let b = layer.vBias { addBias(ws.v.pointer, b.pointer, T, kvd) }
            if rope {
                applyRope(ws.q.pointer, T, nh, ws)
                applyRope(ws.k.pointer, T, nkv, ws)
            }
            // Append K and V (V transposed) to each sequence's cache: the sequences of a batch in
            // parallel (each has its own cache; the transposed value stores miss the cache at every
            // dimension, about 2% of a batched step when serial).
            if segments.count > 1 {
                segments.withUnsafeBufferPointer { segs in
                    // A job on the stack and a C task function: no allocation per layer.
                    var job = StoreJob(model: .passUnretained(self), ws: .passUnretained(ws), segments: segs, layer: li)
                    withUnsafeMutablePointer(to: &job) {
                        pool.run(tasks: segs.count, context: $0) { ctx, task, _ in
                            let j = ctx!.assumingMemoryBound(to: StoreJob.self).pointee
                            j.model._withUnsafeGuaranteedRef { m in
                                j.ws._withUnsafeGuaranteedRef { m.storeKV(j.segments[Int(task)], layer: j.layer, ws: $0) }
                            }
                        }
                    }
                }
            } else {
                for seg in segments { storeKV(seg, layer: li, ws: ws) }
            }
            attention(ws: ws, segments: segments, layer: li)
            layer.o.gemm(ws.att.pointer, ldx: qd, m: T, xn, ldy: h, pool: pool)
            if let b = layer.oBias { addBias(xn, b.pointer, T, h) }
            addInPlace(x, xn, T * h)
            if !pre { norm(x, layer.attnNorm.pointer, layer.attnNormBias?.pointer, x, T, h) }

            // MLP block.
            let ffnIn: UnsafeMutablePointer<Float>
            if pre { norm(x, layer.ffnNorm.pointer, layer.ffnNormBias?.pointer, xn, T, h); ffnIn = xn } else { ffnIn = x }
            let g = ws.gate.pointer, u = ws.up.pointer
            if let gate = layer.gateOp {
                gate.gemm(ffnIn, ldx: h, m: T, g, ldy: ffn, pool: pool)
                layer.up.gemm(ffnIn, ldx: h, m: T, u, ldy: ffn, pool: pool)
                if let b = layer.gateBias { addBias(g, b.pointer, T, ffn) }
                if let b = layer.upBias { addBias(u, b.pointer, T, ffn) }
                let n = T * ffn, block = pool.blockLength(n, minBlock: 8192)
                var job = sq_silu_mul_job(g: g, u: u, out: g, n: Int64(n), block: Int64(block))
                withUnsafeMutablePointer(to: &job) { pool.run(tasks: (n + block - 1) / block, context: $0, sq_silu_mul_task) }
            } else {
                layer.up.gemm(ffnIn, ldx: h, m: T, u, ldy: ffn, pool: pool)
                if let b = layer.upBias { addBias(u, b.pointer, T, ffn) }
                DecoderModel.activate(c.activation, u, g, T * ffn)
            }
            layer.down.gemm(g, ldx: ffn, m: T, xn, ldy: h, pool: pool)
            if let b = layer.downBias { addBias(xn, b.pointer, T, h) }
            addInPlace(x, xn, T * h)
            if !pre { norm(x, layer.ffnNorm.pointer, layer.ffnNormBias?.pointer, x, T, h) }
        }
        for seg in segments { seg.cache.length += seg.count }

        let V = c.vocabSize
        switch mode {
        case .none: break
        case .last:
            finalState(x + (T - 1) * h, xn, 1, ws)
            lmHead.gemv(projectOut == nil ? xn : ws.proj.pointer, ws.logits.pointer, pool: pool)
        case .all:
            finalState(x, xn, T, ws)
            if projectOut == nil {
                lmHead.gemm(xn, ldx: h, m: T, ws.logits.pointer + logitRowOffset * V, ldy: V, pool: pool)
            } else {
                lmHead.gemm(ws.proj.pointer, ldx: c.embeddingWidth, m: T, ws.logits.pointer + logitRowOffset * V, ldy: V, pool: pool)
            }
        }
    }

    /// Where the parallel K/V appends of a batch find their inputs (on the caller's stack for the run).
    struct StoreJob {
        let model: Unmanaged<DecoderModel>
        let ws: Unmanaged<Workspace>
        let segments: UnsafeBufferPointer<Segment>
        let layer: Int
    }

    /// Appends the keys and values of `seg`'s tokens (rows seg.start ..< seg.start + seg.count of
    /// `ws.k` and `ws.v`) to its cache at layer `li`, at positions from the cache's current length.
    func storeKV(_ seg: Segment, layer li: Int, ws: Workspace) {
        let c = config
        let hd = c.headDim, nkv = c.numKVHeads, kvd = nkv * hd
        let p0 = seg.cache.length, cap = seg.cache.capacity
        let kSrc = ws.k.pointer + seg.start * kvd
        switch seg.cache.precision {
        case .f32:
            let kc = seg.cache.k[li].pointer, vt = seg.cache.vt[li].pointer
            for i in 0..<seg.count {
                for kvh in 0..<nkv {
                    (kc + (kvh * cap + p0 + i) * hd).update(from: kSrc + i * kvd + kvh * hd, count: hd)
                }
            }
            for i in 0..<seg.count {
                let vrow = ws.v.pointer + (seg.start + i) * kvd
                for d in 0..<kvd { vt[d * cap + p0 + i] = vrow[d] }
            }
        case .f16:
            let kc = seg.cache.k16[li].pointer, vt = seg.cache.vt16[li].pointer
            let headStride = seg.cache.keyTiles * Int(SQ_KT) * hd
            for i in 0..<seg.count {
                for kvh in 0..<nkv {
                    sq_attn_store_key_kt16(kSrc + i * kvd + kvh * hd, Int64(hd), Int64(p0 + i), kc + kvh * headStride)
                }
            }
            // Each value row converted at once (F16C where available), then stored down its
            // column of the transposed cache.
            withUnsafeTemporaryAllocation(of: UInt16.self, capacity: kvd) { half in
                let h = half.baseAddress!
                for i in 0..<seg.count {
                    sq_f32_to_f16(ws.v.pointer + (seg.start + i) * kvd, h, Int64(kvd))
                    for d in 0..<kvd { vt[d * cap + p0 + i] = h[d] }
                }
            }
        case .q8:
            let kc = seg.cache.k8[li].pointer, vt = seg.cache.vt8[li].pointer
            let ks = seg.cache.ks[li].pointer, vs = seg.cache.vs[li].pointer
            let tiledPositions = seg.cache.keyTiles * Int(SQ_KT)
            for i in 0..<seg.count {
                for kvh in 0..<nkv {
                    sq_attn_store_key_kt8(kSrc + i * kvd + kvh * hd, Int64(hd), Int64(p0 + i), kc + kvh * tiledPositions * hd,
                                          ks + kvh * tiledPositions)
                    sq_attn_store_value_q8(ws.v.pointer + (seg.start + i) * kvd + kvh * hd, Int64(hd), Int64(p0 + i),
                                           vt + kvh * hd * cap, Int64(cap), vs + kvh * cap)
                }
            }
        }
    }

    /// The LM head's input for T rows of the last block's output: the final norm (or a copy), then
    /// project_out into `ws.proj` when the model has one.
    func finalState(_ x: UnsafeMutablePointer<Float>, _ xn: UnsafeMutablePointer<Float>, _ T: Int, _ ws: Workspace) {
        let h = config.hiddenSize
        if config.hasFinalNorm { norm(x, norm.pointer, normBias?.pointer, xn, T, h) } else { xn.update(from: x, count: T * h) }
        if let po = projectOut { po.gemm(xn, ldx: h, m: T, ws.proj.pointer, ldy: config.embeddingWidth, pool: pool) }
    }

    /// out = act(u) elementwise for the non-gated MLPs.
    static func activate(_ a: MLPActivation, _ u: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        switch a {
        case .relu: for i in 0..<n { out[i] = max(u[i], 0) }
        case .geluTanh:
            let c: Float = 0.7978845608028654 // sqrt(2 / pi)
            for i in 0..<n {
                let x = u[i]
                out[i] = 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
            }
        case .swiglu: fatalError("SwiGLU needs the gate")
        }
    }

    /// The block's norm (RMSNorm or LayerNorm with `bias`) of T rows; `out` may be `x`.
    @inline(__always)
    func norm(_ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>?,
              _ out: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        if config.normKind == .rms { rmsNorm(x, w, out, T, n); return }
        let eps = Float(config.rmsNormEps)
        for t in 0..<T {
            let row = x + t * n, o = out + t * n
            var mean: Float = 0
            for i in 0..<n { mean += row[i] }
            mean /= Float(n)
            var v: Float = 0
            for i in 0..<n { let d = row[i] - mean; v += d * d }
            let r = 1 / (v / Float(n) + eps).squareRoot()
            if let b { for i in 0..<n { o[i] = (row[i] - mean) * r * w[i] + b[i] } }
            else { for i in 0..<n { o[i] = (row[i] - mean) * r * w[i] } }
        }
    }

    func rmsNorm(_ x: UnsafeMutablePointer<Float>, _ w: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        let eps = Float(config.rmsNormEps)
        for t in 0..<T {
            let row = x + t * n, o = out + t * n
            let ss = sq_dot_f32(row, row, Int64(n))
            let scale = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { o[i] = row[i] * scale * w[i] }
        }
    }

    func addBias(_ y: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, _ T: Int, _ n: Int) {
        for t in 0..<T { let r = y + t * n; for i in 0..<n { r[i] += b[i] } }
    }

    func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }

    func applyRope(_ v: UnsafeMutablePointer<Float>, _ T: Int, _ heads: Int, _ ws: Workspace) {
        let hd = config.headDim, half = hd / 2
        let interleaved = ropeLayout == .interleaved
        for t in 0..<T {
            let cs = ws.cosT.pointer + t * half, sn = ws.sinT.pointer + t * half
            for hh in 0..<heads {
                let p = v + (t * heads + hh) * hd
                if interleaved {
                    for i in 0..<half {
                        let a = p[2 * i], b = p[2 * i + 1]
                        p[2 * i] = a * cs[i] - b * sn[i]
                        p[2 * i + 1] = a * sn[i] + b * cs[i]
                    }
                } else {
                    for i in 0..<half {
                        let a = p[i], b = p[i + half]
                        p[i] = a * cs[i] - b * sn[i]
                        p[i + half] = a * sn[i] + b * cs[i]
                    }
                }
            }
        }
    }

    /// Causal grouped-query attention of each segment's new queries against its cache
    /// (positions 0..<length+count; the new keys are already appended).
    func attention(ws: Workspace, segments: [Segment], layer li: Int) {
        let c = config
        let nh = c.numHeads, group = c.numHeads / c.numKVHeads
        let qb = Workspace.queryBlock
        let window = c.slidingWindow(forLayer: li)
        // Tasks: (segment, chunk of query heads, query block), enumerated arithmetically (no allocation
        // per pass); blocks past a segment's end return at once. Prefill (several query blocks): one
        // head per task, many small tasks to balance. Decoding (one query per sequence): with a
        // sequence per thread or more (batched), a chunk is the query heads of one KV head, so each
        // task reads its keys and values once and reuses them from cache; with one sequence, the heads
        // are cut into one contiguous chunk per thread, so the threads rarely read the same KV head.
        let maxBlocks = (segments.reduce(0) { max($0, $1.count) } + qb - 1) / qb
        let threads = min(pool.defaultThreads, pool.threadCount)
        let headsPerTask = maxBlocks > 1 ? 1 : (segments.count >= threads ? group : (nh + threads - 1) / threads)
        let chunks = (nh + headsPerTask - 1) / headsPerTask
        let perSegment = chunks * maxBlocks
        let plan = AttentionPlan(layer: li, window: window, maxBlocks: maxBlocks, headsPerTask: headsPerTask,
                                 chunks: chunks, perSegment: perSegment)
        // Dispatched through a job on the stack and a C task function: a Swift closure handed to the
        // pool would need a heap-allocated context on every call (30 per token).
        segments.withUnsafeBufferPointer { segs in
            var job = AttentionJob(model: .passUnretained(self), ws: .passUnretained(ws), segments: segs, plan: plan)
            withUnsafeMutablePointer(to: &job) {
                pool.run(tasks: segs.count * perSegment, context: $0) { ctx, task, thread in
                    let j = ctx!.assumingMemoryBound(to: AttentionJob.self)
                    j.pointee.model._withUnsafeGuaranteedRef { $0.attentionTask(Int(task), thread: Int(thread), job: j.pointee) }
                }
            }
        }
    }

    /// Where `attention`'s tasks find their inputs (kept on the caller's stack for the run).
    struct AttentionJob {
        let model: Unmanaged<DecoderModel>
        let ws: Unmanaged<Workspace>
        let segments: UnsafeBufferPointer<Segment>
        let plan: AttentionPlan
    }

    /// How `attention` cuts a layer's work into tasks (see there).
    struct AttentionPlan {
        let layer: Int
        let window: Int?
        let maxBlocks: Int
        let headsPerTask: Int
        let chunks: Int
        let perSegment: Int
    }

    /// Attention task `ti` of `attention`: one segment, one chunk of query heads, one query block.
    func attentionTask(_ ti: Int, thread: Int, job: AttentionJob) {
        job.ws._withUnsafeGuaranteedRef { ws in
            let c = config
            let hd = c.headDim, nh = c.numHeads, group = c.numHeads / c.numKVHeads
            let qd = nh * hd
            let qb = Workspace.queryBlock
            let scale = 1 / Float(hd).squareRoot()
            let segments = job.segments, plan = job.plan, li = plan.layer, window = plan.window
            let perSegment = plan.perSegment, chunks = plan.chunks, maxBlocks = plan.maxBlocks
            let headsPerTask = plan.headsPerTask
        let si = ti / perSegment, rest = ti % perSegment
        let seg = segments[si]
        // Later query blocks see more keys: they go first, so the short tasks fill in at the end.
        let t0 = (maxBlocks - 1 - rest / chunks) * qb
        if t0 >= seg.count { return }
        let chunk = rest % chunks
        let heads = (chunk * headsPerTask)..<min(nh, (chunk + 1) * headsPerTask)
        let t1 = min(seg.count, t0 + qb), m = t1 - t0
        if seg.cache.precision != .f32 && m <= DecoderModel.groupedQueryLimit {
            groupedAttention(ws: ws, seg: seg, layer: li, heads: heads, t0: t0, t1: t1, window: window, thread: thread)
            return
        }
        for head in heads {
            let task = (seg: si, head: head, t0: t0, t1: t1)
            let kvh = task.head / group
            let cap = seg.cache.capacity
            let precision = seg.cache.precision
            let p0 = seg.cache.length // not yet advanced for this pass
            let S = p0 + task.t1 // keys visible to the block's last query
            // With a sliding window, keys before the block's first query's window are never read:
            // keys [k0, S), so a decode step costs O(window), not O(context).
            let k0 = window.map { max(0, p0 + task.t0 - $0 + 1) } ?? 0
            let n = S - k0
            let sc = ws.scores[thread].pointer
            let qrow = ws.q.pointer + (seg.start + task.t0) * qd + task.head * hd
            // Scale the queries instead of the scores (n per query): each task owns its
            // query rows of its head, and nothing reads ws.q after attention.
            for i in 0..<m {
                let qi = qrow + i * qd
                for d in 0..<hd { qi[d] *= scale }
            }
            let kf = ws.keyScratch[thread].pointer
            let tiledPositions = seg.cache.keyTiles * Int(SQ_KT)
            switch precision {
            case .f32:
                sq_gemm_f32(qrow, Int64(qd), seg.cache.k[li].pointer + (kvh * cap + k0) * hd, Int64(hd), sc, Int64(n),
                            Int64(m), Int64(hd), 0, Int64(n))
            case .f16, .q8:
                // Tiled keys: converted once to F32, dimension-major ([hd, n]), the B operand
                // of the packed product.
                if precision == .f16 {
                    sq_attn_keys_kt16_to_f32(seg.cache.k16[li].pointer + kvh * tiledPositions * hd,
                                             Int64(hd), Int64(k0), Int64(S), kf, Int64(n))
                } else {
                    sq_attn_keys_kt8_to_f32(seg.cache.k8[li].pointer + kvh * tiledPositions * hd,
                                            seg.cache.ks[li].pointer + kvh * tiledPositions, Int64(hd), Int64(k0), Int64(S),
                                            kf, Int64(n))
                }
                sq_gemm_general_f32(qrow, Int64(qd), 1, kf, Int64(n), 1, sc, Int64(n), Int64(m), Int64(hd), 0,
                                    Int64(n), Int32(SQ_BW_STORE))
            }
            for i in 0..<m {
                // Query i sees keys [lo, pos]: scores [a, b) of its row (all of them when decoding).
                let row = sc + i * n
                let pos = p0 + task.t0 + i
                let lo = window.map { max(0, pos - $0 + 1) } ?? 0
                let a = max(0, lo - k0), b = min(n, pos - k0 + 1)
                if a > 0 { row.update(repeating: -Float.infinity, count: a) }
                if b < n { (row + b).update(repeating: -Float.infinity, count: n - b) }
                _ = sq_softmax_f32(row, Int64(n))
            }
            let out = ws.att.pointer + (seg.start + task.t0) * qd + task.head * hd
            switch precision {
            case .f32:
                sq_gemm_f32(sc, Int64(n), seg.cache.vt[li].pointer + kvh * hd * cap + k0, Int64(cap), out, Int64(qd),
                            Int64(m), Int64(n), 0, Int64(hd))
            case .f16:
                sq_gemm_f16(sc, Int64(n), seg.cache.vt16[li].pointer + kvh * hd * cap + k0, Int64(cap), out, Int64(qd),
                            Int64(m), Int64(n), 0, Int64(hd))
            case .q8:
                // The head's values [k0, S) dequantized once (the keys' scratch is free again).
                sq_attn_values_q8_to_f32(seg.cache.vt8[li].pointer + kvh * hd * cap, Int64(cap),
                                         seg.cache.vs[li].pointer + kvh * cap, Int64(hd), Int64(k0), Int64(S), kf, Int64(n))
                sq_gemm_f32(sc, Int64(n), kf, Int64(n), out, Int64(qd), Int64(m), Int64(n), 0, Int64(hd))
            }
        }
        }
    }

    /// Query blocks of at most this many tokens (decoding) over an F16 or Q8 cache take the grouped path.
    static let groupedQueryLimit = 4

    /// Attention of queries [t0, t1) of `seg` for `heads` over an F16 or Q8 cache, one query at a
    /// time, the query heads that share a KV head together: their scores (`sq_attn_scores_kt16/kt8`)
    /// and weighted sums (`sq_attn_pv16/pv8`) read each key and value once, and each query scores
    /// only the keys it sees (no masking).
    func groupedAttention(ws: Workspace, seg: Segment, layer li: Int, heads: Range<Int>, t0: Int, t1: Int,
                          window: Int?, thread: Int) {
        let c = config
        let hd = c.headDim, group = c.numHeads / c.numKVHeads, qd = c.numHeads * hd
        let scale = 1 / Float(hd).squareRoot()
        let p0 = seg.cache.length, cap = seg.cache.capacity
        let q8 = seg.cache.precision == .q8
        let tiledPositions = seg.cache.keyTiles * Int(SQ_KT), headStride = tiledPositions * hd
        let sc = ws.scores[thread].pointer
        for i in 0..<(t1 - t0) {
            let pos = p0 + t0 + i
            let lo = window.map { max(0, pos - $0 + 1) } ?? 0, n = pos + 1 - lo
            let qrow = ws.q.pointer + (seg.start + t0 + i) * qd
            let out = ws.att.pointer + (seg.start + t0 + i) * qd
            var h = heads.lowerBound
            while h < heads.upperBound {
                let kvh = h / group, g = min(heads.upperBound, (kvh + 1) * group) - h
                let q = qrow + h * hd
                for d in 0..<(g * hd) { q[d] *= scale }
                if q8 {
                    sq_attn_scores_kt8(q, Int64(hd), Int64(g), seg.cache.k8[li].pointer + kvh * headStride,
                                       seg.cache.ks[li].pointer + kvh * tiledPositions, Int64(hd), Int64(lo), Int64(pos + 1), sc, Int64(n))
                } else {
                    sq_attn_scores_kt16(q, Int64(hd), Int64(g), seg.cache.k16[li].pointer + kvh * headStride, Int64(hd), Int64(lo),
                                        Int64(pos + 1), sc, Int64(n))
                }
                for r in 0..<g { _ = sq_softmax_f32(sc + r * n, Int64(n)) }
                if q8 {
                    sq_attn_pv8(sc, Int64(n), Int64(g), seg.cache.vt8[li].pointer + kvh * hd * cap + lo, Int64(cap),
                                seg.cache.vs[li].pointer + kvh * cap + lo, Int64(hd), Int64(n), out + h * hd, Int64(hd))
                } else {
                    sq_attn_pv16(sc, Int64(n), Int64(g), seg.cache.vt16[li].pointer + kvh * hd * cap + lo, Int64(cap), Int64(hd),
                                 Int64(n), out + h * hd, Int64(hd))
                }
                h += g
            }
        }
    }
}
