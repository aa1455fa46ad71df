/// Plain Swift references for the LUT and sparse kernels (slow, obvious, for tests).
public enum LUTReference {
    /// y[r] = sum_c lut[r * 2^bits + idx[r * cols + c]] * x[c], accumulated in Double.
    public static func gemv(indices: [UInt8], lut: [Float], rows: Int, cols: Int, bits: Int, x: [Float]) -> [Float] {
        let n = 1 << bits
        return (0..<rows).map { r in
            var s = 0.0
            for c in 0..<cols { s += Double(lut[r * n + Int(indices[r * cols + c])]) * Double(x[c]) }
            return Float(s)
        }
    }

    /// m[r] = sum_c |W[r, c] x[c]|, the magnitude that float rounding errors scale with.
    public static func absGemv(indices: [UInt8], lut: [Float], rows: Int, cols: Int, bits: Int, x: [Float]) -> [Float] {
        let n = 1 << bits
        return (0..<rows).map { r in
            var s = 0.0
            for c in 0..<cols { s += abs(Double(lut[r * n + Int(indices[r * cols + c])]) * Double(x[c])) }
            return Float(s)
        }
    }

    /// The int8 path's error bound for row r: with table steps s_r = 0.75 (max lut_r - min lut_r) / 127
    /// (twice the largest error of a 7-bit code, see `LUTMode.int8`) and activation steps
    /// d_b = max|x_b| / 127 (blocks of `LUTMatrix.activationBlock`), each term's error is at most
    /// |w| d_b / 2 + s_r |x| / 2 + s_r d_b / 4 (rounding to nearest on both factors).
    public static func int8ErrorBound(
        indices: [UInt8], lut: [Float], rows: Int, cols: Int, bits: Int,
        x: [Float]
    ) -> [Float] {
        let n = 1 << bits, qb = LUTMatrix.activationBlock
        let nb = (cols + qb - 1) / qb
        let d: [Double] = (0..<nb).map { b in
            Double(x[(b * qb)..<min(cols, (b + 1) * qb)].map { abs($0) }.max() ?? 0) / 127
        }
        return (0..<rows).map { r in
            let t = lut[(r * n)..<((r + 1) * n)]
            let s = 1.5 * Double((t.max() ?? 0) - (t.min() ?? 0)) / 127
            var e = 0.0
            for c in 0..<cols {
                let w = Double(lut[r * n + Int(indices[r * cols + c])]), db = d[c / qb]
                e += abs(w) * db / 2 + s * Double(abs(x[c])) / 2 + s * db / 4
            }
            return Float(e)
        }
    }
}

/// Plain Swift reference for sparse products.
public enum SparseReference {
    /// y[r] + sum over row r of vals[p] * x[cols[p]], in Double.
    public static func addMultiply(
        rowPointers: [Int32], columnIndices: [Int32], values: [Float], x: [Float],
        y: [Float]
    ) -> [Float] {
        (0..<(rowPointers.count - 1)).map { r in
            var s = Double(y[r])
            for p in Int(rowPointers[r])..<Int(rowPointers[r + 1]) {
                s += Double(values[p]) * Double(x[Int(columnIndices[p])])
            }
            return Float(s)
        }
    }
}
