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

/// Progress after each window.
public struct SensitivityProgress: Sendable {
    public let done: Int
    public let total: Int
    public let tokens: Int
    public let elapsed: Double
    public let loss: Double?
    public var tokensPerSecond: Double { elapsed > 0 ? Double(tokens) / elapsed : 0 }
}

/// The per-weight sensitivity of a model's linear layers, accumulated window by window, in F32.
///
/// Fisher mode: receives each linear weight's gradient factors from the backward pass and adds
/// (dY^T X)^2 into the accumulator at once (`BackwardKernels.weightGradient(.addSquare)`), so no
/// full set of gradients is ever held. Activations mode: adds x_j^2 of each linear layer's input.
/// Accumulators are kept in the model's own row order; `tensor(layer:kind:)` returns Hugging Face
/// order (for GGUF-loaded models the Q and K rows are permuted back to the rotate-half layout).
public final class SensitivityAccumulator: GradientSink {
    public let model: DecoderModel
    public let mode: SensitivityMode
    /// accumulators[layer][kind.rawValue]
    let acc: [[AlignedBuffer<Float>]]
    /// Windows and tokens seen.
    public internal(set) var windows = 0
    public internal(set) var tokens = 0
    /// Loss of each window (Fisher mode), in window order.
    public internal(set) var losses: [Double] = []
    /// Seconds spent in forward passes (with logits and loss) and in backward passes, over all windows.
    /// When `Sensitivity.compute` runs several windows at once, the sum over its lanes divided by the
    /// number of lanes, so that tokens / seconds is the run's throughput.
    public internal(set) var forwardSeconds = 0.0
    public internal(set) var backwardSeconds = 0.0
    private var workspace: TrainingWorkspace?

    /// Allocates zeroed accumulators for `model` (rows x columns floats per linear weight for Fisher,
    /// columns for activations).
    public init(model: DecoderModel, mode: SensitivityMode) {
        self.model = model
        self.mode = mode
        acc = model.layers.map { layer in
            LinearKind.allCases.map { kind in
                guard let op = layer.op(kind) else { return AlignedBuffer<Float>(count: 1) }
                return AlignedBuffer<Float>(count: mode == .fisher ? op.rows * op.columns : op.columns)
            }
        }
    }

    /// An accumulator for `model` that takes over `lane`'s buffers and sums (not its losses): the
    /// result of a run in lanes, without allocating one more set of accumulators.
    init(model: DecoderModel, adopting lane: SensitivityAccumulator) {
        self.model = model
        mode = lane.mode
        acc = lane.acc
        windows = lane.windows
        tokens = lane.tokens
        forwardSeconds = lane.forwardSeconds
        backwardSeconds = lane.backwardSeconds
    }

    /// Adds `other`'s sums (accumulators, windows, tokens, seconds) into this one; the losses are
    /// left to the caller, which knows the windows' order.
    func merge(_ other: SensitivityAccumulator) {
        for (l, kinds) in acc.enumerated() {
            for (k, buf) in kinds.enumerated() {
                let src = other.acc[l][k]
                precondition(src.count == buf.count, "merging accumulators of different models")
                let d = buf.pointer, a = src.pointer
                for i in 0..<buf.count { d[i] += a[i] }
            }
        }
        windows += other.windows
        tokens += other.tokens
        forwardSeconds += other.forwardSeconds
        backwardSeconds += other.backwardSeconds
    }

    public func accept(
        layer: Int, kind: LinearKind, dY: UnsafePointer<Float>, lddy: Int,
        x: UnsafePointer<Float>, ldx: Int, tokens: Int
    ) {
        guard let op = model.layers[layer].op(kind) else { return }
        BackwardKernels.weightGradient(
            dY: dY, lddy: lddy, x: x, ldx: ldx, tokens: tokens, rows: op.rows,
            columns: op.columns, out: acc[layer][kind.rawValue].pointer, mode: .addSquare,
            pool: model.pool)
    }

