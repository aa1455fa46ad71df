import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels

/// Errors of the sensitivity computation and of reading sensitivity files; each names the file,
/// tensor, option or field at fault.
public enum SensitivityError: Error, CustomStringConvertible, Equatable {
    case calibrationTooShort(tokens: Int, seqlen: Int)
    case windowExceedsContext(seqlen: Int, context: Int)
    case invalidOption(name: String, detail: String)
    case unsupportedOutputDType(DType)
    case missingTensor(file: String, tensor: String)
    case shapeMismatch(file: String, tensor: String, expected: [Int], got: [Int])
    case unsupportedDType(file: String, tensor: String, dtype: DType)
    case invalidValues(file: String, tensor: String, detail: String)
    case notASensitivityFile(path: String, detail: String)
    /// A shard whose run differs from the first shard's in `field`.
    case shardMismatch(file: String, field: String, expected: String, got: String, reference: String)
    /// Shards whose windows overlap or leave a gap.
    case shardCoverage(detail: String)

    public var description: String {
        switch self {
        case let .calibrationTooShort(t, s):
            return
                "the calibration text has \(t) tokens, fewer than one window of \(s) + 1; give a longer text or a shorter window"
        case let .windowExceedsContext(s, c):
            return "the window length \(s) exceeds the model's context of \(c) tokens (max_position_embeddings)"
        case let .invalidOption(n, d): return "\(n) \(d)"
        case let .unsupportedOutputDType(d): return "sensitivity files are written as F32 or BF16, not \(d.rawValue)"
        case let .missingTensor(f, t): return "\(f): sensitivity for '\(t)' is missing"
        case let .shapeMismatch(f, t, e, g):
            return "\(f): sensitivity '\(t)' has shape \(g) but the model's weight is \(e)"
        case let .unsupportedDType(f, t, d):
            return "\(f): sensitivity '\(t)' has dtype \(d.rawValue); expected F32, F16, BF16 or F64"
        case let .invalidValues(f, t, d): return "\(f): sensitivity '\(t)': \(d)"
        case let .notASensitivityFile(p, d): return "\(p): not a sensitivity file: \(d)"
        case let .shardMismatch(f, field, e, g, r):
            return "\(f): shard of a different run: '\(field)' is \(g), but \(e) in \(r)"
        case let .shardCoverage(d): return "shards do not cover the run exactly once: \(d)"
        }
    }
}

/// How the sensitivity of each weight is measured.
public enum SensitivityMode: String, Sendable, CaseIterable {
    /// The diagonal Fisher information: per window, the squared gradient of the mean next-token
    /// cross-entropy, summed over windows (SqueezeLLM). One value per weight.
    case fisher
    /// The mean of x_j^2 per input column j of each linear layer over all calibration tokens (forward
    /// only). One value per input column, stored as [1, columns] and broadcast over the rows.
    case activations
}

/// Options of a sensitivity run.
public struct SensitivityOptions: Sendable {
    public var samples: Int
    public var seqlen: Int
    public var seed: UInt64
    public var mode: SensitivityMode
    public init(samples: Int = 100, seqlen: Int = 512, seed: UInt64 = 0, mode: SensitivityMode = .fisher) {
        self.samples = samples; self.seqlen = seqlen; self.seed = seed; self.mode = mode
    }
}

/// Progress of a run, after each window of each step (see `Sensitivity.compute`).
public struct SensitivityProgress: Sendable {
    /// Steps done and in all: every window through every block forward, the head, and (Fisher)
    /// every block backward.
    public let done: Int
    public let total: Int
    /// Token-equivalents of the work done: `done / total` of the run's tokens.
    public let tokens: Int
    public let elapsed: Double
    /// The loss of the window just through the head (Fisher), else nil.
    public let loss: Double?
    /// What the step was: "forward", "head" or "backward", and its block (nil for the head).
    public let phase: String
    public let block: Int?
    public var tokensPerSecond: Double { elapsed > 0 ? Double(tokens) / elapsed : 0 }
}

