import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels
import Testing

/// The backward GEMM (store / add / add-square epilogues, both stride patterns) against a Float64
/// reference on every dispatch level this CPU supports, with shapes that are not multiples of the tile.
@Suite(.serialized) struct BackwardKernelsTests {
    static let shapes: [(m: Int, k: Int, n: Int)] = [
        (1, 1, 1), (7, 13, 17), (13, 300, 33), (97, 70, 64), (6, 600, 48), (151, 700, 35),
    ]

    /// Tolerance: |got - want| <= 1e-5 * sum_p |a b| (F32 accumulation), for the square: relative to C^2.
    @Test(arguments: [BackwardKernels.Mode.store, .add, .addSquare])
    func stridedGemmMatchesReference(mode: BackwardKernels.Mode) {
        var rng = Rng(s: 5)
        for level in ISALevel.available {
            ISALevel.with(level) {
                for (m, k, n) in Self.shapes {
                    for transposedA in [false, true] {
                        // A(i, p): row-major [m, k] or stored as [k, m] (the dY^T case).
                        let a = (0..<(m * k)).map { _ in rng.next() }
                        let b = (0..<(k * n)).map { _ in rng.next() }
                        let start = (0..<(m * n)).map { _ in rng.next() }
                        let sai = transposedA ? 1 : k, sap = transposedA ? m : 1
                        var out = start
                        a.withUnsafeBufferPointer { ab in
                            b.withUnsafeBufferPointer { bb in
                                out.withUnsafeMutableBufferPointer { ob in
                                    BackwardKernels.gemm(
                                        ab.baseAddress!, sai: sai, sap: sap, bb.baseAddress!, ldb: n,
                                        ob.baseAddress!, ldo: n, m: m, k: k, n: n, mode: mode, pool: .shared)
                                }
                            }
                        }
                        for i in 0..<m {
                            for j in 0..<n {
                                var c = 0.0, mag = 0.0
                                for p in 0..<k {
                                    let t = Double(a[i * sai + p * sap]) * Double(b[p * n + j])
                                    c += t; mag += abs(t)
                                }
                                let s = Double(start[i * n + j])
                                let want: Double, tol: Double
                                switch mode {
                                case .store: want = c; tol = 1e-5 * max(mag, 1e-3)
                                case .add: want = s + c; tol = 1e-5 * max(mag + abs(s), 1e-3)
                                case .addSquare: want = s + c * c; tol = 1e-5 * max(mag * mag + abs(s), 1e-3)
                                }
                                let got = Double(out[i * n + j])
                                #expect(
                                    abs(got - want) <= tol,
                                    "\(level) \(mode) m\(m) k\(k) n\(n) T\(transposedA) [\(i),\(j)]: \(got) vs \(want)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The general GEMM (B row-major or read transposed, output and operand strides wider than the
    /// shape, a column window [j0, n)) against its scalar reference, over the pool's row and column
    /// splits; the scalar reference itself is checked against Float64 in `stridedGemmMatchesReference`.
    @Test(arguments: [BackwardKernels.Mode.store, .add, .addSquare])
    func generalGemmMatchesScalar(mode: BackwardKernels.Mode) {
        var rng = Rng(s: 11)
        let shapes: [(m: Int, k: Int, n: Int)] = [
            (5, 9, 3), (7, 330, 17), (40, 19, 150), (151, 700, 35), (200, 64, 37), (13, 512, 70),
        ]
        for level in ISALevel.available {
            ISALevel.with(level) {
                for (m, k, n) in shapes {
                    for transposedA in [false, true] {
                        for transposedB in [false, true] {
                            let lda = (transposedA ? m : k) + 3, ldb = (transposedB ? k : n) + 5, ldo = n + 7
                            let a = (0..<((transposedA ? k : m) * lda)).map { _ in rng.next() }
                            let b = (0..<((transposedB ? n : k) * ldb)).map { _ in rng.next() }
                            let start = (0..<(m * ldo)).map { _ in rng.next() }
                            let sai = transposedA ? 1 : lda, sap = transposedA ? lda : 1
                            let sbp = transposedB ? 1 : ldb, sbj = transposedB ? ldb : 1
                            var got = start, want = start
                            a.withUnsafeBufferPointer { ab in
                                b.withUnsafeBufferPointer { bb in
                                    got.withUnsafeMutableBufferPointer { ob in
                                        BackwardKernels.general(
                                            ab.baseAddress!, sai: sai, sap: sap, bb.baseAddress!, sbp: sbp, sbj: sbj,
                                            ob.baseAddress!, ldo: ldo, m: m, k: k, n: n, mode: mode, pool: .shared)
                                    }
                                    want.withUnsafeMutableBufferPointer { ob in
                                        sq_gemm_general_scalar_f32(
                                            ab.baseAddress!, Int64(sai), Int64(sap), bb.baseAddress!, Int64(sbp),
                                            Int64(sbj),
                                            ob.baseAddress!, Int64(ldo), Int64(m), Int64(k), 0, Int64(n), mode.rawValue)
                                    }
                                }
                            }
                            for i in 0..<m {
                                for j in 0..<ldo {
                                    let g = got[i * ldo + j], w = want[i * ldo + j]
                                    if j >= n {
                                        #expect(
                                            g == start[i * ldo + j], "\(level) wrote outside the columns: [\(i),\(j)]")
                                        continue
                                    }
                                    var mag = abs(Double(start[i * ldo + j]))
                                    var c = 0.0
                                    for p in 0..<k {
                                        c += abs(Double(a[i * sai + p * sap]) * Double(b[p * sbp + j * sbj]))
                                    }
                                    mag += mode == .addSquare ? c * c : c
                                    #expect(
                                        abs(Double(g) - Double(w)) <= 2e-5 * max(mag, 1e-3),
                                        "\(level) \(mode) m\(m) k\(k) n\(n) A\(transposedA) B\(transposedB) [\(i),\(j)]: \(g) vs \(w)"
                                    )
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The pool's split: parts cover the whole dimension in whole tiles, rows only when n < m.
    @Test func splitCoversTheProduct() {
        for (m, n, t) in [
            (512, 576, 2), (512, 192, 2), (511, 49152, 2), (7, 7, 2), (5, 100, 4), (100, 5, 3), (12, 12, 1),
        ] {
            let s = BackwardKernels.split(m: m, n: n, threads: t)
            let total = s.rows ? m : n
            #expect(s.rows == (n < m))
            #expect(s.per % (s.rows ? 6 : 16) == 0)
            #expect(s.parts >= 1 && s.parts <= t)
            #expect((s.parts - 1) * s.per < total && s.parts * s.per >= total)
        }
    }
}
