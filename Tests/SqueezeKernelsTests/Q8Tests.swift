import Foundation
import SqueezeCore
import SqueezeKernels
import Testing

/// The 8-bit (block-of-32) weight kernels against the plain Swift reference (`Q8Reference`) on every
/// dispatch level this CPU supports, for one token (integer path), a few tokens, and many tokens
/// (dequantized F32 tile), with widths that are not multiples of 32.
@Suite(.serialized) struct Q8KernelTests {
    static let shapes: [(rows: Int, cols: Int)] = [(1, 1), (7, 13), (33, 70), (130, 257), (64, 576)]

    @Test func quantizedRowsMatchReference() throws {
        var rng = Rng(s: 7)
        for (rows, cols) in Self.shapes {
            let w = (0..<(rows * cols)).map { _ in rng.next() * 3 }
            let op = try Q8Matrix(Tensor.f32(name: "w", shape: [rows, cols], values: w))
            for r in 0..<rows {
                let (q, d) = Q8Reference.quantize(Array(w[(r * cols)..<((r + 1) * cols)]))
                let want = (0..<cols).map { Float(q[$0]) * d[$0 / 32] }
                #expect(op.row(r) == want, "[\(rows)x\(cols)] row \(r)")
                // Each weight within half a step of its block's scale.
                for c in 0..<cols { #expect(abs(op.row(r)[c] - w[r * cols + c]) <= d[c / 32] * 0.5001) }
            }
        }
    }

    /// One and a few tokens: the integer path must equal the reference's integer block sums up to
    /// float32 rounding of the scaled partial sums (1e-5 of sum |w x|). Many tokens: the dequantized
    /// weights times unquantized activations, in Double (1e-5 of sum |w x|).
    @Test func gemvAndGemmMatchReference() throws {
        var rng = Rng(s: 11)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for (rows, cols) in Self.shapes {
                    let w = (0..<(rows * cols)).map { _ in rng.next() }
                    let op = try Q8Matrix(Tensor.f32(name: "w", shape: [rows, cols], values: w))
                    for m in [1, 3, 20] {
                        let x = (0..<(m * cols)).map { _ in rng.next() }
                        var y = [Float](repeating: .nan, count: m * rows)
                        x.withUnsafeBufferPointer { xb in
                            y.withUnsafeMutableBufferPointer { yb in
                                op.gemm(xb.baseAddress!, ldx: cols, m: m, yb.baseAddress!, ldy: rows, pool: .shared)
                            }
                        }
                        for t in 0..<m {
                            let xt = Array(x[(t * cols)..<((t + 1) * cols)])
                            let want: [Double]
                            if m >= Q8Matrix.prefillThreshold {
                                want = (0..<rows).map { r in
                                    zip(op.row(r), xt).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                                }
                            } else {
                                want = Q8Reference.gemv(w, rows: rows, cols: cols, xt).map(Double.init)
                            }
                            for r in 0..<rows {
                                let scale = (0..<cols).reduce(0.0) {
                                    $0 + abs(Double(w[r * cols + $1]) * Double(xt[$1]))
                                }
                                #expect(
                                    abs(Double(y[t * rows + r]) - want[r]) <= 1e-5 * max(scale, 1e-3),
                                    "\(level) m=\(m) [\(rows)x\(cols)] (\(t),\(r)): \(y[t * rows + r]) vs \(want[r])")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Against the exact F32 product the 8-bit path is close: relative L2 error of y below 1%.
    @Test func closeToFullPrecision() throws {
        var rng = Rng(s: 3)
        let rows = 256, cols = 576
        let w = (0..<(rows * cols)).map { _ in rng.next() }
        let x = (0..<cols).map { _ in rng.next() }
        let op = try Q8Matrix(Tensor.f32(name: "w", shape: [rows, cols], values: w))
        var y = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { op.gemv(xb.baseAddress!, $0.baseAddress!, pool: .shared) }
        }
        let exact = DenseReference.gemv(w, rows: rows, cols: cols, x)
        let err = zip(y, exact).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        let norm = exact.reduce(0.0) { $0 + Double($1 * $1) }
        #expect((err / norm).squareRoot() < 0.01)
    }

    @Test func refusesNon2DAndIntegerTensors() throws {
        #expect(throws: KernelError.self) { try Q8Matrix(Tensor.f32(name: "v", shape: [4], values: [1, 2, 3, 4])) }
    }
}