/// The per-weight sensitivity of a model's linear layers, accumulated window by window, in F32.
///
/// Fisher mode: receives each linear weight's gradient factors from the backward pass and adds
/// (dY^T X)^2 into the accumulator at once (`BackwardKernels.weightGradient(.addSquare)`), so no
/// full set of gradients is ever held. Activations mode: adds x_j^2 of each linear layer's input.
/// Accumulators are kept in the model's own row order; `tensor(layer:kind:)` returns Hugging Face
/// order (for GGUF-loaded models the Q and K rows are permuted back to the rotate-half layout).
///
/// A block's accumulators may be absent: `Sensitivity.compute` with an output file allocates each
/// block's when its backward starts and frees them once written (`holdsBlock`).
public final class SensitivityAccumulator: GradientSink {
    public let model: DecoderModel
    public let mode: SensitivityMode
    /// accumulators[layer][kind.rawValue], nil for a block not held
    var acc: [[AlignedBuffer<Float>]?]
    /// Windows and tokens seen.
    public internal(set) var windows = 0
    public internal(set) var tokens = 0
    /// Loss of each window (Fisher mode), in window order.
    public internal(set) var losses: [Double] = []
    /// Seconds spent in forward passes (with logits and loss) and in backward passes (with the
    /// blocks' recomputation), over all windows. When `Sensitivity.compute` runs several windows at
    /// once, the sum over its lanes divided by the number of lanes, so that tokens / seconds is the
    /// run's throughput.
    public internal(set) var forwardSeconds = 0.0
    public internal(set) var backwardSeconds = 0.0
    /// The most bytes of weights converted to F32 that one lane's workspace held (the backward's
    /// panel of F16/BF16 weight rows; 0 for F32 weights).
    public internal(set) var convertedWeightBytes = 0
    private var workspace: TrainingWorkspace?
    /// Whether `add(window:)` keeps every block's internals from one forward (no recomputation).
    var wholeModelWorkspace = false

    /// Allocates zeroed accumulators for `model` (rows x columns floats per linear weight for Fisher,
    /// columns for activations), for every block or, with `allocate: false`, none.
    public init(model: DecoderModel, mode: SensitivityMode, allocate: Bool = true) {
        self.model = model
        self.mode = mode
        acc = Array(repeating: nil, count: model.layers.count)
        if allocate { for l in 0..<model.layers.count { allocateBlock(l) } }
    }

    /// Whether block `layer`'s accumulators are held.
    public func holdsBlock(_ layer: Int) -> Bool { acc[layer] != nil }

    /// Zeroed accumulators for block `layer`.
    func allocateBlock(_ layer: Int) {
        let l = model.layers[layer]
        acc[layer] = LinearKind.allCases.map { kind in
            guard let op = l.op(kind) else { return AlignedBuffer<Float>(count: 1) }
            return AlignedBuffer<Float>(count: mode == .fisher ? op.rows * op.columns : op.columns)
        }
    }

    /// Frees block `layer`'s accumulators.
    func releaseBlock(_ layer: Int) { acc[layer] = nil }

    /// Bytes of one block's accumulators.
    public static func blockBytes(model: DecoderModel, layer: Int, mode: SensitivityMode) -> Int {
        4 * model.layers[layer].linears.reduce(0) { $0 + (mode == .fisher ? $1.1.rows * $1.1.columns : $1.1.columns) }
    }

    /// Adds `other`'s accumulators of the blocks both hold into this one.
    func mergeBlocks(_ other: SensitivityAccumulator) {
        for l in 0..<acc.count {
            guard let kinds = acc[l], let src = other.acc[l] else { continue }
            for (k, buf) in kinds.enumerated() {
                precondition(src[k].count == buf.count, "merging accumulators of different models")
                let d = buf.pointer, a = src[k].pointer
                for i in 0..<buf.count { d[i] += a[i] }
            }
        }
    }

