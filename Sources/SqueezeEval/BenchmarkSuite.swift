import Foundation
import SqueezeCore
import SqueezeKernels
import SqueezeModels

/// The measurements behind `squeeze bench`: the machine's read bandwidth, the GEMV kernels on
/// typical shapes, and prefill/decode (and batched decode) speed of several loadings of a model.
public enum BenchmarkSuite {
    /// One model loading to time: a label for the tables, the path, and how to load it.
    public struct Variant: Sendable {
        public var label: String
        public var path: String
        public var options: LoadOptions

        public init(label: String, path: String, options: LoadOptions = LoadOptions()) {
            self.label = label
            self.path = path
            self.options = options
        }
    }

    /// What to measure.
    public struct Configuration: Sendable {
        /// The model whose shapes join the kernel table.
        public var modelPath: String
        /// The loadings to time, in table order.
        public var variants: [Variant] = []
        public var kvCache: KVCachePrecision = .f16
        /// Thread counts; every measurement runs at each.
        public var threads: [Int] = [1, 2]
        /// Prompt length for prefill.
        public var promptTokens = 512
        /// Tokens to decode.
        public var decodeTokens = 64
        /// Positions already in the cache when decoding starts (capped at `promptTokens`).
        public var decodeContext = 16
        /// Times every variant this many times, interleaved, and reports medians (all variants stay loaded).
        public var rounds = 1
        /// Batch sizes of the batched decoding rows (empty: none).
        public var batchSizes: [Int] = []
        /// Kernel shapes (rows, columns); nil: 4096x4096, 11008x4096 and the model's own.
        public var kernelShapes: [Shape]?
        public var measureKernels = true
        public var measureModels = true

        public init(modelPath: String) { self.modelPath = modelPath }
    }

    /// A matrix shape of the kernel table.
    public struct Shape: Sendable, Equatable {
        public var rows: Int
        public var columns: Int
        public init(rows: Int, columns: Int) {
            self.rows = rows
            self.columns = columns
        }
    }

    /// One kernel row, with its share of the measured bandwidth.
    public struct KernelRow: Encodable, Sendable {
        public var kernel: String, rows: Int, columns: Int, threads: Int, microseconds: Double, gbPerSecond: Double
        public var speedupOverF16: Double?, percentOfBandwidth: Double, note: String
    }

    /// Everything measured (the JSON of `squeeze bench --json`).
    public struct Report: Encodable, Sendable {
        /// Read bandwidth by thread count (keys are the counts, as strings).
        public var bandwidthGBps: [String: Double] = [:]
        public var isa: String
        public var cpuCount: Int
        public var features: [String]
        public var lutVariant: String
        public var kernels: [KernelRow] = []
        /// One row per (variant, thread count); with rounds > 1, the medians.
        public var models: [ModelBenchResult] = []
        /// With rounds > 1: each configuration's per-round figures.
        public var rounds: [ModelBenchRounds]?
        public var batched: [BatchBenchResult] = []

        /// The bandwidth measured at `threads`, else the largest measured (for a share of it).
        public func bandwidth(threads: Int) -> Double {
            bandwidthGBps["\(threads)"] ?? bandwidthGBps.values.max() ?? 1
        }
    }

    /// The variants for full-precision weight types (nil: as stored, labelled "native") and for
    /// quantized directories at each LM head format (labelled "LABEL" and "LABEL+q8 head").
    public static func variants(
        modelPath: String, weightTypes: [DType?], quantized: [(label: String, path: String)],
        heads: [HeadFormat]
    ) -> [Variant] {
        var out = weightTypes.map {
            Variant(label: $0?.rawValue ?? "native", path: modelPath, options: LoadOptions(weightDType: $0))
        }
        for q in quantized {
            for h in heads {
                out.append(
                    Variant(
                        label: h == .stored ? q.label : "\(q.label)+\(h.rawValue) head", path: q.path,
                        options: LoadOptions(head: h)))
            }
        }
        return out
    }

