import Foundation
import SqueezeQuant
import Testing

/// A random layer with correlated inputs: weights, dampened X^T X, a Fisher-like sensitivity.
struct RandomLayer {
    let rows: Int, cols: Int
    let w: [Float]
    let h: [Double]
    let sens: [Float]

    init(rows: Int, cols: Int, tokens: Int, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        self.rows = rows
        self.cols = cols
        w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.05 * (rng.uniform() < 0.02 ? 6 : 1)) }
        let scale = (0..<cols).map { _ in 0.2 + 2 * rng.uniform() }
        let mix = (0..<(cols * cols)).map { i in
            (i % (cols + 1) == 0 ? 1 : 0) + rng.normal() / Double(cols).squareRoot()
        }
        let m = InputSecondMoments(columns: cols)
        var x = [Float](repeating: 0, count: tokens * cols)
        for t in 0..<tokens {
            let z = (0..<cols).map { _ in rng.normal() }
            for j in 0..<cols {
                var s = 0.0
                for i in 0..<cols { s += z[i] * mix[i * cols + j] }
                x[t * cols + j] = Float(s * scale[j])
            }
        }
        x.withUnsafeBufferPointer { m.add(x: $0.baseAddress!, ldx: cols, tokens: tokens) }
        h = m.dampened(0.01)
        sens = (0..<(rows * cols)).map { _ in Float(rng.uniform() * rng.uniform() * 1e-4) }
    }
}

/// (w - q)^T H (w - q) of one row, computed directly from the dequantized row.
func directOutputError(_ w: [Float], _ q: [Double], _ h: [Double], row r: Int, cols n: Int) -> Double {
    let d = (0..<n).map { Double(w[r * n + $0]) - q[r * n + $0] }
    var f = 0.0
    for i in 0..<n {
        var s = 0.0
        for j in 0..<n { s += h[i * n + j] * d[j] }
        f += d[i] * s
    }
    return f
}