    public func accept(
        layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int,
        x: UnsafePointer<Float>, ldx: Int, tokens: Int
    ) {
        guard let op = model.layers[layer].op(kind), let blk = acc[layer] else { return }
        BackwardKernels.weightGradient(
            dY: dY, lddy: lddy, x: x, ldx: ldx, tokens: tokens, rows: op.rows,
            columns: op.columns, out: blk[kind.rawValue].pointer, mode: .addSquare,
            pool: model.pool)
    }

    func observe(layer: Int, kind: LinearKind, x: UnsafePointer<Float>, ldx: Int, tokens: Int) {
        guard let n = model.layers[layer].op(kind)?.columns, let blk = acc[layer] else { return }
        let out = blk[kind.rawValue].pointer
        for t in 0..<tokens { sq_add_square_f32(x + t * ldx, out, Int64(n)) }
    }

    /// Adds one window: Fisher mode runs forward and backward (block by block, recomputing each
    /// block) and returns the window's loss; activations mode runs the forward pass only and
    /// returns nil. Needs every block's accumulators.
    @discardableResult
    public func add(window: [Int]) throws -> Double? {
        if workspace == nil || workspace!.maxTokens < window.count {
            workspace = TrainingWorkspace(
                model: model, maxTokens: window.count, keepsAllBlocks: wholeModelWorkspace)
        }
        let ws = workspace!
        var loss: Double?
        switch mode {
        case .fisher:
            loss = try model.lossAndBackward(tokens: window, workspace: ws, sink: self)
            losses.append(loss!)
            forwardSeconds += ws.lastForwardSeconds
            backwardSeconds += ws.lastBackwardSeconds
        case .activations:
            let t0 = Date()
            defer { forwardSeconds += Date().timeIntervalSince(t0) }
            try model.trainingForward(tokens: window, workspace: ws, computeLogits: false) { l, k, x, ldx, t in
                self.observe(layer: l, kind: k, x: x, ldx: ldx, tokens: t)
            }
        }
        windows += 1
        tokens += window.count
        convertedWeightBytes = max(convertedWeightBytes, ws.convertedWeightBytes)
        return loss
    }

    /// The shape a tensor of this mode has in the file: [rows, columns] or [1, columns].
    public func shape(layer: Int, kind: LinearKind) -> [Int] {
        guard let op = model.layers[layer].op(kind) else { return [0, 0] }
        return mode == .fisher ? [op.rows, op.columns] : [1, op.columns]
    }

