import SqueezeQuant
import Testing

@Suite struct SparseTests {
    /// A reference selection by sorting: sensitivities strictly above the k-th largest, |w| >= T.
    func referenceMask(_ w: [Float], _ s: [Float], sensFrac: Double, t: Float?) -> [UInt8] {
        let n = w.count
        let k = Int((sensFrac * Double(n)).rounded(.down))
        var m = [UInt8](repeating: 0, count: n)
        if k >= 1 {
            let thr = s.sorted(by: >)[k - 1]
            for i in 0..<n where s[i] > thr { m[i] = 1 }
        }
        if let t { for i in 0..<n where abs(w[i]) >= t { m[i] = 1 } }
        return m
    }

    func sortedQuantile(_ w: [Float], _ q: Double) -> Float {
        let a = w.sorted().map(Double.init)
        let pos = q * Double(a.count - 1)
        let lo = Int(pos.rounded(.down))
        let f = pos - Double(lo)
        return Float(lo + 1 < a.count ? a[lo] + f * (a[lo + 1] - a[lo]) : a[lo])
    }

    @Test func selection() throws {
        var rng = SplitMix64(seed: 5)
        let n = 20000
        let w = (0..<n).map { _ in Float(rng.normal() * 0.02 * (rng.uniform() < 0.01 ? 10 : 1)) }
        let s = (0..<n).map { _ in Float(rng.uniform() * rng.uniform() * 1e-5) }
        // Fraction mode: 0.05% sensitive + 0.40% outliers.
        let sel = try w.withUnsafeBufferPointer { wp in
            try s.withUnsafeBufferPointer { sp in
                try OutlierSelector.sparsity(percent: 0.45).select(
                    weights: wp.baseAddress!, sensitivity: sp.baseAddress!, count: n)
            }
        }
        #expect(sel.outlierCount == 80)  // round(0.004 * 20000), distinct |w|
        #expect(sel.sensitiveCount == 9)  // strictly above the 10th largest
        #expect(sel.q1 == sortedQuantile(w, 0.25))
        #expect(sel.q3 == sortedQuantile(w, 0.75))
        let t = try #require(sel.threshold)
        #expect(t == w.map { abs($0) }.sorted(by: >)[79])
        #expect(sel.mask == referenceMask(w, s, sensFrac: 0.0005, t: t))
        // The reported r reproduces T through the interquartile fences.
        let r = try #require(sel.range)
        let iqr = Double(sel.q3) - Double(sel.q1)
        let tr = max(abs(Double(sel.q1) - r * iqr), abs(Double(sel.q3) + r * iqr))
        #expect(abs(tr - Double(t)) <= 1e-6 * Double(t))
        // Range mode with that r selects the same outliers (up to the rounding of T).
        let sel2 = try w.withUnsafeBufferPointer { wp in
            try OutlierSelector(sensitiveFraction: 0, threshold: .range(2.5)).select(
                weights: wp.baseAddress!, sensitivity: nil, count: n)
        }
        let t2 = Float(max(abs(Double(sel.q1) - 2.5 * iqr), abs(Double(sel.q3) + 2.5 * iqr)))
        #expect(sel2.threshold == t2)
        #expect(sel2.mask == referenceMask(w, s, sensFrac: 0, t: t2))
    }

    /// Dense plus sparse reproduces the weights: exactly where w - dense is representable, else within
    /// half an ulp of the sparse value; within FP16 rounding when the values are stored as FP16.
    @Test(arguments: [KMeansEngine.optimal, .lloyd])
    func reconstruction(engine: KMeansEngine) throws {
        var rng = SplitMix64(seed: 9)
        let rows = 24, cols = 128
        let w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.02 * (rng.uniform() < 0.02 ? 20 : 1)) }
        let s = (0..<(rows * cols)).map { _ in Float(rng.uniform() * 1e-4) }
        let (q, csr, sel) = try w.withUnsafeBufferPointer { wp in
            try s.withUnsafeBufferPointer { sp in
                let sel = try OutlierSelector(sensitiveFraction: 0.005, threshold: .fraction(0.01))
                    .select(weights: wp.baseAddress!, sensitivity: sp.baseAddress!, count: rows * cols)
                return try sel.mask.withUnsafeBufferPointer { mp in
                    let q = try NonUniformQuantizer.quantizeMatrix(
                        weights: wp.baseAddress!, sensitivity: .full(sp.baseAddress!), rows: rows, cols: cols, bits: 3,
                        keepMask: mp.baseAddress!, options: KMeansOptions(engine: engine))
                    return (q, SparseCSR.build(weights: wp.baseAddress!, keepMask: mp.baseAddress!, quantized: q), sel)
                }
            }
        }
        #expect(csr.nonzeroCount == sel.keptCount)
        #expect(csr.rowPointers.count == rows + 1 && csr.rowPointers.last == Int32(sel.keptCount))
        var dense = q.dequantized()
        let denseOnly = dense
        csr.add(into: &dense)
        let half = csr.valuesHalf()
        var exact = 0
        for r in 0..<rows {
            let z = q.nearestZeroIndex(row: r)
            for e in Int(csr.rowPointers[r])..<Int(csr.rowPointers[r + 1]) {
                let c = Int(csr.columnIndices[e]), i = r * cols + c
                #expect(sel.mask[i] == 1)
                #expect(Int(q.indices[i]) == z)  // the kept position's dense index is the centroid nearest 0
                let v = csr.values[e]
                let err = abs(Double(denseOnly[i]) + Double(v) - Double(w[i]))
                #expect(err <= Double(v.ulp) / 2)
                if dense[i] == w[i] { exact += 1 }
                // FP16 values: within half an FP16 ulp of the value.
                let h = Float(Float16(bitPattern: half[e]))
                #expect(abs(Double(h) - Double(v)) <= Double(Float16(v).ulp) / 2 + 1e-12)
            }
        }
        #expect(exact >= csr.nonzeroCount * 9 / 10)
        // Positions not kept are unchanged by the sparse part.
        for i in 0..<(rows * cols) where sel.mask[i] == 0 { #expect(dense[i] == denseOnly[i]) }
        // The kept weights do not influence the tables: changing them leaves the tables unchanged.
        var w2 = w
        for i in 0..<(rows * cols) where sel.mask[i] != 0 { w2[i] = 1000 }
        let q2 = try w2.withUnsafeBufferPointer { wp in
            try s.withUnsafeBufferPointer { sp in
                try sel.mask.withUnsafeBufferPointer { mp in
                    try NonUniformQuantizer.quantizeMatrix(
                        weights: wp.baseAddress!, sensitivity: .full(sp.baseAddress!), rows: rows, cols: cols, bits: 3,
                        keepMask: mp.baseAddress!, options: KMeansOptions(engine: engine))
                }
            }
        }
        #expect(q2.lut == q.lut)
        #expect(q2.indices == q.indices)
    }
}
