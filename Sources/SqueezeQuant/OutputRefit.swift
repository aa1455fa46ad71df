import SqueezeCore

/// The second moments H = X^T X of a linear layer's inputs, summed over calibration tokens in Float64.
public final class InputSecondMoments: @unchecked Sendable {
    /// Input columns of the layer (H is columns x columns).
    public let columns: Int
    /// Row-major columns x columns sums (symmetric).
    public private(set) var sums: [Double]
    /// Tokens added.
    public private(set) var tokens = 0

    /// Zeroed sums for a layer of `columns` inputs.
    public init(columns: Int) {
        self.columns = columns
        sums = [Double](repeating: 0, count: columns * columns)
    }

    /// Adds a Float32 block of X^T X (`columns` x `columns`, row-major) computed over `tokens` tokens.
    public func add(product p: UnsafePointer<Float>, tokens t: Int) {
        sums.withUnsafeMutableBufferPointer { s in
            for i in 0..<(columns * columns) { s[i] += Double(p[i]) }
        }
        tokens += t
    }

    /// Adds the tokens of X [tokens, columns] (row stride `ldx`) one by one (small inputs and tests).
    public func add(x: UnsafePointer<Float>, ldx: Int, tokens t: Int) {
        let n = columns
        sums.withUnsafeMutableBufferPointer { s in
            for r in 0..<t {
                let row = x + r * ldx
                for i in 0..<n {
                    let xi = Double(row[i])
                    if xi == 0 { continue }
                    for j in 0..<n { s[i * n + j] += xi * Double(row[j]) }
                }
            }
        }
        tokens += t
    }

    /// H with `dampening` times the mean diagonal added to the diagonal; a column no token ever
    /// reached (zero diagonal) gets 1 there so that H stays positive definite (its weights do not
    /// change the output, and neither the refit nor GPTQ's update sees them).
    public func dampened(_ dampening: Double = 0.01) -> [Double] {
        Self.dampened(sums, columns: columns, dampening: dampening)
    }

    /// `dampened` of a given symmetric matrix.
    public static func dampened(_ h: [Double], columns n: Int, dampening: Double) -> [Double] {
        var h = h
        var mean = 0.0
        for i in 0..<n { mean += h[i * n + i] }
        mean /= Double(max(n, 1))
        for i in 0..<n {
            if !(h[i * n + i] > 0) {
                for j in 0..<n { h[i * n + j] = 0; h[j * n + i] = 0 }
                h[i * n + i] = 1
            }
            h[i * n + i] += dampening * mean
        }
        return h
    }
}

/// Closed-form refit of each row's look-up table to the layer-output error, its assignment fixed.
///
/// For one output row with weights w, stored values q and input second moments H (dampened), the
/// layer-output error over the calibration tokens is (w - q)^T H (w - q). On the dense positions D
/// q = A c, A the one-hot assignment of D to the row's 2^b table entries c; on the kept (sparse)
/// positions S q = z is stored exactly, so the residual there is the constant r_S = w_S - z_S (0 when
/// the kept value is w itself; GPTQ keeps its updated weight instead). Expanding,
///
///   (w_D - A c)^T H_DD (w_D - A c) + 2 (w_D - A c)^T H_DS r_S + r_S^T H_SS r_S,
///
/// whose minimum over c solves the 2^b x 2^b normal equations
///
///   (A^T H_DD A) c = A^T (H_DD w_D + H_DS r_S).
///
/// Entries no dense position uses do not appear in the system and keep their value. The system is
/// solved by Cholesky with a small ridge; a row whose factorization fails, whose solution is not
/// finite, or whose FP16-rounded solution does not lower the objective keeps its old table, so the
/// refit never raises the error. Tables are re-sorted ascending (indices remapped) and kept
/// positions point at the new entry nearest 0, as `SparseCSR.build` expects.
public enum OutputRefit {
    /// Per-row objective (w - q)^T H (w - q) up to the constant term, before and after the refit.
    public struct Result: Sendable {
        public var before: [Double]
        public var after: [Double]
        /// Rows whose table changed.
        public var refitted: Int
    }