    func observe(layer: Int, kind: LinearKind, x: UnsafePointer<Float>, ldx: Int, tokens: Int) {
        let out = acc[layer][kind.rawValue].pointer
        guard let n = model.layers[layer].op(kind)?.columns else { return }
        for t in 0..<tokens { sq_add_square_f32(x + t * ldx, out, Int64(n)) }
    }

    /// Adds one window: Fisher mode runs forward and backward and returns the window's loss;
    /// activations mode runs the forward pass only and returns nil.
    @discardableResult
    public func add(window: [Int]) throws -> Double? {
        if workspace == nil || workspace!.maxTokens < window.count {
            workspace = TrainingWorkspace(model: model, maxTokens: window.count)
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
        return loss
    }

    /// The shape a tensor of this mode has in the file: [rows, columns] or [1, columns].
    public func shape(layer: Int, kind: LinearKind) -> [Int] {
        guard let op = model.layers[layer].op(kind) else { return [0, 0] }
        return mode == .fisher ? [op.rows, op.columns] : [1, op.columns]
    }

    /// The accumulated values in Hugging Face row order (Fisher: the sum over windows of squared
    /// gradients; activations: the mean of x^2 per column over all tokens seen).
    public func values(layer: Int, kind: LinearKind) -> [Float] {
        let buf = acc[layer][kind.rawValue]
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

    /// Writes the sensitivity to a safetensors file: one tensor per stored linear weight under its
    /// checkpoint name (`model.layers.N.self_attn.q_proj.weight`, `transformer.h.N.attn.c_attn.weight`,
    /// ...), in Hugging Face row order and shape, F32 or BF16, with `metadata` plus `format`, `mode`,
    /// `windows` and `tokens` entries.
    public func write(to path: String, dtype: DType = .f32, metadata: [String: String] = [:]) throws {
        guard dtype == .f32 || dtype == .bf16 else { throw SensitivityError.unsupportedOutputDType(dtype) }
        let c = model.config
        var entries: [SafeTensorsWriter.Entry] = []
        for l in 0..<model.layers.count {
            for t in c.linearTensors(layer: l) {
                entries.append(.init(name: t.weightName, dtype: dtype, shape: shape(of: t)))
            }
        }
        var meta = metadata
        meta["format"] = SensitivityFile.formatName
        meta["mode"] = mode.rawValue
        meta["windows"] = String(windows)
        meta["tokens"] = String(tokens)
        meta["row_order"] = "huggingface"
        meta["model_type"] = c.modelType
        if !losses.isEmpty { meta["mean_loss"] = String(losses.reduce(0, +) / Double(losses.count)) }
        let w = try SafeTensorsWriter(path: path, entries: entries, metadata: meta)
        do {
            for l in 0..<model.layers.count {
                for t in c.linearTensors(layer: l) {
                    let v = values(of: t, layer: l)
                    let name = t.weightName
                    if dtype == .f32 {
                        try v.withUnsafeBytes { try w.write(name: name, bytes: $0) }
                    } else {
                        var b = [UInt16](repeating: 0, count: v.count)
                        v.withUnsafeBufferPointer { src in
                            b.withUnsafeMutableBufferPointer {
                                HalfConversion.toBF16(src.baseAddress!, $0.baseAddress!, count: v.count)
                            }
                        }
                        try b.withUnsafeBytes { try w.write(name: name, bytes: $0) }
                    }
                }
            }
            try w.finish()
        } catch {
            w.abort()
            throw error
        }
    }
}

/// The `squeeze sensitivity` computation.
public enum Sensitivity {
    /// Loads a model for sensitivity: linear weights and LM head as dense F32 (the backward pass needs them).
    public static func loadModel(path: String, pool: WorkerPool = .shared) throws -> DecoderModel {
        try ModelLoader.load(path: path, options: LoadOptions(weightDType: .f32), pool: pool)
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
    /// tokens drawn from `tokens`; calls `progress` after each window.
    public static func compute(
        model: DecoderModel, tokens: [Int], options: SensitivityOptions,
        progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityAccumulator {
        let starts = try plan(model: model, tokenCount: tokens.count, options: options)
        return try compute(
            model: model, windows: starts.map { Array(tokens[$0..<($0 + options.seqlen)]) },
            mode: options.mode, progress: progress)
    }

    /// Accumulates the sensitivity of `model` over the given windows.
    ///
    /// `lanes` windows run at once, each on one thread of `model.pool` with its own workspace and
    /// accumulator (lane i takes windows i, i + lanes, ...; the lanes' sums are added in lane order at
    /// the end, so a run is deterministic for a given number of lanes). One window per thread avoids
    /// the fork-join steps and load imbalance of splitting every matrix product (timings in
    /// docs/performance.md), at the cost of an accumulator and a workspace per lane. nil chooses: as many lanes
    /// as the pool's threads (at most the windows) when their memory stays under a quarter of the
    /// machine's, else 1 (every kernel split over the pool's threads instead).
    public static func compute(
        model: DecoderModel, windows: [[Int]], mode: SensitivityMode, lanes: Int? = nil,
        progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityAccumulator {
        let n =
            lanes.map { max(1, min($0, windows.count)) } ?? automaticLanes(model: model, windows: windows, mode: mode)
        let t0 = Date()
        if n <= 1 {
            let acc = SensitivityAccumulator(model: model, mode: mode)
            for (i, w) in windows.enumerated() {
                let loss = try acc.add(window: w)
                progress?(
                    SensitivityProgress(
                        done: i + 1, total: windows.count, tokens: acc.tokens,
                        elapsed: Date().timeIntervalSince(t0), loss: loss))
            }
            return acc
        }
        let accs = (0..<n).map { _ in
            SensitivityAccumulator(model: model.sharingWeights(pool: WorkerPool(threads: 1)), mode: mode)
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
                        progress?(
                            SensitivityProgress(
                                done: done, total: windows.count, tokens: tokens,
                                elapsed: Date().timeIntervalSince(t0), loss: loss))
                    }
                } catch {
                    lock.withLock { if failure == nil { failure = error } }
                    return
                }
                i += n
            }
        }
        if let failure { throw failure }
        let out = SensitivityAccumulator(model: model, adopting: accs[0])
        for a in accs.dropFirst() { out.merge(a) }
        out.forwardSeconds /= Double(n)
        out.backwardSeconds /= Double(n)
        out.losses = losses.compactMap { $0 }
        return out
    }

    /// The lanes `compute` uses when none are given: the pool's threads (at most the windows) when
    /// the lanes' accumulators and workspaces need less than a quarter of the physical memory.
    public static func automaticLanes(model: DecoderModel, windows: [[Int]], mode: SensitivityMode) -> Int {
        let threads = min(model.pool.defaultThreads, model.pool.threadCount, windows.count)
        guard threads > 1 else { return 1 }
        let c = model.config
        let seqlen = windows.map(\.count).max() ?? 1
        var accFloats = 0
        for l in model.layers {
            for kind in LinearKind.allCases {
                guard let op = l.op(kind) else { continue }
                accFloats += mode == .fisher ? op.rows * op.columns : op.columns
            }
        }
        // Workspace: about (4 h + 2 qd + 2 kvd + 2 ffn) floats per token and layer, logits, scratch.
        let perToken =
            c.numLayers
            * (6 * c.hiddenSize + 3 * c.numHeads * c.headDim + 2 * c.numKVHeads * c.headDim
                + 2 * c.intermediateSize) + 2 * c.vocabSize + 4 * c.intermediateSize
        let perLane = 4 * (accFloats + seqlen * perToken)
        let budget = Int(ProcessInfo.processInfo.physicalMemory / 4)
        return threads * perLane < budget ? threads : 1
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
