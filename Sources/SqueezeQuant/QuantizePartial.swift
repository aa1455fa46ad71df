import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// Errors of assembling partial quantizations, naming the directory and what differs.
public enum PartialQuantizationError: Error, CustomStringConvertible, Equatable {
    case notAPartial(path: String, detail: String)
    /// A partial of a different run than the first one given (model, options, config).
    case mismatch(path: String, field: String, reference: String)
    /// Block ranges that overlap or leave blocks out.
    case coverage(detail: String)

    public var description: String {
        switch self {
        case let .notAPartial(p, d): return "\(p): not a partial quantization (squeeze quantize --layers): \(d)"
        case let .mismatch(p, f, r): return "\(p): partial of a different run: its \(f) differs from \(r)'s"
        case let .coverage(d): return "partials do not cover the model's blocks exactly once: \(d)"
        }
    }
}

/// `squeeze quantize --layers A-B` writes a partial directory: the quantized tensors of blocks A to B
/// (and the unquantized tensors when A is 0, the quantized head with the last block) in one
/// model.safetensors, the run's config.json and tokenizer, and `partial.json` describing the run.
/// `merge` assembles partial directories covering every block into the directory one run writes,
/// byte for byte: the same tensors, shards, index and files.
public enum PartialQuantization {
    /// The description file of a partial directory.
    public static let descriptionFile = "partial.json"
    static let formatName = "squeeze-partial-quantization"

    static func entryJSON(_ e: SafeTensorsWriter.Entry) -> [String: Any] {
        ["name": e.name, "dtype": e.dtype.rawValue, "shape": e.shape]
    }

    static func entry(_ o: Any, path: String) throws -> SafeTensorsWriter.Entry {
        guard let d = o as? [String: Any], let n = d["name"] as? String,
            let t = (d["dtype"] as? String).flatMap(DType.init(rawValue:)),
            let s = d["shape"] as? [Int]
        else { throw PartialQuantizationError.notAPartial(path: path, detail: "bad entry \(o)") }
        return SafeTensorsWriter.Entry(name: n, dtype: t, shape: s)
    }

    /// The `partial.json` of a run over `layers`.
    static func description(
        layers: ClosedRange<Int>, numLayers: Int, model: String, config: ModelConfig, metadata: [String: String],
        maxShardBytes: Int, plainEntries: [SafeTensorsWriter.Entry], entries: [SafeTensorsWriter.Entry]
    ) -> [String: Any] {
        [
            "format": formatName, "layers": [layers.lowerBound, layers.upperBound], "num_layers": numLayers,
            "model": URL(fileURLWithPath: model).lastPathComponent,
            "model_fingerprint": SensitivityShards.modelFingerprint(path: model, config: config),
            "metadata": metadata, "max_shard_bytes": maxShardBytes,
            "plain_entries": plainEntries.map(entryJSON), "entries": entries.map(entryJSON),
        ]
    }

    /// One partial directory as read back.
    struct Part {
        let path: String
        let layers: ClosedRange<Int>
        let numLayers: Int
        let fingerprint: String
        let metadata: [String: String]
        let maxShardBytes: Int
        let plainEntries: [SafeTensorsWriter.Entry]
        let entries: [SafeTensorsWriter.Entry]
        let config: Data
        let tensors: SafeTensorsModel

        init(path: String) throws {
            self.path = path
            let dpath = path + "/" + PartialQuantization.descriptionFile
            guard let data = FileManager.default.contents(atPath: dpath),
                let j = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { throw PartialQuantizationError.notAPartial(path: path, detail: "no readable \(descriptionFile)") }
            guard j["format"] as? String == formatName, let l = j["layers"] as? [Int], l.count == 2, l[0] <= l[1],
                let n = j["num_layers"] as? Int, let f = j["model_fingerprint"] as? String,
                let m = j["metadata"] as? [String: String], let msb = j["max_shard_bytes"] as? Int,
                let pe = j["plain_entries"] as? [Any], let es = j["entries"] as? [Any]
            else { throw PartialQuantizationError.notAPartial(path: path, detail: "\(descriptionFile) lacks fields") }
            layers = l[0]...l[1]
            numLayers = n
            fingerprint = f
            metadata = m
            maxShardBytes = msb
            plainEntries = try pe.map { try entry($0, path: path) }
            entries = try es.map { try entry($0, path: path) }
            guard let c = FileManager.default.contents(atPath: path + "/config.json") else {
                throw PartialQuantizationError.notAPartial(path: path, detail: "no config.json")
            }
            config = c
            do { tensors = try SafeTensorsModel(path: path) } catch {
                throw PartialQuantizationError.notAPartial(path: path, detail: "\(error)")
            }
        }
    }

