import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import SqueezeTestSupport
import Testing

/// Data-parallel sensitivity shards (`Sensitivity.run(shard:)`, `SensitivityShards.merge`) and
/// partial quantizations (`QuantizeOptions.layers`, `PartialQuantization.merge`).
@Suite(.serialized) struct ShardAndPartialTests {
    static let options = SensitivityOptions(samples: 7, seqlen: 16, seed: 3, mode: .fisher)

    static func shard(
        _ model: DecoderModel, _ i: Int, _ n: Int, to path: String, options: SensitivityOptions = options,
        meta: [String: String] = ["model": "tiny"]
    ) throws {
        _ = try Sensitivity.run(
            model: model, tokens: TinyModel.tokens, options: options, shard: (i, n), lanes: 1, pass: .blockStreamed,
            output: SensitivityOutput(path: path, metadata: meta))
    }

    /// Three shards merged equal one run over all windows (1e-6 of each tensor's largest value; the
    /// F32 sums are added in another order), with the same windows, tokens and losses; for both modes.
    @Test func mergedShardsEqualOneRun() throws {
        let model = try TinyModel.model()
        let d = temporaryDirectory("shards")
        defer { try? FileManager.default.removeItem(atPath: d) }
        for mode in SensitivityMode.allCases {
            var o = Self.options
            o.mode = mode
            _ = try Sensitivity.run(
                model: model, tokens: TinyModel.tokens, options: o, lanes: 1,
                output: SensitivityOutput(path: d + "/one.safetensors", metadata: ["model": "tiny"]))
            for i in 0..<3 { try Self.shard(model, i, 3, to: d + "/s\(i).safetensors", options: o) }
            // Any order.
            let r = try SensitivityShards.merge(
                paths: [d + "/s2.safetensors", d + "/s0.safetensors", d + "/s1.safetensors"],
                output: d + "/merged.safetensors")
            #expect(r.shards == 3 && r.windows == 7)
            let one = try SafeTensorsModel(path: d + "/one.safetensors")
            let merged = try SafeTensorsModel(path: d + "/merged.safetensors")
            #expect(Set(one.tensorNames) == Set(merged.tensorNames))
            for n in one.tensorNames {
                let a = try one.tensor(n).toFloatArray(), b = try merged.tensor(n).toFloatArray()
                let top = a.map { abs($0) }.max()!
                #expect(top > 0 && zip(a, b).allSatisfy { abs($0 - $1) <= 1e-6 * top }, "\(mode) \(n)")
            }
            for key in ["windows", "tokens", "samples", "seqlen", "seed", "mode", "window_range"] {
                #expect(one.metadata[key] == merged.metadata[key], "\(mode) \(key)")
            }
            if mode == .fisher {
                let la = one.metadata["losses"]!.split(separator: ",").map { Double($0)! }
                let lb = merged.metadata["losses"]!.split(separator: ",").map { Double($0)! }
                #expect(la == lb)
            }
            try SensitivityFile(path: d + "/merged.safetensors").validate(config: model.config)
        }
    }

    /// A shard of another run (seed, model), a missing shard and an overlapping one are refused with
    /// an error naming the mismatch.
    @Test func mismatchedShardsAreRefused() throws {
        let model = try TinyModel.model()
        let d = temporaryDirectory("shards-bad")
        defer { try? FileManager.default.removeItem(atPath: d) }
        for i in 0..<2 { try Self.shard(model, i, 2, to: d + "/s\(i).safetensors") }
        var other = Self.options
        other.seed = 4
        try Self.shard(model, 1, 2, to: d + "/seed.safetensors", options: other)
        try Self.shard(model, 1, 2, to: d + "/model.safetensors", meta: ["model": "another"])
        try Self.shard(model, 1, 3, to: d + "/third.safetensors")
        func refusal(_ names: [String]) -> String? {
            do {
                try SensitivityShards.merge(paths: names.map { d + "/" + $0 }, output: d + "/out.safetensors")
                return nil
            } catch { return "\(error)" }
        }
        let seed = refusal(["s0.safetensors", "seed.safetensors"])
        #expect(seed?.contains("'seed'") == true && seed?.contains("seed.safetensors") == true, "\(seed ?? "accepted")")
        #expect(refusal(["s0.safetensors", "model.safetensors"])?.contains("'model'") == true)
        #expect(refusal(["s0.safetensors"])?.contains("windows 3..<7") == true)
        #expect(refusal(["s0.safetensors", "s1.safetensors", "third.safetensors"])?.contains("overlapping") == true)
        #expect(!FileManager.default.fileExists(atPath: d + "/out.safetensors"))
        #expect(throws: SensitivityError.self) { try SensitivityShards.range(index: 3, count: 3, samples: 7) }
    }

    /// Files and bytes of every file under `dir`.
    static func contents(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) {
            out[f] = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + f))
        }
        return out
    }

    /// The llama fixture quantized in two partials (blocks 0 and 1, dense-and-sparse, small shards so
    /// that the output is sharded with an index) and merged is byte-identical to one run; a partial
    /// with other options, a gap and an overlap are refused.
    @Test func mergedPartialsAreByteIdenticalToOneRun() throws {
        let src = FamilyFixtures.dir("llama")
        let d = temporaryDirectory("partials")
        defer { try? FileManager.default.removeItem(atPath: d) }
        var o = QuantizeOptions()
        o.bits = 3
        o.outliers = OutlierSelector.sparsity(percent: 1.0)
        o.maxShardBytes = 6000
        o.kmeans.engine = .lloyd
        _ = try ModelQuantizer.quantize(model: src, output: d + "/one", options: o)
        for (i, r) in [0...0, 1...1].enumerated() {
            var p = o
            p.layers = r
            _ = try ModelQuantizer.quantize(model: src, output: d + "/p\(i)", options: p)
        }
        #expect(FileManager.default.fileExists(atPath: d + "/p0/partial.json"))
        try PartialQuantization.merge(paths: [d + "/p1", d + "/p0"], output: d + "/merged")
        let one = try Self.contents(d + "/one"), merged = try Self.contents(d + "/merged")
        #expect(one.keys.contains("model.safetensors.index.json"))
        #expect(Set(one.keys) == Set(merged.keys))
        for (f, data) in one { #expect(merged[f] == data, "\(f) differs") }
        // Refusals.
        var four = o
        four.bits = 4
        four.layers = 1...1
        _ = try ModelQuantizer.quantize(model: src, output: d + "/p1-4bit", options: four)
        var both = o
        both.layers = 0...1
        _ = try ModelQuantizer.quantize(model: src, output: d + "/p01", options: both)
        func refusal(_ names: [String]) -> String? {
            do {
                try PartialQuantization.merge(paths: names.map { d + "/" + $0 }, output: d + "/bad")
                return nil
            } catch { return "\(error)" }
        }
        #expect(refusal(["p0", "p1-4bit"])?.contains("config.json") == true)
        #expect(refusal(["p0"])?.contains("blocks 1-1 are in no partial") == true)
        #expect(refusal(["p0", "p01"])?.contains("overlapping") == true)
        #expect(refusal(["one"])?.contains("not a partial") == true)
        #expect(!FileManager.default.fileExists(atPath: d + "/bad"))
        var out = o
        out.layers = 1...2
        #expect(throws: QuantizePipelineError.self) {
            try ModelQuantizer.quantize(model: src, output: d + "/p12", options: out)
        }
    }
}
