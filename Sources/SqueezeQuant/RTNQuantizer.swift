import SqueezeCore

/// The round-to-nearest baseline's grid.
public enum RTNVariant: String, CaseIterable, Sendable {
    /// GPTQ's per-row asymmetric quantizer: range widened to include 0, integer zero point,
    /// value = scale * (q - zero), so 0 is exactly representable.
    case gptq
    /// Plain min-max grid: value = min + scale * q, scale = (max - min) / (2^b - 1).
    case minmax
}

/// Per-row uniform round-to-nearest quantization (`--method rtn`), in the same table form as the
/// k-means quantizer (the table holds the row's 2^b grid values), so it packs the same way.
public enum RTNQuantizer {
    /// Quantizes a row-major `rows x cols` matrix. Arithmetic is Float32 with round-half-to-even,
    /// as torch does; errors are measured against the Float32 grid values.
    public static func quantizeMatrix(
        weights: UnsafePointer<Float>, sensitivity: SensitivityInput = .uniform,
        rows: Int, cols: Int, bits: Int, variant: RTNVariant = .gptq,
        tensorName: String = ""
    ) throws(QuantError) -> QuantizedMatrix {
        guard (1...8).contains(bits) else {
            throw .unsupportedBits(tensor: tensorName, bits: bits, supported: Array(1...8))
        }
        for r in 0..<rows {
            for c in 0..<cols where !weights[r * cols + c].isFinite {
                throw .nonFiniteWeight(tensor: tensorName, row: r, column: c, value: weights[r * cols + c])
            }
        }
        let k = 1 << bits
        let maxq = Float(k - 1)
        var lut = [Float](repeating: 0, count: rows * k)
        var idx = [UInt8](repeating: 0, count: rows * cols)
        var werr = [Double](repeating: 0, count: rows)
        var serr = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            let w = weights + r * cols
            var lo = Float.infinity, hi = -Float.infinity
            for c in 0..<cols { lo = min(lo, w[c]); hi = max(hi, w[c]) }
            if cols == 0 { lo = 0; hi = 0 }
            let sRow: UnsafePointer<Float>?
            switch sensitivity {
            case .uniform: sRow = nil
            case .full(let p): sRow = p + r * cols
            case .perColumn(let p): sRow = p
            }
            var we = 0.0, se = 0.0
            switch variant {
            case .gptq:
                var xmin = min(lo, 0), xmax = max(hi, 0)
                if xmin == 0 && xmax == 0 { xmin = -1; xmax = 1 }
                let scale = (xmax - xmin) / maxq
                let zero = (-xmin / scale).rounded(.toNearestOrEven)
                for j in 0..<k { lut[r * k + j] = scale * (Float(j) - zero) }
                for c in 0..<cols {
                    let q = min(max((w[c] / scale).rounded(.toNearestOrEven) + zero, 0), maxq)
                    idx[r * cols + c] = UInt8(q)
                }
            case .minmax:
                let scale = (hi - lo) / maxq
                for j in 0..<k { lut[r * k + j] = lo + scale * Float(j) }
                for c in 0..<cols {
                    let q = scale > 0 ? min(max(((w[c] - lo) / scale).rounded(.toNearestOrEven), 0), maxq) : 0
                    idx[r * cols + c] = UInt8(q)
                }
            }
            for c in 0..<cols {
                let e = Double(w[c]) - Double(lut[r * k + Int(idx[r * cols + c])])
                se += e * e
                we += (sRow.map { Double($0[c]) } ?? 1) * e * e
            }
            werr[r] = we; serr[r] = se
        }
        return QuantizedMatrix(
            rows: rows, cols: cols, bits: bits, lut: lut, indices: idx,
            rowWeightedError: werr, rowSquaredError: serr)
    }
}
