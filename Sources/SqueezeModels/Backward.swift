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

/// One window's state between blocks of a block-by-block pass: its tokens, the input of every
/// block (`inputs[l]` is block l's input, `inputs[numLayers]` the last block's output), and the
/// gradient of the loss at the current block boundary. A window made for a forward-only pass keeps
/// two inputs in turn (block l's input and output) and no gradient.
/// Memory: (numLayers + 2) * maxTokens * hidden floats for the backward, 2 * maxTokens * hidden without.
public final class WindowActivations: @unchecked Sendable {
    /// The window's tokens (at most `maxTokens`).
    public var tokens: [Int]
    public let maxTokens: Int
    let inputs: [AlignedBuffer<Float>]
    let grad: AlignedBuffer<Float>
    let numLayers: Int
    /// The window's loss, after `DecoderModel.headLossAndBackward`.
    public internal(set) var loss: Double?

    /// Buffers for a window of up to `maxTokens` tokens of `model`; `backward: false` keeps only two
    /// block inputs (a forward-only pass, such as activation statistics).
    public init(model: DecoderModel, tokens: [Int], maxTokens: Int? = nil, backward: Bool = true) {
        let c = model.config
        let T = max(1, maxTokens ?? tokens.count, tokens.count)
        self.tokens = tokens
        self.maxTokens = T
        numLayers = c.numLayers
        inputs = (0..<(backward ? c.numLayers + 1 : 2)).map { _ in AlignedBuffer<Float>(count: T * c.hiddenSize) }
        grad = AlignedBuffer(count: backward ? T * c.hiddenSize : 1)
    }

    /// Whether every block input is kept (a backward pass can run).
    public var keepsBlockInputs: Bool { inputs.count == numLayers + 1 }

    /// Block `li`'s input (li == numLayers: the last block's output).
    func input(_ li: Int) -> UnsafeMutablePointer<Float> {
        keepsBlockInputs ? inputs[li].pointer : inputs[li % 2].pointer
    }

    /// Bytes held.
    public var byteCount: Int { 4 * (inputs.reduce(0) { $0 + $1.count } + grad.count) }

    /// Bytes a window of `tokens` tokens of a model of `config` holds.
    public static func byteCount(config c: ModelConfig, tokens: Int, backward: Bool = true) -> Int {
        4 * ((backward ? c.numLayers + 2 : 2) * tokens * c.hiddenSize)
    }
}

/// The scratch of the training forward (the inference forward run with a `ForwardRecorder`) and of
/// the backward pass, for windows of up to `maxTokens` tokens.
///
/// Block internals (norm outputs, Q, K, V, attention output, MLP projections, norm statistics) are
/// kept for one block at a time by default: the backward pass recomputes a block's internals from
/// its saved input just before that block's backward (`DecoderModel.backwardBlock`), so memory does
/// not grow with depth. `keepsAllBlocks` keeps every block's internals from one forward (no
/// recomputation; memory per layer about (5 h + 2 qd + 2 kvd + 2 ffn) floats per token).
/// Also held: [tokens, vocab] logits, one inference workspace, an F32 KV cache, and one panel of
/// converted weight rows for the backward's products with F16/BF16 weights (`panelFloats`).
public final class TrainingWorkspace: @unchecked Sendable {
    /// The longest window this workspace holds.
    public let maxTokens: Int
    /// Whether every block's internals are kept (see the type's documentation).
    public let keepsAllBlocks: Bool
    /// The window `lossAndBackward` and `trainingForward` use.
    let window: WindowActivations
    // Per slot (every block, or one): the block's activations as the forward computes them.
    let xn1, q, k, v, att, mid, xn2, gate, up: [AlignedBuffer<Float>]
    let rms1, rms2: [AlignedBuffer<Float>]
    /// LayerNorm means (unused for RMSNorm) and, for post-LN blocks, the sum before the MLP norm.
    let mean1, mean2, post: [AlignedBuffer<Float>]
    let rmsF, meanF: AlignedBuffer<Float>
    /// Which window's block each slot holds (nil: none yet).
    var slotOwner: [(window: ObjectIdentifier, block: Int)?]
    /// The window of the last pass through the inference workspace (whose RoPE tables the backward
    /// reuses: with dynamic NTK scaling they depend on the window's length).
    var lastWindow: ObjectIdentifier?
    /// The forward pass's workspace (its RoPE tables serve the backward too) and KV cache.
    let inference: Workspace
    let cache: KVCache
    let dProj: AlignedBuffer<Float>
    /// After `trainingForward`, the logits [tokens, vocab]; after `lossAndBackward`, the loss's
    /// gradient with respect to the first tokens - 1 rows.
    public let logits: AlignedBuffer<Float>
    // Backward scratch.
    let dxn, dAtt, dq, dk, dv, act, dg, du, tmp: AlignedBuffer<Float>
    let dKh, dVh: AlignedBuffer<Float>  // [numHeads, maxTokens, headDim]
    var attScratch: [AlignedBuffer<Float>] = []  // per thread: P, dP and the raw scores for one query block
    /// What the family-specific pieces keep, per slot (BackwardParts.swift).
    let family: FamilyRecordBuffers
    /// Rows of an F16/BF16 weight converted to F32 for one product of the backward (see `panelFloats`).
    var panel = AlignedBuffer<Float>(count: 0)
    static let queryBlock = 64
    /// Floats of the converted weight panel: the backward's dX = dY W with a weight stored as F16 or
    /// BF16 runs over panels of rows of W converted to F32 (16 MiB at most, at least 16 rows), so
    /// no F32 copy of a weight, let alone of the model, is ever made.
    public static let panelFloats = 4 << 20

