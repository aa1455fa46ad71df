import SqueezeCore

/// GPTQ's error feedback (Frantar et al.) on per-row look-up tables: columns are rounded in order
/// to the nearest entry of their row's table and each column's rounding error is spread over the
/// columns not yet rounded through the upper Cholesky factor of H^-1.
public enum GPTQTableQuantizer {
    /// The result of `quantize`: per-weight table indices and the weights as finally rounded.
    public struct Result: Sendable {
        /// Index into the row's table per weight (kept positions: 0, to be set by the caller).
        public var indices: [UInt8]
        /// The value each position ends at: its table entry on dense positions, the updated (error-fed)
        /// weight on kept positions, which the sparse part stores exactly.
        public var values: [Float]
    }

    /// The upper-triangular U with H^-1 = U^T U, row-major `n` x `n`, of the symmetric positive
    /// definite `h` (dampened by the caller).
    ///
    /// With R the reversal permutation and R H R = M M^T (M lower), H^-1 = (R M^-T R)(R M^-1 R), and
    /// R M^-1 R is upper triangular: one Cholesky factorization and one triangular inverse, the same
    /// factor as GPTQ's `cholesky(cholesky_inverse(cholesky(H)), upper=True)`.
    public static func inverseCholeskyUpper(
        _ h: [Double], n: Int, tensorName: String = ""
    ) throws(QuantError)
        -> [Double]
    {
        guard h.count == n * n else {
            throw .shapeMismatch(
                tensor: tensorName, detail: "input second moments have \(h.count) values, expected \(n)x\(n)")
        }
        // m = chol(R H R), lower: m[i][j] = H[n-1-i][n-1-j].
        var m = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0...i { m[i * n + j] = h[(n - 1 - i) * n + (n - 1 - j)] } }
        try m.withUnsafeMutableBufferPointer { (a) throws(QuantError) in
            for j in 0..<n {
                var d = a[j * n + j]
                let rj = a.baseAddress! + j * n
                for t in 0..<j { d -= rj[t] * rj[t] }
                guard d > 0, d.isFinite else {
                    throw .shapeMismatch(
                        tensor: tensorName,
                        detail: "input second moments are not positive definite after dampening (column \(n - 1 - j))")
                }
                let l = d.squareRoot()
                a[j * n + j] = l
                for i in (j + 1)..<max(n, j + 1) {
                    let ri = a.baseAddress! + i * n
                    var s = ri[j]
                    for t in 0..<j { s -= ri[t] * rj[t] }
                    ri[j] = s / l
                }
            }
        }
        // inv = m^-1 (lower), column by column of the identity: rows of inv^T are solved in turn.
        var inv = [Double](repeating: 0, count: n * n)
        m.withUnsafeBufferPointer { a in
            inv.withUnsafeMutableBufferPointer { x in
                // Row i of inv: inv[i][j] for j <= i, from sum_t m[i][t] inv[t][j] = delta_ij.
                for i in 0..<n {
                    let ri = a.baseAddress! + i * n
                    let d = ri[i]
                    let xi = x.baseAddress! + i * n
                    xi[i] = 1 / d
                    if i == 0 { continue }
                    // xi[j] = -(sum_{t=j}^{i-1} m[i][t] inv[t][j]) / d, accumulated row-wise over t.
                    for t in 0..<i {
                        let c = ri[t]
                        if c == 0 { continue }
                        let xt = x.baseAddress! + t * n
                        for j in 0...t { xi[j] -= c * xt[j] }
                    }
                    for j in 0..<i { xi[j] /= d }
                }
            }
        }
        // U = R inv R: U[i][j] = inv[n-1-i][n-1-j], upper.
        var u = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { u[i * n + j] = inv[(n - 1 - i) * n + (n - 1 - j)] } }
        return u
    }

    /// Rounds the row-major `rows` x `cols` weights column by column to each row's table (`tables`,
    /// `rows` x 2^bits, ascending), feeding each rounding error forward through `u`
    /// (`inverseCholeskyUpper` of the dampened H) in blocks of `blockSize` columns: within a block
    /// column by column, then the block's errors applied to the later columns at once (GPTQ's lazy
    /// batch update; the same arithmetic as updating after every column). Kept positions
    /// (`keepMask`) are stored exactly, so their error is 0 and feeds nothing. Rows are independent
    /// and run in parallel.
    public static func quantize(
        weights: UnsafePointer<Float>, rows: Int, cols: Int, bits: Int, tables: [Float], u: [Double],
        keepMask: UnsafePointer<UInt8>? = nil, blockSize: Int = 128, threads: Int? = nil, tensorName: String = ""
    ) throws(QuantError) -> Result {
        let k = 1 << bits
        guard tables.count == rows * k else {
            throw .shapeMismatch(tensor: tensorName, detail: "\(tables.count) table entries for \(rows) rows of \(k)")
        }
        guard u.count == cols * cols else {
            throw .shapeMismatch(tensor: tensorName, detail: "the factor of H^-1 is not \(cols)x\(cols)")
        }
        guard blockSize >= 1 else { throw .invalidOption("GPTQ block size must be at least 1, got \(blockSize)") }
        for i in 0..<(rows * cols) where !weights[i].isFinite {
            throw .nonFiniteWeight(tensor: tensorName, row: i / cols, column: i % cols, value: weights[i])
        }
        var indices = [UInt8](repeating: 0, count: rows * cols)
        var values = [Float](repeating: 0, count: rows * cols)
        let pool = WorkerPool.shared
        let nThreads = min(threads ?? pool.defaultThreads, pool.threadCount)
        // Rows go in chunks so that each block of U is read once per chunk, not once per row.
        let chunk = 8
        let chunks = (rows + chunk - 1) / chunk
        tables.withUnsafeBufferPointer { tb in
            u.withUnsafeBufferPointer { ub in
                indices.withUnsafeMutableBufferPointer { ib in
                    values.withUnsafeMutableBufferPointer { vb in
                        let tP = tb.baseAddress!, uP = ub.baseAddress!, iP = ib.baseAddress!, vP = vb.baseAddress!
                        pool.parallelFor(chunks, minBlock: 1, blocksPerThread: 4, threads: nThreads) { range, _ in
                            let work = UnsafeMutablePointer<Double>.allocate(capacity: chunk * cols)
                            let err = UnsafeMutablePointer<Double>.allocate(capacity: chunk * blockSize)
                            defer { work.deallocate(); err.deallocate() }
                            for ch in range {
                                let r0 = ch * chunk, nr = min(chunk, rows - r0)
                                for i in 0..<(nr * cols) { work[i] = Double(weights[r0 * cols + i]) }
                                var i1 = 0
                                while i1 < cols {
                                    let i2 = min(i1 + blockSize, cols), bw = i2 - i1
                                    for j in i1..<i2 {
                                        let uj = uP + j * cols
                                        let d = uj[j]
                                        for r in 0..<nr {
                                            let wr = work + r * cols
                                            let pos = (r0 + r) * cols + j
                                            let v = wr[j]
                                            var e = 0.0
                                            if let m = keepMask, m[pos] != 0 {
                                                vP[pos] = Float(v)
                                            } else {
                                                let tr = tP + (r0 + r) * k
                                                var best = 0
                                                var bestD = abs(v - Double(tr[0]))
                                                for t in 1..<k {
                                                    let dd = abs(v - Double(tr[t]))
                                                    if dd < bestD { bestD = dd; best = t }
                                                }
                                                iP[pos] = UInt8(truncatingIfNeeded: best)
                                                let qv = Double(tr[best])
                                                vP[pos] = tr[best]
                                                e = (v - qv) / d
                                            }
                                            err[r * bw + (j - i1)] = e
                                            if e != 0 { for t in (j + 1)..<i2 { wr[t] -= e * uj[t] } }
                                        }
                                    }
                                    if i2 < cols {
                                        for r in 0..<nr {
                                            let wr = work + r * cols
                                            for j in i1..<i2 {
                                                let e = err[r * bw + (j - i1)]
                                                if e == 0 { continue }
                                                let uj = uP + j * cols
                                                for t in i2..<cols { wr[t] -= e * uj[t] }
                                            }
                                        }
                                    }
                                    i1 = i2
                                }
                            }
                        }
                    }
                }
            }
        }
        return Result(indices: indices, values: values)
    }
}
