import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// Data-parallel sensitivity: shard I of N computes a contiguous share of the windows of one seeded
/// draw (`squeeze sensitivity --shard I/N`), and `merge` sums the shards' files into the file one
/// run over every window writes (up to the order of F32 additions).
public enum SensitivityShards {
    /// The windows [lower, upper) of shard `index` (0-based) of `count` over `samples` windows.
    public static func range(index: Int, count: Int, samples: Int) throws -> Range<Int> {
        guard count >= 1, index >= 0, index < count else {
            throw SensitivityError.invalidOption(
                name: "shard", detail: "must be I/N with 0 <= I < N, got \(index)/\(count)")
        }
        guard count <= samples else {
            throw SensitivityError.invalidOption(
                name: "shard", detail: "\(count) shards for \(samples) windows leave a shard empty")
        }
        return (index * samples / count)..<((index + 1) * samples / count)
    }

    /// Metadata keys every shard of one run shares (checked by `merge`).
    public static let sharedKeys = [
        "format", "mode", "model", "model_fingerprint", "model_type", "samples", "seqlen", "seed",
        "calibration_sha256", "calibration_tokens", "row_order",
    ]

    /// A fingerprint of a model: its config's shapes and the names and sizes of its weight files, so
    /// that shards of different models (or a re-exported one) are told apart without hashing the
    /// weights.
    public static func modelFingerprint(path: String, config c: ModelConfig) -> String {
        var parts = [
            c.modelType, "\(c.numLayers)", "\(c.hiddenSize)", "\(c.intermediateSize)", "\(c.numHeads)",
            "\(c.numKVHeads)", "\(c.headDim)", "\(c.vocabSize)",
        ]
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let files =
            isDir.boolValue
            ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().filter {
                $0.hasSuffix(".safetensors") || $0.hasSuffix(".gguf") || $0 == "config.json"
            }.map { path + "/" + $0 } : [path]
        for f in files {
            let size = ((try? FileManager.default.attributesOfItem(atPath: f))?[.size] as? Int) ?? -1
            parts.append("\(URL(fileURLWithPath: f).lastPathComponent):\(size)")
        }
        return SHA256Digest.hex(Array(parts.joined(separator: "|").utf8))
    }

    /// What `merge` did.
    public struct MergeReport: Sendable {
        public let shards: Int
        public let windows: Int
        public let tensors: Int
    }

