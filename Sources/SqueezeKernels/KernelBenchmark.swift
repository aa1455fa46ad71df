import CSqueezeKernels
import Foundation
import SqueezeCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One measured kernel: best time per product over several passes.
public struct KernelBenchRow: Sendable {
    /// "f16", "lut4-float", "lut4-int8", "lut3-float", "lut3-int8", "sparse", "lut4-int8+sparse",
    /// "lut4-int8 gemm/8" (GEMM rows report the time per token), ...
    public let kernel: String
    public let rows: Int
    public let columns: Int
    public let threads: Int
    /// Best time of one product (per token for GEMM rows), in seconds.
    public let seconds: Double
    /// Weight bytes read by one product (per token for GEMM rows: the whole matrix / m).
    public let bytes: Int
    /// Time of F16 GEMV of the same shape and threads divided by this time.
    public let speedupOverF16: Double?
    /// Extra note: relative error of the int8 path against the float path, sparse overhead, ...
    public let note: String

    /// Weight bytes per second, in GB/s (10^9).
    public var gbPerSecond: Double { Double(bytes) / seconds / 1e9 }
}

/// Times the LUT, sparse and F16 kernels on random data. Each kernel cycles over enough copies of
/// its matrix that they do not fit in the last-level cache (weights stream from memory, as in
/// decoding), and reports the best of `repeats` passes.
public enum KernelBenchmark {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func threadCPUTime() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// The clock `time` reads: wall time, or with `run(cpuTime: true)` and one thread, the calling
    /// thread's CPU time (on a shared machine this leaves out the time slices other processes took;
    /// memory contention still counts). Multi-thread rows always use wall time.
    nonisolated(unsafe) static var clock: () -> Double = now

    /// Best time of a single call of `call(copy)`, cycling over the copies `repeats` times (so each
    /// call finds its matrix out of cache when the copies exceed the cache). Best-of single calls
    /// filters out the time slices lost to other processes on a shared machine.
    static func time(copies: Int, repeats: Int, _ call: (Int) -> Void) -> Double {
        for i in 0..<copies { call(i) }  // warm-up
        var best = Double.infinity
        for _ in 0..<repeats {
            for i in 0..<copies {
                let t0 = clock()
                call(i)
                best = min(best, clock() - t0)
            }
        }
        return best
    }

    static func randomIndices(_ n: Int, bits: Int, seed: UInt64) -> [UInt8] {
        var s = seed
        var out = [UInt8](repeating: 0, count: n)
        let mask = UInt64((1 << bits) - 1)
        out.withUnsafeMutableBufferPointer { o in
            var i = 0
            while i < n {
                s &+= 0x9E37_79B9_7F4A_7C15
                var z = (s ^ (s >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                for j in 0..<8 where i + j < n { o[i + j] = UInt8((z >> UInt64(8 * j)) & mask) }
                i += 8
            }
        }
        return out
    }

    static func randomFloats(_ n: Int, seed: UInt64) -> [Float] {
        var g = seed
        return (0..<n).map { _ in
            g = g &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: g) >> 40) / Float(1 << 23)
        }
    }

    static func randomSparse(rows: Int, cols: Int, density: Double, seed: UInt64) throws -> SparseCSRMatrix {
        let perRow = max(1, Int((Double(cols) * density).rounded()))
        var rp: [Int32] = [0], ci: [Int32] = [], vs: [Float] = []
        var g = seed
        for _ in 0..<rows {
            var cs = Set<Int32>()
            while cs.count < min(perRow, cols) {
                g = g &* 6364136223846793005 &+ 1442695040888963407
                cs.insert(Int32((g >> 33) % UInt64(cols)))
            }
            for c in cs.sorted() {
                ci.append(c)
                g = g &* 6364136223846793005 &+ 1442695040888963407
                // half precision, as checkpoints store the sparse values (compact storage)
                vs.append(sq_f16_to_f32_1(sq_f32_to_f16_1(Float(Int64(bitPattern: g) >> 40) / Float(1 << 23))))
            }
            rp.append(Int32(ci.count))
        }
        return try SparseCSRMatrix(rows: rows, columns: cols, rowPointers: rp, columnIndices: ci, values: vs)
    }

