import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import Testing

/// The Fisher of the real test model over the two fixture windows against PyTorch's (float64
/// accumulation of float32 gradients; ../shared/reference, "Sensitivity (Fisher) fixture").
@Suite(.serialized) struct SensitivityFixtureTests {
    static func windows() throws -> (ids: [[Int]], losses: [Double], totals: [String: Double]) {
        let j = try Fixtures.json("fisher_fixture.json")
        let ws = (j["windows"] as! [[String: Any]]).map { ($0["ids"] as! [NSNumber]).map { $0.intValue } }
        let losses = (j["loss_per_window"] as! [NSNumber]).map { $0.doubleValue }
        let totals = (j["sum_of_squared_grads_per_tensor"] as! [String: NSNumber]).mapValues { $0.doubleValue }
        return (ws, losses, totals)
    }

    /// Tolerances: per-window loss within 2e-5 relative; each of the 210 per-tensor totals within
    /// 2.5e-3 relative; the 12 full reference rows within 2.5e-3 relative L2 error per row. Measured
    /// with the AVX2 kernels: losses within 2.6e-6 relative, worst total 1.7e-4 (layer 28 v_proj),
    /// worst row 3.1e-4. Up to 1.1e-3 was seen on a total when other suites switched the global
    /// dispatch level to scalar (`ISALevel.with`) while this test ran: float32 sums in another order.
    @Test(.enabled(if: TestModel.available, TestModel.skipNote))
    func fisherMatchesPyTorchReference() throws {
        let (ids, refLosses, totals) = try Self.windows()
        let model = try Sensitivity.loadModel(path: TestModel.path!)
        let acc = try Sensitivity.compute(model: model, windows: ids, mode: .fisher)
        for (got, want) in zip(acc.losses, refLosses) {
            #expect(abs(got - want) <= 2e-5 * want, "window loss \(got) vs PyTorch \(want)")
        }
        #expect(totals.count == 7 * model.config.numLayers)
        var worst = (0.0, "")
        for l in 0..<model.config.numLayers {
            for kind in LinearKind.allCases {
                let name = ModelFamily.llama.weightName(layer: l, kind: kind)!
                let want = try #require(totals[name], "fixture lacks \(name)")
                let got = acc.values(layer: l, kind: kind).reduce(0.0) { $0 + Double($1) }
                let rel = abs(got - want) / want
                if rel > worst.0 { worst = (rel, name) }
                #expect(rel <= 2.5e-3, "\(name): total \(got) vs PyTorch \(want) (relative \(rel))")
            }
        }
        let rows = try SafeTensorsFile(path: Fixtures.url("fisher_fixture_rows.safetensors").path)
        var worstRow = 0.0
        for (layer, kind) in [(0, LinearKind.v), (15, .gate), (29, .down)] {
            let name = ModelFamily.llama.weightName(layer: layer, kind: kind)!
            let ref = try rows.tensor(name + ".rows0_3").toFloatArray()
            let cols = ref.count / 4
            let got = acc.values(layer: layer, kind: kind)
            for r in 0..<4 {
                var num = 0.0, den = 0.0
                for j in 0..<cols {
                    let d = Double(got[r * cols + j]) - Double(ref[r * cols + j])
                    num += d * d; den += Double(ref[r * cols + j]) * Double(ref[r * cols + j])
                }
                let rel = (num / den).squareRoot()
                worstRow = max(worstRow, rel)
                #expect(rel <= 2.5e-3, "\(name) row \(r): relative L2 error \(rel)")
            }
        }
        print(
            "Fisher vs PyTorch: losses \(acc.losses) vs \(refLosses); worst total relative error \(worst.0) (\(worst.1)); worst row relative L2 \(worstRow)"
        )
    }
}