    /// Refits every row's table of `q` to the layer-output error with `hessian` (`cols` x `cols`,
    /// row-major, dampened); `keptValues` are what the sparse part stores at kept positions (nil:
    /// the weights themselves). With `halfPrecision`, entries are rounded to FP16 as stored.
    @discardableResult
    public static func refit(
        _ q: inout QuantizedMatrix, weights: UnsafePointer<Float>, hessian: UnsafePointer<Double>,
        keepMask: UnsafePointer<UInt8>? = nil, keptValues: UnsafePointer<Float>? = nil,
        sensitivity: SensitivityInput = .uniform, halfPrecision: Bool = true, threads: Int? = nil,
        tensorName: String = ""
    ) throws(QuantError) -> Result {
        let rows = q.rows, n = q.cols, k = q.clusters
        guard q.indices.count == rows * n, q.lut.count == rows * k else {
            throw .shapeMismatch(tensor: tensorName, detail: "quantized matrix buffers do not match \(rows)x\(n)")
        }
        for i in 0..<(rows * n) where !weights[i].isFinite {
            throw .nonFiniteWeight(tensor: tensorName, row: i / max(n, 1), column: i % max(n, 1), value: weights[i])
        }
        for i in 0..<(n * n) where !hessian[i].isFinite {
            throw .shapeMismatch(
                tensor: tensorName, detail: "input second moments hold a non-finite value at (\(i / n), \(i % n))")
        }
        var before = [Double](repeating: 0, count: rows), after = before
        var changed = [UInt8](repeating: 0, count: rows)
        let pool = WorkerPool.shared
        let nThreads = min(threads ?? pool.defaultThreads, pool.threadCount)
        q.lut.withUnsafeMutableBufferPointer { lutB in
            q.indices.withUnsafeMutableBufferPointer { idxB in
                before.withUnsafeMutableBufferPointer { bB in
                    after.withUnsafeMutableBufferPointer { aB in
                        changed.withUnsafeMutableBufferPointer { cB in
                            let lutP = lutB.baseAddress!, idxP = idxB.baseAddress!
                            let bP = bB.baseAddress!, aP = aB.baseAddress!, cP = cB.baseAddress!
                            pool.parallelFor(rows, minBlock: 1, blocksPerThread: 4, threads: nThreads) { range, _ in
                                let ws = RefitWorkspace(n: n, k: k)
                                for r in range {
                                    let (b, a, ch) = refitRow(
                                        ws, w: weights + r * n, h: hessian, keep: keepMask.map { $0 + r * n },
                                        kept: keptValues.map { $0 + r * n }, n: n, k: k, lut: lutP + r * k,
                                        idx: idxP + r * n, half: halfPrecision)
                                    bP[r] = b; aP[r] = a; cP[r] = ch ? 1 : 0
                                }
                            }
                        }
                    }
                }
            }
        }
        q.recomputeErrors(weights: weights, keepMask: keepMask, sensitivity: sensitivity)
        return Result(before: before, after: after, refitted: changed.reduce(0) { $0 + Int($1) })
    }

    /// Per-thread scratch of `refitRow`.
    final class RefitWorkspace {
        var label: [Int]
        var target: [Double]
        var m: [Double]
        var b: [Double]
        var t: [Double]
        var count: [Int]
        init(n: Int, k: Int) {
            label = [Int](repeating: 0, count: n)
            target = [Double](repeating: 0, count: n)
            m = [Double](repeating: 0, count: k * k)
            b = [Double](repeating: 0, count: k)
            t = [Double](repeating: 0, count: k + 1)
            count = [Int](repeating: 0, count: k)
        }
    }

    /// One row: builds A^T H_DD A and A^T (H_DD w_D + H_DS r_S), solves, keeps the better table.
    /// Returns the objective (without its constant) before and after, and whether the table changed.
    static func refitRow(
        _ ws: RefitWorkspace, w: UnsafePointer<Float>, h: UnsafePointer<Double>, keep: UnsafePointer<UInt8>?,
        kept: UnsafePointer<Float>?, n: Int, k: Int, lut: UnsafeMutablePointer<Float>,
        idx: UnsafeMutablePointer<UInt8>, half: Bool
    ) -> (Double, Double, Bool) {
        // label k marks a kept position: its column enters only the right-hand side, through r_S.
        for j in 0..<k { ws.count[j] = 0 }
        for j in 0..<n {
            if let kp = keep, kp[j] != 0 {
                ws.label[j] = k
                ws.target[j] = kept.map { Double(w[j]) - Double($0[j]) } ?? 0
            } else {
                let l = Int(idx[j])
                ws.label[j] = l
                ws.target[j] = Double(w[j])
                ws.count[l] += 1
            }
        }
        for i in 0..<(k * k) { ws.m[i] = 0 }
        for i in 0..<k { ws.b[i] = 0 }
        ws.label.withUnsafeBufferPointer { lab in
            ws.target.withUnsafeBufferPointer { tg in
                ws.t.withUnsafeMutableBufferPointer { t in
                    for i in 0..<n {
                        let a = lab[i]
                        if a == k { continue }
                        let hi = h + i * n
                        for j in 0...k { t[j] = 0 }
                        var s = 0.0
                        for j in 0..<n {
                            let v = hi[j]
                            t[lab[j]] += v
                            s += v * tg[j]
                        }
                        for j in 0..<k { ws.m[a * k + j] += t[j] }
                        ws.b[a] += s
                    }
                }
            }
        }
        func objective(_ c: [Double]) -> Double {
            var f = 0.0
            for a in 0..<k where ws.count[a] > 0 {
                var mc = 0.0
                for b in 0..<k where ws.count[b] > 0 { mc += ws.m[a * k + b] * c[b] }
                f += c[a] * mc - 2 * ws.b[a] * c[a]
            }
            return f
        }
        let old = (0..<k).map { Double(lut[$0]) }
        let fOld = objective(old)
        let used = (0..<k).filter { ws.count[$0] > 0 }
        guard let solved = solveSPD(ws.m, ws.b, k: k, used: used) else { return (fOld, fOld, false) }
        var new = old
        for (p, a) in used.enumerated() {
            var v = Float(solved[p])
            if half { v = HalfConversion.toFloat(HalfConversion.toHalf(v)) }
            guard v.isFinite else { return (fOld, fOld, false) }
            new[a] = Double(v)
        }
        let fNew = objective(new)
        guard fNew < fOld else { return (fOld, fOld, false) }
        // Ascending table, indices remapped; kept positions at the entry nearest 0.
        let order = (0..<k).sorted { new[$0] < new[$1] || new[$0] == new[$1] && $0 < $1 }
        var rank = [Int](repeating: 0, count: k)
        for (p, a) in order.enumerated() { rank[a] = p; lut[p] = Float(new[a]) }
        var zero = 0
        for j in 1..<max(k, 1) where abs(lut[j]) < abs(lut[zero]) { zero = j }
        for j in 0..<n {
            idx[j] = UInt8(truncatingIfNeeded: ws.label[j] == k ? zero : rank[ws.label[j]])
        }
        return (fOld, fNew, true)
    }

