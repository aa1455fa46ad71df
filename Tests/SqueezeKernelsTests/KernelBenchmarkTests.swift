import SqueezeCore
import SqueezeKernels
import Testing

/// The benchmark library runs end to end on a tiny shape (no timing is asserted).
@Suite struct KernelBenchmarkTests {
    @Test func smallRunProducesEveryKernel() throws {
        let rows = try KernelBenchmark.run(shapes: [(40, 100)], threads: [1], repeats: 1, minBytes: 0, gemmTokens: 2,
                                           pool: WorkerPool(threads: 1))
        let names = Set(rows.map(\.kernel))
        for k in ["f16", "lut4-float", "lut4-int8", "lut3-float", "lut3-int8", "lut4-int8+sparse-fused",
                  "lut3-int8+sparse-balanced", "lut4-int8 gemm/2", "sparse", "f16 gemm/2"] {
            #expect(names.contains(k), "missing \(k)")
        }
        for r in rows { #expect(r.seconds > 0 && r.bytes > 0 && r.rows == 40 && r.columns == 100) }
        #expect(KernelBenchmark.measureBandwidth(megabytes: 4, threads: 1) > 0)
    }
}
