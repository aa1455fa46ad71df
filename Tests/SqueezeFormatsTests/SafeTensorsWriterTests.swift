import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

@Suite struct SafeTensorsWriterTests {
    /// Rewrites every tensor of the reference library's file and reads it back: same bytes, same metadata.
    @Test func roundTripOfReferenceFile() throws {
        let tmp = try TempDir()
        let src = try SafeTensorsFile(path: Fixtures.path("dtypes.safetensors"))
        let tensors = try src.tensorNames.map { try src.tensor($0) }
        let out = tmp.file("out.safetensors")
        try SafeTensorsWriter.write(tensors: tensors, metadata: src.metadata, to: out)
        #expect(try tmp.contents() == ["out.safetensors"])
        let back = try SafeTensorsFile(path: out)
        #expect(back.metadata == src.metadata)
        #expect(back.tensorNames == src.tensorNames)
        #expect(back.dataOffset % 8 == 0, "header padded to a multiple of 8")
        for n in src.tensorNames {
            let a = try src.rawBytes(n), b = try back.rawBytes(n)
            #expect(Array(a) == Array(b), "\(n)")
            #expect(src.info(n)!.shape == back.info(n)!.shape)
            #expect(src.info(n)!.dtype == back.info(n)!.dtype)
        }
        // The header is compact JSON padded with spaces, as the reference library writes it.
        let raw = try Data(contentsOf: URL(fileURLWithPath: out))
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = String(decoding: raw[8..<(8 + n)], as: UTF8.self)
        #expect(header.hasPrefix("{\"__metadata__\":"))
        #expect(header.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
        #expect(raw.count == 8 + n + src.tensorNames.reduce(0) { $0 + src.info($1)!.byteCount })
    }

    @Test func streamingWriteChecksOrderAndSize() throws {
        let tmp = try TempDir()
        let path = tmp.file("s.safetensors")
        let w = try SafeTensorsWriter(
            path: path,
            entries: [
                .init(name: "a", dtype: .f32, shape: [2, 3]),
                .init(name: "b", dtype: .i64, shape: [2]),
            ])
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Int64] = [-5, 1 << 40]
        // Out of order.
        let e1 = formatError { try b.withUnsafeBytes { try w.write(name: "b", bytes: $0) } }
        guard case .writeFailed(let p, let r)? = e1 else {
            Issue.record("wrong error \(String(describing: e1))"); return
        }
        #expect(p == path && r.contains("'a'") && r.contains("'b'"))
        // Wrong size.
        let e2 = formatError { try a.dropLast().withUnsafeBytes { try w.write(name: "a", bytes: $0) } }
        guard case .sizeMismatch(path, "a", 24, 20)? = e2 else {
            Issue.record("wrong error \(String(describing: e2))"); return
        }
        try a.withUnsafeBytes { try w.write(name: "a", bytes: $0) }
        // finish() before everything is written.
        let e3 = formatError { try w.finish() }
        guard case .writeFailed(_, let r3)? = e3 else { Issue.record("wrong error \(String(describing: e3))"); return }
        #expect(r3.contains("'b'"))
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test func streamingWriteRoundTrip() throws {
        let tmp = try TempDir()
        let path = tmp.file("s.safetensors")
        let w = try SafeTensorsWriter(
            path: path,
            entries: [
                .init(name: "a", dtype: .f32, shape: [2, 3]),
                .init(name: "b", dtype: .i64, shape: [2]),
            ],
            metadata: ["k": "v \"q\"\n"])
        let a: [Float] = [1, 2, 3, 4, 5, -6.5]
        let b: [Int64] = [-5, 1 << 40]
        try a.withUnsafeBytes { try w.write(name: "a", bytes: $0) }
        #expect(!FileManager.default.fileExists(atPath: path), "nothing at the final path before finish()")
        try b.withUnsafeBytes { try w.write(name: "b", bytes: $0) }
        try w.finish()
        #expect(try tmp.contents() == ["s.safetensors"])
        let f = try SafeTensorsFile(path: path)
        #expect(f.metadata == ["k": "v \"q\"\n"])
        #expect(try f.tensor("a").toFloatArray() == a)
        #expect(try f.tensor("b").toIntArray() == b.map { Int($0) })
    }

