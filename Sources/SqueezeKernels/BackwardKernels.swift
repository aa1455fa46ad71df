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
    /// With a pool, the columns are split in blocks of 16 over its threads; without, it runs on the caller.
    public static func gemm(_ a: UnsafePointer<Float>, sai: Int, sap: Int, _ b: UnsafePointer<Float>, ldb: Int,
                            _ out: UnsafeMutablePointer<Float>, ldo: Int, m: Int, k: Int, n: Int, mode: Mode,
                            pool: WorkerPool?) {
        guard m > 0, n > 0 else { return }
        guard let pool, pool.threadCount > 1, n >= 32 else {
            sq_gemm_strided_f32(a, Int64(sai), Int64(sap), b, Int64(ldb), out, Int64(ldo), Int64(m), Int64(k), 0, Int64(n), mode.rawValue)
            return
        }
        let blocks = (n + 15) / 16
        pool.parallelFor(blocks, minBlock: 1, blocksPerThread: 1) { r, _ in
            let j0 = r.lowerBound * 16, j1 = min(n, r.upperBound * 16)
            sq_gemm_strided_f32(a, Int64(sai), Int64(sap), b, Int64(ldb), out, Int64(ldo), Int64(m), Int64(k),
                                Int64(j0), Int64(j1), mode.rawValue)
        }
    }

    /// dX (mode) dY W: dX[t, c] = sum_r dY[t, r] W[r, c] for t < m; W is [rows, columns] row-major F32.
    public static func inputGradient(dY: UnsafePointer<Float>, lddy: Int, m: Int, weight w: UnsafePointer<Float>,
                                     rows: Int, columns: Int, dX: UnsafeMutablePointer<Float>, lddx: Int,
                                     mode: Mode = .store, pool: WorkerPool?) {
        gemm(dY, sai: lddy, sap: 1, w, ldb: columns, dX, ldo: lddx, m: m, k: rows, n: columns, mode: mode, pool: pool)
    }

    /// out (mode) dY^T X: C[r, c] = sum_t dY[t, r] X[t, c] for t < tokens; out is [rows, columns], row stride `columns`.
    /// With `.addSquare` this adds the squared weight gradient into a Fisher accumulator.
    public static func weightGradient(dY: UnsafePointer<Float>, lddy: Int, x: UnsafePointer<Float>, ldx: Int,
                                      tokens: Int, rows: Int, columns: Int, out: UnsafeMutablePointer<Float>,
                                      mode: Mode, pool: WorkerPool?) {
        gemm(dY, sai: 1, sap: lddy, x, ldb: ldx, out, ldo: columns, m: rows, k: tokens, n: columns, mode: mode, pool: pool)
    }

    /// out[i] += x[i]^2.
    public static func addSquare(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        sq_add_square_f32(x, out, Int64(count))
    }
}
