import SqueezeQuant
import Testing

@Suite struct RTNTests {
    @Test(arguments: [3, 4])
    func gptqQuantizer(bits: Int) throws {
        var rng = SplitMix64(seed: UInt64(bits))
        let rows = 6, cols = 50
        var w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.05 + 0.01) }
        for c in 0..<cols { w[5 * cols + c] = Float(rng.uniform()) + 0.5 }  // all positive: range widened to 0
        let q = try w.withUnsafeBufferPointer {
            try RTNQuantizer.quantizeMatrix(
                weights: $0.baseAddress!, rows: rows, cols: cols, bits: bits, variant: .gptq)
        }
        let maxq = Float((1 << bits) - 1)
        for r in 0..<rows {
            let row = Array(w[r * cols..<(r + 1) * cols])
            let xmin = min(row.min()!, 0), xmax = max(row.max()!, 0)
            let scale = (xmax - xmin) / maxq
            let zero = (-xmin / scale).rounded(.toNearestOrEven)
            #expect(Array(q.lut[(r << bits)..<((r + 1) << bits)]).contains(0))  // 0 is on the grid
            for c in 0..<cols {
                let qi = min(max((row[c] / scale).rounded(.toNearestOrEven) + zero, 0), maxq)
                #expect(q.dequantized()[r * cols + c] == scale * (qi - zero))
            }
        }
    }

    @Test func minmaxQuantizer() throws {
        var rng = SplitMix64(seed: 77)
        let rows = 4, cols = 33
        let w = (0..<(rows * cols)).map { _ in Float(rng.normal()) }
        let q = try w.withUnsafeBufferPointer {
            try RTNQuantizer.quantizeMatrix(weights: $0.baseAddress!, rows: rows, cols: cols, bits: 3, variant: .minmax)
        }
        let d = q.dequantized()
        for r in 0..<rows {
            let row = Array(w[r * cols..<(r + 1) * cols])
            let lo = row.min()!, hi = row.max()!
            let s = (hi - lo) / 7
            #expect(q.lut[r * 8] == lo)
            for c in 0..<cols {
                #expect(abs(d[r * cols + c] - row[c]) <= s / 2 * (1 + 1e-5))
            }
        }
        // The k-means is never worse than the min-max grid on the same weights.
        let km = try w.withUnsafeBufferPointer {
            try NonUniformQuantizer.quantizeMatrix(weights: $0.baseAddress!, rows: rows, cols: cols, bits: 3)
        }
        #expect(km.squaredError <= q.squaredError)
    }
}