    /// The accumulated values in Hugging Face row order (Fisher: the sum over windows of squared
    /// gradients; activations: the mean of x^2 per column over all tokens seen). Empty when the
    /// block is not held.
    public func values(layer: Int, kind: LinearKind) -> [Float] {
        guard let blk = acc[layer] else { return [] }
        let buf = blk[kind.rawValue]
        let s = shape(layer: layer, kind: kind)
        if mode == .activations {
            let inv = tokens > 0 ? 1 / Float(tokens) : 0
            return buf.toArray().map { $0 * inv }
        }
        let c = model.config
        guard model.ropeLayout == .interleaved, kind == .q || kind == .k else { return buf.toArray() }
        let heads = kind == .q ? c.numHeads : c.numKVHeads
        let map = RopePermutation.ggufRowForHFRow(heads: heads, headDim: c.headDim)
        let cols = s[1]
        var out = [Float](repeating: 0, count: s[0] * cols)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<s[0] { (o.baseAddress! + r * cols).update(from: buf.pointer + map[r] * cols, count: cols) }
        }
        return out
    }

    /// The shape of a stored linear weight's entry in the file: the weight's own (Hugging Face)
    /// shape for Fisher, [1, in-features] for activations.
    public func shape(of t: LinearTensor) -> [Int] {
        mode == .fisher ? t.storedShape : [1, t.columns]
    }

    /// The values of one stored linear weight in the checkpoint's orientation: the parts of a fused
    /// QKV stacked, Conv1D weights transposed back to [in, out].
    public func values(of t: LinearTensor, layer: Int) -> [Float] {
        if mode == .activations, let first = t.parts.first?.kind { return values(layer: layer, kind: first) }
        var rowsOut: [Float] = []
        rowsOut.reserveCapacity(t.rows * t.columns)
        for part in t.parts { if let k = part.kind { rowsOut += values(layer: layer, kind: k) } }
        guard t.transposed else { return rowsOut }
        var out = [Float](repeating: 0, count: rowsOut.count)
        for r in 0..<t.rows { for c in 0..<t.columns { out[c * t.rows + r] = rowsOut[r * t.columns + c] } }
        return out
    }

    /// The metadata Squeeze writes with this run's values, besides the caller's.
    func fileMetadata(_ metadata: [String: String]) -> [String: String] {
        var meta = metadata
        meta["format"] = SensitivityFile.formatName
        meta["mode"] = mode.rawValue
        meta["windows"] = String(windows)
        meta["tokens"] = String(tokens)
        meta["row_order"] = "huggingface"
        meta["model_type"] = model.config.modelType
        if !losses.isEmpty {
            meta["mean_loss"] = String(losses.reduce(0, +) / Double(losses.count))
            meta["losses"] = losses.map { String($0) }.joined(separator: ",")
        }
        return meta
    }

    /// Writes the sensitivity to a safetensors file: one tensor per stored linear weight under its
    /// checkpoint name (`model.layers.N.self_attn.q_proj.weight`, `transformer.h.N.attn.c_attn.weight`,
    /// ...), in Hugging Face row order and shape, F32 or BF16, with `metadata` plus `format`, `mode`,
    /// `windows` and `tokens` entries. Blocks are laid out from the last to the first (the order a
    /// block-streamed run finishes them; `SensitivityWriter`). Needs every block.
    public func write(to path: String, dtype: DType = .f32, metadata: [String: String] = [:]) throws {
        let w = try SensitivityWriter(path: path, accumulator: self, dtype: dtype, metadata: metadata)
        do {
            for l in stride(from: model.layers.count - 1, through: 0, by: -1) { try w.write(layer: l, from: self) }
            try w.finish()
        } catch {
            w.abort()
            throw error
        }
    }
}

/// Writes a sensitivity file block by block, from the last block to the first, as a
/// block-streamed run finishes them (`Sensitivity.compute(output:)`): the header (with the run's
/// windows, tokens and losses, known once every window has been through the forward pass) first,
/// then each block's tensors as soon as its accumulators are complete, so they can be freed.
public final class SensitivityWriter {
    let writer: SafeTensorsWriter
    let dtype: DType
    let model: DecoderModel
    /// The next block to write.
    public private(set) var nextLayer: Int

    /// Opens `path` for the run `accumulator` describes (its mode, windows, tokens and losses).
    public init(path: String, accumulator acc: SensitivityAccumulator, dtype: DType, metadata: [String: String]) throws
    {
        guard dtype == .f32 || dtype == .bf16 else { throw SensitivityError.unsupportedOutputDType(dtype) }
        let c = acc.model.config
        var entries: [SafeTensorsWriter.Entry] = []
        for l in stride(from: c.numLayers - 1, through: 0, by: -1) {
            for t in c.linearTensors(layer: l) {
                entries.append(.init(name: t.weightName, dtype: dtype, shape: acc.shape(of: t)))
            }
        }
        writer = try SafeTensorsWriter(path: path, entries: entries, metadata: acc.fileMetadata(metadata))
        self.dtype = dtype
        model = acc.model
        nextLayer = c.numLayers - 1
    }

    /// Writes block `layer`'s tensors from `acc` (which must hold it); blocks go from the last down.
    public func write(layer: Int, from acc: SensitivityAccumulator) throws {
        guard layer == nextLayer, acc.holdsBlock(layer) else {
            throw SensitivityError.invalidOption(
                name: "block", detail: "\(layer) written out of order or not held (next: \(nextLayer))")
        }
        for t in model.config.linearTensors(layer: layer) {
            let v = acc.values(of: t, layer: layer)
            let name = t.weightName
            if dtype == .f32 {
                try v.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
            } else {
                var b = [UInt16](repeating: 0, count: v.count)
                v.withUnsafeBufferPointer { src in
                    b.withUnsafeMutableBufferPointer {
                        HalfConversion.toBF16(src.baseAddress!, $0.baseAddress!, count: v.count)
                    }
                }
                try b.withUnsafeBytes { try writer.write(name: name, bytes: $0) }
            }
        }
        nextLayer -= 1
    }

