import Foundation
import SqueezeCore
import SqueezeKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// How the backward pass reads weights: as stored (F32, F16 or BF16, mapped from the checkpoint),
// never as an F32 copy of the model. dX = dY W with an F32 weight reads it in place; with F16 or
// BF16, W's rows are converted panel by panel into the workspace's bounded panel
// (`TrainingWorkspace.panelFloats`) and each panel's product is added into dX.

extension DecoderModel {
    /// The checkpoint name of block `layer`'s `kind` weight (for errors).
    func weightName(_ layer: Int, _ kind: LinearKind) -> String {
        config.weightName(layer: layer, kind: kind) ?? "\(kind) of block \(layer)"
    }

    /// Throws naming `name` unless `op` is a dense F32, F16 or BF16 weight.
    static func checkDense(_ op: LinearOperator, name: String) throws {
        guard let d = op as? DenseMatrix, [.f32, .f16, .bf16].contains(d.tensor.dtype) else {
            throw ModelError.unsupportedWeight(
                file: "(loaded model)", tensor: name,
                detail:
                    "the backward pass needs dense F32, F16 or BF16 weights, this one is '\(op.kind)'; load the unquantized model"
            )
        }
    }

    /// dX = dY W (or dX += dY W when `add`) for block `li`'s `kind` linear layer over `tokens` rows.
    func blockInputGradient(
        _ li: Int, _ kind: LinearKind, _ ws: TrainingWorkspace, dY: UnsafePointer<Float>, lddy: Int, tokens: Int,
        dX: UnsafeMutablePointer<Float>, lddx: Int, add: Bool = false
    ) throws {
        guard let op = layers[li].op(kind) else {
            throw ModelError.missingTensor(file: "(loaded model)", tensor: weightName(li, kind))
        }
        try inputGradient(
            op, name: weightName(li, kind), ws, dY: dY, lddy: lddy, tokens: tokens, dX: dX, lddx: lddx, add: add)
    }

    /// dX (=, or += when `add`) dY W for the weight W [rows, columns] of `op`, read as stored.
    func inputGradient(
        _ op: LinearOperator, name: String, _ ws: TrainingWorkspace, dY: UnsafePointer<Float>, lddy: Int,
        tokens m: Int, dX: UnsafeMutablePointer<Float>, lddx: Int, add: Bool = false
    ) throws {
        try Self.checkDense(op, name: name)
        let d = op as! DenseMatrix
        let rows = d.rows, cols = d.columns
        if d.tensor.dtype == .f32 {
            BackwardKernels.inputGradient(
                dY: dY, lddy: lddy, m: m, weight: d.tensor.data.assumingMemoryBound(to: Float.self), rows: rows,
                columns: cols, dX: dX, lddx: lddx, mode: add ? .add : .store, pool: pool)
            return
        }
        let per = min(rows, max(16, TrainingWorkspace.panelFloats / max(1, cols)))
        let panel = ws.ensurePanel(per * cols)
        var r0 = 0
        while r0 < rows {
            let n = min(per, rows - r0)
            let base = r0
            pool.parallelFor(n, minBlock: 8) { r, _ in
                d.tensor.convertToFloat(
                    into: panel + r.lowerBound * cols, offset: (base + r.lowerBound) * cols, count: r.count * cols)
            }
            BackwardKernels.gemm(
                dY + r0, sai: lddy, sap: 1, panel, ldb: cols, dX, ldo: lddx, m: m, k: n, n: cols,
                mode: add || r0 > 0 ? .add : .store, pool: pool)
            r0 += n
        }
    }

    /// Drops the resident pages of block `li`'s weights when they are mapped from a checkpoint file
    /// (they are read again from the file, or the page cache, when next used), so that a pass over
    /// a model larger than memory keeps about one block's weights resident. Weights in memory the
    /// process allocated are left alone.
    public func releasePages(block li: Int) {
        for (_, op) in layers[li].linears { Self.releasePages(of: op) }
    }

    /// Drops the resident pages of the LM head and project_out when mapped from a file.
    public func releaseHeadPages() {
        Self.releasePages(of: lmHead)
        if let po = projectOut { Self.releasePages(of: po) }
    }

    static func releasePages(of op: LinearOperator) {
        guard let d = op as? DenseMatrix, d.tensor.owner is MappedFile else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: d.tensor.data), end = start + d.tensor.byteCount
        // Only whole pages inside the tensor: a neighbour's bytes stay resident.
        let lo = (start + page - 1) / page * page, hi = end / page * page
        guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
        madvise(p, hi - lo, MADV_DONTNEED)
    }
}
