import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels
import Testing

/// Dense kernels (GEMV, GEMM over F32/F16/BF16, softmax, SwiGLU) against plain Swift references in
/// Double, on every dispatch level this CPU supports, with shapes that are not multiples of 8 or 16.
@Suite(.serialized) struct DenseKernelTests {
    static let shapes: [(m: Int, rows: Int, cols: Int)] = [
        (1, 1, 1), (3, 7, 13), (5, 33, 70), (9, 130, 257), (17, 64, 576), (45, 70, 700), (40, 21, 33),
    ]

    /// Relative tolerance against the Double reference: float32 accumulation over `cols` terms of
    /// magnitude <= 1 has an error bound of about cols * 2^-24 * sum|w x|; we allow 1e-5 * sum|w x|.
    func check(_ got: Float, _ want: Double, scale: Double, _ what: String) {
        #expect(abs(Double(got) - want) <= 1e-5 * max(scale, 1e-3), "\(what): \(got) vs \(want)")
    }

    @Test(arguments: [DType.f32, .f16, .bf16])
    func gemvAndGemmMatchReference(dtype: DType) throws {
        var rng = Rng(s: 42)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for (m, rows, cols) in Self.shapes {
                    let w = (0..<(rows * cols)).map { _ in rng.next() }
                    let x = (0..<(m * cols)).map { _ in rng.next() }
                    let t = try Tensor.f32(name: "w", shape: [rows, cols], values: w).converted(to: dtype)
                    let wq = t.toFloatArray()  // the exact weights the kernel sees
                    let op = try DenseMatrix(t)
                    var y = [Float](repeating: .nan, count: m * rows)
                    x.withUnsafeBufferPointer { xb in
                        y.withUnsafeMutableBufferPointer { yb in
                            op.gemm(xb.baseAddress!, ldx: cols, m: m, yb.baseAddress!, ldy: rows, pool: .shared)
                        }
                    }
                    var yv = [Float](repeating: .nan, count: rows)
                    x.withUnsafeBufferPointer { xb in
                        yv.withUnsafeMutableBufferPointer { yb in
                            op.gemv(xb.baseAddress!, yb.baseAddress!, pool: .shared)
                        }
                    }
                    for tok in 0..<m {
                        for r in 0..<rows {
                            var s = 0.0, a = 0.0
                            for c in 0..<cols {
                                s += Double(wq[r * cols + c]) * Double(x[tok * cols + c])
                                a += abs(Double(wq[r * cols + c]) * Double(x[tok * cols + c]))
                            }
                            check(
                                y[tok * rows + r], s, scale: a,
                                "\(level) \(dtype) gemm m=\(m) [\(rows)x\(cols)] (\(tok),\(r))")
                            if tok == 0 {
                                check(yv[r], s, scale: a, "\(level) \(dtype) gemv [\(rows)x\(cols)] row \(r)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// exp-based kernels: relative error 1e-6 (polynomial exp is within a few ulp).
    /// The pooled SiLU product (a PoolJob over blocks of `blockLength`) equals the kernel run block by
    /// block (a vector tail takes the scalar path), in place too.
    @Test func pooledSiluMulMatchesKernel() {
        var rng = Rng(s: 11)
        let pool = WorkerPool(threads: 3)
        for n in [1, 100, 8192, 8193, 40_000] {
            let g = (0..<n).map { _ in rng.next() * 8 }, u = (0..<n).map { _ in rng.next() }
            var want = [Float](repeating: 0, count: n)
            let block = pool.blockLength(n, minBlock: 8192)
            want.withUnsafeMutableBufferPointer { w in
                g.withUnsafeBufferPointer { gb in
                    u.withUnsafeBufferPointer { ub in
                        for lo in stride(from: 0, to: n, by: block) {
                            sq_silu_mul_f32(
                                gb.baseAddress! + lo, ub.baseAddress! + lo, w.baseAddress! + lo,
                                Int64(min(block, n - lo)))
                        }
                    }
                }
            }
            var got = g
            got.withUnsafeMutableBufferPointer { VectorOps.siluMul($0.baseAddress!, u, $0.baseAddress!, n, pool: pool) }
            #expect(got == want, "n=\(n)")
        }
    }

    @Test func softmaxAndSiluMatchReference() {
        var rng = Rng(s: 7)
        for level in ISALevel.available {
            ISALevel.with(level) {
                for n in [1, 5, 8, 17, 100, 1000] {
                    let v = (0..<n).map { _ in rng.next() * 30 }
                    var s = v
                    let lse = s.withUnsafeMutableBufferPointer { sq_softmax_f32($0.baseAddress!, Int64(n)) }
                    let mx = Double(v.max()!)
                    let sum = v.reduce(0.0) { $0 + exp(Double($1) - mx) }
                    #expect(abs(Double(lse) - (log(sum) + mx)) < 1e-5 * max(1, abs(log(sum) + mx)))
                    for i in 0..<n {
                        let want = exp(Double(v[i]) - mx) / sum
                        #expect(abs(Double(s[i]) - want) <= 4e-6 * want + 1e-12, "\(level) softmax n=\(n) i=\(i)")
                    }
                    // The scaled variant: the same log-sum-exp, probabilities times the scale.
                    var sc = v
                    let lse2 = sc.withUnsafeMutableBufferPointer {
                        sq_softmax_scaled_f32($0.baseAddress!, Int64(n), 0.25)
                    }
                    #expect(lse2 == lse, "\(level) scaled softmax lse n=\(n)")
                    for i in 0..<n {
                        let want = 0.25 * exp(Double(v[i]) - mx) / sum
                        #expect(
                            abs(Double(sc[i]) - want) <= 4e-6 * want + 1e-12, "\(level) scaled softmax n=\(n) i=\(i)")
                    }
                    let u = (0..<n).map { _ in rng.next() }
                    var out = [Float](repeating: 0, count: n)
                    out.withUnsafeMutableBufferPointer { sq_silu_mul_f32(v, u, $0.baseAddress!, Int64(n)) }
                    for i in 0..<n {
                        let g = Double(v[i])
                        let want = g / (1 + exp(-g)) * Double(u[i])
                        #expect(abs(Double(out[i]) - want) <= 1e-6 * max(1, abs(want)), "\(level) silu n=\(n) i=\(i)")
                    }
                    // Its backward: du = da silu(g), dg = da u s (1 + g (1 - s)).
                    let da = (0..<n).map { _ in rng.next() }
                    var dg = da, du = [Float](repeating: 0, count: n)
                    dg.withUnsafeMutableBufferPointer { dgb in
                        du.withUnsafeMutableBufferPointer {
                            sq_silu_mul_backward_f32(v, u, dgb.baseAddress!, $0.baseAddress!, Int64(n))
                        }
                    }
                    for i in 0..<n {
                        let g = Double(v[i]), s = 1 / (1 + exp(-g)), d = Double(da[i])
                        let wantU = d * g * s, wantG = d * Double(u[i]) * s * (1 + g * (1 - s))
                        #expect(
                            abs(Double(du[i]) - wantU) <= 1e-6 * max(1, abs(wantU)),
                            "\(level) silu backward du n=\(n) i=\(i)")
                        #expect(
                            abs(Double(dg[i]) - wantG) <= 1e-6 * max(1, abs(wantG)),
                            "\(level) silu backward dg n=\(n) i=\(i)")
                    }
                }
            }
        }
    }

    /// Half-precision conversions: every F16 bit pattern round-trips; F32->F16 rounds to nearest even.
    @Test func halfConversionsRoundTrip() {
        for level in ISALevel.available {
            ISALevel.with(level) {
                let all = (0..<65536).map { UInt16($0) }
                var f = [Float](repeating: 0, count: all.count)
                f.withUnsafeMutableBufferPointer { HalfConversion.toFloat(all, $0.baseAddress!, count: all.count) }
                var back = [UInt16](repeating: 0, count: all.count)
                back.withUnsafeMutableBufferPointer { HalfConversion.toHalf(f, $0.baseAddress!, count: all.count) }
                for i in 0..<65536 {
                    let want = Float(Float16(bitPattern: UInt16(i)))
                    if want.isNaN { #expect(f[i].isNaN); continue }
                    #expect(f[i] == want, "\(level) f16 \(i)")
                    #expect(back[i] == UInt16(i), "\(level) round trip \(i)")
                }
                // Rounding of values between halves: compare with the standard library's conversion.
                var rng = Rng(s: 3)
                let vals = (0..<5000).map { _ in rng.next() * 70000 }
                var h = [UInt16](repeating: 0, count: vals.count)
                h.withUnsafeMutableBufferPointer { HalfConversion.toHalf(vals, $0.baseAddress!, count: vals.count) }
                for (i, v) in vals.enumerated() { #expect(h[i] == Float16(v).bitPattern, "\(level) \(v)") }
            }
        }
    }
}