    /// Seconds of the last `lossAndBackward`'s forward part (training forward, logits and loss).
    public internal(set) var lastForwardSeconds = 0.0
    /// Seconds of the last `lossAndBackward`'s backward part (from the logits' gradient to the
    /// embeddings, with the blocks' recomputation).
    public internal(set) var lastBackwardSeconds = 0.0

    /// Gradient of the loss with respect to the embedding output (the input of block 0), [tokens, hidden],
    /// valid after `lossAndBackward`.
    public var embeddingGradient: UnsafePointer<Float> { UnsafePointer(window.grad.pointer) }

    /// Allocates the buffers for windows of up to `maxTokens` tokens of `model`, with one block's
    /// internals or, with `keepsAllBlocks`, every block's.
    public init(model: DecoderModel, maxTokens: Int, keepsAllBlocks: Bool = false) {
        let c = model.config
        let T = max(1, maxTokens)
        self.maxTokens = T
        self.keepsAllBlocks = keepsAllBlocks
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, ffn = c.intermediateSize
        let slots = keepsAllBlocks ? c.numLayers : 1
        func bufs(_ n: Int) -> [AlignedBuffer<Float>] { (0..<slots).map { _ in AlignedBuffer<Float>(count: n) } }
        window = WindowActivations(model: model, tokens: [], maxTokens: T)
        xn1 = bufs(c.preNorm ? T * h : 1); q = bufs(T * qd); k = bufs(T * kvd); v = bufs(T * kvd); att = bufs(T * qd)
        mid = bufs(T * h); xn2 = bufs(T * h); gate = bufs(c.activation.isGated ? T * ffn : 1); up = bufs(T * ffn)
        rms1 = bufs(T); rms2 = bufs(T)
        let ln = c.normKind == .layerNorm
        mean1 = bufs(ln ? T : 1); mean2 = bufs(ln ? T : 1); post = bufs(c.preNorm ? 1 : T * h)
        rmsF = AlignedBuffer(count: T); meanF = AlignedBuffer(count: T)
        slotOwner = Array(repeating: nil, count: slots)
        inference = Workspace(model: model, maxTokens: T, logitRows: 1)
        cache = KVCache(config: c, capacity: T, precision: .f32)
        dProj = AlignedBuffer(count: c.embeddingDim == nil ? 1 : T * c.embeddingWidth)
        logits = AlignedBuffer(count: T * c.vocabSize)
        dxn = AlignedBuffer(count: T * max(h, qd))
        dAtt = AlignedBuffer(count: T * qd); dq = AlignedBuffer(count: T * qd)
        dk = AlignedBuffer(count: T * kvd); dv = AlignedBuffer(count: T * kvd)
        act = AlignedBuffer(count: T * ffn); dg = AlignedBuffer(count: T * ffn); du = AlignedBuffer(count: T * ffn)
        tmp = AlignedBuffer(count: T * max(h, qd, ffn))
        dKh = AlignedBuffer(count: c.numHeads * T * c.headDim); dVh = AlignedBuffer(count: c.numHeads * T * c.headDim)
        family = FamilyRecordBuffers(config: c, tokens: T, slots: slots)
    }

