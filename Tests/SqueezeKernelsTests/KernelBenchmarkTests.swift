import CSqueezeKernels
import SqueezeCore
import SqueezeKernels
import Testing

/// The benchmark library runs end to end on a tiny shape (no timing is asserted).
@Suite struct KernelBenchmarkTests {
    @Test func smallRunProducesEveryKernel() throws {
        let rows = try KernelBenchmark.run(
            shapes: [(40, 100)], threads: [1], repeats: 1, minBytes: 0, gemmTokens: 2,
            pool: WorkerPool(threads: 1))
        let names = Set(rows.map(\.kernel))
        for k in [
            "f16", "lut4-float", "lut4-int8", "lut3-float", "lut3-int8", "lut4-int8+sparse-fused",
            "lut3-int8+sparse-balanced", "lut4-int8 gemm/2", "sparse", "f16 gemm/2",
        ] {
            #expect(names.contains(k), "missing \(k)")
        }
        for r in rows { #expect(r.seconds > 0 && r.bytes > 0 && r.rows == 40 && r.columns == 100) }
        #expect(KernelBenchmark.measureBandwidth(megabytes: 4, threads: 1) > 0)
    }

    /// The bandwidth probe's four-stream sum equals a plain sum (every element read once), on each
    /// dispatch level, for lengths that are not multiples of 64 and for unaligned starts (scalar path).
    @Test func readSumCountsEveryElementOnce() {
        for level in ISALevel.available {
            ISALevel.with(level) {
                for n in [0, 1, 63, 64, 1000, 4099] {
                    let b = AlignedBuffer<Float>(count: n + 1)
                    for i in 0..<(n + 1) { b[i] = Float(i % 7) }
                    let want = (0..<n).reduce(Float(0)) { $0 + Float($1 % 7) }
                    #expect(sq_read_sum_f32(b.pointer, Int64(n)) == want, "\(level) n=\(n)")
                    let want1 = (1..<(n + 1)).reduce(Float(0)) { $0 + Float($1 % 7) }
                    #expect(sq_read_sum_f32(b.pointer + 1, Int64(n)) == want1, "\(level) n=\(n) unaligned")
                }
            }
        }
    }
}
