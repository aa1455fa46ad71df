import Foundation
import SqueezeCore

#if canImport(Glibc)
import Glibc
#endif

/// Per-row timing and error of the k-means engines, for `scripts/bench/bench_kmeans.py`.
public enum KMeansBenchmark {
    /// One engine's figures on one row.
    public struct RowResult: Codable, Sendable {
        /// Row index.
        public var row: Int
        /// Best of the repeats, CPU milliseconds of the calling thread (sort, clustering, labelling, error).
        public var milliseconds: Double
        /// Sum of F_i (w_i - c[label_i])^2 in Float64.
        public var weightedError: Double
    }

    /// Every engine's figures on every row (encodes as `{"bits", "cols", "rows", "engines": {"optimal": [RowResult]}}`).
    public struct Report: Codable, Sendable {
        public var bits: Int
        public var cols: Int
        public var rows: Int
        /// Per engine (its raw value), one result per row.
        public var engines: [String: [RowResult]]
    }

    /// Runs every engine on every row on the calling thread (one core).
    public static func run(
        values: UnsafePointer<Float>, weights: UnsafePointer<Float>, rows: Int, cols: Int,
        bits: Int, engines: [KMeansEngine], repeats: Int = 1
    ) throws -> Report {
        guard (1...8).contains(bits) else {
            throw QuantError.unsupportedBits(tensor: "", bits: bits, supported: Array(1...8))
        }
        let k = 1 << bits
        let ws = KMeansWorkspace(capacity: cols, k: k)
        let lut = UnsafeMutablePointer<Float>.allocate(capacity: k)
        let idx = UnsafeMutablePointer<UInt8>.allocate(capacity: max(cols, 1))
        defer { lut.deallocate(); idx.deallocate() }
        var out: [String: [RowResult]] = [:]
        for engine in engines {
            let opts = KMeansOptions(engine: engine)
            var results: [RowResult] = []
            for r in 0..<rows {
                var best = Double.infinity
                var err = 0.0
                for _ in 0..<max(repeats, 1) {
                    let t0 = threadCPUNanoseconds()
                    let (we, _) = try NonUniformQuantizer.quantizeRow(
                        ws, values: values + r * cols, sens: weights + r * cols, keep: nil, n: cols, k: k,
                        options: opts, lutOut: lut, idxOut: idx, row: r, tensorName: "bench")
                    let t1 = threadCPUNanoseconds()
                    best = min(best, Double(t1 - t0) / 1e6)
                    err = we
                }
                results.append(RowResult(row: r, milliseconds: best, weightedError: err))
            }
            out[engine.rawValue] = results
        }
        return Report(bits: bits, cols: cols, rows: rows, engines: out)
    }
}

/// CPU time of the calling thread in nanoseconds.
func threadCPUNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