    /// The slot of block `li`'s internals.
    @inline(__always) func slot(_ li: Int) -> Int { keepsAllBlocks ? li : 0 }

    /// Whether block `li`'s internals of window `w` are in their slot.
    func holds(_ w: WindowActivations, _ li: Int) -> Bool {
        guard let o = slotOwner[slot(li)], lastWindow == ObjectIdentifier(w) else { return false }
        return o.window == ObjectIdentifier(w) && o.block == li
    }

    func ensureAttentionScratch(threads: Int) {
        if attScratch.count >= threads { return }
        attScratch = (0..<threads).map { _ in AlignedBuffer<Float>(count: 3 * TrainingWorkspace.queryBlock * maxTokens)
        }
    }

    /// Bytes of weights converted to F32 this workspace holds: its panel (0 when every weight it
    /// met was F32).
    public var convertedWeightBytes: Int { 4 * panel.count }

    /// The panel, holding at least `floats` floats.
    func ensurePanel(_ floats: Int) -> UnsafeMutablePointer<Float> {
        if panel.count < floats { panel = AlignedBuffer(count: floats) }
        return panel.pointer
    }

    /// Bytes held (its own window included).
    public var byteCount: Int {
        let lists = [xn1, q, k, v, att, mid, xn2, gate, up, rms1, rms2, mean1, mean2, post]
        let singles =
            [rmsF, meanF, dProj, logits, dxn, dAtt, dq, dk, dv, act, dg, du, tmp, dKh, dVh, panel] + attScratch
        let ws = inference
        let inferenceBuffers =
            [
                ws.x, ws.xn, ws.q, ws.k, ws.v, ws.att, ws.gate, ws.up, ws.proj, ws.logits, ws.cosT, ws.sinT, ws.cosL,
                ws.sinL,
            ]
            + ws.scores + ws.keyScratch
        return 4
            * (lists.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } + singles.reduce(0) { $0 + $1.count }
                + inferenceBuffers.reduce(0) { $0 + $1.count }) + cache.byteCount + window.byteCount
            + family.byteCount
    }

    /// Bytes the family-specific internals of one block (per-head Q/K norm inputs, the inputs of
    /// Gemma's norms after attention and the MLP) take for `tokens` tokens of a model of `config`;
    /// about 4 bytes for families without them.
    public static func familyBlockByteCount(config c: ModelConfig, tokens: Int) -> Int {
        FamilyRecordBuffers.byteCount(config: c, tokens: tokens, slots: 1)
    }

    /// Bytes a workspace for `tokens` tokens of a model of `config` holds with one block's internals,
    /// besides its own window (an estimate within a few percent: attention scratch and score buffers
    /// depend on the threads).
    public static func byteCount(config c: ModelConfig, tokens T: Int) -> Int {
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim, ffn = c.intermediateSize
        let block = T * (4 * h + 2 * qd + 2 * kvd + 2 * ffn)
        let scratch = T * (max(h, qd) + 2 * qd + 2 * kvd + 3 * ffn + max(h, qd, ffn)) + 2 * c.numHeads * T * c.headDim
        let inference = T * (2 * h + 2 * qd + 2 * kvd + 2 * ffn)
        let cache = 2 * c.numLayers * T * kvd
        return 4 * (block + scratch + inference + cache + T * c.vocabSize + panelFloats)
            + FamilyRecordBuffers.byteCount(config: c, tokens: T, slots: 1)
    }
}

