import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// Malformed files: each test checks the specific error case and that the message names the
/// file and the tensor or field at fault.
@Suite struct BadInputTests {
    /// A well-formed header for one F32 [2, 2] tensor "w" (16 bytes of data), with substitutions.
    static func header(dtype: String = "F32", shape: String = "[2,2]", offsets: String = "[0,16]") -> String {
        "{\"w\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":\(offsets)}}"
    }

    func open(
        _ tmp: TempDir, header: String, data: [UInt8] = [UInt8](repeating: 0, count: 16)
    ) throws -> (String, FormatError?) {
        let p = try tmp.write("bad.safetensors", safetensorsBytes(header: header, data: data))
        return (p, formatError { _ = try SafeTensorsFile(path: p) })
    }

    @Test func wellFormedBaselineOpens() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "ok.safetensors",
            safetensorsBytes(header: Self.header(), data: le(Float(1.5).bitPattern) + [UInt8](repeating: 0, count: 12)))
        let f = try SafeTensorsFile(path: p)
        #expect(try f.tensor("w").toFloatArray() == [1.5, 0, 0, 0])
    }

    @Test func truncatedFile() throws {
        let tmp = try TempDir()
        let p = try tmp.write("bad.safetensors", [1, 0, 0])
        let e = formatError { _ = try SafeTensorsFile(path: p) }
        guard case .truncated(p, _)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(e!.description.contains(p))
    }

    @Test func headerLengthBeyondFile() throws {
        let tmp = try TempDir()
        let h = Array(Self.header().utf8)
        let p = try tmp.write("bad.safetensors", le(UInt64(h.count + 100)) + h)
        let e = formatError { _ = try SafeTensorsFile(path: p) }
        guard case .truncated(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("header length \(h.count + 100)"))
        #expect(e!.description.contains(p))
    }

    @Test func nonJSONHeader() throws {
        let tmp = try TempDir()
        let (p, e) = try open(tmp, header: "{\"w\": {\"dtype\": \"F32\", ")
        guard case .corrupt(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("JSON"))
        let (p2, e2) = try open(tmp, header: "[1, 2, 3]")
        guard case .corrupt(p2, _)? = e2 else { Issue.record("wrong error \(String(describing: e2))"); return }
    }

    @Test func unknownDType() throws {
        let tmp = try TempDir()
        let (p, e) = try open(tmp, header: Self.header(dtype: "F8_E9M9"))
        guard case .unsupportedDType(p, "w", "F8_E9M9")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(e!.description.contains(p) && e!.description.contains("'w'"))
    }

    @Test func shapeTimesDTypeDiffersFromSpan() throws {
        let tmp = try TempDir()
        let (p, e) = try open(tmp, header: Self.header(shape: "[2,3]"))
        guard case .sizeMismatch(p, "w", 24, 16)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(e!.description.contains(p) && e!.description.contains("'w'"))
    }

    @Test func negativeOrNonIntegerShape() throws {
        let tmp = try TempDir()
        for shape in ["[-2,-2]", "[2,\"2\"]", "[2.5,2]", "[true,4]"] {
            let (p, e) = try open(tmp, header: Self.header(shape: shape))
            guard case .invalidField(p, "w.shape", _)? = e else {
                Issue.record("\(shape): wrong error \(String(describing: e))"); continue
            }
            #expect(e!.description.contains(p) && e!.description.contains("w.shape"))
        }
    }

    @Test func malformedDataOffsets() throws {
        let tmp = try TempDir()
        for offs in ["[16]", "[16,0]", "[-4,12]", "\"0-16\""] {
            let (p, e) = try open(tmp, header: Self.header(offsets: offs))
            switch e {
            case .invalidField(p, "w.data_offsets", _)?, .missingField(p, "w.data_offsets")?: break
            default: Issue.record("\(offs): wrong error \(String(describing: e))")
            }
        }
    }

    @Test func overlappingTensors() throws {
        let tmp = try TempDir()
        let h =
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
        let (p, e) = try open(tmp, header: h)
        guard case .overlappingTensors(p, "b", "a")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(e!.description.contains(p) && e!.description.contains("'b'") && e!.description.contains("'a'"))
    }

    @Test func offsetBeyondDataSection() throws {
        let tmp = try TempDir()
        let (p, e) = try open(tmp, header: Self.header(offsets: "[8,24]"))
        guard case .outOfBounds(p, "w", let d)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(d.contains("16 bytes"))
        #expect(e!.description.contains(p) && e!.description.contains("'w'"))
    }

    @Test func metadataNotStrings() throws {
        let tmp = try TempDir()
        let (p, e) = try open(tmp, header: "{\"__metadata__\":{\"n\":3}," + Self.header().dropFirst())
        guard case .invalidField(p, "__metadata__.n", _)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
    }

    @Test func missingTensor() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "ok.safetensors", safetensorsBytes(header: Self.header(), data: [UInt8](repeating: 0, count: 16)))
        let f = try SafeTensorsFile(path: p)
        let e = formatError { _ = try f.tensor("lm_head.weight") }
        guard case .missingTensor(p, "lm_head.weight")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(e!.description.contains(p) && e!.description.contains("lm_head.weight"))
        let m = try SafeTensorsModel(path: p)
        let e2 = formatError { _ = try m.tensor("lm_head.weight") }
        guard case .missingTensor(p, "lm_head.weight")? = e2 else {
            Issue.record("wrong error \(String(describing: e2))"); return
        }
    }

    func copySharded(_ tmp: TempDir) throws -> String {
        let dir = tmp.file("sharded")
        try FileManager.default.copyItem(atPath: Fixtures.path("sharded"), toPath: dir)
        return dir
    }

    @Test func shardListedInIndexIsMissing() throws {
        let tmp = try TempDir()
        let dir = try copySharded(tmp)
        try FileManager.default.removeItem(atPath: dir + "/model-00002-of-00002.safetensors")
        let e = formatError { _ = try SafeTensorsModel(path: dir) }
        guard case .missingShard(let idx, "model-00002-of-00002.safetensors", let t)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(idx.hasSuffix("model.safetensors.index.json"))
        #expect(["model.layers.1.w", "model.norm.weight"].contains(t))
        #expect(e!.description.contains(idx) && e!.description.contains(t))
    }

    @Test func indexedTensorNotInItsShard() throws {
        let tmp = try TempDir()
        let dir = try copySharded(tmp)
        let ip = dir + "/model.safetensors.index.json"
        var idx = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ip))) as! [String: Any]
        var wm = idx["weight_map"] as! [String: String]
        wm["model.norm.weight"] = "model-00001-of-00002.safetensors"
        idx["weight_map"] = wm
        try JSONSerialization.data(withJSONObject: idx).write(to: URL(fileURLWithPath: ip))
        let e = formatError { _ = try SafeTensorsModel(path: dir) }
        guard case .missingTensor(let f, "model.norm.weight")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(f.hasSuffix("model-00001-of-00002.safetensors"))
    }

    @Test func indexWithoutWeightMap() throws {
        let tmp = try TempDir()
        let dir = try copySharded(tmp)
        try Data("{\"metadata\":{}}".utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let e = formatError { _ = try SafeTensorsModel(path: dir) }
        guard case .missingField(let f, "weight_map")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(f.hasSuffix("model.safetensors.index.json"))
    }

    // MARK: GGUF

    /// A minimal GGUF: one metadata string, the given tensor infos, data padded to 32 bytes.
    static func gguf(
        magic: [UInt8] = Array("GGUF".utf8), version: UInt32 = 3,
        tensors: [(name: String, dims: [UInt64], type: UInt32, offset: UInt64)], data: [UInt8]
    ) -> [UInt8] {
        func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
        var b = magic + le(version) + le(UInt64(tensors.count)) + le(UInt64(1))
        b += str("general.architecture") + le(UInt32(8)) + str("test")
        for t in tensors {
            b += str(t.name) + le(UInt32(t.dims.count))
            for d in t.dims { b += le(d) }
            b += le(t.type) + le(t.offset)
        }
        while b.count % 32 != 0 { b.append(0) }
        return b + data
    }

    @Test func ggufBaselineOpens() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "ok.gguf", Self.gguf(tensors: [("w", [4, 2], 0, 0)], data: [UInt8](repeating: 0, count: 32)))
        let g = try GGUFFile(path: p)
        #expect(g.metadata["general.architecture"]?.string == "test")
        #expect(try g.tensor("w").shape == [2, 4])
    }

    @Test func ggufBadMagic() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "bad.gguf",
            Self.gguf(
                magic: Array("GGML".utf8), tensors: [("w", [4, 2], 0, 0)], data: [UInt8](repeating: 0, count: 32)))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .corrupt(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("magic"))
        #expect(e!.description.contains(p))
    }

    @Test func ggufUnsupportedVersion() throws {
        let tmp = try TempDir()
        for v: UInt32 in [1, 4] {
            let p = try tmp.write(
                "bad.gguf",
                Self.gguf(version: v, tensors: [("w", [4, 2], 0, 0)], data: [UInt8](repeating: 0, count: 32)))
            let e = formatError { _ = try GGUFFile(path: p) }
            guard case .unsupportedVersion(p, Int(v))? = e else {
                Issue.record("wrong error \(String(describing: e))"); continue
            }
            #expect(e!.description.contains(p) && e!.description.contains("\(v)"))
        }
    }

    @Test func ggufTruncatedTensorData() throws {
        let tmp = try TempDir()
        // Second tensor (Q8_0, 2 blocks = 68 bytes) at offset 32 needs 100 bytes; only 80 present.
        let p = try tmp.write(
            "bad.gguf",
            Self.gguf(
                tensors: [("a", [8], 0, 0), ("blk.0.attn_q.weight", [64], 8, 32)],
                data: [UInt8](repeating: 0, count: 80)))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .truncated(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("blk.0.attn_q.weight"))
        #expect(e!.description.contains(p))
    }

    @Test func ggufTruncatedHeader() throws {
        let tmp = try TempDir()
        let full = Self.gguf(tensors: [("w", [4, 2], 0, 0)], data: [UInt8](repeating: 0, count: 32))
        let p = try tmp.write("bad.gguf", Array(full.prefix(40)))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .truncated(p, _)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
    }

    @Test func ggufUnknownGGMLType() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "bad.gguf",
            Self.gguf(tensors: [("blk.1.ffn_up.weight", [32], 99, 0)], data: [UInt8](repeating: 0, count: 64)))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .unsupportedDType(p, "blk.1.ffn_up.weight", let d)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(d.contains("99"))
        #expect(e!.description.contains(p) && e!.description.contains("blk.1.ffn_up.weight"))
    }

    @Test func ggufKnownButUndequantizableType() throws {
        let tmp = try TempDir()
        // IQ2_XXS (16): 256 elements in a 66-byte block.
        let p = try tmp.write(
            "iq2.gguf",
            Self.gguf(tensors: [("blk.2.ffn_down.weight", [256], 16, 0)], data: [UInt8](repeating: 0, count: 96)))
        let g = try GGUFFile(path: p)
        let e = formatError { _ = try g.dequantized("blk.2.ffn_down.weight") }
        guard case .unsupportedDType(p, "blk.2.ffn_down.weight", "IQ2_XXS")? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        let e2 = formatError { _ = try g.tensor("missing.weight") }
        guard case .missingTensor(p, "missing.weight")? = e2 else {
            Issue.record("wrong error \(String(describing: e2))"); return
        }
    }

    @Test func ggufHugeArrayCountIsTruncationNotACrash() throws {
        let tmp = try TempDir()
        func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
        // One metadata array of 2^31 uint8 items in a file of a few dozen bytes.
        let b =
            Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(1))
            + str("tokenizer.ggml.token_type") + le(UInt32(9)) + le(UInt32(0)) + le(UInt64(1) << 31) + [1, 2, 3]
        let p = try tmp.write("bad.gguf", b)
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .truncated(p, _)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
    }

    @Test func ggufOverflowingDims() throws {
        let tmp = try TempDir()
        let p = try tmp.write("bad.gguf", Self.gguf(tensors: [("big", [1 << 39, 1 << 39, 1 << 39], 0, 0)], data: []))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .corrupt(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("'big'"))
    }

    @Test func ggufRowNotMultipleOfBlock() throws {
        let tmp = try TempDir()
        let p = try tmp.write(
            "bad.gguf", Self.gguf(tensors: [("w", [40, 2], 2, 0)], data: [UInt8](repeating: 0, count: 64)))
        let e = formatError { _ = try GGUFFile(path: p) }
        guard case .corrupt(p, let d)? = e else { Issue.record("wrong error \(String(describing: e))"); return }
        #expect(d.contains("'w'"))
    }
}