@Suite struct OutputRefitTests {
    /// The refit never raises any row's layer-output error and lowers the total, dense and with a
    /// sparse part (whose positions are exact and so carry no error), at 2, 3 and 4 bits.
    @Test(arguments: [(2, false), (3, false), (3, true), (4, true)])
    func neverRaises(bits: Int, sparse: Bool) throws {
        let L = RandomLayer(rows: 24, cols: 48, tokens: 160, seed: UInt64(bits * 10 + (sparse ? 1 : 0)))
        var mask: [UInt8]?
        if sparse {
            let sel = OutlierSelector.sparsity(percent: 3)
            mask = try L.w.withUnsafeBufferPointer { wb in
                try L.sens.withUnsafeBufferPointer { sb in
                    try sel.select(weights: wb.baseAddress!, sensitivity: sb.baseAddress!, count: L.w.count).mask
                }
            }
        }
        var opts = KMeansOptions()
        opts.halfPrecisionTable = true
        var q = try L.w.withUnsafeBufferPointer { wb in
            try L.sens.withUnsafeBufferPointer { sb in
                try mask.withPointer { mp in
                    try NonUniformQuantizer.quantizeMatrix(
                        weights: wb.baseAddress!, sensitivity: .full(sb.baseAddress!), rows: L.rows, cols: L.cols,
                        bits: bits, keepMask: mp, options: opts)
                }
            }
        }
        func dequant(_ q: QuantizedMatrix) -> [Double] {
            var d = q.dequantized().map(Double.init)
            if let m = mask { for i in 0..<d.count where m[i] != 0 { d[i] = Double(L.w[i]) } }
            return d
        }
        let before = dequant(q)
        let res = try L.w.withUnsafeBufferPointer { wb in
            try L.h.withUnsafeBufferPointer { hb in
                try mask.withPointer { mp in
                    try OutputRefit.refit(
                        &q, weights: wb.baseAddress!, hessian: hb.baseAddress!, keepMask: mp, tensorName: "t")
                }
            }
        }
        let after = dequant(q)
        var totalBefore = 0.0, totalAfter = 0.0
        for r in 0..<L.rows {
            let b = directOutputError(L.w, before, L.h, row: r, cols: L.cols)
            let a = directOutputError(L.w, after, L.h, row: r, cols: L.cols)
            #expect(a <= b * (1 + 1e-9) + 1e-12, "row \(r): \(b) -> \(a)")
            totalBefore += b
            totalAfter += a
            // Tables stay ascending.
            for j in 1..<q.clusters { #expect(q.lut[r * q.clusters + j - 1] <= q.lut[r * q.clusters + j]) }
        }
        #expect(totalAfter < 0.99 * totalBefore, "total \(totalBefore) -> \(totalAfter)")
        #expect(res.refitted > L.rows / 2)
        // Kept positions point at the entry nearest 0 (SparseCSR stores w minus it).
        if let m = mask {
            for i in 0..<m.count where m[i] != 0 {
                #expect(Int(q.indices[i]) == q.nearestZeroIndex(row: i / L.cols))
            }
        }
    }

    /// The refit equals NumPy's solve of the same normal equations (gptq_fixtures.json, after its
    /// GPTQ assignment; kept positions hold GPTQ's updated weights) to 1e-5.
    @Test func matchesNumPy() throws {
        for c in try gptqFixtureCases() {
            var q = QuantizedMatrix(
                rows: c.rows, cols: c.cols, bits: c.bits, lut: c.tables, indices: c.indices,
                rowWeightedError: .init(repeating: 0, count: c.rows),
                rowSquaredError: .init(repeating: 0, count: c.rows))
            let kept = c.values.map { Float($0) }
            _ = try c.weights.withUnsafeBufferPointer { wb in
                try c.hessian.withUnsafeBufferPointer { hb in
                    try c.keep.withUnsafeBufferPointer { kb in
                        try kept.withUnsafeBufferPointer { vb in
                            try OutputRefit.refit(
                                &q, weights: wb.baseAddress!, hessian: hb.baseAddress!, keepMask: kb.baseAddress!,
                                keptValues: vb.baseAddress!, halfPrecision: false)
                        }
                    }
                }
            }
            let k = 1 << c.bits
            for i in 0..<(c.rows * c.cols) where c.keep[i] == 0 {
                let r = i / c.cols
                let got = Double(q.lut[r * k + Int(q.indices[i])])
                let want = c.refitTables[r * k + Int(c.indices[i])]
                #expect(abs(got - want) <= 1e-5, "case \(c.rows)x\(c.cols) position \(i): \(got) vs \(want)")
            }
        }
    }

    /// Bad inputs are typed errors naming the tensor and position.
    @Test func badInputs() {
        var q = QuantizedMatrix(
            rows: 1, cols: 2, bits: 1, lut: [0, 1], indices: [0, 1], rowWeightedError: [0], rowSquaredError: [0])
        let w: [Float] = [0.5, .nan]
        let h: [Double] = [1, 0, 0, 1]
        do {
            try w.withUnsafeBufferPointer { wb in
                try h.withUnsafeBufferPointer { hb in
                    try OutputRefit.refit(
                        &q, weights: wb.baseAddress!, hessian: hb.baseAddress!, tensorName: "x.weight")
                }
            }
            Issue.record("a NaN weight was accepted")
        } catch let e as QuantError {
            guard case let .nonFiniteWeight(t, r, c, _) = e else {
                Issue.record("unexpected error \(e)")
                return
            }
            #expect(t == "x.weight" && r == 0 && c == 1)
        } catch { Issue.record("unexpected error \(error)") }
    }
}

/// One case of gptq_fixtures.json.
struct GPTQFixtureCase {
    let rows: Int, cols: Int, bits: Int, blockSize: Int
    let weights: [Float]
    let hessian: [Double]
    let tables: [Float]
    let keep: [UInt8]
    /// GPTQ's indices (0 at kept positions), values and refitted tables.
    let indices: [UInt8]
    let values: [Double]
    let refitTables: [Double]
}

func gptqFixtureCases() throws -> [GPTQFixtureCase] {
    let root = try #require(try loadFixture("gptq_fixtures.json") as? [String: Any])
    let cases = try #require(root["cases"] as? [[String: Any]])
    func doubles(_ v: Any?) -> [Double] { (v as! [NSNumber]).map(\.doubleValue) }
    return cases.map { c in
        GPTQFixtureCase(
            rows: c["rows"] as! Int, cols: c["cols"] as! Int, bits: c["bits"] as! Int,
            blockSize: c["blocksize"] as! Int, weights: doubles(c["weights"]).map { Float($0) },
            hessian: doubles(c["hessian"]), tables: doubles(c["tables"]).map { Float($0) },
            keep: (c["keep"] as! [Int]).map { UInt8($0) },
            indices: (c["gptq_indices"] as! [Int]).map { UInt8(max($0, 0)) },
            values: doubles(c["gptq_values"]), refitTables: doubles(c["refit_tables"]))
    }
}

extension Optional where Wrapped == [UInt8] {
    func withPointer<R>(_ body: (UnsafePointer<UInt8>?) throws -> R) rethrows -> R {
        switch self {
        case .none: return try body(nil)
        case let .some(a): return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
        }
    }
}
