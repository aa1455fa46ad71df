import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeKernels

/// `squeeze bench-kernels`: times the LUT, sparse and F16 kernels on random matrices.
public struct BenchKernelsCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time LUT (3/4-bit, float and int8), sparse and F16 GEMV/GEMM kernels on random matrices.")

    @Option(help: "Shapes as ROWSxCOLS, comma-separated.")
    public var shapes = CommaSeparated<MatrixShape>([
        MatrixShape(rows: 4096, columns: 4096), MatrixShape(rows: 11008, columns: 4096),
        MatrixShape(rows: 4096, columns: 11008),
    ])
    @Option(help: "Thread counts, comma-separated.")
    public var threads = CommaSeparated<PositiveInt>([PositiveInt(1), PositiveInt(2)])
    @Option(help: "Timed passes (best is reported).")
    public var repeats = PositiveInt(20)
    @Option(help: "Tokens for the GEMM rows (0: none).")
    public var gemmTokens = NonNegativeInt(8)
    @Option(
        help:
            "Each kernel cycles over matrix copies totalling at least this many MiB (0: one copy, cache-resident when small)."
    )
    public var minMB = NonNegativeInt(128)
    @Flag(help: "Time 1-thread rows with the thread's CPU time (leaves out time taken by other processes).")
    public var cpuTime = false
    @Flag(help: "Also measure memory read bandwidth (512 MiB).")
    public var bandwidth = false

    public init() {}

    public func validate() throws {
        if shapes.values.isEmpty { throw ValidationError("--shapes needs at least one ROWSxCOLS shape") }
        if threads.values.isEmpty { throw ValidationError("--threads needs at least one count") }
    }

    public func run() throws {
        let th = threads.values.map(\.value)
        if cpuTime { print("1-thread rows: thread CPU time; other rows: wall time") }
        print(
            "ISA \(ISALevel.current), LUT variant \(LUTMatrix.variant), features \(cpuFeatureNames.joined(separator: " "))"
        )
        if bandwidth {
            for t in th {
                print(
                    String(
                        format: "read bandwidth, %d thread(s): %.1f GB/s", t,
                        KernelBenchmark.measureBandwidth(threads: t)))
            }
        }
        let rows = try KernelBenchmark.run(
            shapes: shapes.values.map { ($0.rows, $0.columns) }, threads: th, repeats: repeats.value,
            minBytes: minMB.value << 20, gemmTokens: gemmTokens.value, cpuTime: cpuTime)
        print(Self.table(rows))
    }

    /// The kernel rows as aligned columns.
    public static func table(_ rows: [KernelBenchRow]) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        var lines = [
            pad("kernel", 22) + pad("shape", 12) + pad("thr", 4) + pad("time us", 10) + pad("GB/s", 8)
                + pad("vs f16", 8) + "note"
        ]
        for r in rows {
            lines.append(
                pad(r.kernel, 22) + pad("\(r.rows)x\(r.columns)", 12) + pad("\(r.threads)", 4)
                    + pad(String(format: "%.1f", r.seconds * 1e6), 10) + pad(String(format: "%.1f", r.gbPerSecond), 8)
                    + pad(r.speedupOverF16.map { String(format: "%.2fx", $0) } ?? "-", 8) + r.note)
        }
        return lines.joined(separator: "\n")
    }
}
