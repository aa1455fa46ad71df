import ArgumentParser
import Foundation
import SqueezeQuant

/// `squeeze bench-kmeans`: times the k-means engines on rows from raw float32 files (see scripts/bench_kmeans.py).
struct BenchKMeansCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-kmeans",
        abstract: "Time the per-row k-means engines on raw float32 rows and print per-row times and weighted errors as JSON.")

    @Option(help: "Raw little-endian float32 file of rows x cols weights.")
    var values: String
    @Option(help: "Raw little-endian float32 file of rows x cols sensitivities.")
    var weights: String
    @Option(help: "Number of rows.")
    var rows: Int
    @Option(help: "Values per row.")
    var cols: Int
    @Option(help: "Bits per index (clusters = 2^bits).")
    var bits: Int = 4
    @Option(help: "Comma-separated engines: optimal, lloyd.")
    var engines: String = "optimal,lloyd"
    @Option(help: "Repeats per row (the best is reported).")
    var repeats: Int = 1

    func run() throws {
        let v = try Data(contentsOf: URL(fileURLWithPath: values))
        let w = try Data(contentsOf: URL(fileURLWithPath: weights))
        let need = rows * cols * 4
        guard v.count == need, w.count == need else {
            throw ValidationError("expected \(need) bytes in each file, got \(v.count) and \(w.count)")
        }
        var list: [KMeansEngine] = []
        for name in engines.split(separator: ",") {
            guard let e = KMeansEngine(rawValue: String(name)) else { throw ValidationError("unknown engine \(name)") }
            list.append(e)
        }
        let vf = v.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let wf = w.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let json = try vf.withUnsafeBufferPointer { vp in
            try wf.withUnsafeBufferPointer { wp in
                try KMeansBenchmark.run(values: vp.baseAddress!, weights: wp.baseAddress!, rows: rows, cols: cols,
                                        bits: bits, engines: list, repeats: repeats)
            }
        }
        print(json)
    }
}
