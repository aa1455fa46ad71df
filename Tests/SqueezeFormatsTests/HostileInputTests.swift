import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// Hostile model files built in the test (issue #25): each must give a typed error naming the file
/// and the field, never a trap, a stack overflow or a huge allocation.
@Suite struct HostileInputTests {
    // MARK: GGUF

    /// A GGUF v3 file with no tensors and the given metadata entries (key, type, value bytes).
    static func gguf(_ kvs: [(String, UInt32, [UInt8])]) -> [UInt8] {
        var b = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(kvs.count))
        for (k, t, v) in kvs { b += ggufString(k) + le(t) + v }
        return b
    }
    static func ggufString(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    /// One GGUF case: the metadata, and what the error must say (nil: the file opens).
    struct GGUFCase { let name: String; let kvs: [(String, UInt32, [UInt8])]; let want: String? }

    static let ggufCases: [GGUFCase] = [
        // Arrays of arrays a hundred thousand deep (12 bytes a level): refused at the depth limit.
        GGUFCase(
            name: "deeply nested arrays",
            kvs: [
                (
                    "x", 9,
                    Array((0..<100_000).map { _ in le(UInt32(9)) + le(UInt64(1)) }.joined()) + le(UInt32(0))
                        + le(UInt64(0))
                )
            ],
            want: "nested deeper"),
        // An array claiming 2^32 - 1 items in a tiny file: refused before allocating.
        GGUFCase(
            name: "array count beyond the file", kvs: [("x", 9, le(UInt32(0)) + le(UInt64(UInt32.max)))],
            want: "array of"),
        GGUFCase(
            name: "array of strings beyond the file", kvs: [("x", 9, le(UInt32(8)) + le(UInt64(1 << 20)))],
            want: "array of"),
        // A u64 at or above 2^63 is kept, printed and read without a trap.
        GGUFCase(name: "u64 metadata >= 2^63", kvs: [("general.big", 10, le(UInt64(1) << 63 | 5))], want: nil),
        GGUFCase(
            name: "alignment >= 2^63", kvs: [("general.alignment", 10, le(UInt64.max))], want: "general.alignment"),
        GGUFCase(
            name: "alignment 2^40", kvs: [("general.alignment", 10, le(UInt64(1) << 40))], want: "general.alignment"),
        GGUFCase(
            name: "negative alignment", kvs: [("general.alignment", 11, le(Int64(-32)))], want: "general.alignment"),
        GGUFCase(name: "string longer than the file", kvs: [("x", 8, le(UInt64(1) << 30))], want: "needed"),
    ]

    @Test func ggufHostileMetadata() throws {
        let tmp = try TempDir()
        for c in Self.ggufCases {
            let p = try tmp.write("h.gguf", Self.gguf(c.kvs))
            do {
                let g = try GGUFFile(path: p)
                if let want = c.want { Issue.record("\(c.name): opened, expected an error with '\(want)'"); continue }
                for (_, v) in g.metadata { _ = v.description; _ = v.int; _ = v.double }
                _ = try ModelInspector.describe(path: p)
                _ = try ModelInspector.describeJSON(path: p)
            } catch let e as FormatError {
                guard let want = c.want else { Issue.record("\(c.name): \(e)"); continue }
                #expect(e.description.contains(p) && e.description.contains(want), "\(c.name): \(e)")
            }
        }
        // The value itself prints as stored.
        let p = try tmp.write("big.gguf", Self.gguf([("general.big", 10, le(UInt64(1) << 63 | 5))]))
        let g = try GGUFFile(path: p)
        #expect(g.metadata["general.big"]?.description == "9223372036854775813")
        #expect(g.metadata["general.big"]?.int == nil)
    }

    // MARK: safetensors index

    /// An index naming one shard two ways ("a.safetensors", "./a.safetensors") opens the file once.
    @Test func indexNamingOneShardTwoWays() throws {
        let tmp = try TempDir()
        let h =
            "{\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}"
        _ = try tmp.write(
            "a.safetensors", safetensorsBytes(header: h, data: le(Float(1).bitPattern) + le(Float(2).bitPattern)))
        let idx = "{\"weight_map\":{\"v\":\"a.safetensors\",\"w\":\"./a.safetensors\"}}"
        _ = try tmp.write("model.safetensors.index.json", Array(idx.utf8))
        let m = try SafeTensorsModel(path: tmp.path)
        #expect(m.files.count == 1)
        #expect(try m.tensor("v").toFloatArray() == [1])
        #expect(try m.tensor("w").toFloatArray() == [2])
    }

    // MARK: PyTorch

    static func pkStr(_ s: String) -> [UInt8] { let u = Array(s.utf8); return [0x58] + le(UInt32(u.count)) + u }
    static func pkInt(_ v: Int) -> [UInt8] { [0x8A, 8] + le(Int64(v)) }
    static func pkTuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.joined() + [0x74] }
    /// `_rebuild_tensor_v2(storage(type, key, count), offset, size, stride)` as torch.save writes it.
    static func pkTensor(
        _ type: String, key: String, count: Int, size: [Int], stride: [Int], offset: Int = 0
    ) -> [UInt8] {
        let storage =
            pkTuple([pkStr("storage"), [0x63] + Array("torch\n\(type)\n".utf8), pkStr(key), pkStr("cpu"), pkInt(count)])
            + [0x51]
        return [0x63] + Array("torch._utils\n_rebuild_tensor_v2\n".utf8)
            + pkTuple([storage, pkInt(offset), pkTuple(size.map(pkInt)), pkTuple(stride.map(pkInt))]) + [0x52]
    }
    /// A `.pt` archive whose data.pkl is `{name: tensor, ...}` and whose storage "0" holds `bytes` bytes.
    static func pt(_ tensors: [(String, [UInt8])], bytes: Int = 16) -> [UInt8] {
        let pkl: [UInt8] = [0x80, 2, 0x7D, 0x28] + tensors.map { pkStr($0.0) + $0.1 }.joined() + [0x75, 0x2E]
        return Zip64Tests.zip64([("archive/data.pkl", pkl), ("archive/data/0", [UInt8](repeating: 0, count: bytes))])
    }

    @Test func ptStorageReferences() throws {
        let tmp = try TempDir()
        let ok = Self.pkTensor("FloatStorage", key: "0", count: 4, size: [4], stride: [1])
        let cases: [(String, [(String, [UInt8])], String)] = [
            // Storage "0" (16 bytes) referenced again as 4 doubles (32 bytes): refused against the entry.
            (
                "same key, larger dtype",
                [("a", ok), ("b", Self.pkTensor("DoubleStorage", key: "0", count: 4, size: [4], stride: [1]))], "'b'"
            ),
            (
                "same key, larger count",
                [("a", ok), ("b", Self.pkTensor("FloatStorage", key: "0", count: 1000, size: [1000], stride: [1]))],
                "'b'"
            ),
            // 2^31 x 2^31 elements repeated by stride 0 over one float: refused at open, not allocated at read.
            (
                "huge size with stride 0",
                [("a", Self.pkTensor("FloatStorage", key: "0", count: 1, size: [1 << 31, 1 << 31], stride: [0, 0]))],
                "'a'"
            ),
            (
                "size product overflows",
                [("a", Self.pkTensor("FloatStorage", key: "0", count: 1, size: [1 << 40, 1 << 40], stride: [0, 0]))],
                "'a'"
            ),
            (
                "size product overflows before a zero",
                [
                    (
                        "a",
                        Self.pkTensor(
                            "FloatStorage", key: "0", count: 1, size: [1 << 40, 1 << 40, 0], stride: [0, 0, 0])
                    )
                ], "'a'"
            ),
            // Empty, with strides whose contiguity product overflows: opens (nothing to read).
            (
                "empty, contiguity product overflows",
                [
                    (
                        "a",
                        Self.pkTensor(
                            "FloatStorage", key: "0", count: 1, size: [0, 1 << 31, 1 << 32], stride: [1, 1 << 32, 1])
                    )
                ], ""
            ),
            (
                "negative storage size",
                [("a", Self.pkTensor("FloatStorage", key: "0", count: -1, size: [1], stride: [1]))], "negative"
            ),
        ]
        for (name, tensors, want) in cases {
            let p = try tmp.write("h.pt", Self.pt(tensors))
            do {
                let ck = try PyTorchCheckpoint(path: p)
                if !want.isEmpty { Issue.record("\(name): opened"); continue }
                for n in ck.tensorNames { _ = try ck.tensor(n) }
            } catch let e as PyTorchError {
                #expect(!want.isEmpty && e.description.contains(p) && e.description.contains(want), "\(name): \(e)")
            }
        }
        // The baseline opens.
        let p = try tmp.write("ok.pt", Self.pt([("a", ok)]))
        #expect(try PyTorchCheckpoint(path: p).tensor("a").shape == [4])
    }

    static func unpickle(_ b: [UInt8]) throws -> PickleValue {
        try b.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, file: "h.pkl").load() }
    }

    @Test func pickleNesting() throws {
        let n = 1_000_000
        let cases: [(String, [UInt8])] = [
            // A million TUPLE1 around an int.
            ("tuples", [0x80, 2, 0x4B, 1] + [UInt8](repeating: 0x85, count: n) + [0x2E]),
            // A million empty lists, each appended into the one below.
            (
                "lists by APPEND",
                [0x80, 2] + [UInt8](repeating: 0x5D, count: n) + [UInt8](repeating: 0x61, count: n - 1) + [0x2E]
            ),
            (
                "lists by LIST",
                [0x80, 2] + Array(repeating: [0x28], count: n).joined() + Array(repeating: [0x6C], count: n).joined()
                    + [0x2E]
            ),
            (
                "dicts by SETITEM",
                [0x80, 2] + Array(repeating: [0x7D, 0x4B, 0], count: n).joined() + [0x7D]
                    + [UInt8](repeating: 0x73, count: n) + [0x2E]
            ),
            // Top-down through the memo: L0 = [L1], then L1 filled after it was nested.
            (
                "filling a nested list",
                [0x80, 2, 0x5D, 0x71, 0, 0x5D, 0x71, 1, 0x61, 0x68, 1, 0x5D, 0x61, 0x30, 0x68, 0, 0x2E]
            ),
            ("a list appended to itself", [0x80, 2, 0x5D, 0x32, 0x61, 0x2E]),
        ]
        for (name, b) in cases {
            do { _ = try Self.unpickle(b); Issue.record("\(name): accepted") } catch let PyTorchError.malformedPickle(
                file, _, d)
            {
                #expect(
                    file == "h.pkl" && (d.contains("nested deeper") || d.contains("already placed")), "\(name): \(d)")
            }
        }
        // Nesting within the limit still reads.
        let fine: [UInt8] = [0x80, 2, 0x4B, 1] + [UInt8](repeating: 0x85, count: 100) + [0x2E]
        guard case .tuple = try Self.unpickle(fine) else { Issue.record("100 nested tuples not read"); return }
    }
}
