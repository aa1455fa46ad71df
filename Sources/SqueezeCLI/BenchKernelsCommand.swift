import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeKernels

/// `squeeze bench-kernels`: times the LUT, sparse and F16 kernels on random matrices.
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kernels",
        abstract: "Time LUT (3/4-bit, float and int8), sparse and F16 GEMV/GEMM kernels on random matrices.")

    @Option(help: "Shapes as ROWSxCOLS, comma-separated.")
    var shapes = "4096x4096,11008x4096,4096x11008"
    @Option(help: "Thread counts, comma-separated.")
    var threads = "1,2"
    @Option(help: "Timed passes (best is reported).")
    var repeats = 20
    @Option(help: "Tokens for the GEMM rows (0: none).")
    var gemmTokens = 8
    @Option(help: "Each kernel cycles over matrix copies totalling at least this many MiB (0: one copy, cache-resident when small).")
    var minMB = 128
    @Flag(help: "Time 1-thread rows with the thread's CPU time (leaves out time taken by other processes).")
    var cpuTime = false
    @Flag(help: "Also measure memory read bandwidth (512 MiB).")
    var bandwidth = false

    func run() throws {
        let sh: [(Int, Int)] = shapes.split(separator: ",").compactMap {
            let p = $0.split(separator: "x").compactMap { Int($0) }
            return p.count == 2 ? (p[0], p[1]) : nil
        }
        let th = threads.split(separator: ",").compactMap { Int($0) }
        if cpuTime { print("1-thread rows: thread CPU time; other rows: wall time") }
        print("ISA \(ISALevel.current), LUT variant \(LUTMatrix.variant), features \(cpuFeatureNames.joined(separator: " "))")
        if bandwidth {
            for t in th { print(String(format: "read bandwidth, %d thread(s): %.1f GB/s", t, KernelBenchmark.measureBandwidth(threads: t))) }
        }
        let rows = try KernelBenchmark.run(shapes: sh, threads: th, repeats: repeats, minBytes: minMB << 20, gemmTokens: gemmTokens, cpuTime: cpuTime)
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        print(pad("kernel", 22) + pad("shape", 12) + pad("thr", 4) + pad("time us", 10) + pad("GB/s", 8) + pad("vs f16", 8) + "note")
        for r in rows {
            print(pad(r.kernel, 22) + pad("\(r.rows)x\(r.columns)", 12) + pad("\(r.threads)", 4)
                  + pad(String(format: "%.1f", r.seconds * 1e6), 10) + pad(String(format: "%.1f", r.gbPerSecond), 8)
                  + pad(r.speedupOverF16.map { String(format: "%.2fx", $0) } ?? "-", 8) + r.note)
        }
    }
}
