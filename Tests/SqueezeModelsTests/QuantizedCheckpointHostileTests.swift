import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import Testing

/// Hostile sparse parts in a SqueezeLLM-layout checkpoint (written by the test): I64 indices beyond
/// 32 bits, NaN in float index tensors, row pointers out of order or past the values, column indices
/// outside the layer. Each is a typed error naming the tensor, never a trap.
@Suite struct QuantizedCheckpointHostileTests {
    static let prefix = "model.layers.0.self_attn.q_proj"

    static func int32(_ name: String, _ v: [Int32]) -> Tensor {
        Tensor.owning(AlignedBuffer<Int32>(v), name: name, dtype: .i32, shape: [v.count])
    }
    static func int64(_ name: String, _ v: [Int64]) -> Tensor {
        Tensor.owning(AlignedBuffer<Int64>(v), name: name, dtype: .i64, shape: [v.count])
    }

    /// A tiny Llama whose q_proj is a 4-bit SqueezeLLM layer [8, 8] with a two-value sparse part;
    /// `sparse` replaces the rows/cols/vals tensors.
    static func write(_ dir: String, sparse: [Tensor]? = nil) throws {
        var cfg: [String: Any] = [
            "model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true,
        ]
        cfg["quantization_config"] = ["quant_method": "squeezellm", "wbits": 4]
        try writeJSON(cfg, to: dir + "/config.json")
        let dense: [(String, [Int])] = [
            ("model.embed_tokens.weight", [16, 8]), ("model.norm.weight", [8]),
            ("model.layers.0.input_layernorm.weight", [8]), ("model.layers.0.post_attention_layernorm.weight", [8]),
            ("model.layers.0.self_attn.k_proj.weight", [4, 8]), ("model.layers.0.self_attn.v_proj.weight", [4, 8]),
            ("model.layers.0.self_attn.o_proj.weight", [8, 8]), ("model.layers.0.mlp.gate_proj.weight", [16, 8]),
            ("model.layers.0.mlp.up_proj.weight", [16, 8]), ("model.layers.0.mlp.down_proj.weight", [8, 16]),
        ]
        var ts = dense.map { n, s in
            Tensor.f32(name: n, shape: s, values: (0..<s.reduce(1, *)).map { Float($0 % 7) * 0.01 })
        }
        let p = prefix
        ts.append(
            Tensor.owning(
                AlignedBuffer<Int32>((0..<8).map { Int32(bitPattern: UInt32(0x7654_3210) &+ UInt32($0)) }),
                name: p + ".qweight", dtype: .i32, shape: [1, 8]))
        ts.append(
            Tensor.f32(name: p + ".lookup_table", shape: [8, 16], values: (0..<128).map { Float($0 % 16) * 0.01 }))
        ts +=
            sparse ?? [
                int32(p + ".rows", [0, 1, 1, 1, 1, 1, 1, 1, 2]), int32(p + ".cols", [3, 7]),
                Tensor.f32(name: p + ".vals", shape: [2], values: [0.5, -0.25]),
            ]
        try SafeTensorsWriter.write(tensors: ts, to: dir + "/model.safetensors")
    }

    @Test func wellFormedSparsePartLoadsAndRuns() throws {
        let d = temporaryDirectory("qc-good")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try Self.write(d)
        let m = try ModelLoader.load(path: d)
        let c = KVCache(config: m.config, capacity: 4), w = Workspace(model: m, maxTokens: 4)
        try m.forward(tokens: [1, 2], cache: c, workspace: w, logits: .last)
        #expect(w.logits.buffer.prefix(16).allSatisfy { $0.isFinite })
    }

    static let p = prefix
    static let vals = Tensor.f32(name: prefix + ".vals", shape: [2], values: [0.5, -0.25])
    static let cases: [(String, [Tensor], String)] = [
        (
            "I64 column index beyond 32 bits",
            [int64(p + ".rows", [0, 1, 1, 1, 1, 1, 1, 1, 2]), int64(p + ".cols", [3, 1 << 40]), vals], p + ".cols"
        ),
        (
            "F32 row pointers with NaN",
            [
                Tensor.f32(name: p + ".rows", shape: [9], values: [0, .nan, 1, 1, 1, 1, 1, 1, 2]),
                int32(p + ".cols", [3, 7]), vals,
            ], p + ".rows"
        ),
        (
            "row pointers that decrease",
            [int32(p + ".rows", [0, 2, 1, 1, 1, 1, 1, 1, 2]), int32(p + ".cols", [3, 7]), vals], p + ".rows"
        ),
        (
            "row pointers past the values",
            [int32(p + ".rows", [0, 1, 1, 1, 1, 1, 1, 1, 9]), int32(p + ".cols", [3, 7]), vals], p + ".rows"
        ),
        (
            "negative row pointer",
            [int32(p + ".rows", [0, -5, 1, 1, 1, 1, 1, 1, 2]), int32(p + ".cols", [3, 7]), vals], p + ".rows"
        ),
        (
            "column index outside the layer",
            [int32(p + ".rows", [0, 1, 1, 1, 1, 1, 1, 1, 2]), int32(p + ".cols", [3, 8]), vals], p + ".cols"
        ),
        (
            "I64 row pointer beyond 32 bits",
            [int64(p + ".rows", [0, 1, 1, 1, 1, 1, 1, 1, 1 << 33]), int32(p + ".cols", [3, 7]), vals], p + ".rows"
        ),
    ]

    @Test(arguments: 0..<cases.count)
    func badSparsePartIsATypedErrorNamingTheTensor(index: Int) throws {
        let (what, tensors, name) = Self.cases[index]
        let d = temporaryDirectory("qc-bad")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try Self.write(d, sparse: tensors)
        do {
            _ = try ModelLoader.load(path: d)
            Issue.record("\(what): loaded")
        } catch {
            #expect("\(error)".contains(name), "\(what): \(error)")
        }
    }

    /// Row ranges of a fused layer (QKV, gate-up) that fall outside the stored tensor, or a stored
    /// tensor of another height than the family expects, are typed errors naming the tensor; a
    /// range inside it is a layer of its own rows (as a fused QKV is split).
    @Test func fusedRowRangesOutsideTheTensorAreRefused() throws {
        let d = temporaryDirectory("qc-fused")
        defer { try? FileManager.default.removeItem(atPath: d) }
        try Self.write(d)
        let st = try SafeTensorsModel(path: d)
        let qc = try QuantizedCheckpoint(bits: 4, source: SafeTensorsSource(st), mode: .float)
        func slot(_ offset: Int, _ rows: Int, of tensorRows: Int) -> LinearSlot {
            LinearSlot(kind: .q, prefix: Self.p, rowOffset: offset, rows: rows, columns: 8, tensorRows: tensorRows)
        }
        let part = try #require(try qc.factory(slot(4, 4, of: 8)))
        #expect(part.rows == 4 && part.columns == 8)
        for bad in [
            slot(6, 4, of: 8), slot(-1, 4, of: 8), slot(Int.max - 2, 4, of: 8), slot(0, 4, of: Int.max),
            slot(0, 12, of: 12),
        ] {
            do {
                _ = try qc.factory(bad)
                Issue.record("rows [\(bad.rowOffset), +\(bad.rows)) of \(bad.tensorRows) were accepted")
            } catch let QuantizedCheckpointError.badTensor(_, tensor, _) {
                #expect(tensor == Self.p + ".qweight")
            }
        }
    }
}
