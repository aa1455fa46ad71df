import Foundation
import Testing
import SqueezeCore
import SqueezeKernels

/// The backward GEMM (store / add / add-square epilogues, both stride patterns) against a Float64
/// reference on every dispatch level this CPU supports, with shapes that are not multiples of the tile.
@Suite(.serialized) struct BackwardKernelsTests {
    struct Rng {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2_000_001 - 1_000_000) / 1_000_000
        }
    }

    static let shapes: [(m: Int, k: Int, n: Int)] = [(1, 1, 1), (7, 13, 17), (13, 300, 33), (97, 70, 64), (6, 600, 48)]

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
                                    BackwardKernels.gemm(ab.baseAddress!, sai: sai, sap: sap, bb.baseAddress!, ldb: n,
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
                                #expect(abs(got - want) <= tol, "\(level) \(mode) m\(m) k\(k) n\(n) T\(transposedA) [\(i),\(j)]: \(got) vs \(want)")
                            }
                        }
                    }
                }
            }
        }
    }
}
