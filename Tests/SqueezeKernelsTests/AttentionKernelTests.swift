import CSqueezeKernels
import Foundation
import SqueezeCore
import SqueezeKernels
import Testing

/// Decode attention kernels over half-precision caches (key tiles, transposed values) against plain
/// Swift references in Double, on every dispatch level this CPU supports: head dimensions that are
/// not multiples of 8, query groups of 1 to 7 rows (the AVX2 kernel takes rows three at a time), key
/// ranges that start and end inside tiles.
@Suite(.serialized) struct AttentionKernelTests {
    /// Expects `got` to equal the Double sum of `count` terms within 1e-5 of the sum of their
    /// magnitudes (float32 accumulation error).
    func expectSum(_ got: Float, _ count: Int, _ what: @autoclosure () -> String, term: (Int) -> Double) {
        var want = 0.0, scale = 0.0
        for i in 0..<count {
            let t = term(i)
            want += t
            scale += abs(t)
        }
        #expect(abs(Double(got) - want) <= 1e-5 * max(scale, 1e-3), "\(what()): \(got) vs \(want)")
    }

    /// (head dimension, positions in the cache, first key, end of keys, query rows)
    static let cases: [(hd: Int, cap: Int, j0: Int, j1: Int, g: Int)] = [
        (64, 100, 0, 100, 3), (64, 96, 0, 96, 1), (64, 200, 37, 171, 2), (13, 40, 5, 6, 4),
        (8, 33, 0, 33, 7), (80, 64, 31, 33, 5), (128, 70, 1, 64, 6),
    ]

    @Test func scoresMatchReference() throws {
        var rng = Rng(s: 7)
        let kt = Int(SQ_KT)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for c in Self.cases {
                    let tiles = (c.cap + kt - 1) / kt
                    // Keys as rounded halves; their tiled storage written by the store kernel.
                    var keys = [Float](repeating: 0, count: c.cap * c.hd)
                    for i in keys.indices { keys[i] = sq_f16_to_f32_1(sq_f32_to_f16_1(rng.next())) }
                    var tiled = [UInt16](repeating: 0x7e00, count: tiles * kt * c.hd)  // NaN in unused lanes
                    for j in 0..<c.cap {
                        keys.withUnsafeBufferPointer {
                            sq_attn_store_key_kt16($0.baseAddress! + j * c.hd, Int64(c.hd), Int64(j), &tiled)
                        }
                    }
                    for j in 0..<c.cap {
                        for d in 0..<c.hd {
                            #expect(tiled[(j / kt * c.hd + d) * kt + j % kt] == sq_f32_to_f16_1(keys[j * c.hd + d]))
                        }
                    }
                    let ldq = c.hd + 3, lds = c.j1 - c.j0 + 5
                    var q = [Float](repeating: 0, count: c.g * ldq)
                    for i in q.indices { q[i] = rng.next() }
                    var s = [Float](repeating: -7, count: c.g * lds)
                    sq_attn_scores_kt16(
                        q, Int64(ldq), Int64(c.g), tiled, Int64(c.hd), Int64(c.j0), Int64(c.j1), &s, Int64(lds))
                    for r in 0..<c.g {
                        for j in c.j0..<c.j1 {
                            expectSum(s[r * lds + j - c.j0], c.hd, "\(level) \(c) row \(r) key \(j)") {
                                Double(q[r * ldq + $0]) * Double(keys[j * c.hd + $0])
                            }
                        }
                        for j in (c.j1 - c.j0)..<lds {
                            #expect(s[r * lds + j] == -7, "\(level) \(c): wrote past the keys")
                        }
                    }
                    // The prefill copy: dimension-major F32.
                    let n = c.j1 - c.j0, ldd = n + 2
                    var dst = [Float](repeating: -7, count: c.hd * ldd)
                    sq_attn_keys_kt16_to_f32(tiled, Int64(c.hd), Int64(c.j0), Int64(c.j1), &dst, Int64(ldd))
                    for d in 0..<c.hd {
                        for j in 0..<n { #expect(dst[d * ldd + j] == keys[(c.j0 + j) * c.hd + d]) }
                        for j in n..<ldd { #expect(dst[d * ldd + j] == -7) }
                    }
                }
            }
        }
    }