    /// Sums the shard files at `paths` into `output`: checks that they are Squeeze sensitivity files
    /// of the same model, mode, draw (samples, seqlen, seed, calibration) and dtype, and that their
    /// window ranges are disjoint and cover every window of the draw; Fisher values are summed,
    /// activation means are averaged weighted by tokens. Tensors are written in the shards' order.
    @discardableResult
    public static func merge(paths: [String], output: String) throws -> MergeReport {
        guard !paths.isEmpty else {
            throw SensitivityError.invalidOption(name: "merge", detail: "needs at least one shard file")
        }
        let files = try paths.map { p -> SafeTensorsModel in
            do { return try SafeTensorsModel(path: p) } catch {
                throw SensitivityError.notASensitivityFile(path: p, detail: "\(error)")
            }
        }
        let first = files[0].metadata
        for (p, f) in zip(paths, files) {
            guard f.metadata["format"] == SensitivityFile.formatName else {
                throw SensitivityError.notASensitivityFile(
                    path: p, detail: "metadata 'format' is not '\(SensitivityFile.formatName)'")
            }
            for key in sharedKeys where f.metadata[key] != first[key] {
                throw SensitivityError.shardMismatch(
                    file: p, field: key, expected: first[key] ?? "(none)", got: f.metadata[key] ?? "(none)",
                    reference: paths[0])
            }
        }
        guard let samples = Int(first["samples"] ?? "") else {
            throw SensitivityError.notASensitivityFile(path: paths[0], detail: "no 'samples' metadata")
        }
        // Window ranges: disjoint and complete.
        var ranges: [(Range<Int>, String)] = []
        for (p, f) in zip(paths, files) {
            guard let r = f.metadata["window_range"].flatMap(parseRange) else {
                throw SensitivityError.notASensitivityFile(path: p, detail: "no valid 'window_range' metadata")
            }
            ranges.append((r, p))
        }
        ranges.sort { $0.0.lowerBound < $1.0.lowerBound }
        var next = 0
        for (r, p) in ranges {
            if r.lowerBound < next {
                throw SensitivityError.shardCoverage(
                    detail: "\(p) has windows \(r.lowerBound)..<\(r.upperBound), overlapping another shard's")
            }
            if r.lowerBound > next {
                throw SensitivityError.shardCoverage(
                    detail: "windows \(next)..<\(r.lowerBound) of \(samples) are in no shard")
            }
            next = r.upperBound
        }
        if next != samples {
            throw SensitivityError.shardCoverage(detail: "windows \(next)..<\(samples) of \(samples) are in no shard")
        }
        // Tensors: the same names, shapes and dtypes in every shard.
        let names = files[0].tensorNames
        for (p, f) in zip(paths, files).dropFirst() {
            guard Set(f.tensorNames) == Set(names) else {
                throw SensitivityError.shardMismatch(
                    file: p, field: "tensors", expected: "\(names.count) tensors",
                    got: "\(f.tensorNames.count) tensors (different names)", reference: paths[0])
            }
            for n in names
            where f.info(n)?.shape != files[0].info(n)?.shape || f.info(n)?.dtype != files[0].info(n)?.dtype {
                throw SensitivityError.shardMismatch(
                    file: p, field: "\(n) shape/dtype",
                    expected: "\(files[0].info(n)!.dtype.rawValue) \(files[0].info(n)!.shape)",
                    got: "\(f.info(n)!.dtype.rawValue) \(f.info(n)!.shape)", reference: paths[0])
            }
        }
        let perColumn = first["mode"] == SensitivityMode.activations.rawValue
        let tokens = files.map { Int($0.metadata["tokens"] ?? "") ?? 0 }
        let windows = files.map { Int($0.metadata["windows"] ?? "") ?? 0 }
        let totalTokens = tokens.reduce(0, +)
        // Metadata of the merged file: the shared entries, sums, losses in window order.
        var meta = first
        meta["windows"] = String(windows.reduce(0, +))
        meta["tokens"] = String(totalTokens)
        meta["window_range"] = "0-\(samples)"
        meta["shard"] = nil
        meta["merged_from"] = String(paths.count)
        let order = zip(paths, files).sorted {
            (parseRange($0.1.metadata["window_range"] ?? "")?.lowerBound ?? 0)
                < (parseRange($1.1.metadata["window_range"] ?? "")?.lowerBound ?? 0)
        }
        let losses = order.flatMap { ($0.1.metadata["losses"] ?? "").split(separator: ",").compactMap { Double($0) } }
        if !losses.isEmpty {
            meta["losses"] = losses.map { String($0) }.joined(separator: ",")
            meta["mean_loss"] = String(losses.reduce(0, +) / Double(losses.count))
        }
        let entries = names.map { n in
            SafeTensorsWriter.Entry(name: n, dtype: files[0].info(n)!.dtype, shape: files[0].info(n)!.shape)
        }
        let w = try SafeTensorsWriter(path: output, entries: entries, metadata: meta)
        do {
            for e in entries {
                var sum = [Float](repeating: 0, count: e.shape.reduce(1, *))
                for (i, f) in files.enumerated() {
                    let v = try f.tensor(e.name).toFloatArray()
                    let weight: Float = perColumn ? Float(tokens[i]) / Float(max(1, totalTokens)) : 1
                    for j in sum.indices { sum[j] += weight * v[j] }
                }
                if e.dtype == .f32 {
                    try sum.withUnsafeBytes { try w.write(name: e.name, bytes: $0) }
                } else {
                    let t = try Tensor.f32(name: e.name, shape: e.shape, values: sum).converted(to: e.dtype)
                    try w.write(name: e.name, bytes: UnsafeRawBufferPointer(start: t.data, count: t.byteCount))
                }
            }
            try w.finish()
        } catch {
            w.abort()
            throw error
        }
        return MergeReport(shards: paths.count, windows: windows.reduce(0, +), tensors: names.count)
    }

    /// "a-b" as a..<b.
    static func parseRange(_ s: String) -> Range<Int>? {
        let p = s.split(separator: "-")
        guard p.count == 2, let a = Int(p[0]), let b = Int(p[1]), a >= 0, b >= a else { return nil }
        return a..<b
    }
}

extension Sensitivity {
    /// A run of `squeeze sensitivity`, or one shard of it: draws the windows of `options` from
    /// `tokens`, keeps shard `shard` (index, count) of them when given, computes them block by block
    /// into `output`, and records in the file's metadata what `SensitivityShards.merge` checks (the
    /// window range, the shard, and with `modelPath` the model's fingerprint) besides
    /// `output.metadata`.
    public static func run(
        model: DecoderModel, tokens: [Int], options: SensitivityOptions, shard: (index: Int, count: Int)? = nil,
        lanes: Int? = nil, pass: SensitivityPass = .automatic, output: SensitivityOutput, modelPath: String? = nil,
        progress: ((SensitivityProgress) -> Void)? = nil
    ) throws -> SensitivityAccumulator {
        let starts = try plan(model: model, tokenCount: tokens.count, options: options)
        let range =
            try shard.map { try SensitivityShards.range(index: $0.index, count: $0.count, samples: starts.count) }
            ?? 0..<starts.count
        var out = output
        out.metadata["samples"] = String(options.samples)
        out.metadata["seqlen"] = String(options.seqlen)
        out.metadata["seed"] = String(options.seed)
        out.metadata["window_range"] = "\(range.lowerBound)-\(range.upperBound)"
        if let shard { out.metadata["shard"] = "\(shard.index)/\(shard.count)" }
        if let modelPath {
            out.metadata["model_fingerprint"] = SensitivityShards.modelFingerprint(
                path: modelPath, config: model.config)
        }
        let windows = starts[range].map { Array(tokens[$0..<($0 + options.seqlen)]) }
        return try compute(
            model: model, windows: windows, mode: options.mode, lanes: lanes, pass: pass, output: out,
            progress: progress)
    }
}