    /// Runs the benchmark. `minBytes`: each kernel cycles over copies totalling at least this many
    /// bytes; `sparsity`: fraction of nonzeros of the sparse part; `gemmTokens`: m of the GEMM rows
    /// (0: none).
    /// `cpuTime`: time single-thread rows with the thread's CPU time instead of wall time.
    public static func run(
        shapes: [(Int, Int)], threads: [Int], repeats: Int = 20, minBytes: Int = 128 << 20,
        sparsity: Double = 0.0045, gemmTokens: Int = 8, cpuTime: Bool = false,
        pool: WorkerPool = .shared
    ) throws -> [KernelBenchRow] {
        var out: [KernelBenchRow] = []
        for (rows, cols) in shapes {
            let xv = randomFloats(max(cols, 1) * max(gemmTokens, 1), seed: 7)
            let x = AlignedBuffer<Float>(xv)
            let y = AlignedBuffer<Float>(count: rows * max(gemmTokens, 1))
            let y2 = AlignedBuffer<Float>(count: rows)

            // F16 dense baseline.
            let f16Bytes = rows * cols * 2
            let f16Copies = max(1, (minBytes + f16Bytes - 1) / f16Bytes)
            let f16: [AlignedBuffer<UInt16>] = (0..<f16Copies).map { i in
                let b = AlignedBuffer<UInt16>(count: rows * cols)
                let src = randomFloats(min(rows * cols, 1 << 20), seed: UInt64(i + 1))
                var off = 0
                while off < rows * cols {
                    let n = min(src.count, rows * cols - off)
                    sq_f32_to_f16(src, b.pointer + off, Int64(n))
                    off += n
                }
                return b
            }
            // LUT matrices: copies for each width, and copies with a sparse part of their own (so the
            // sparse arrays come from memory too, as in a model).
            let sparse = try randomSparse(rows: rows, cols: cols, density: sparsity, seed: 99)
            var luts: [Int: [LUTMatrix]] = [:]
            var lutsSparse: [Int: [LUTMatrix]] = [:]
            for bits in [4, 3] {
                let idx = randomIndices(rows * cols, bits: bits, seed: UInt64(bits))
                var lut = randomFloats(rows << bits, seed: UInt64(10 + bits))
                for r in 0..<rows { lut[(r << bits)..<((r + 1) << bits)].sort() }
                let one = try LUTMatrix(indices: idx, lut: lut, rows: rows, columns: cols, bits: bits, pool: pool)
                let copies = max(1, (minBytes + one.packedByteCount - 1) / one.packedByteCount)
                var list = [one], slist: [LUTMatrix] = []
                for _ in 1..<copies {
                    list.append(
                        try LUTMatrix(indices: idx, lut: lut, rows: rows, columns: cols, bits: bits, pool: pool))
                }
                for i in 0..<copies {
                    let own =
                        i == 0
                        ? sparse : try randomSparse(rows: rows, cols: cols, density: sparsity, seed: 99 + UInt64(i))
                    slist.append(
                        try LUTMatrix(
                            indices: idx, lut: lut, rows: rows, columns: cols, bits: bits, sparse: own, pool: pool))
                }
                luts[bits] = list
                lutsSparse[bits] = slist
            }

            for t in threads {
                clock = cpuTime && t == 1 ? threadCPUTime : now
                defer { clock = now }
                let xp = x.pointer, yp = y.pointer
                let tf16 = time(copies: f16.count, repeats: repeats) { i in
                    let w = f16[i].pointer
                    pool.parallelFor(rows, minBlock: 16, blocksPerThread: 4, threads: t) { r, _ in
                        sq_gemv_f16(
                            w, Int64(cols), xp, yp + r.lowerBound, Int64(cols), Int64(r.lowerBound), Int64(r.upperBound)
                        )
                    }
                }
                out.append(
                    KernelBenchRow(
                        kernel: "f16", rows: rows, columns: cols, threads: t, seconds: tf16, bytes: f16Bytes,
                        speedupOverF16: 1, note: ""))
                for bits in [4, 3] {
                    let list = luts[bits]!
                    var tInt8 = 0.0
                    for mode in [LUTMode.float, .int8] {
                        for m in list { m.mode = mode }
                        let s = time(copies: list.count, repeats: repeats) { i in
                            list[i].gemv(xp, yp, pool: pool, threads: t)
                        }
                        var note = ""
                        if mode == .int8 {
                            tInt8 = s
                            list[0].mode = .float
                            list[0].gemv(xp, y2.pointer, pool: pool, threads: t)
                            list[0].gemv(xp, y2.pointer, pool: pool, threads: t)
                            list[0].mode = .int8
                            list[0].gemv(xp, yp, pool: pool, threads: t)
                            var num = 0.0, den = 0.0
                            for r in 0..<rows {
                                num += Double(yp[r] - y2[r]) * Double(yp[r] - y2[r])
                                den += Double(y2[r]) * Double(y2[r])
                            }
                            note = String(format: "rel. error vs float %.2e", (num / max(den, 1e-300)).squareRoot())
                        }
                        out.append(
                            KernelBenchRow(
                                kernel: "lut\(bits)-\(mode)", rows: rows, columns: cols, threads: t, seconds: s,
                                bytes: list[0].weightBytes, speedupOverF16: tf16 / s, note: note))
                    }
                    let ls = lutsSparse[bits]!
                    for schedule in SparseSchedule.allCases {
                        for m in ls { m.mode = .int8; m.sparseSchedule = schedule }
                        let s2 = time(copies: ls.count, repeats: repeats) { i in
                            ls[i].gemv(xp, yp, pool: pool, threads: t)
                        }
                        let overhead: Double = (s2 / tInt8 - 1) * 100
                        let sparseNote = String(
                            format: "sparse %.2f%%: %+.1f%% over dense int8", sparsity * 100, overhead)
                        out.append(
                            KernelBenchRow(
                                kernel: "lut\(bits)-int8+sparse-\(schedule.rawValue)", rows: rows, columns: cols,
                                threads: t, seconds: s2, bytes: ls[0].weightBytes, speedupOverF16: tf16 / s2,
                                note: sparseNote))
                    }
                    if gemmTokens > 0 {
                        let g = time(copies: list.count, repeats: max(3, repeats / 4)) { i in
                            list[i].gemm(xp, ldx: cols, m: gemmTokens, yp, ldy: rows, pool: pool, threads: t)
                        }
                        out.append(
                            KernelBenchRow(
                                kernel: "lut\(bits)-int8 gemm/\(gemmTokens)", rows: rows, columns: cols, threads: t,
                                seconds: g / Double(gemmTokens), bytes: list[0].weightBytes / gemmTokens,
                                speedupOverF16: tf16 / (g / Double(gemmTokens)), note: "time per token"))
                    }
                }
                let ss = time(copies: 1, repeats: repeats) { _ in sparse.addMultiply(xp, yp, pool: pool, threads: t) }
                out.append(
                    KernelBenchRow(
                        kernel: "sparse", rows: rows, columns: cols, threads: t, seconds: ss, bytes: sparse.byteCount,
                        speedupOverF16: nil, note: "\(sparse.nonzeroCount) nonzeros, cache-warm"))
                if gemmTokens > 0 {
                    let g = time(copies: f16.count, repeats: max(3, repeats / 4)) { i in
                        let w = f16[i].pointer
                        pool.parallelFor(rows, minBlock: 16, blocksPerThread: 4, threads: t) { r, _ in
                            sq_gemm_f16(
                                xp, Int64(cols), w, Int64(cols), yp, Int64(rows), Int64(gemmTokens), Int64(cols),
                                Int64(r.lowerBound), Int64(r.upperBound))
                        }
                    }
                    out.append(
                        KernelBenchRow(
                            kernel: "f16 gemm/\(gemmTokens)", rows: rows, columns: cols, threads: t,
                            seconds: g / Double(gemmTokens), bytes: f16Bytes / gemmTokens,
                            speedupOverF16: tf16 / (g / Double(gemmTokens)), note: "time per token"))
                }
            }
        }
        return out
    }

    /// Memory read bandwidth in GB/s: best of 5 sums over a buffer of `megabytes` MiB, split over
    /// `threads` threads in 4 MiB chunks, each chunk read as four streams at once (`sq_read_sum_f32`)
    /// so that one core keeps as many loads in flight as a four-row GEMV does.
    public static func measureBandwidth(megabytes: Int = 512, threads: Int = 1, pool: WorkerPool = .shared) -> Double {
        let n = megabytes << 18
        let buf = AlignedBuffer<Float>(count: n)
        for i in stride(from: 0, to: n, by: 1024) { buf[i] = 1 }
        let p = buf.pointer
        var best = Double.infinity
        let chunk = 1 << 20
        let chunks = (n + chunk - 1) / chunk
        for _ in 0..<5 {
            let t0 = now()
            pool.parallelFor(chunks, threads: threads) { range, _ in
                var s: Float = 0
                for c in range {
                    let a = c * chunk
                    s += sq_read_sum_f32(p + a, Int64(min(chunk, n - a)))
                }
                if s < 0 { print(s) }
            }
            best = min(best, now() - t0)
        }
        return Double(n * 4) / best / 1e9
    }
}