    @Test func weightedSumsMatchReference() throws {
        var rng = Rng(s: 11)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for c in Self.cases {
                    let n = c.j1 - c.j0, ldv = c.cap + 9, ldp = n + 1, ldo = c.hd + 2
                    var vt = [UInt16](repeating: 0, count: c.hd * ldv)
                    for i in vt.indices { vt[i] = sq_f32_to_f16_1(rng.next()) }
                    var p = [Float](repeating: 0, count: c.g * ldp)
                    for i in p.indices { p[i] = abs(rng.next()) }
                    var out = [Float](repeating: -7, count: c.g * ldo)
                    vt.withUnsafeBufferPointer { v in
                        sq_attn_pv16(
                            p, Int64(ldp), Int64(c.g), v.baseAddress! + c.j0, Int64(ldv), Int64(c.hd), Int64(n), &out,
                            Int64(ldo))
                    }
                    for r in 0..<c.g {
                        for d in 0..<c.hd {
                            expectSum(out[r * ldo + d], n, "\(level) \(c) row \(r) dim \(d)") {
                                Double(p[r * ldp + $0]) * Double(sq_f16_to_f32_1(vt[d * ldv + c.j0 + $0]))
                            }
                        }
                        for d in c.hd..<ldo { #expect(out[r * ldo + d] == -7) }
                    }
                }
            }
        }
    }

    /// 8-bit caches: the store kernels quantize each vector to max|x| / 127 steps (checked against a
    /// Swift quantizer), and scores, weighted sums and the prefill conversions equal Double sums over
    /// the dequantized values.
    @Test func q8KernelsMatchReference() throws {
        var rng = Rng(s: 23)
        let kt = Int(SQ_KT)
        func quantize(_ x: ArraySlice<Float>) -> ([Int8], Float) {
            let mx = x.map { abs($0) }.max() ?? 0
            let inv: Float = mx > 0 ? 127 / mx : 0
            return (x.map { Int8(max(-127, min(127, ($0 * inv).rounded(.toNearestOrEven)))) }, mx / 127)
        }
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for c in Self.cases {
                    let tiles = (c.cap + kt - 1) / kt, n = c.j1 - c.j0
                    var keys = [Float](repeating: 0, count: c.cap * c.hd), values = keys
                    for i in keys.indices { keys[i] = rng.next() * 3; values[i] = rng.next() }
                    var tiled = [Int8](repeating: 99, count: tiles * kt * c.hd)
                    var ks = [Float](repeating: .nan, count: tiles * kt)
                    let ldv = c.cap + 3
                    var vt = [Int8](repeating: 0, count: c.hd * ldv), vs = [Float](repeating: 0, count: c.cap)
                    var kd = keys, vd = values  // dequantized
                    for j in 0..<c.cap {
                        keys.withUnsafeBufferPointer {
                            sq_attn_store_key_kt8($0.baseAddress! + j * c.hd, Int64(c.hd), Int64(j), &tiled, &ks)
                        }
                        values.withUnsafeBufferPointer {
                            sq_attn_store_value_q8(
                                $0.baseAddress! + j * c.hd, Int64(c.hd), Int64(j), &vt, Int64(ldv), &vs)
                        }
                        let (qk, sk) = quantize(keys[(j * c.hd)..<((j + 1) * c.hd)])
                        let (qv, sv) = quantize(values[(j * c.hd)..<((j + 1) * c.hd)])
                        #expect(ks[j] == sk && vs[j] == sv)
                        for d in 0..<c.hd {
                            #expect(tiled[(j / kt * c.hd + d) * kt + j % kt] == qk[d], "\(c) key \(j) dim \(d)")
                            #expect(vt[d * ldv + j] == qv[d], "\(c) value \(j) dim \(d)")
                            kd[j * c.hd + d] = sk * Float(qk[d])
                            vd[j * c.hd + d] = sv * Float(qv[d])
                            #expect(abs(kd[j * c.hd + d] - keys[j * c.hd + d]) <= sk / 2 * 1.0001)
                        }
                    }
                    // Scores.
                    let ldq = c.hd + 1, lds = n + 3
                    var q = [Float](repeating: 0, count: c.g * ldq)
                    for i in q.indices { q[i] = rng.next() }
                    var s = [Float](repeating: -7, count: c.g * lds)
                    sq_attn_scores_kt8(
                        q, Int64(ldq), Int64(c.g), tiled, ks, Int64(c.hd), Int64(c.j0), Int64(c.j1), &s, Int64(lds))
                    for r in 0..<c.g {
                        for j in c.j0..<c.j1 {
                            expectSum(s[r * lds + j - c.j0], c.hd, "\(level) \(c) row \(r) key \(j)") {
                                Double(q[r * ldq + $0]) * Double(kd[j * c.hd + $0])
                            }
                        }
                        for j in n..<lds { #expect(s[r * lds + j] == -7) }
                    }
                    // Weighted sums (p is scaled in place by the value scales).
                    let ldp = n + 2, ldo = c.hd + 1
                    var p = [Float](repeating: 0, count: c.g * ldp)
                    for i in p.indices { p[i] = abs(rng.next()) }
                    let p0 = p
                    var out = [Float](repeating: -7, count: c.g * ldo)
                    vt.withUnsafeBufferPointer { v in
                        vs.withUnsafeBufferPointer { sv in
                            sq_attn_pv8(
                                &p, Int64(ldp), Int64(c.g), v.baseAddress! + c.j0, Int64(ldv), sv.baseAddress! + c.j0,
                                Int64(c.hd), Int64(n), &out, Int64(ldo))
                        }
                    }
                    for r in 0..<c.g {
                        for d in 0..<c.hd {
                            expectSum(out[r * ldo + d], n, "\(level) \(c) row \(r) dim \(d)") {
                                Double(p0[r * ldp + $0]) * Double(vd[(c.j0 + $0) * c.hd + d])
                            }
                        }
                        for d in c.hd..<ldo { #expect(out[r * ldo + d] == -7) }
                    }
                    // Prefill conversions.
                    let ldd = n + 2
                    var kf = [Float](repeating: -7, count: c.hd * ldd), vf = kf
                    sq_attn_keys_kt8_to_f32(tiled, ks, Int64(c.hd), Int64(c.j0), Int64(c.j1), &kf, Int64(ldd))
                    sq_attn_values_q8_to_f32(vt, Int64(ldv), vs, Int64(c.hd), Int64(c.j0), Int64(c.j1), &vf, Int64(ldd))
                    for d in 0..<c.hd {
                        for j in 0..<n {
                            #expect(kf[d * ldd + j] == kd[(c.j0 + j) * c.hd + d])
                            #expect(vf[d * ldd + j] == vd[(c.j0 + j) * c.hd + d])
                        }
                        for j in n..<ldd { #expect(kf[d * ldd + j] == -7 && vf[d * ldd + j] == -7) }
                    }
                }
            }
        }
    }
}
