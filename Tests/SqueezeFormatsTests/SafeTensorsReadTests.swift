import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// Reading files written by the reference `safetensors` library (scripts/fixtures/make_safetensors_fixtures.py),
/// compared with the values torch reported (dtypes_expected.json, sharded_expected.json).
@Suite struct SafeTensorsReadTests {
    static func check(_ t: Tensor, against e: [String: Any]) {
        #expect(t.dtype.safetensorsName == (e["dtype"] as! String), "\(t.name)")
        #expect(t.shape == (e["shape"] as! [Int]), "\(t.name)")
        let values = e["values"] as! [Any]
        #expect(t.elementCount == values.count, "\(t.name)")
        switch t.dtype {
        case .f64:
            let got = (0..<t.elementCount).map { t.data.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
            #expect(got == values.map { Double($0 as! String)! }, "\(t.name)")
        case .f32, .f16, .bf16:
            #expect(t.toFloatArray() == values.map { Float(Double($0 as! String)!) }, "\(t.name)")
        case .bool:
            #expect(t.toIntArray() == values.map { ($0 as! Bool) ? 1 : 0 }, "\(t.name)")
        default:
            #expect(t.toIntArray() == values.map { ($0 as! NSNumber).intValue }, "\(t.name)")
        }
    }

    @Test func readsEveryDTypeAndMetadata() throws {
        let f = try SafeTensorsFile(path: Fixtures.path("dtypes.safetensors"))
        let exp = try Fixtures.json("dtypes_expected.json")
        #expect(f.metadata == (exp["metadata"] as! [String: String]))
        #expect(f.tensorNames == (exp["order"] as! [String]))
        let tensors = exp["tensors"] as! [String: [String: Any]]
        #expect(Set(f.tensorNames) == Set(tensors.keys))
        for (name, e) in tensors {
            let info = try #require(f.info(name))
            let offs = e["data_offsets"] as! [Int]
            #expect(info.dataOffsets == offs[0]..<offs[1], "\(name)")
            #expect(info.fileRange.lowerBound == f.dataOffset + offs[0])
            let t = try f.tensor(name)
            // A view over the mapping, not a copy.
            if info.byteCount > 0 { #expect(t.data == f.file.base! + info.fileRange.lowerBound) }
            Self.check(t, against: e)
        }
        #expect(try f.tensor("scalar.f32").shape == [])
        #expect(try f.tensor("empty.f32").shape == [0, 4])
    }

    @Test func opensShardedDirectory() throws {
        let m = try SafeTensorsModel(path: Fixtures.path("sharded"))
        let exp = try Fixtures.json("sharded_expected.json")
        let wm = exp["weight_map"] as! [String: String]
        let tensors = exp["tensors"] as! [String: [String: Any]]
        #expect(m.indexPath != nil)
        #expect(m.files.count == 2)
        #expect(Set(m.tensorNames) == Set(wm.keys))
        #expect(m.tensorNames.count == wm.count)
        for (name, shard) in wm {
            #expect(m.contains(name))
            #expect((m.file(for: name)!.path as NSString).lastPathComponent == shard)
            let t = try m.tensor(name)
            var e = tensors[name]!
            let torchName = e["dtype"] as! String
            e["dtype"] = ["bfloat16": "BF16", "float32": "F32", "float16": "F16"][torchName]!
            Self.check(t, against: e)
        }
        let total = m.tensorNames.reduce(0) { $0 + m.info($1)!.byteCount }
        #expect(m.metadata["total_size"] == String(total))
        #expect(m.metadata["format"] == "pt")
        #expect(!m.contains("lm_head.weight"))
        // The index file itself opens the same checkpoint.
        let viaIndex = try SafeTensorsModel(path: Fixtures.path("sharded/model.safetensors.index.json"))
        #expect(viaIndex.tensorNames == m.tensorNames)
    }

    @Test func opensSingleFileAndDirectoryWithModelSafetensors() throws {
        let tmp = try TempDir()
        let src = Fixtures.path("dtypes.safetensors")
        try FileManager.default.copyItem(atPath: src, toPath: tmp.file("model.safetensors"))
        let a = try SafeTensorsModel(path: src)
        let b = try SafeTensorsModel(path: tmp.path)
        #expect(a.indexPath == nil && b.indexPath == nil)
        #expect(a.tensorNames == b.tensorNames)
        #expect(a.metadata == b.metadata)
        for n in a.tensorNames { #expect(try a.tensor(n).toFloatArray() == b.tensor(n).toFloatArray()) }
    }
}