    /// Solves the `used` sub-system of the symmetric positive semi-definite `m` (k x k) by Cholesky
    /// with a ridge of 1e-10 times its largest diagonal; nil when a pivot is not positive or the
    /// solution not finite.
    static func solveSPD(_ m: [Double], _ b: [Double], k: Int, used: [Int]) -> [Double]? {
        let p = used.count
        if p == 0 { return nil }
        var a = [Double](repeating: 0, count: p * p)
        var y = [Double](repeating: 0, count: p)
        var maxDiag = 0.0
        for (i, u) in used.enumerated() {
            for (j, v) in used.enumerated() { a[i * p + j] = m[u * k + v] }
            y[i] = b[u]
            maxDiag = max(maxDiag, m[u * k + u])
        }
        guard maxDiag > 0, maxDiag.isFinite else { return nil }
        let ridge = 1e-10 * maxDiag
        for i in 0..<p { a[i * p + i] += ridge }
        // a = L L^T in place (lower).
        for j in 0..<p {
            var d = a[j * p + j]
            for t in 0..<j { d -= a[j * p + t] * a[j * p + t] }
            guard d > ridge * 1e-6, d.isFinite else { return nil }
            let l = d.squareRoot()
            a[j * p + j] = l
            for i in (j + 1)..<max(p, j + 1) {
                var s = a[i * p + j]
                for t in 0..<j { s -= a[i * p + t] * a[j * p + t] }
                a[i * p + j] = s / l
            }
        }
        for i in 0..<p {
            var s = y[i]
            for t in 0..<i { s -= a[i * p + t] * y[t] }
            y[i] = s / a[i * p + i]
        }
        for i in stride(from: p - 1, through: 0, by: -1) {
            var s = y[i]
            for t in (i + 1)..<max(p, i + 1) { s -= a[t * p + i] * y[t] }
            y[i] = s / a[i * p + i]
        }
        for v in y where !v.isFinite { return nil }
        return y
    }

    /// (w - q)^T H (w - q) of one row, q the dense part of `q` and `keptValues` (or w) at kept
    /// positions: the layer-output error the refit minimises, computed directly.
    public static func outputError(
        row r: Int, of q: QuantizedMatrix, weights: UnsafePointer<Float>, hessian: UnsafePointer<Double>,
        keepMask: UnsafePointer<UInt8>? = nil, keptValues: UnsafePointer<Float>? = nil
    ) -> Double {
        let n = q.cols, k = q.clusters
        var d = [Double](repeating: 0, count: n)
        for j in 0..<n {
            let i = r * n + j
            let qv: Double
            if let m = keepMask, m[i] != 0 {
                qv = Double(keptValues?[i] ?? weights[i])
            } else {
                qv = Double(q.lut[r * k + Int(q.indices[i])])
            }
            d[j] = Double(weights[i]) - qv
        }
        var f = 0.0
        for i in 0..<n where d[i] != 0 {
            var s = 0.0
            for j in 0..<n { s += hessian[i * n + j] * d[j] }
            f += d[i] * s
        }
        return f
    }
}

extension QuantizedMatrix {
    /// Recomputes the per-row weighted and plain squared errors over dense positions from the table.
    mutating func recomputeErrors(
        weights: UnsafePointer<Float>, keepMask: UnsafePointer<UInt8>?, sensitivity: SensitivityInput
    ) {
        let k = clusters
        for r in 0..<rows {
            var we = 0.0, se = 0.0
            for c in 0..<cols {
                let i = r * cols + c
                if let m = keepMask, m[i] != 0 { continue }
                let e = Double(weights[i]) - Double(lut[r * k + Int(indices[i])])
                let f: Double
                switch sensitivity {
                case .uniform: f = 1
                case .full(let p): f = Double(p[i])
                case .perColumn(let p): f = Double(p[c])
                }
                se += e * e
                we += f * e * e
            }
            rowWeightedError[r] = we
            rowSquaredError[r] = se
        }
    }
}
