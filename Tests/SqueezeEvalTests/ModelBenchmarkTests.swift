import Foundation
import SqueezeEval
import SqueezeModels
import Testing

@Suite struct BenchRoundsTests {
    @Test func medianOfOddAndEvenCounts() {
        #expect(ModelBenchmark.median([]) == nil)
        #expect(ModelBenchmark.median([3]) == 3)
        #expect(ModelBenchmark.median([5, 1, 3]) == 3)
        #expect(ModelBenchmark.median([4, 1, 3, 2]) == 2.5)
    }
}

@Suite(.serialized, .enabled(if: TestModel.available, TestModel.skipNote))
struct ModelBenchRoundsTests {
    /// Rounds run round-major (every configuration once, then again), each configuration keeps its
    /// figures in round order, and the reported figure is their median.
    @Test func roundsInterleaveConfigurationsAndReportMedians() throws {
        let model = try ModelLoader.load(path: try #require(TestModel.path))
        var order: [String] = []
        let results = try ModelBenchmark.runRounds(
            models: [("a", model), ("b", model)], threads: [1, 2], rounds: 3, promptTokens: 4, decodeTokens: 2,
            decodeContext: 2, repeats: 1, progress: { r, label, t in order.append("\(r) \(label) \(t)") })
        #expect(order == (1...3).flatMap { r in ["a 1", "a 2", "b 1", "b 2"].map { "\(r) \($0)" } })
        #expect(results.map { "\($0.median.weights) \($0.median.threads)" } == ["a 1", "a 2", "b 1", "b 2"])
        for r in results {
            #expect(r.prefillTokensPerSecond.count == 3 && r.decodeTokensPerSecond.count == 3)
            #expect(r.decodeTokensPerSecond.allSatisfy { $0 > 0 && $0.isFinite })
            #expect(r.median.decodeTokensPerSecond == r.decodeTokensPerSecond.sorted()[1])
            #expect(r.median.prefillTokensPerSecond == r.prefillTokensPerSecond.sorted()[1])
            #expect(r.median.promptTokens == 4 && r.median.decodeTokens == 2)
        }
    }
}