    /// Runs the measurements. `progress` receives (round, label, threads) before each timed model
    /// configuration when rounds > 1.
    public static func run(_ c: Configuration, progress: (Int, String, Int) -> Void = { _, _, _ in }) throws -> Report {
        let threads = c.threads.filter { $0 > 0 }
        guard !threads.isEmpty else { throw EvalError.badArgument("at least one positive thread count is needed") }
        guard c.rounds >= 1 else { throw EvalError.badArgument("rounds must be at least 1, got \(c.rounds)") }
        var report = Report(
            isa: ISALevel.current.description, cpuCount: WorkerPool.cpuCount, features: cpuFeatureNames,
            lutVariant: LUTMatrix.variant)
        for t in threads {
            report.bandwidthGBps["\(t)"] = KernelBenchmark.measureBandwidth(
                threads: min(t, WorkerPool.shared.threadCount))
        }
        let base = try ModelLoader.load(path: c.modelPath)
        if c.measureKernels {
            let rows = try KernelBenchmark.run(
                shapes: kernelShapes(c.kernelShapes, config: base.config).map { ($0.rows, $0.columns) },
                threads: threads, repeats: 20, minBytes: 128 << 20, gemmTokens: 0, cpuTime: false)
            report.kernels = rows.map { r in
                KernelRow(
                    kernel: r.kernel, rows: r.rows, columns: r.columns, threads: r.threads,
                    microseconds: r.seconds * 1e6,
                    gbPerSecond: r.gbPerSecond, speedupOverF16: r.speedupOverF16,
                    percentOfBandwidth: 100 * r.gbPerSecond / report.bandwidth(threads: r.threads), note: r.note)
            }
        }
        guard c.measureModels else { return report }
        func load(_ v: Variant) throws -> DecoderModel {
            let m = try ModelLoader.load(path: v.path, options: v.options)
            m.kvCachePrecision = c.kvCache
            return m
        }
        func timeBatches(_ m: DecoderModel, _ label: String, _ t: Int) throws {
            for b in c.batchSizes {
                report.batched.append(try ModelBenchmark.runBatched(model: m, label: label, threads: t, batch: b))
            }
        }
        if c.rounds > 1 {
            // Every model loaded at once, so that the rounds interleave configurations.
            let loaded = try c.variants.map { (label: $0.label, model: try load($0)) }
            let results = try ModelBenchmark.runRounds(
                models: loaded, threads: threads, rounds: c.rounds,
                promptTokens: c.promptTokens, decodeTokens: c.decodeTokens,
                decodeContext: c.decodeContext, progress: progress)
            report.rounds = results
            report.models = results.map(\.median)
            for (label, m) in loaded { for t in threads { try timeBatches(m, label, t) } }
        } else {
            for v in c.variants {
                let m = try load(v)
                for t in threads {
                    report.models.append(
                        try ModelBenchmark.run(
                            model: m, label: v.label, threads: t, promptTokens: c.promptTokens,
                            decodeTokens: c.decodeTokens, decodeContext: c.decodeContext))
                    try timeBatches(m, v.label, t)
                }
            }
        }
        return report
    }

    /// The kernel table's shapes: the given ones, or 4096x4096, 11008x4096 and the model's MLP and
    /// attention shapes not already listed.
    public static func kernelShapes(_ given: [Shape]?, config: ModelConfig) -> [Shape] {
        if let given { return given }
        var shapes = [Shape(rows: 4096, columns: 4096), Shape(rows: 11008, columns: 4096)]
        for s in [
            Shape(rows: config.intermediateSize, columns: config.hiddenSize),
            Shape(rows: config.hiddenSize, columns: config.intermediateSize),
            Shape(rows: config.numHeads * config.headDim, columns: config.hiddenSize),
        ] where !shapes.contains(s) {
            shapes.append(s)
        }
        return shapes
    }
}
