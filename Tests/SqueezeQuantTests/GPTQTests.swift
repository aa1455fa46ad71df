import Foundation
import SqueezeQuant
import Testing

@Suite struct GPTQTests {
    /// U from `inverseCholeskyUpper` is upper triangular and U^T U H = I (checked by plain products).
    @Test func inverseFactor() throws {
        let L = RandomLayer(rows: 1, cols: 37, tokens: 80, seed: 3)
        let n = L.cols
        let u = try GPTQTableQuantizer.inverseCholeskyUpper(L.h, n: n)
        for i in 0..<n { for j in 0..<i { #expect(u[i * n + j] == 0) } }
        var maxErr = 0.0
        for i in 0..<n {
            for j in 0..<n {
                // (U^T U H)[i][j]
                var s = 0.0
                for t in 0..<n {
                    var utu = 0.0
                    for p in 0..<n { utu += u[p * n + i] * u[p * n + t] }
                    s += utu * L.h[t * n + j]
                }
                maxErr = max(maxErr, abs(s - (i == j ? 1 : 0)))
            }
        }
        #expect(maxErr < 1e-9, "max |U^T U H - I| = \(maxErr)")
    }

    /// The column updates equal NumPy's GPTQ loop (gptq_fixtures.json) to 1e-5: same indices, same
    /// final values (kept positions: the error-fed weight), with the fixture's block sizes.
    @Test func matchesNumPy() throws {
        for c in try gptqFixtureCases() {
            let u = try GPTQTableQuantizer.inverseCholeskyUpper(c.hessian, n: c.cols)
            let res = try c.weights.withUnsafeBufferPointer { wb in
                try c.keep.withUnsafeBufferPointer { kb in
                    try GPTQTableQuantizer.quantize(
                        weights: wb.baseAddress!, rows: c.rows, cols: c.cols, bits: c.bits, tables: c.tables, u: u,
                        keepMask: kb.baseAddress!, blockSize: c.blockSize)
                }
            }
            for i in 0..<(c.rows * c.cols) {
                if c.keep[i] == 0 { #expect(res.indices[i] == c.indices[i], "\(c.rows)x\(c.cols) position \(i)") }
                #expect(abs(Double(res.values[i]) - c.values[i]) <= 1e-5, "\(c.rows)x\(c.cols) position \(i)")
            }
            // The block size changes only the order of the arithmetic.
            let one = try c.weights.withUnsafeBufferPointer { wb in
                try c.keep.withUnsafeBufferPointer { kb in
                    try GPTQTableQuantizer.quantize(
                        weights: wb.baseAddress!, rows: c.rows, cols: c.cols, bits: c.bits, tables: c.tables, u: u,
                        keepMask: kb.baseAddress!, blockSize: 1)
                }
            }
            #expect(one.indices == res.indices)
        }
    }

    /// With H = identity (dampened or not) no error feeds forward: every weight goes to its row's
    /// nearest table entry, exactly the indices of the per-row k-means quantizer.
    @Test(arguments: [2, 3, 4])
    func identityIsNearestCentroid(bits: Int) throws {
        let L = RandomLayer(rows: 20, cols: 64, tokens: 4, seed: UInt64(40 + bits))
        let n = L.cols
        var eye = [Double](repeating: 0, count: n * n)
        for i in 0..<n { eye[i * n + i] = 1 }
        let sel = OutlierSelector.sparsity(percent: 2)
        let mask = try L.w.withUnsafeBufferPointer { wb in
            try L.sens.withUnsafeBufferPointer { sb in
                try sel.select(weights: wb.baseAddress!, sensitivity: sb.baseAddress!, count: L.w.count).mask
            }
        }
        var opts = KMeansOptions()
        opts.halfPrecisionTable = true
        for m in [nil, mask] {
            let q = try L.w.withUnsafeBufferPointer { wb in
                try L.sens.withUnsafeBufferPointer { sb in
                    try m.withPointer { mp in
                        try NonUniformQuantizer.quantizeMatrix(
                            weights: wb.baseAddress!, sensitivity: .full(sb.baseAddress!), rows: L.rows, cols: n,
                            bits: bits, keepMask: mp, options: opts)
                    }
                }
            }
            for h in [eye, InputSecondMoments.dampened(eye, columns: n, dampening: 0.01)] {
                let u = try GPTQTableQuantizer.inverseCholeskyUpper(h, n: n)
                let res = try L.w.withUnsafeBufferPointer { wb in
                    try m.withPointer { mp in
                        try GPTQTableQuantizer.quantize(
                            weights: wb.baseAddress!, rows: L.rows, cols: n, bits: bits, tables: q.lut, u: u,
                            keepMask: mp, blockSize: 16)
                    }
                }
                for i in 0..<L.w.count {
                    if let m, m[i] != 0 {
                        #expect(res.values[i] == L.w[i])
                    } else {
                        #expect(res.indices[i] == q.indices[i], "position \(i)")
                    }
                }
            }
        }
    }

    /// Error feedback lowers the layer-output error against nearest rounding to the same tables, and
    /// the refit after it lowers it further (objective computed directly).
    @Test func lowersOutputError() throws {
        let L = RandomLayer(rows: 16, cols: 64, tokens: 200, seed: 9)
        let n = L.cols
        var opts = KMeansOptions()
        opts.halfPrecisionTable = true
        let q = try L.w.withUnsafeBufferPointer { wb in
            try L.sens.withUnsafeBufferPointer { sb in
                try NonUniformQuantizer.quantizeMatrix(
                    weights: wb.baseAddress!, sensitivity: .full(sb.baseAddress!), rows: L.rows, cols: n, bits: 3,
                    options: opts)
            }
        }
        let u = try GPTQTableQuantizer.inverseCholeskyUpper(L.h, n: n)
        let res = try L.w.withUnsafeBufferPointer { wb in
            try GPTQTableQuantizer.quantize(
                weights: wb.baseAddress!, rows: L.rows, cols: n, bits: 3, tables: q.lut, u: u)
        }
        var g = q
        g.indices = res.indices
        try L.w.withUnsafeBufferPointer { wb in
            try L.h.withUnsafeBufferPointer { hb in
                _ = try OutputRefit.refit(&g, weights: wb.baseAddress!, hessian: hb.baseAddress!)
            }
        }
        func total(_ d: [Double]) -> Double {
            (0..<L.rows).reduce(0) { $0 + directOutputError(L.w, d, L.h, row: $1, cols: n) }
        }
        let nearest = total(q.dequantized().map(Double.init))
        let fed = total(res.values.map(Double.init))
        let refit = total(g.dequantized().map(Double.init))
        #expect(fed < nearest, "\(nearest) -> \(fed)")
        #expect(refit <= fed, "\(fed) -> \(refit)")
    }
}