    @Test func abortAndDeinitLeaveNoFile() throws {
        let tmp = try TempDir()
        let path = tmp.file("x.safetensors")
        let entries: [SafeTensorsWriter.Entry] = [.init(name: "a", dtype: .f32, shape: [4])]
        let w = try SafeTensorsWriter(path: path, entries: entries)
        #expect(FileManager.default.fileExists(atPath: w.temporaryPath))
        try [Float](repeating: 1, count: 4).withUnsafeBytes { try w.write(name: "a", bytes: $0) }
        w.abort()
        #expect(try tmp.contents() == [])
        do {
            let w2 = try SafeTensorsWriter(path: path, entries: entries)
            #expect(try tmp.contents().count == 1)
            _ = w2
        }
        #expect(try tmp.contents() == [])
    }

    @Test func shardedWriterRoundTrip() throws {
        let tmp = try TempDir()
        let dir = tmp.file("ckpt")
        var tensors: [Tensor] = []
        for i in 0..<5 {
            let vals = (0..<(10 * (i + 1))).map { Float($0) * 0.5 - Float(i) }
            tensors.append(.f32(name: "layers.\(i).w", shape: [i + 1, 10], values: vals))
        }
        // Sizes 40, 80, 120, 160, 200 bytes; at most 200 per shard: [40,80], [120], [160], [200].
        let entries = tensors.map { SafeTensorsWriter.Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let w = try ShardedSafeTensorsWriter(
            directory: dir, entries: entries, metadata: ["format": "pt"], maxShardBytes: 200)
        #expect(w.plan.map { $0.entries.count } == [2, 1, 1, 1])
        #expect(w.plan.map(\.file) == (1...4).map { String(format: "model-%05d-of-00004.safetensors", $0) })
        for t in tensors { try w.write(t) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.contains(".tmp-") } == [])
        try w.finish()
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(names == w.plan.map(\.file) + ["model.safetensors.index.json"])
        let m = try SafeTensorsModel(path: dir)
        #expect(m.tensorNames == tensors.map(\.name))
        #expect(m.metadata["total_size"] == "600")
        #expect(m.metadata["format"] == "pt")
        for t in tensors { #expect(try m.tensor(t.name).toFloatArray() == t.toFloatArray()) }
        // The index is plain JSON with weight_map and metadata.total_size.
        let idx =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))) as! [String: Any]
        #expect((idx["weight_map"] as! [String: String])["layers.2.w"] == "model-00002-of-00004.safetensors")
        #expect(((idx["metadata"] as! [String: Any])["total_size"] as! NSNumber).intValue == 600)
    }

    @Test func shardedWriterSingleShardAndAbort() throws {
        let tmp = try TempDir()
        let t = Tensor.f32(name: "w", shape: [2], values: [1, 2])
        let e = [SafeTensorsWriter.Entry(name: "w", dtype: .f32, shape: [2])]
        let w = try ShardedSafeTensorsWriter(directory: tmp.path, entries: e, maxShardBytes: 1 << 20)
        try w.write(t)
        try w.finish()
        #expect(try tmp.contents() == ["model.safetensors"])
        #expect(try SafeTensorsModel(path: tmp.path).tensor("w").toFloatArray() == [1, 2])

        let dir = tmp.file("aborted")
        let entries = (0..<3).map { SafeTensorsWriter.Entry(name: "t\($0)", dtype: .f32, shape: [4]) }
        let w2 = try ShardedSafeTensorsWriter(directory: dir, entries: entries, maxShardBytes: 16)
        for i in 0..<2 {
            try [Float](repeating: 0, count: 4).withUnsafeBytes { try w2.write(name: "t\(i)", bytes: $0) }
        }
        w2.abort()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == [])
    }
}