    /// Syncs and renames the file into place; every block must have been written.
    public func finish() throws { try writer.finish() }

    /// Removes the unfinished file.
    public func abort() { writer.abort() }
}

/// How `Sensitivity.compute` goes through the model.
public enum SensitivityPass: String, Sendable, CaseIterable {
    /// Whole-model when it fits in a quarter of the memory, else block-streamed.
    case automatic
    /// Window by window, each through the whole model and back with every block's internals kept
    /// (no recomputation), every block's accumulators held: the fastest, for models whose F32
    /// accumulators fit in memory.
    case wholeModel = "whole-model"
    /// All windows block by block, each block's internals recomputed for its backward, one block's
    /// accumulators at a time (written and freed as each is done): memory independent of depth
    /// besides the windows' saved block inputs.
    case blockStreamed = "block-streamed"
}

/// Where `Sensitivity.compute` writes each block's values as soon as they are complete.
public struct SensitivityOutput: Sendable {
    public var path: String
    public var dtype: DType
    public var metadata: [String: String]
    public init(path: String, dtype: DType = .f32, metadata: [String: String] = [:]) {
        self.path = path; self.dtype = dtype; self.metadata = metadata
    }
}

/// The `squeeze sensitivity` computation.
public enum Sensitivity {
    /// Loads a model for sensitivity: weights as stored (F32, F16 and BF16 mapped from the file,
    /// other GGUF types dequantized to F32 at load); the backward pass reads them as they are.
    public static func loadModel(path: String, pool: WorkerPool = .shared) throws -> DecoderModel {
        try ModelLoader.load(path: path, options: LoadOptions(), pool: pool)
    }

    /// Checks options against the model and the tokenized calibration text, and draws the windows'
    /// starts (Python-compatible sampler, see `WindowSampler`).
    public static func plan(model: DecoderModel, tokenCount: Int, options: SensitivityOptions) throws -> [Int] {
        guard options.seqlen >= 2 else {
            throw SensitivityError.invalidOption(name: "seqlen", detail: "must be at least 2, got \(options.seqlen)")
        }
        if let limit = model.config.contextLimit, options.seqlen > limit {
            throw SensitivityError.windowExceedsContext(seqlen: options.seqlen, context: limit)
        }
        if options.mode == .fisher { try model.checkTrainable() }
        return try WindowSampler.starts(
            tokenCount: tokenCount, seqlen: options.seqlen, samples: options.samples, seed: options.seed)
    }