/// What a training forward keeps: the workspace its activations go to, the window whose block
/// inputs it saves, and the observer of each linear layer's input; and which blocks the pass runs.
struct ForwardRecorder {
    let ws: TrainingWorkspace
    let window: WindowActivations
    let observer: LinearInputObserver?
    /// The blocks run (all for a whole forward; one for a block-by-block pass or a recomputation).
    let blocks: Range<Int>
    /// The input of the first block of `blocks` (nil: the embeddings).
    let input: UnsafePointer<Float>?
    /// Where the state after the last block of `blocks` goes (nil: nowhere).
    let output: UnsafeMutablePointer<Float>?

    /// Where block `li`'s activations go.
    func layer(_ li: Int) -> LayerRecord {
        let s = ws.slot(li)
        return LayerRecord(
            res: window.input(li), xn1: ws.xn1[s].pointer, q: ws.q[s].pointer, k: ws.k[s].pointer,
            v: ws.v[s].pointer, att: ws.att[s].pointer, mid: ws.mid[s].pointer, xn2: ws.xn2[s].pointer,
            gate: ws.gate[s].pointer, up: ws.up[s].pointer, post: ws.post[s].pointer,
            stats1: NormStats(scale: ws.rms1[s].pointer, mean: ws.mean1[s].pointer),
            stats2: NormStats(scale: ws.rms2[s].pointer, mean: ws.mean2[s].pointer), observer: observer)
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
    /// Checks that the backward pass can run on this model: every linear weight, project_out and the
    /// LM head dense (F32, F16 or BF16, used as stored).
    public func checkTrainable() throws {
        for l in 0..<layers.count {
            for kind in config.linearKinds {
                guard let op = layers[l].op(kind) else {
                    throw ModelError.missingTensor(file: "(loaded model)", tensor: weightName(l, kind))
                }
                try Self.checkDense(op, name: weightName(l, kind))
            }
        }
        if let po = projectOut { try Self.checkDense(po, name: config.tensorPrefix + "project_out.weight") }
        try Self.checkDense(lmHead, name: config.lmHeadName)
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

    /// Runs `blocks` of window `w` through the inference forward with a recorder: from `input` (nil:
    /// the embeddings) into `output`, the blocks' internals into their slots of `ws`.
    func runRecorded(
        _ w: WindowActivations, _ ws: TrainingWorkspace, blocks: Range<Int>, input: UnsafePointer<Float>?,
        output: UnsafeMutablePointer<Float>?, logits: LogitsMode, observer: LinearInputObserver?
    ) {
        ws.cache.reset()
        let iw = ws.inference
        iw.segments.removeAll(keepingCapacity: true)
        iw.segments.append(Segment(cache: ws.cache, start: 0, count: w.tokens.count))
        run(
            w.tokens[...], segments: iw.segments, ws: iw, logits: logits, logitsOut: ws.logits.pointer,
            record: ForwardRecorder(
                ws: ws, window: w, observer: observer, blocks: blocks, input: input, output: output))
        for li in blocks { ws.slotOwner[ws.slot(li)] = (ObjectIdentifier(w), li) }
        ws.lastWindow = ObjectIdentifier(w)
    }

    /// Training forward over one window: the inference forward (`run`, so its logits are bit-identical
    /// to `forward`'s) with every block's input and the internals the backward pass needs kept in `ws`
    /// (the last block's, or every block's when it `keepsAllBlocks`); `observer`, when given, sees each
    /// linear layer's input. With `computeLogits`, the logits of every position land in `ws.logits`
    /// ([tokens, vocab]).
    public func trainingForward(
        tokens: [Int], workspace ws: TrainingWorkspace, computeLogits: Bool = true,
        observer: LinearInputObserver? = nil
    ) throws {
        try validateWindow(tokens, ws)
        let w = ws.window
        w.tokens = tokens
        runRecorded(
            w, ws, blocks: 0..<layers.count, input: nil, output: w.input(layers.count),
            logits: computeLogits ? .all : .none, observer: observer)
    }

    /// Mean next-token cross-entropy of the window (positions 0..<T-1 predict tokens 1..<T, as Hugging
    /// Face's `model(x, labels=x).loss`), and its gradient through the whole model: each linear weight's
    /// gradient is handed to `sink` as dY and X (see `GradientSink`), block by block from the last, and
    /// never stored. Embeddings and norm weights get no gradient; the gradient with respect to the
    /// embedding output is left in `ws.embeddingGradient`. Weights are used as stored (F32, F16 or
    /// BF16; `checkTrainable`). Unless `ws.keepsAllBlocks`, each block's internals are recomputed
    /// from its saved input before its backward.
    @discardableResult
    public func lossAndBackward(tokens: [Int], workspace ws: TrainingWorkspace, sink: GradientSink?) throws -> Double {
        try checkTrainable()
        let clock0 = DispatchTime.now().uptimeNanoseconds
        try trainingForward(tokens: tokens, workspace: ws)
        let w = ws.window
        let loss = lossGradient(w, ws)
        w.loss = loss
        let clock1 = DispatchTime.now().uptimeNanoseconds
        try headBackward(w, ws)
        for li in stride(from: layers.count - 1, through: 0, by: -1) {
            try backwardBlock(li, window: w, workspace: ws, sink: sink)
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

    // MARK: - Block by block

    // A pass over many windows goes block by block: `embed` each window, then `forwardBlock` 0,
    // 1, ... for every window (each block's weights are read once per pass, and its pages can be
    // dropped after it: `releasePages(block:)`), `headLossAndBackward` for every window, then
    // `backwardBlock` from the last block down for every window. Only the windows' block inputs
    // and gradients (`WindowActivations`) live across blocks.

    /// Starts window `w`: checks its tokens and writes its embeddings (block 0's input).
    public func embed(_ w: WindowActivations, workspace ws: TrainingWorkspace) throws {
        try validateWindow(w.tokens, ws)
        guard w.tokens.count <= w.maxTokens else {
            throw ModelError.invalidArgument(
                "window of \(w.tokens.count) tokens exceeds its buffers (\(w.maxTokens))")
        }
        runRecorded(w, ws, blocks: 0..<0, input: nil, output: w.input(0), logits: .none, observer: nil)
    }

    /// Block `li` of window `w`: from its saved input to the next block's input, its internals
    /// recorded in `ws`; `observer` sees each linear layer's input.
    public func forwardBlock(
        _ li: Int, window w: WindowActivations, workspace ws: TrainingWorkspace, observer: LinearInputObserver? = nil
    ) {
        runRecorded(
            w, ws, blocks: li..<(li + 1), input: w.input(li), output: w.input(li + 1), logits: .none,
            observer: observer)
    }

    /// After the last block: window `w`'s logits, loss (returned, and kept in `w.loss`) and the
    /// gradient at the last block's output (in `w`).
    @discardableResult
    public func headLossAndBackward(window w: WindowActivations, workspace ws: TrainingWorkspace) throws -> Double {
        guard w.keepsBlockInputs else {
            throw ModelError.invalidArgument("the window was made for a forward-only pass (backward: false)")
        }
        let L = layers.count
        runRecorded(w, ws, blocks: L..<L, input: w.input(L), output: nil, logits: .all, observer: nil)
        let loss = lossGradient(w, ws)
        w.loss = loss
        try headBackward(w, ws)
        return loss
    }

    /// The backward of block `li` of window `w`: the gradient at its output (in `w`) becomes the
    /// gradient at its input, and each of its linear weights' gradient goes to `sink`. Its internals
    /// are recomputed from its saved input first unless `ws` holds them.
    public func backwardBlock(
        _ li: Int, window w: WindowActivations, workspace ws: TrainingWorkspace, sink: GradientSink?
    ) throws {
        guard w.keepsBlockInputs else {
            throw ModelError.invalidArgument("the window was made for a forward-only pass (backward: false)")
        }
        if !ws.holds(w, li) {
            runRecorded(
                w, ws, blocks: li..<(li + 1), input: w.input(li), output: nil, logits: .none, observer: nil)
        }
        try blockBackward(li, w, ws, sink)
    }

    /// dL/dlogits = (softmax - onehot) / P in place of the logits, for the P = T - 1 predicting
    /// positions; returns the mean loss.
    func lossGradient(_ w: WindowActivations, _ ws: TrainingWorkspace) -> Double {
        let tokens = w.tokens
        let T = tokens.count, P = T - 1, V = config.vocabSize
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
        return losses.reduce(0, +) / Double(P)
    }
}
