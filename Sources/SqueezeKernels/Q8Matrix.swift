import CSqueezeKernels
import SqueezeCore

/// A weight stored as 8-bit integers with one F32 scale per block of 32 values of a row (like
/// llama.cpp's Q8_0), built at load time from an F32, F16 or BF16 tensor.
///
/// One token: activations are quantized to 8-bit blocks and each block's dot product is an integer
/// sum (AVX2 `pmaddubsw`), scaled by the two block scales. Many tokens (`m >= prefillThreshold`):
/// row blocks are dequantized to F32 once and run through the dense GEMM tile. Reads 9 bits per
/// weight instead of 16 for F16; the relative error of each weight is at most 1/254 of its block's
/// largest magnitude.
///
/// Invariant: `packed` holds `rows * paddedColumns` int8 values (row r at r * paddedColumns, zero
/// beyond `columns`) and `scales` `rows * paddedColumns / 32` values.
public final class Q8Matrix: LinearOperator, @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    /// `columns` rounded up to a multiple of 32.
    public let paddedColumns: Int
    public let packed: AlignedBuffer<Int8>
    public let scales: AlignedBuffer<Float>
    public var weightBytes: Int { rows * paddedColumns + scales.count * 4 }
    public var kind: String { "q8" }
    /// From this many tokens on, `gemm` dequantizes row blocks and uses the F32 GEMM tile.
    nonisolated(unsafe) public static var prefillThreshold = 16

    private var capacity = 0
    private var xq = AlignedBuffer<Int8>(count: 0)
    private var xd = AlignedBuffer<Float>(count: 0)

    /// Quantizes a 2-D F32, F16 or BF16 tensor [rows, columns], rows spread over `pool`.
    public init(_ tensor: Tensor, pool: WorkerPool = .shared) throws {
        guard tensor.shape.count == 2 else { throw KernelError.badShape(tensor: tensor.name, shape: tensor.shape) }
        guard [.f32, .f16, .bf16].contains(tensor.dtype) else {
            throw KernelError.unsupportedDType(tensor: tensor.name, dtype: tensor.dtype)
        }
        rows = tensor.shape[0]
        columns = tensor.shape[1]
        paddedColumns = (columns + 31) / 32 * 32
        packed = AlignedBuffer<Int8>(count: rows * paddedColumns)
        scales = AlignedBuffer<Float>(count: rows * paddedColumns / 32)
        let k = columns, kpad = paddedColumns, q = packed.pointer, d = scales.pointer
        pool.parallelFor(rows, minBlock: 64, blocksPerThread: 2) { range, _ in
            let row = UnsafeMutablePointer<Float>.allocate(capacity: k)
            defer { row.deallocate() }
            for r in range {
                tensor.convertToFloat(into: row, offset: r * k, count: k)
                sq_q8_quantize_rows(row, Int64(k), Int64(k), Int64(kpad), 0, 1, q + r * kpad, d + r * (kpad / 32))
            }
        }
    }

    /// Row `r` dequantized to F32.
    public func row(_ r: Int) -> [Float] {
        precondition(r >= 0 && r < rows)
        return [Float](unsafeUninitializedCapacity: columns) { b, n in
            sq_q8_dequantize_rows(
                packed.pointer, scales.pointer, Int64(paddedColumns), Int64(columns), Int64(r), Int64(r + 1),
                b.baseAddress!)
            n = columns
        }
    }

    private func reserve(tokens m: Int) {
        if m <= capacity { return }
        let c = max(m, capacity * 2)
        xq = AlignedBuffer<Int8>(count: c * paddedColumns)
        xd = AlignedBuffer<Float>(count: c * paddedColumns / 32)
        capacity = c
    }

    public func gemv(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, pool: WorkerPool) {
        gemm(x, ldx: columns, m: 1, y, ldy: rows, pool: pool)
    }

    /// Y[t * ldy + r] = sum_c X[t * ldx + c] W[r, c] for t in 0..<m. Not reentrant: one call at a time
    /// per matrix (the activation buffers are the matrix's own), as for every operator of a model.
    public func gemm(
        _ x: UnsafePointer<Float>, ldx: Int, m: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int, pool: WorkerPool
    ) {
        if m <= 0 { return }
        let k = columns, kpad = paddedColumns, w = packed.pointer, d = scales.pointer
        if m >= Q8Matrix.prefillThreshold {
            pool.parallelFor(rows, minBlock: 16, blocksPerThread: 4) { range, _ in
                sq_q8_gemm_dequant(
                    w, d, Int64(kpad), Int64(k), x, Int64(ldx), Int64(m), y, Int64(ldy),
                    Int64(range.lowerBound), Int64(range.upperBound))
            }
            return
        }
        reserve(tokens: m)
        let q = xq.pointer, xs = xd.pointer, nb = kpad / 32
        for t in 0..<m { sq_q8_quantize_x(x + t * ldx, Int64(k), Int64(kpad), q + t * kpad, xs + t * nb) }
        // One block of rows per thread, dispatched through a job on the stack (no allocation per product).
        let block = pool.blockLength(rows, minBlock: 64, blocksPerThread: 1)
        var job = CTaskJob(
            c: sq_q8_job(
                wq: w, wd: d, kpad: Int64(kpad), xq: q, xd: xs, m: Int64(m), y: y, ldy: Int64(ldy),
                rows: Int64(rows), block: Int64(block)),
            function: sq_q8_task)
        pool.run(tasks: (rows + block - 1) / block, job: &job)
    }

    /// The kernel variant in use ("avx2" or "scalar").
    public static var variant: String { String(cString: sq_q8_variant()) }
}

/// Plain Swift reference of the 8-bit format (what tests compare the C kernels against).
public enum Q8Reference {
    /// Quantizes one vector to blocks of 32: (int8 values padded to a multiple of 32, one scale per block).
    public static func quantize(_ v: [Float]) -> (q: [Int8], d: [Float]) {
        let kpad = (v.count + 31) / 32 * 32
        var q = [Int8](repeating: 0, count: kpad), d = [Float](repeating: 0, count: kpad / 32)
        for b in 0..<(kpad / 32) {
            let lo = b * 32, hi = min(v.count, lo + 32)
            let amax = lo < hi ? v[lo..<hi].map { abs($0) }.max()! : 0
            d[b] = amax / 127
            let inv: Float = amax > 0 ? 127 / amax : 0
            for i in lo..<hi { q[i] = Int8(max(-127, min(127, (v[i] * inv).rounded(.toNearestOrEven)))) }
        }
        return (q, d)
    }

    /// y = W x with W and x quantized by `quantize`, integer block sums, in Double.
    public static func gemv(_ w: [Float], rows: Int, cols: Int, _ x: [Float]) -> [Float] {
        let (xq, xd) = quantize(x)
        return (0..<rows).map { r in
            let (wq, wd) = quantize(Array(w[(r * cols)..<((r + 1) * cols)]))
            var s = 0.0
            for b in 0..<wd.count {
                var acc = 0
                for i in (b * 32)..<(b * 32 + 32) { acc += Int(wq[i]) * Int(xq[i]) }
                s += Double(acc) * Double(wd[b]) * Double(xd[b])
            }
            return Float(s)
        }
    }
}
