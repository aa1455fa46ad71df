import Foundation
import SqueezeFormats
import SqueezeQuant
import Testing

@Suite struct LinearWeightStorageTests {
    /// The figure read back from a quantized directory is the one the quantize report printed,
    /// and both are the stored bytes of codes, tables and sparse part over the weights.
    @Test(arguments: [(4, false), (3, true)])
    func quantizedDirectoryMatchesTheReport(bits: Int, sparse: Bool) throws {
        let src = tempPath("bpw-src"), out = tempPath("bpw-q")
        defer { for p in [src, out] { try? FileManager.default.removeItem(atPath: p) } }
        try TinyLlama.make(in: src)
        var o = QuantizeOptions()
        o.bits = bits
        if sparse { o.outliers = OutlierSelector.sparsity(percent: 2.0) }
        let rep = try ModelQuantizer.quantize(model: src, output: out, options: o)
        let s = try #require(try LinearWeightStorage.measure(modelAt: out))
        #expect(s.weights == rep.quantizedWeights)
        #expect(s.bitsPerWeight == rep.bitsPerWeight)
        var bytes = 0
        for t in rep.tensors {
            bytes += t.rows * t.columns * bits / 8 + t.rows * (1 << bits) * 2
            if sparse { bytes += (t.rows + 1) * 4 + t.sparseCount * (4 + 2) }
        }
        #expect(s.bytes == bytes)
        // The dense source: its F32 linear weights are 32 bits each.
        let dense = try #require(try LinearWeightStorage.measure(modelAt: src))
        #expect(dense.weights == rep.quantizedWeights)
        let up = try #require(try SafeTensorsModel(path: src).info("model.layers.0.mlp.up_proj.weight"))
        #expect(dense.bitsPerWeight == Double(up.byteCount * 8) / Double(96 * 64))
    }

    @Test func definition() {
        var s = LinearWeightStorage()
        #expect(s.bitsPerWeight == 0)
        s.add(bytes: 100, weights: 160)
        s.add(bytes: 20, weights: 32)
        #expect(s.bytes == 120 && s.weights == 192 && s.bitsPerWeight == 5)
    }
}
