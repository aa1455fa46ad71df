import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// Dequantization against the Python `gguf` package's `gguf.quants.dequantize` (the fixtures come
/// from scripts/fixtures/make_gguf_fixtures.py). Both compute in float32 with the same operation order, so
/// the comparison is exact (bit for bit); a mismatch is reported with the first differing index.
@Suite struct DequantTests {
    static let typeNames = [
        "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0",
        "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs",
    ]

    @Test(arguments: typeNames)
    func everyTypeMatchesReference(name: String) throws {
        let g = try GGUFFile(path: Fixtures.path("quant_types.gguf"))
        let expected = try SafeTensorsFile(path: Fixtures.path("quant_types_expected.safetensors"))
        let info = try #require(g.info(name))
        #expect(info.type.name.lowercased() == name)
        #expect(GGMLDequantizer.supportedTypes.contains(info.type))
        let got = try g.dequantized(name)
        let want = try expected.tensor(name)
        #expect(got.shape == want.shape)
        #expect(got.shape == [4, 256])
        let a = floats(got), b = floats(want)
        let firstDiff = zip(a, b).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
        #expect(
            firstDiff == nil,
            "\(name): first difference at \(firstDiff?.offset ?? -1): \(firstDiff.map { "\($0.element.0) vs \($0.element.1)" } ?? "")"
        )
    }

    @Test func plainTypesAreViewsWithReferenceValues() throws {
        let g = try GGUFFile(path: Fixtures.path("quant_types.gguf"))
        let expected = try SafeTensorsFile(path: Fixtures.path("quant_types_expected.safetensors"))
        for (name, dt) in [("f32", DType.f32), ("f16", .f16), ("bf16", .bf16)] {
            let t = try g.tensor(name)
            #expect(t.dtype == dt)
            #expect(floats(t) == floats(try expected.tensor(name)))
        }
    }

    @Test func unsupportedTypeThrowsNamingTensor() throws {
        var out = [Float](repeating: 0, count: 256)
        let src = [UInt8](repeating: 0, count: 66)
        let e = formatError {
            try src.withUnsafeBytes { s in
                try out.withUnsafeMutableBufferPointer { o in
                    try GGMLDequantizer.dequantize(
                        type: .iq2_xxs, source: s.baseAddress!, count: 256, into: o.baseAddress!,
                        file: "x.gguf", tensor: "blk.3.ffn_up.weight")
                }
            }
        }
        guard case let .unsupportedDType(f, t, d)? = e else {
            Issue.record("wrong error \(String(describing: e))"); return
        }
        #expect(f == "x.gguf" && t == "blk.3.ffn_up.weight" && d == "IQ2_XXS")
        #expect(e!.description.contains("blk.3.ffn_up.weight") && e!.description.contains("x.gguf"))
    }

    /// Rows of the real model against gguf.quants.dequantize of the same rows (real_model_rows.safetensors).
    @Test func realModelRowsMatchReference() throws {
        guard let model = TestModel.path else { return }
        let g = try GGUFFile(path: model)
        let expected = try SafeTensorsFile(path: Fixtures.path("real_model_rows.safetensors"))
        #expect(expected.tensorNames.count == 4)
        for key in expected.tensorNames {
            let parts = key.split(separator: "@")
            let name = String(parts[0]), first = Int(parts[1])!
            let info = try #require(g.info(name))
            let want = try expected.tensor(key)
            let rows = want.shape[0], cols = want.shape[1]
            #expect(info.dims[0] == cols)
            let rowBytes = cols / info.type.blockSize * info.type.blockBytes
            var got = [Float](repeating: .nan, count: rows * cols)
            try got.withUnsafeMutableBufferPointer { o in
                try GGMLDequantizer.dequantize(
                    type: info.type, source: g.rawData(info) + first * rowBytes, count: rows * cols,
                    into: o.baseAddress!, file: model, tensor: name)
            }
            #expect(got == floats(want), "\(key)")
        }
        // The whole-tensor path gives the same first rows.
        let q = try g.dequantized("blk.0.attn_q.weight")
        #expect(q.shape == [576, 576])
        #expect(Array(floats(q).prefix(2 * 576)) == floats(try expected.tensor("blk.0.attn_q.weight@0")))
    }
}
