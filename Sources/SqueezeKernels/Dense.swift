import CSqueezeKernels
import SqueezeCore

/// Errors from building kernel operators.
public enum KernelError: Error, CustomStringConvertible, Equatable {
    case unsupportedDType(tensor: String, dtype: DType)
    case badShape(tensor: String, shape: [Int])

    public var description: String {
        switch self {
        case let .unsupportedDType(t, d):
            return "tensor '\(t)': dtype \(d.rawValue) is not supported by the dense kernels (F32, F16, BF16)"
        case let .badShape(t, s): return "tensor '\(t)': expected a 2-D weight, got shape \(s)"
        }
    }
}

/// A dense F32, F16 or BF16 weight [rows, columns], row-major, used in place (e.g. over a mapped file).
public final class DenseMatrix: LinearOperator, @unchecked Sendable {
    public let tensor: Tensor
    public let rows: Int
    public let columns: Int
    public var weightBytes: Int { tensor.byteCount }
    public var kind: String { tensor.dtype.rawValue }

    /// Wraps a 2-D tensor of dtype F32, F16 or BF16 (no copy).
    public init(_ tensor: Tensor) throws {
        guard tensor.shape.count == 2 else { throw KernelError.badShape(tensor: tensor.name, shape: tensor.shape) }
        guard [.f32, .f16, .bf16].contains(tensor.dtype) else {
            throw KernelError.unsupportedDType(tensor: tensor.name, dtype: tensor.dtype)
        }
        self.tensor = tensor
        rows = tensor.shape[0]
        columns = tensor.shape[1]
    }

    /// Rows [r0, r1) of y = W x into y[0..<(r1-r0)], on the calling thread.
    public func gemvRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ r0: Int, _ r1: Int) {
        let k = Int64(columns)
        switch tensor.dtype {
        case .f32: sq_gemv_f32(tensor.data.assumingMemoryBound(to: Float.self), k, x, y, k, Int64(r0), Int64(r1))
        case .f16: sq_gemv_f16(tensor.data.assumingMemoryBound(to: UInt16.self), k, x, y, k, Int64(r0), Int64(r1))
        default: sq_gemv_bf16(tensor.data.assumingMemoryBound(to: UInt16.self), k, x, y, k, Int64(r0), Int64(r1))
        }
    }

    /// Output columns [n0, n1) of Y = X W^T, on the calling thread.
    public func gemmRows(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int, _ n0: Int, _ n1: Int
    ) {
        let k = Int64(columns)
        switch tensor.dtype {
        case .f32:
            sq_gemm_f32(
                x, Int64(ldx), tensor.data.assumingMemoryBound(to: Float.self), k, y, Int64(ldy), Int64(m), k,
                Int64(n0), Int64(n1))
        case .f16:
            sq_gemm_f16(
                x, Int64(ldx), tensor.data.assumingMemoryBound(to: UInt16.self), k, y, Int64(ldy), Int64(m), k,
                Int64(n0), Int64(n1))
        default:
            sq_gemm_bf16(
                x, Int64(ldx), tensor.data.assumingMemoryBound(to: UInt16.self), k, y, Int64(ldy), Int64(m), k,
                Int64(n0), Int64(n1))
        }
    }

    public func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        // Row blocks through a job on the stack (no allocation per product), each as gemvRows does.
        let block = pool.blockLength(rows, minBlock: 64, blocksPerThread: 4)
        let dtype: Int32 = tensor.dtype == .f32 ? 0 : (tensor.dtype == .f16 ? 1 : 2)
        var job = CTaskJob(
            c: sq_gemv_job(
                dtype: dtype, w: UnsafeRawPointer(tensor.data), k: Int64(columns), x: x, y: y,
                rows: Int64(rows), block: Int64(block)),
            function: sq_gemv_task)
        pool.run(tasks: (rows + block - 1) / block, job: &job)
    }

    public func gemm(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int, pool: WorkerPool
    ) {
        if m == 1 { gemv(x, y, pool: pool); return }
        if tensor.dtype == .f32 && m >= 32 {
            // The packed GEMM (`sq_gemm_f32` from 32 tokens): one share per thread, so that each packs its operands once.
            let w = tensor.data.assumingMemoryBound(to: Float.self), k = Int64(columns)
            let split = BackwardKernels.split(m: m, n: rows, threads: min(pool.defaultThreads, pool.threadCount))
            pool.run(tasks: split.parts) { t, _ in
                let lo = t * split.per, hi = min(split.rows ? m : self.rows, lo + split.per)
                guard lo < hi else { return }
                if split.rows {
                    sq_gemm_f32(
                        x + lo * ldx, Int64(ldx), w, k, y + lo * ldy, Int64(ldy), Int64(hi - lo), k, 0, Int64(self.rows)
                    )
                } else {
                    sq_gemm_f32(x, Int64(ldx), w, k, y, Int64(ldy), Int64(m), k, Int64(lo), Int64(hi))
                }
            }
            return
        }
        pool.parallelFor(rows / 4 + (rows % 4 == 0 ? 0 : 1), minBlock: 4, blocksPerThread: 4) { r, _ in
            self.gemmRows(x, ldx: ldx, m: m, y, ldy: ldy, r.lowerBound * 4, min(self.rows, r.upperBound * 4))
        }
    }
}

/// Vector helpers backed by the SIMD kernels.
public enum VectorOps {
    /// Dot product of two float vectors.
    @inlinable public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        sq_dot_f32(a, b, Int64(n))
    }
    /// y += a * x.
    @inlinable public static func axpy(
        _ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int
    ) {
        sq_axpy_f32(a, x, y, Int64(n))
    }
}

/// Plain Swift references for the dense kernels (what tests compare against).
public enum DenseReference {
    /// y = W x in Double, W given as Float values row-major.
    public static func gemv(_ w: [Float], rows: Int, cols: Int, _ x: [Float]) -> [Float] {
        (0..<rows).map { r in
            var s = 0.0
            for c in 0..<cols { s += Double(w[r * cols + c]) * Double(x[c]) }
            return Float(s)
        }
    }
}