    /// What `merge` did.
    public struct MergeReport: Sendable {
        public let partials: Int
        public let tensors: Int
        public let bytes: Int
    }

    /// Assembles the partial directories at `paths` (any order) into `output` (which must not
    /// exist): checks they come from one model and one set of options (config.json, fingerprint,
    /// tensor layout) and that their block ranges cover the model once; then writes the tensors in
    /// the order, shards and index one run writes, and the other files (config, tokenizer).
    @discardableResult
    public static func merge(paths: [String], output: String) throws -> MergeReport {
        guard !paths.isEmpty else { throw PartialQuantizationError.coverage(detail: "no partial directories given") }
        if FileManager.default.fileExists(atPath: output) { throw QuantizePipelineError.outputExists(output) }
        let parts = try paths.map { try Part(path: $0) }.sorted { $0.layers.lowerBound < $1.layers.lowerBound }
        let ref = parts[0]
        for p in parts.dropFirst() {
            if p.fingerprint != ref.fingerprint {
                throw PartialQuantizationError.mismatch(path: p.path, field: "model", reference: ref.path)
            }
            if p.numLayers != ref.numLayers {
                throw PartialQuantizationError.mismatch(path: p.path, field: "number of blocks", reference: ref.path)
            }
            if p.config != ref.config {
                throw PartialQuantizationError.mismatch(
                    path: p.path, field: "config.json (quantization options)", reference: ref.path)
            }
            if p.metadata != ref.metadata || p.maxShardBytes != ref.maxShardBytes {
                throw PartialQuantizationError.mismatch(path: p.path, field: "file metadata", reference: ref.path)
            }
            if p.plainEntries != ref.plainEntries {
                throw PartialQuantizationError.mismatch(path: p.path, field: "unquantized tensors", reference: ref.path)
            }
        }
        var next = 0
        for p in parts {
            if p.layers.lowerBound < next {
                throw PartialQuantizationError.coverage(
                    detail:
                        "\(p.path) has blocks \(p.layers.lowerBound)-\(p.layers.upperBound), overlapping another partial's"
                )
            }
            if p.layers.lowerBound > next {
                throw PartialQuantizationError.coverage(
                    detail: "blocks \(next)-\(p.layers.lowerBound - 1) are in no partial")
            }
            next = p.layers.upperBound + 1
        }
        if next != ref.numLayers {
            throw PartialQuantizationError.coverage(detail: "blocks \(next)-\(ref.numLayers - 1) are in no partial")
        }
        // The entries as one run lays them out: the unquantized tensors, then each block's (and the head).
        let entries = parts.flatMap(\.entries)
        var source: [String: SafeTensorsModel] = [:]
        for p in parts { for e in p.entries { source[e.name] = p.tensors } }
        let dir = try AtomicDirectory(destination: output)
        let writer = try ShardedSafeTensorsWriter(
            directory: dir.temporaryPath, entries: entries, metadata: ref.metadata, maxShardBytes: ref.maxShardBytes)
        var bytes = 0
        for e in writer.plan.flatMap(\.entries) {
            guard let t = try source[e.name]?.tensor(e.name) else {
                throw PartialQuantizationError.notAPartial(path: ref.path, detail: "tensor \(e.name) is missing")
            }
            guard t.dtype == e.dtype, t.shape == e.shape else {
                throw PartialQuantizationError.notAPartial(
                    path: ref.path,
                    detail:
                        "tensor \(e.name) is \(t.dtype.rawValue) \(t.shape), described as \(e.dtype.rawValue) \(e.shape)"
                )
            }
            try writer.write(name: e.name, bytes: UnsafeRawBufferPointer(start: t.data, count: t.byteCount))
            bytes += t.byteCount
        }
        try writer.finish()
        // The other files (config, tokenizer, generation config) as the first partial has them.
        let skip: Set<String> = [descriptionFile, SafeTensorsModel.singleFileName]
        for f in try FileManager.default.contentsOfDirectory(atPath: ref.path).sorted() where !skip.contains(f) {
            try dir.copyFile(from: ref.path + "/" + f, to: f)
        }
        try dir.commit()
        return MergeReport(partials: parts.count, tensors: entries.count, bytes: bytes)
    }
}
