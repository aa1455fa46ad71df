import CSqueezeKernels
import Foundation
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
    /// Number of positions filled.
    public internal(set) var length = 0
    /// The buffers of every layer, in the cache's precision.
    let storage: Storage
    /// Tiles of `SQ_KT` positions per KV head in F16 and Q8 keys (capacity rounded up).
    let keyTiles: Int

    /// Keys and values of every layer (one buffer per layer in each array), stored as one precision.
    enum Storage {
        /// Keys [kvHeads, capacity, headDim] and values transposed [kvDim, capacity].
        case f32(keys: [AlignedBuffer<Float>], values: [AlignedBuffer<Float>])
        /// IEEE half bits: keys in tiles [kvHeads, keyTiles, headDim, SQ_KT], values transposed [kvDim, capacity].
        case f16(keys: [AlignedBuffer<UInt16>], values: [AlignedBuffer<UInt16>])
        /// Int8 keys in tiles and values transposed as F16's, with their scales [kvHeads, keyTiles * SQ_KT]
        /// and [kvHeads, capacity].
        case q8(
            keys: [AlignedBuffer<Int8>], keyScales: [AlignedBuffer<Float>], values: [AlignedBuffer<Int8>],
            valueScales: [AlignedBuffer<Float>])
    }

    /// Allocates a cache for `capacity` positions of `config`'s model.
    public init(config: ModelConfig, capacity: Int, precision: KVCachePrecision = .f32) {
        self.capacity = capacity
        kvDim = config.numKVHeads * config.headDim
        let n = capacity * kvDim, layers = config.numLayers
        keyTiles = (capacity + Int(SQ_KT) - 1) / Int(SQ_KT)
        let tiledPositions = config.numKVHeads * keyTiles * Int(SQ_KT)
        func buffers<T>(_ count: Int) -> [AlignedBuffer<T>] { (0..<layers).map { _ in AlignedBuffer<T>(count: count) } }
        switch precision {
        case .f32: storage = .f32(keys: buffers(n), values: buffers(n))
        case .f16: storage = .f16(keys: buffers(tiledPositions * config.headDim), values: buffers(n))
        case .q8:
            storage = .q8(
                keys: buffers(tiledPositions * config.headDim), keyScales: buffers(tiledPositions), values: buffers(n),
                valueScales: buffers(config.numKVHeads * capacity))
        }
    }

    /// How keys and values are stored.
    public var precision: KVCachePrecision {
        switch storage {
        case .f32: return .f32
        case .f16: return .f16
        case .q8: return .q8
        }
    }

    /// Layer `li`'s buffers as pointers, for the hot loops (no reference counting there).
    enum LayerBuffers {
        case f32(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)
        case f16(keys: UnsafeMutablePointer<UInt16>, values: UnsafeMutablePointer<UInt16>)
        case q8(
            keys: UnsafeMutablePointer<Int8>, keyScales: UnsafeMutablePointer<Float>,
            values: UnsafeMutablePointer<Int8>,
            valueScales: UnsafeMutablePointer<Float>)
    }

    @inline(__always)
    func layer(_ li: Int) -> LayerBuffers {
        switch storage {
        case let .f32(k, v): return .f32(keys: k[li].pointer, values: v[li].pointer)
        case let .f16(k, v): return .f16(keys: k[li].pointer, values: v[li].pointer)
        case let .q8(k, ks, v, vs):
            return .q8(
                keys: k[li].pointer, keyScales: ks[li].pointer, values: v[li].pointer, valueScales: vs[li].pointer)
        }
    }

    /// Forgets all positions (the memory is kept).
    public func reset() { length = 0 }
    /// Drops positions from `n` on (keeps the first n).
    public func truncate(to n: Int) { length = min(length, max(0, n)) }
    /// Bytes held.
    public var byteCount: Int {
        func bytes<T>(_ b: [AlignedBuffer<T>]) -> Int { b.reduce(0) { $0 + $1.count * MemoryLayout<T>.stride } }
        switch storage {
        case let .f32(k, v): return bytes(k) + bytes(v)
        case let .f16(k, v): return bytes(k) + bytes(v)
        case let .q8(k, ks, v, vs): return bytes(k) + bytes(ks) + bytes(v) + bytes(vs)
        }
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
    /// RoPE tables of sliding-window layers with their own base (Gemma 3); one element otherwise.
    let cosL, sinL: AlignedBuffer<Float>
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
        let local = c.localRopeTheta != nil && c.learnedPositionOffset == nil
        cosL = AlignedBuffer(count: local ? maxTokens * c.headDim / 2 : 1)
        sinL = AlignedBuffer(count: local ? maxTokens * c.headDim / 2 : 1)
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
            throw ModelError.contextOverflow(
                requested: cache.length + tokens.count, limit: config.maxPositionEmbeddings)
        }
        if mode == .all && tokens.count > ws.maxLogitRows {
            throw ModelError.invalidArgument(
                "workspace holds \(ws.maxLogitRows) rows of logits, \(tokens.count) requested")
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
            guard c.length < c.capacity else {
                throw ModelError.contextOverflow(requested: c.length + 1, limit: c.capacity)
            }
            if config.learnedPositionOffset != nil && c.length >= config.maxPositionEmbeddings {
                throw ModelError.contextOverflow(requested: c.length + 1, limit: config.maxPositionEmbeddings)
            }
        }
        // The workspace's segment list is reused from step to step (no allocation per decoded token).
        ws.segments.removeAll(keepingCapacity: true)
        for (i, c) in caches.enumerated() { ws.segments.append(Segment(cache: c, start: i, count: 1)) }
        let segs = ws.segments
        run(tokens[...], segments: segs, ws: ws, logits: .all, logitsOut: ws.logits.pointer)
    }

    /// A run of consecutive tokens of one sequence inside a forward pass.
    struct Segment {
        let cache: KVCache
        /// Index of the segment's first token in the pass.
        let start: Int
        let count: Int
    }

    func forwardChunk(
        _ tokens: ArraySlice<Int>, cache: KVCache, ws: Workspace, logits mode: LogitsMode, logitRowOffset: Int
    ) {
        ws.segments.removeAll(keepingCapacity: true)
        ws.segments.append(Segment(cache: cache, start: 0, count: tokens.count))
        run(
            tokens, segments: ws.segments, ws: ws, logits: mode,
            logitsOut: ws.logits.pointer + logitRowOffset * config.vocabSize)
    }

    /// The forward pass of every caller: inference (prefill, decode, batched decode) and, with
    /// `record`, the training forward, which keeps the activations its backward needs. Logits land
    /// in `logitsOut`: for `.last` the last token's, for `.all` one row per token.
    func run(
        _ tokens: ArraySlice<Int>, segments: [Segment], ws: Workspace, logits mode: LogitsMode,
        logitsOut: UnsafeMutablePointer<Float>, record: ForwardRecorder? = nil
    ) {
        let c = config
        let T = tokens.count
        let h = c.hiddenSize, hd = c.headDim, nh = c.numHeads, nkv = c.numKVHeads
        let qd = nh * hd, kvd = nkv * hd, ffn = c.intermediateSize
        let x = ws.x.pointer, xn = ws.xn.pointer

        // Embeddings (through project_in when narrower), plus learned positions.
        if let pin = projectIn {
            let ew = c.embeddingWidth
            for (t, id) in tokens.enumerated() {
                embedding.convertToFloat(into: ws.proj.pointer + t * ew, offset: id * ew, count: ew)
            }
            pin.gemm(ws.proj.pointer, ldx: ew, m: T, x, ldy: h, pool: pool)
        } else {
            for (t, id) in tokens.enumerated() { embedding.convertToFloat(into: x + t * h, offset: id * h, count: h) }
        }
        if let m = c.embeddingMultiplier {
            let s = Float(m)
            for i in 0..<(T * h) { x[i] *= s }
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
            // LongRoPE scales cos and sin (transformers' `attention_scaling`); 1 for the other kinds.
            let mscale = Float(c.ropeScaling.attentionFactor)
            for seg in segments {
                let p0 = seg.cache.length
                let freqs = ws.freqs.pointer
                frequencies(forLength: p0 + seg.count, into: freqs)
                for i in 0..<seg.count {
                    let t = seg.start + i
                    let pos = Float(p0 + i)
                    for j in 0..<half {
                        let a = pos * freqs[j]
                        ws.cosT[t * half + j] = Float(cos(Double(a))) * mscale
                        ws.sinT[t * half + j] = Float(sin(Double(a))) * mscale
                    }
                    for (j, f) in invFreqLocal.enumerated() {
                        let a = pos * f
                        ws.cosL[t * half + j] = Float(cos(Double(a)))
                        ws.sinL[t * half + j] = Float(sin(Double(a)))
                    }
                }
            }
        }
        // A block-by-block pass starts from a saved block input instead of the embeddings.
        if let input = record?.input { x.update(from: input, count: T * h) }
        ws.ensureScores(context: maxContext, threads: pool.threadCount, headDim: c.headDim)
        let rope = usesRope, pre = c.preNorm

        for (li, layer) in layers.enumerated() where record?.blocks.contains(li) ?? true {
            let (cosT, sinT) = ropeTables(ws, layer: li)
            let rec = record.map { $0.layer(li) }
            rec?.res.update(from: x, count: T * h)
            // Attention block (pre-LN: x + attn(norm(x)); post-LN: norm(x + attn(x))).
            let attnIn: UnsafeMutablePointer<Float>
            if pre {
                layer.attentionNorm.apply(x, xn, rows: T, width: h, stats: rec?.stats1)
                attnIn = xn
                rec?.xn1.update(from: xn, count: T * h)
            } else {
                attnIn = x
            }
            if let rec, let observe = rec.observer {
                let input = UnsafePointer(pre ? rec.xn1 : rec.res)
                for kind in [LinearKind.q, .k, .v] { observe(li, kind, input, h, T) }
            }
            let a = layer.attention
            a.q(attnIn, ldx: h, m: T, ws.q.pointer, ldy: qd, pool: pool)
            a.k(attnIn, ldx: h, m: T, ws.k.pointer, ldy: kvd, pool: pool)
            a.v(attnIn, ldx: h, m: T, ws.v.pointer, ldy: kvd, pool: pool)
            if a.qNorm != nil || a.kNorm != nil { headNorms(a, li, T, ws, record: record) }
            if rope {
                self.rope(ws.q.pointer, rows: T, heads: nh, cos: cosT, sin: sinT)
                self.rope(ws.k.pointer, rows: T, heads: nkv, cos: cosT, sin: sinT)
            }
            if let rec {
                // Attention scales the queries in place: the backward needs them unscaled.
                rec.q.update(from: ws.q.pointer, count: T * qd)
                rec.k.update(from: ws.k.pointer, count: T * kvd)
                rec.v.update(from: ws.v.pointer, count: T * kvd)
            }
            // Append K and V (V transposed) to each sequence's cache: the sequences of a batch in
            // parallel (each has its own cache; the transposed value stores miss the cache at every
            // dimension, about 2% of a batched step when serial).
            if segments.count > 1 {
                segments.withUnsafeBufferPointer { segs in
                    var job = StoreJob(model: self, ws: ws, segments: segs, layer: li)
                    pool.run(tasks: segs.count, job: &job)
                }
            } else {
                for seg in segments { storeKV(seg, layer: li, ws: ws) }
            }
            attention(ws: ws, segments: segments, layer: li)
            if let rec {
                rec.att.update(from: ws.att.pointer, count: T * qd)
                rec.observer?(li, .o, rec.att, qd, T)
            }
            a.o(ws.att.pointer, ldx: qd, m: T, xn, ldy: h, pool: pool)
            if let pn = layer.postAttentionNorm { postNorm(pn, xn, T, li, attention: true, record: record) }
            for i in 0..<(T * h) { x[i] += xn[i] }
            rec?.mid.update(from: x, count: T * h)
            if !pre { layer.attentionNorm.apply(x, x, rows: T, width: h, stats: rec?.stats1) }

            // MLP block.
            let ffnIn: UnsafeMutablePointer<Float>
            if pre { layer.mlpNorm.apply(x, xn, rows: T, width: h, stats: rec?.stats2); ffnIn = xn } else { ffnIn = x }
            if let rec {
                rec.xn2.update(from: ffnIn, count: T * h)
                if let observe = rec.observer {
                    let input = rec.xn2
                    if layer.mlp.gate != nil { observe(li, .gate, input, h, T) }
                    observe(li, .up, input, h, T)
                }
            }
            let g = ws.gate.pointer, u = ws.up.pointer
            switch layer.mlp {
            case let .gated(gate, up, _):
                gate(ffnIn, ldx: h, m: T, g, ldy: ffn, pool: pool)
                up(ffnIn, ldx: h, m: T, u, ldy: ffn, pool: pool)
                rec?.gate.update(from: g, count: T * ffn)
                rec?.up.update(from: u, count: T * ffn)
                gatedActivation(g, u, g, T * ffn)
            case let .plain(up, _, activation):
                up(ffnIn, ldx: h, m: T, u, ldy: ffn, pool: pool)
                rec?.up.update(from: u, count: T * ffn)
                activation.apply(u, g, T * ffn)
            }
            rec?.observer?(li, .down, g, ffn, T)
            layer.mlp.down(g, ldx: ffn, m: T, xn, ldy: h, pool: pool)
            if let pn = layer.postMLPNorm { postNorm(pn, xn, T, li, attention: false, record: record) }
            for i in 0..<(T * h) { x[i] += xn[i] }
            if !pre {
                rec?.post.update(from: x, count: T * h)
                layer.mlpNorm.apply(x, x, rows: T, width: h, stats: rec?.stats2)
            }
        }
        for seg in segments { seg.cache.length += seg.count }
        record?.output?.update(from: x, count: T * h)

        switch mode {
        case .none: break
        case .last:
            let (input, _) = finalState(x + (T - 1) * h, xn, 1, ws, record: nil)
            lmHead.gemv(input, logitsOut, pool: pool)
            if let cap = c.finalLogitSoftcap { DecoderModel.softcap(logitsOut, c.vocabSize, Float(cap)) }
        case .all:
            let (input, width) = finalState(x, xn, T, ws, record: record)
            lmHead.gemm(input, ldx: width, m: T, logitsOut, ldy: c.vocabSize, pool: pool)
            if let cap = c.finalLogitSoftcap { DecoderModel.softcap(logitsOut, T * c.vocabSize, Float(cap)) }
        }
    }

    /// The LM head's input for T rows of the last block's output `x`, and its width: the final norm
    /// into `xn` (or a copy), then project_out into `ws.proj` when the model has one.
    func finalState(
        _ x: UnsafeMutablePointer<Float>, _ xn: UnsafeMutablePointer<Float>, _ T: Int, _ ws: Workspace,
        record: ForwardRecorder?
    ) -> (UnsafeMutablePointer<Float>, Int) {
        let h = config.hiddenSize
        if let n = finalNorm {
            n.apply(
                x, xn, rows: T, width: h,
                stats: record.map { NormStats(scale: $0.ws.rmsF.pointer, mean: $0.ws.meanF.pointer) })
        } else {
            xn.update(from: x, count: T * h)
        }
        guard let po = projectOut else { return (xn, h) }
        po.gemm(xn, ldx: h, m: T, ws.proj.pointer, ldy: config.embeddingWidth, pool: pool)
        return (ws.proj.pointer, config.embeddingWidth)
    }

    /// Where the parallel K/V appends of a batch find their inputs (on the caller's stack for the run).
    struct StoreJob: PoolJob {
        let model: DecoderModel
        let ws: Workspace
        let segments: UnsafeBufferPointer<Segment>
        let layer: Int

        func run(task: Int, thread: Int) { model.storeKV(segments[task], layer: layer, ws: ws) }
    }

    /// Appends the keys and values of `seg`'s tokens (rows seg.start ..< seg.start + seg.count of
    /// `ws.k` and `ws.v`) to its cache at layer `li`, at positions from the cache's current length.
    func storeKV(_ seg: Segment, layer li: Int, ws: Workspace) {
        let c = config
        let hd = c.headDim, nkv = c.numKVHeads, kvd = nkv * hd
        let p0 = seg.cache.length, cap = seg.cache.capacity
        let kSrc = ws.k.pointer + seg.start * kvd
        switch seg.cache.layer(li) {
        case let .f32(kc, vt):
            for i in 0..<seg.count {
                for kvh in 0..<nkv {
                    (kc + (kvh * cap + p0 + i) * hd).update(from: kSrc + i * kvd + kvh * hd, count: hd)
                }
            }
            for i in 0..<seg.count {
                let vrow = ws.v.pointer + (seg.start + i) * kvd
                for d in 0..<kvd { vt[d * cap + p0 + i] = vrow[d] }
            }
        case let .f16(kc, vt):
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
        case let .q8(kc, ks, vt, vs):
            let tiledPositions = seg.cache.keyTiles * Int(SQ_KT)
            for i in 0..<seg.count {
                for kvh in 0..<nkv {
                    sq_attn_store_key_kt8(
                        kSrc + i * kvd + kvh * hd, Int64(hd), Int64(p0 + i), kc + kvh * tiledPositions * hd,
                        ks + kvh * tiledPositions)
                    sq_attn_store_value_q8(
                        ws.v.pointer + (seg.start + i) * kvd + kvh * hd, Int64(hd), Int64(p0 + i),
                        vt + kvh * hd * cap, Int64(cap), vs + kvh * cap)
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
        let window = layers[li].attention.window
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
        let plan = AttentionPlan(
            layer: li, window: window, maxBlocks: maxBlocks, headsPerTask: headsPerTask,
            chunks: chunks, perSegment: perSegment)
        // A job on the stack: a Swift closure handed to the pool would need a heap context per call.
        segments.withUnsafeBufferPointer { segs in
            var job = AttentionJob(model: self, ws: ws, segments: segs, plan: plan)
            pool.run(tasks: segs.count * perSegment, job: &job)
        }
    }

    /// Where `attention`'s tasks find their inputs (kept on the caller's stack for the run).
    struct AttentionJob: PoolJob {
        let model: DecoderModel
        let ws: Workspace
        let segments: UnsafeBufferPointer<Segment>
        let plan: AttentionPlan

        func run(task: Int, thread: Int) { model.attentionTask(task, thread: thread, job: self) }
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
        do {
            let ws = job.ws
            let c = config
            let hd = c.headDim, nh = c.numHeads, group = c.numHeads / c.numKVHeads
            let qd = nh * hd
            let qb = Workspace.queryBlock
            let scale = attentionScale
            let scoreCap = config.attentionSoftcap.map(Float.init)
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
                groupedAttention(
                    ws: ws, seg: seg, layer: li, heads: heads, t0: t0, t1: t1, window: window, thread: thread)
                return
            }
            for head in heads {
                let task = (seg: si, head: head, t0: t0, t1: t1)
                let kvh = task.head / group
                let cap = seg.cache.capacity
                let buffers = seg.cache.layer(li)
                let p0 = seg.cache.length  // not yet advanced for this pass
                let S = p0 + task.t1  // keys visible to the block's last query
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
                // Tiled F16/Q8 keys: converted once to F32, dimension-major ([hd, n]), the B operand of
                // the packed product.
                switch buffers {
                case let .f32(keys, _):
                    sq_gemm_f32(
                        qrow, Int64(qd), keys + (kvh * cap + k0) * hd, Int64(hd), sc, Int64(n),
                        Int64(m), Int64(hd), 0, Int64(n))
                case let .f16(keys, _):
                    sq_attn_keys_kt16_to_f32(
                        keys + kvh * tiledPositions * hd, Int64(hd), Int64(k0), Int64(S), kf, Int64(n))
                    sq_gemm_general_f32(
                        qrow, Int64(qd), 1, kf, Int64(n), 1, sc, Int64(n), Int64(m), Int64(hd), 0,
                        Int64(n), Int32(SQ_BW_STORE))
                case let .q8(keys, keyScales, _, _):
                    sq_attn_keys_kt8_to_f32(
                        keys + kvh * tiledPositions * hd, keyScales + kvh * tiledPositions, Int64(hd), Int64(k0),
                        Int64(S), kf, Int64(n))
                    sq_gemm_general_f32(
                        qrow, Int64(qd), 1, kf, Int64(n), 1, sc, Int64(n), Int64(m), Int64(hd), 0,
                        Int64(n), Int32(SQ_BW_STORE))
                }
                if let scoreCap { DecoderModel.softcap(sc, m * n, scoreCap) }
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
                switch buffers {
                case let .f32(_, values):
                    sq_gemm_f32(
                        sc, Int64(n), values + kvh * hd * cap + k0, Int64(cap), out, Int64(qd),
                        Int64(m), Int64(n), 0, Int64(hd))
                case let .f16(_, values):
                    sq_gemm_f16(
                        sc, Int64(n), values + kvh * hd * cap + k0, Int64(cap), out, Int64(qd),
                        Int64(m), Int64(n), 0, Int64(hd))
                case let .q8(_, _, values, valueScales):
                    // The head's values [k0, S) dequantized once (the keys' scratch is free again).
                    sq_attn_values_q8_to_f32(
                        values + kvh * hd * cap, Int64(cap),
                        valueScales + kvh * cap, Int64(hd), Int64(k0), Int64(S), kf, Int64(n))
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
    func groupedAttention(
        ws: Workspace, seg: Segment, layer li: Int, heads: Range<Int>, t0: Int, t1: Int,
        window: Int?, thread: Int
    ) {
        let c = config
        let hd = c.headDim, group = c.numHeads / c.numKVHeads, qd = c.numHeads * hd
        let scale = attentionScale
        let softcap = c.attentionSoftcap.map(Float.init)
        let p0 = seg.cache.length, cap = seg.cache.capacity
        let buffers = seg.cache.layer(li)
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
                switch buffers {
                case let .q8(keys, keyScales, values, valueScales):
                    sq_attn_scores_kt8(
                        q, Int64(hd), Int64(g), keys + kvh * headStride, keyScales + kvh * tiledPositions,
                        Int64(hd), Int64(lo), Int64(pos + 1), sc, Int64(n))
                    if let softcap { DecoderModel.softcap(sc, g * n, softcap) }
                    for r in 0..<g { _ = sq_softmax_f32(sc + r * n, Int64(n)) }
                    sq_attn_pv8(
                        sc, Int64(n), Int64(g), values + kvh * hd * cap + lo, Int64(cap),
                        valueScales + kvh * cap + lo, Int64(hd), Int64(n), out + h * hd, Int64(hd))
                case let .f16(keys, values):
                    sq_attn_scores_kt16(
                        q, Int64(hd), Int64(g), keys + kvh * headStride, Int64(hd), Int64(lo),
                        Int64(pos + 1), sc, Int64(n))
                    if let softcap { DecoderModel.softcap(sc, g * n, softcap) }
                    for r in 0..<g { _ = sq_softmax_f32(sc + r * n, Int64(n)) }
                    sq_attn_pv16(
                        sc, Int64(n), Int64(g), values + kvh * hd * cap + lo, Int64(cap), Int64(hd),
                        Int64(n), out + h * hd, Int64(hd))
                case .f32:
                    // F32 caches take attentionTask's blocked path.
                    return
                }
                h += g
            }
        }
    }
}
