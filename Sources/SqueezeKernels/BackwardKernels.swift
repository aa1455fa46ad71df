import CSqueezeKernels
import SqueezeCore

/// The GEMMs of the backward pass (`sq_backward.h`): one strided kernel C = A B with an epilogue that
/// stores C, adds it, or adds its elementwise square (the Fisher accumulation, so a weight gradient
/// is never held in memory). AVX2+FMA register tile with a scalar path, chosen at run time.
public enum BackwardKernels {
    /// What happens to the product C.
    public enum Mode: Int32, Sendable {
        /// out = C
        case store = 0
        /// out += C
        case add = 1
        /// out += C * C, elementwise
        case addSquare = 2
    }

    /// out[i * ldo + j] (mode) sum_{p < k} a[i * sai + p * sap] * b[p * ldb + j], for i < m, j < n.
    /// With a pool, the work is split over its threads (see `general`); without, it runs on the caller.
    public static func gemm(
        _ a: UnsafePointer<Float>, sai: Int, sap: Int, _ b: UnsafePointer<Float>, ldb: Int,
        _ out: UnsafeMutablePointer<Float>, ldo: Int, m: Int, k: Int, n: Int, mode: Mode,
        pool: WorkerPool?
    ) {
        general(a, sai: sai, sap: sap, b, sbp: ldb, sbj: 1, out, ldo: ldo, m: m, k: k, n: n, mode: mode, pool: pool)
    }

    /// out[i * ldo + j] (mode) sum_{p < k} a[i * sai + p * sap] * b[p * sbp + j * sbj], for i < m, j < n:
    /// B may be row-major (sbj = 1) or a row-major [n, k] matrix read transposed (sbp = 1).
    /// With a pool, one contiguous share per thread: rows in multiples of 6 when n < m (each thread
    /// then packs all of B, the smaller operand), else columns in multiples of 16 (each packs all of A).
    public static func general(
        _ a: UnsafePointer<Float>, sai: Int, sap: Int, _ b: UnsafePointer<Float>, sbp: Int, sbj: Int,
        _ out: UnsafeMutablePointer<Float>, ldo: Int, m: Int, k: Int, n: Int, mode: Mode,
        pool: WorkerPool?
    ) {
        guard m > 0, n > 0 else { return }
        let threads = pool.map { min($0.defaultThreads, $0.threadCount) } ?? 1
        let split = split(m: m, n: n, threads: threads)
        guard let pool, split.parts > 1 else {
            sq_gemm_general_f32(
                a, Int64(sai), Int64(sap), b, Int64(sbp), Int64(sbj), out, Int64(ldo), Int64(m), Int64(k),
                0, Int64(n), mode.rawValue)
            return
        }
        pool.run(tasks: split.parts) { t, _ in
            let lo = t * split.per, hi = min(split.rows ? m : n, lo + split.per)
            guard lo < hi else { return }
            if split.rows {
                sq_gemm_general_f32(
                    a + lo * sai, Int64(sai), Int64(sap), b, Int64(sbp), Int64(sbj), out + lo * ldo, Int64(ldo),
                    Int64(hi - lo), Int64(k), 0, Int64(n), mode.rawValue)
            } else {
                sq_gemm_general_f32(
                    a, Int64(sai), Int64(sap), b, Int64(sbp), Int64(sbj), out, Int64(ldo), Int64(m), Int64(k),
                    Int64(lo), Int64(hi), mode.rawValue)
            }
        }
    }

    /// How `general` splits an [m, n] product over `threads`: along rows (in multiples of 6) or columns
    /// (in multiples of 16), `per` each, in `parts` parts (1: no split).
    public static func split(m: Int, n: Int, threads: Int) -> (rows: Bool, per: Int, parts: Int) {
        let rows = n < m
        let unit = rows ? 6 : 16, units = ((rows ? m : n) + unit - 1) / unit
        let parts = max(1, min(threads, units))
        let per = (units + parts - 1) / parts * unit
        return (rows, per, ((rows ? m : n) + per - 1) / per)
    }

    /// dX (mode) dY W: dX[t, c] = sum_r dY[t, r] W[r, c] for t < m; W is [rows, columns] row-major F32.
    public static func inputGradient(
        dY: UnsafePointer<Float>, lddy: Int, m: Int, weight w: UnsafePointer<Float>,
        rows: Int, columns: Int, dX: UnsafeMutablePointer<Float>, lddx: Int,
        mode: Mode = .store, pool: WorkerPool?
    ) {
        gemm(dY, sai: lddy, sap: 1, w, ldb: columns, dX, ldo: lddx, m: m, k: rows, n: columns, mode: mode, pool: pool)
    }

    /// out (mode) dY^T X: C[r, c] = sum_t dY[t, r] X[t, c] for t < tokens; out is [rows, columns], row stride `columns`.
    /// With `.addSquare` this adds the squared weight gradient into a Fisher accumulator.
    public static func weightGradient(
        dY: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
        tokens: Int, rows: Int, columns: Int, out: UnsafeMutablePointer<Float>,
        mode: Mode, pool: WorkerPool?
    ) {
        gemm(
            dY, sai: 1, sap: lddy, x, ldb: ldx, out, ldo: columns, m: rows, k: tokens, n: columns, mode: mode,
            pool: pool)
    }

    /// out[i] += x[i]^2.
    public static func addSquare(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        sq_add_square_f32(x, out, Int64(count))
    }
}