    /// Accumulates the sensitivity of `model` over `options.samples` windows of `options.seqlen`
    /// tokens drawn from `tokens`; calls `progress` after each step.
    public static func compute(
        model: DecoderModel, tokens: [Int], options: SensitivityOptions,
        progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityAccumulator {
        let starts = try plan(model: model, tokenCount: tokens.count, options: options)
        return try compute(
            model: model, windows: starts.map { Array(tokens[$0..<($0 + options.seqlen)]) },
            mode: options.mode, progress: progress)
    }

    /// Accumulates the sensitivity of `model` over the given windows, block by block.
    ///
    /// The windows go through the model together, one block at a time: each window's embeddings,
    /// then block 0 for every window, block 1, ..., keeping only each window's block inputs
    /// (`WindowActivations`); then (Fisher) the head and loss of every window, and the blocks from
    /// the last down, each block's internals recomputed from its saved input and its squared weight
    /// gradients summed over the windows into that block's accumulators only. Each block's weights
    /// are read once per pass and their mapped pages dropped after it. Memory: the windows' block
    /// inputs, plus per lane one block's internals and accumulators (`estimatedBytes`), plus the
    /// pages of the block being read; not the model, nor an F32 copy of it.
    ///
    /// With `output`, each block's values are written to the file as soon as the block is complete
    /// and its accumulators freed (the returned accumulator then holds no block: windows, tokens,
    /// losses and timings only); without, every block is kept and returned.
    ///
    /// `lanes` windows run at once, each on one thread of `model.pool` with its own workspace and
    /// block accumulators (lane i takes windows i, i + lanes, ...; the lanes' sums are added in lane
    /// order after each block, so a run is deterministic for a given number of lanes). nil chooses:
    /// as many lanes as the pool's threads (at most the windows) when their memory stays under a
    /// quarter of the machine's, else 1 (every kernel split over the pool's threads instead).
    public static func compute(
        model: DecoderModel, windows: [[Int]], mode: SensitivityMode, lanes: Int? = nil,
        pass: SensitivityPass = .automatic, output: SensitivityOutput? = nil,
        progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityAccumulator {
        if mode == .fisher { try model.checkTrainable() }
        let n =
            lanes.map { max(1, min($0, windows.count)) } ?? automaticLanes(model: model, windows: windows, mode: mode)
        let p = pass == .automatic ? automaticPass(model: model, windows: windows, mode: mode, lanes: n) : pass
        if p == .wholeModel {
            let acc = try wholeModel(model: model, windows: windows, mode: mode, lanes: n, progress: progress)
            if let output { try acc.write(to: output.path, dtype: output.dtype, metadata: output.metadata) }
            return acc
        }
        return try BlockStreamedRun(model: model, windows: windows, mode: mode, lanes: n, progress: progress)
            .run(output: output)
    }

    /// The pass `compute` takes by default: whole-model when every block's accumulators and
    /// internals, per lane, fit in a quarter of the physical memory, else block-streamed.
    public static func automaticPass(
        model: DecoderModel, windows: [[Int]], mode: SensitivityMode, lanes: Int
    )
        -> SensitivityPass
    {
        let c = model.config
        let seqlen = windows.map(\.count).max() ?? 1
        let acc = (0..<c.numLayers).reduce(0) {
            $0 + SensitivityAccumulator.blockBytes(model: model, layer: $1, mode: mode)
        }
        let h = c.hiddenSize, qd = c.numHeads * c.headDim, kvd = c.numKVHeads * c.headDim
        let internals =
            4 * seqlen * c.numLayers * (6 * h + 2 * qd + 2 * kvd + 2 * c.intermediateSize)
            + c.numLayers * TrainingWorkspace.familyBlockByteCount(config: c, tokens: seqlen)
        let perLane = acc + TrainingWorkspace.byteCount(config: c, tokens: seqlen) + internals
        return lanes * perLane < Int(ProcessInfo.processInfo.physicalMemory / 4) ? .wholeModel : .blockStreamed
    }

    /// The whole-model pass (see `SensitivityPass.wholeModel`): lane i takes windows i, i + lanes, ...
    /// with its own workspace and accumulators, summed in lane order at the end.
    static func wholeModel(
        model: DecoderModel, windows: [[Int]], mode: SensitivityMode, lanes n: Int,
        progress: ((SensitivityProgress) -> Void)?
    ) throws -> SensitivityAccumulator {
        let t0 = Date()
        func report(_ done: Int, _ tokens: Int, _ loss: Double?) {
            progress?(
                SensitivityProgress(
                    done: done, total: windows.count, tokens: tokens, elapsed: Date().timeIntervalSince(t0),
                    loss: loss, phase: "window", block: nil))
        }
        if n <= 1 {
            let acc = SensitivityAccumulator(model: model, mode: mode)
            acc.wholeModelWorkspace = true
            for (i, w) in windows.enumerated() {
                let loss = try acc.add(window: w)
                report(i + 1, acc.tokens, loss)
            }
            return acc
        }
        let accs = (0..<n).map { _ in
            let a = SensitivityAccumulator(model: model.sharingWeights(pool: WorkerPool(threads: 1)), mode: mode)
            a.wholeModelWorkspace = true
            return a
        }
        let lock = NSLock()
        var losses = [Double?](repeating: nil, count: windows.count)
        var done = 0, tokens = 0
        var failure: Error?
        model.pool.run(tasks: n, threads: n) { lane, _ in
            let acc = accs[lane]
            var i = lane
            while i < windows.count {
                if lock.withLock({ failure != nil }) { return }
                do {
                    let loss = try acc.add(window: windows[i])
                    lock.withLock {
                        losses[i] = loss
                        done += 1
                        tokens += windows[i].count
                        report(done, tokens, loss)
                    }
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                    return
                }
                i += n
            }
        }
        if let failure { throw failure }
        let out = SensitivityAccumulator(model: model, mode: mode, allocate: false)
        out.acc = accs[0].acc
        for a in accs.dropFirst() { out.mergeBlocks(a) }
        out.windows = windows.count
        out.tokens = accs.reduce(0) { $0 + $1.tokens }
        out.forwardSeconds = accs.reduce(0) { $0 + $1.forwardSeconds } / Double(n)
        out.backwardSeconds = accs.reduce(0) { $0 + $1.backwardSeconds } / Double(n)
        out.losses = losses.compactMap { $0 }
        out.convertedWeightBytes = accs.map(\.convertedWeightBytes).max() ?? 0
        return out
    }

    /// Bytes a run holds besides the mapped weights: the windows' block inputs (and gradients), and
    /// per lane a workspace and the largest block's accumulators (Fisher: rows x columns floats per
    /// weight; activations: every block's columns).
    public static func estimatedBytes(
        model: DecoderModel, windows: Int, seqlen: Int, mode: SensitivityMode, lanes: Int
    )
        -> Int
    {
        let c = model.config
        let window = WindowActivations.byteCount(config: c, tokens: seqlen, backward: mode == .fisher)
        let blocks = (0..<c.numLayers).map { SensitivityAccumulator.blockBytes(model: model, layer: $0, mode: mode) }
        let acc = mode == .fisher ? (blocks.max() ?? 0) : blocks.reduce(0, +)
        return windows * window + lanes * (TrainingWorkspace.byteCount(config: c, tokens: seqlen) + acc)
    }

    /// The lanes `compute` uses when none are given: the pool's threads (at most the windows) when
    /// the run's memory with them stays under a quarter of the physical memory.
    public static func automaticLanes(model: DecoderModel, windows: [[Int]], mode: SensitivityMode) -> Int {
        let threads = min(model.pool.defaultThreads, model.pool.threadCount, windows.count)
        guard threads > 1 else { return 1 }
        let seqlen = windows.map(\.count).max() ?? 1
        let bytes = estimatedBytes(model: model, windows: windows.count, seqlen: seqlen, mode: mode, lanes: threads)
        let budget = Int(ProcessInfo.processInfo.physicalMemory / 4)
        return bytes < budget ? threads : 1
    }

    /// The metadata recorded with a run.
    public static func metadata(
        options: SensitivityOptions, calibrationPath: String, calibrationSHA256: String,
        tokenCount: Int, modelPath: String
    ) -> [String: String] {
        [
            "samples": String(options.samples), "seqlen": String(options.seqlen), "seed": String(options.seed),
            "calibration_file": URL(fileURLWithPath: calibrationPath).lastPathComponent,
            "calibration_sha256": calibrationSHA256, "calibration_tokens": String(tokenCount),
            "model": URL(fileURLWithPath: modelPath).lastPathComponent,
            "sampler": "python-random: random.seed(seed); start = random.randint(0, tokens - seqlen - 1)",
            "objective": options.mode == .fisher
                ? "sum over windows of the squared gradient of the mean next-token cross-entropy (float32)"
                : "mean over calibration tokens of the squared input activation per column (float32)",
        ]
    }
}
