import Foundation
import SqueezeCore
import SqueezeKernels
import SqueezeModels

/// The inputs of each block's linear layers over calibration windows, computed block by block with
/// the blocks before already quantized (as GPTQ does): the model's linear weights are F32 copies
/// that `commit` overwrites with what the quantized layer computes, and `advance` runs the block
/// again so the next block sees the quantized one's output. Only two block inputs per window live
/// at once, and the second moments of one block at a time.
final class LayerInputStream {
    let model: DecoderModel
    /// F32 weights per linear prefix, in the model's row order (GGUF Q/K rows interleaved).
    let weights: [String: AlignedBuffer<Float>]
    let windows: [WindowActivations]
    let workspace: TrainingWorkspace
    let config: ModelConfig
    let interleaved: Bool
    /// The next block whose inputs are not computed yet.
    private(set) var nextBlock = 0
    /// Seconds spent in forward passes and in X^T X.
    private(set) var forwardSeconds = 0.0

    /// Loads `input`'s model with owned F32 linear weights and embeds every window.
    init(input: ModelInput, windows tokens: [[Int]]) throws {
        guard !tokens.isEmpty else { throw QuantizePipelineError.badOption("--calibration: no calibration windows") }
        var owned: [String: AlignedBuffer<Float>] = [:]
        let source = input.source
        let file = input.path
        let factory: LinearFactory = { slot in
            guard slot.kind != nil else { return nil }
            guard slot.isWhole, !slot.transposed else {
                throw QuantizePipelineError.badOption(
                    "calibrated quantization needs each linear layer stored whole as [out, in]; '\(slot.prefix).weight' is "
                        + (slot.transposed ? "stored [in, out]" : "a slice of a fused tensor"))
            }
            let t = try source.tensor(slot.prefix + ".weight")
            guard t.shape == [slot.rows, slot.columns] else {
                throw ModelError.shapeMismatch(
                    file: file, tensor: slot.prefix + ".weight", expected: [slot.rows, slot.columns], got: t.shape)
            }
            let buf = AlignedBuffer<Float>(count: slot.rows * slot.columns)
            t.convertToFloat(into: buf.pointer, offset: 0, count: slot.rows * slot.columns)
            owned[slot.prefix] = buf
            return try DenseMatrix(
                Tensor.owning(buf, name: slot.prefix + ".weight", dtype: .f32, shape: [slot.rows, slot.columns]))
        }
        let net = try DecoderModel(config: input.config, source: source, linearFactory: factory)
        model = net
        weights = owned
        config = net.config
        interleaved = net.ropeLayout == .interleaved
        let maxT = max(2, tokens.map(\.count).max() ?? 2)
        let ws = TrainingWorkspace(model: net, maxTokens: maxT)
        workspace = ws
        let states = tokens.map { WindowActivations(model: net, tokens: $0, backward: false) }
        windows = states
        let t0 = DispatchTime.now().uptimeNanoseconds
        for w in states { try net.embed(w, workspace: ws) }
        forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// The kind whose input a layer of `kind` shares (q, k and v read one input; gate and up another).
    static func inputOwner(_ kind: LinearKind) -> LinearKind {
        switch kind {
        case .k, .v: return .q
        case .gate: return .up
        default: return kind
        }
    }

    /// Runs block `li` (which must be the next) over every window with its current weights and
    /// returns X^T X of each distinct linear input, keyed by `inputOwner` kind.
    func secondMoments(block li: Int) -> [LinearKind: InputSecondMoments] {
        precondition(li == nextBlock, "blocks are streamed in order")
        let t0 = DispatchTime.now().uptimeNanoseconds
        var acc: [LinearKind: InputSecondMoments] = [:]
        var scratch: [Int: (AlignedBuffer<Float>, AlignedBuffer<Float>)] = [:]
        let pool = model.pool
        let observer: LinearInputObserver = { _, kind, x, ldx, tokens in
            guard Self.inputOwner(kind) == kind else { return }
            let n: Int
            if let op = self.model.layers[li].op(kind) { n = op.columns } else { return }
            let m = acc[kind] ?? InputSecondMoments(columns: n)
            acc[kind] = m
            // X^T X through the dense GEMM: with XT = X^T [n, tokens] as both operands,
            // Y[a][b] = sum_t XT[a][t] XT[b][t].
            let key = n * 1_000_003 + tokens
            let (xt, y) =
                scratch[key] ?? (AlignedBuffer<Float>(count: n * tokens), AlignedBuffer<Float>(count: n * n))
            scratch[key] = (xt, y)
            for t in 0..<tokens { for c in 0..<n { xt[c * tokens + t] = x[t * ldx + c] } }
            let op = try! DenseMatrix(Tensor.owning(xt, name: "x^T", dtype: .f32, shape: [n, tokens]))
            op.gemm(xt.pointer, ldx: tokens, m: n, y.pointer, ldy: n, pool: pool)
            m.add(product: y.pointer, tokens: tokens)
        }
        for w in windows { model.forwardBlock(li, window: w, workspace: workspace, observer: observer) }
        forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return acc
    }

    /// Puts what a quantized layer computes (rows in Hugging Face order, as the quantizer sees them)
    /// into the model's copy of `prefix` of block `li`.
    func commit(prefix: String, kind: LinearKind, values: [Float], rows: Int, cols: Int) {
        guard let buf = weights[prefix] else { return }
        var map: [Int]?
        if interleaved && (kind == .q || kind == .k) {
            map = RopePermutation.ggufRowForHFRow(
                heads: kind == .q ? config.numHeads : config.numKVHeads, headDim: config.headDim)
        }
        values.withUnsafeBufferPointer { v in
            for r in 0..<rows {
                (buf.pointer + (map?[r] ?? r) * cols).update(from: v.baseAddress! + r * cols, count: cols)
            }
        }
    }

    /// Runs block `li` again over every window with its committed (quantized) weights, so that the
    /// next block's inputs come from it.
    func advance(block li: Int) {
        precondition(li == nextBlock, "blocks are streamed in order")
        let t0 = DispatchTime.now().uptimeNanoseconds
        for w in windows { model.forwardBlock(li, window: w, workspace: workspace) }
        nextBlock = li + 1
        forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }
}
