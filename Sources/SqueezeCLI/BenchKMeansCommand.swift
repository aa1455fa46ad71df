import ArgumentParser
import Foundation
import SqueezeQuant

/// `squeeze bench-kmeans`: times the k-means engines on rows from raw float32 files (see scripts/bench/bench_kmeans.py).
public struct BenchKMeansCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench-kmeans",
        abstract:
            "Time the per-row k-means engines on raw float32 rows and print per-row times and weighted errors as JSON.")

    @Option(help: "Raw little-endian float32 file of rows x cols weights.")
    public var values: String
    @Option(help: "Raw little-endian float32 file of rows x cols sensitivities.")
    public var weights: String
    @Option(help: "Number of rows.")
    public var rows: PositiveInt
    @Option(help: "Values per row.")
    public var cols: PositiveInt
    @Option(help: "Bits per index (clusters = 2^bits), 1 to 8.")
    public var bits: PositiveInt = PositiveInt(4)
    @Option(help: "Engines, comma-separated.")
    public var engines = CommaSeparated<KMeansEngine>([.optimal, .lloyd])
    @Option(help: "Repeats per row (the best is reported).")
    public var repeats = PositiveInt(1)

    public init() {}

    public func validate() throws {
        if engines.values.isEmpty { throw ValidationError("--engines needs at least one engine (optimal, lloyd)") }
    }

    public func run() throws {
        let v = try Data(contentsOf: URL(fileURLWithPath: values))
        let w = try Data(contentsOf: URL(fileURLWithPath: weights))
        let need = rows.value * cols.value * 4
        guard v.count == need, w.count == need else {
            throw ValidationError(
                "--rows \(rows) x --cols \(cols) float32 values need \(need) bytes in each file; --values has \(v.count), --weights \(w.count)"
            )
        }
        let vf = v.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let wf = w.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let report = try vf.withUnsafeBufferPointer { vp in
            try wf.withUnsafeBufferPointer { wp in
                try KMeansBenchmark.run(
                    values: vp.baseAddress!, weights: wp.baseAddress!, rows: rows.value, cols: cols.value,
                    bits: bits.value, engines: engines.values, repeats: repeats.value)
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        print(String(decoding: try enc.encode(report), as: UTF8.self))
    }
}
