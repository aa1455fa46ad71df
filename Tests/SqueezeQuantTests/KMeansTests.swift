import SqueezeQuant
import Testing

@Suite struct KMeansTests {
    /// The exact engine's error equals the brute-force optimum over all labellings.
    @Test func optimalMatchesBruteForce() throws {
        var rng = SplitMix64(seed: 1)
        for trial in 0..<60 {
            let bits = trial % 2 == 0 ? 1 : 2
            let k = 1 << bits
            let n = k + 1 + Int(rng.next() % UInt64(8 - k))
            let x = (0..<n).map { _ in Float(rng.normal()) }
            let w = (0..<n).map { _ in Float(0.05 + rng.uniform()) }
            let q = try NonUniformQuantizer.quantizeRow(values: x, weights: w, bits: bits)
            let brute = bruteForceCost(x, w, k)
            let ours = q.weightedError
            #expect(ours <= brute * (1 + 1e-5) + 1e-9, "trial \(trial): \(ours) vs brute force \(brute)")
            #expect(ours >= brute * (1 - 1e-5) - 1e-9, "trial \(trial): \(ours) below the optimum \(brute)?")
        }
    }

    /// On medium rows the exact engine's error equals a plain O(k n^2) dynamic programme.
    @Test(arguments: [2, 3, 4])
    func optimalMatchesPlainDP(bits: Int) throws {
        var rng = SplitMix64(seed: UInt64(40 + bits))
        let k = 1 << bits
        for trial in 0..<12 {
            let n = k + 1 + Int(rng.next() % 120)
            let x = (0..<n).map { _ in Float(rng.normal() * (rng.uniform() < 0.1 ? 6 : 1)) }
            let w = (0..<n).map { _ in Float(rng.uniform() * rng.uniform() + 1e-4) }
            let q = try NonUniformQuantizer.quantizeRow(values: x, weights: w, bits: bits)
            let ref = plainDPCost(x, w, k)
            #expect(abs(q.weightedError - ref) <= 1e-5 * ref + 1e-9, "bits \(bits) trial \(trial) n \(n)")
        }
    }

    /// On many random rows the exact engine is never worse than Lloyd or than random clusterings.
    @Test(arguments: [2, 3, 4])
    func optimalNeverWorse(bits: Int) throws {
        var rng = SplitMix64(seed: UInt64(100 + bits))
        let k = 1 << bits
        for _ in 0..<40 {
            let n = 64 + Int(rng.next() % 400)
            let heavy = rng.uniform() < 0.5
            let x = (0..<n).map { _ in Float(rng.normal() * (heavy && rng.uniform() < 0.05 ? 8 : 1)) }
            let w = (0..<n).map { _ in Float(rng.uniform() * rng.uniform() + 1e-6) }
            let opt = try NonUniformQuantizer.quantizeRow(values: x, weights: w, bits: bits)
            let lloyd = try NonUniformQuantizer.quantizeRow(
                values: x, weights: w, bits: bits,
                options: KMeansOptions(engine: .lloyd))
            #expect(opt.weightedError <= lloyd.weightedError * (1 + 1e-6) + 1e-12)
            for _ in 0..<20 {
                let labels = (0..<n).map { _ in Int(rng.next() % UInt64(k)) }
                #expect(opt.weightedError <= clusteringCost(x, w, labels, k) * (1 + 1e-6))
            }
            // Labels are the nearest table entries.
            for i in 0..<n {
                let c = opt.lut[Int(opt.indices[i])]
                for j in 0..<k { #expect(abs(x[i] - c) <= abs(x[i] - opt.lut[j])) }
            }
        }
    }

    /// The same matrix gives identical results across runs and thread counts.
    @Test(arguments: [KMeansEngine.optimal, .lloyd])
    func deterministic(engine: KMeansEngine) throws {
        var rng = SplitMix64(seed: 7)
        let rows = 37, cols = 256
        let w = (0..<(rows * cols)).map { _ in Float(rng.normal() * 0.02) }
        let f = (0..<(rows * cols)).map { _ in Float(rng.uniform() * 1e-6) }
        func run(_ threads: Int) throws -> QuantizedMatrix {
            try w.withUnsafeBufferPointer { wp in
                try f.withUnsafeBufferPointer { fp in
                    try NonUniformQuantizer.quantizeMatrix(
                        weights: wp.baseAddress!, sensitivity: .full(fp.baseAddress!), rows: rows, cols: cols, bits: 3,
                        options: KMeansOptions(engine: engine, threads: threads))
                }
            }
        }
        let a = try run(1), b = try run(2), c = try run(2)
        #expect(a == b)
        #expect(b == c)
        // Each row matches the single-row call.
        let r5 = try NonUniformQuantizer.quantizeRow(
            values: Array(w[5 * cols..<6 * cols]),
            weights: Array(f[5 * cols..<6 * cols]), bits: 3,
            options: KMeansOptions(engine: engine))
        #expect(r5.lut == Array(a.lut[40..<48]))
        #expect(r5.indices == Array(a.indices[5 * cols..<6 * cols]))
    }

    /// Rows with at most 2^b distinct values are reproduced exactly.
    @Test func fewDistinctValues() throws {
        let x: [Float] = [0.5, -1, 0.5, 2, -1, 2, 0.5, 3]
        let q = try NonUniformQuantizer.quantizeRow(values: x, weights: [Float](repeating: 1, count: 8), bits: 2)
        #expect(q.dequantized() == x)
        #expect(q.weightedError == 0)
        let q3 = try NonUniformQuantizer.quantizeRow(values: [1, 1, 1, 1], weights: nil, bits: 3)
        #expect(q3.dequantized() == [1, 1, 1, 1])
        // Fewer positive-weight values than clusters: those are exact, the rest cover the others.
        let y: [Float] = [0.1, 0.2, 5, 6, 7, 8, 9]
        let wy: [Float] = [1, 1, 0, 0, 0, 0, 0]
        let qy = try NonUniformQuantizer.quantizeRow(values: y, weights: wy, bits: 2)
        let dy = qy.dequantized()
        #expect(dy[0] == 0.1 && dy[1] == 0.2)
        #expect(qy.weightedError == 0)
    }

    /// Zero total sensitivity falls back to uniform weights.
    @Test func zeroSensitivityFallsBackToUniform() throws {
        var rng = SplitMix64(seed: 3)
        let x = (0..<300).map { _ in Float(rng.normal()) }
        let zero = try NonUniformQuantizer.quantizeRow(values: x, weights: [Float](repeating: 0, count: 300), bits: 3)
        let uni = try NonUniformQuantizer.quantizeRow(values: x, weights: nil, bits: 3)
        #expect(zero.lut == uni.lut)
        #expect(zero.indices == uni.indices)
        #expect(zero.weightedError == 0)
        #expect(uni.squaredError > 0)
    }

    /// Exact zeros get weight 0 (as in the reference) unless told otherwise.
    @Test func zerosGetZeroWeight() throws {
        let x: [Float] = [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]
        let w = [Float](repeating: 1, count: 11)
        let q = try NonUniformQuantizer.quantizeRow(values: x, weights: w, bits: 2)
        // The k-means sees only 1...5: no centroid is placed near the zeros.
        #expect(q.lut.min()! >= 1)
        let q2 = try NonUniformQuantizer.quantizeRow(
            values: x, weights: w, bits: 2,
            options: KMeansOptions(zeroValuesGetZeroWeight: false))
        #expect(q2.lut.contains(0))
    }

    /// NaN or infinite weights are refused with an error naming tensor and row.
    @Test func nonFiniteWeightsAreErrors() throws {
        var w = [Float](repeating: 0.5, count: 64)
        w[3 * 16 + 7] = .nan
        do {
            _ = try w.withUnsafeBufferPointer { p in
                try NonUniformQuantizer.quantizeMatrix(
                    weights: p.baseAddress!, rows: 4, cols: 16, bits: 3,
                    tensorName: "blk.0.ffn_up")
            }
            Issue.record("no error")
        } catch let error as QuantError {
            guard case let .nonFiniteWeight(t, r, c, _) = error else { Issue.record("wrong error \(error)"); return }
            #expect(t == "blk.0.ffn_up" && r == 3 && c == 7)
            #expect(error.description.contains("blk.0.ffn_up") && error.description.contains("row 3"))
        }
        w[3 * 16 + 7] = .infinity
        #expect(throws: QuantError.self) {
            try w.withUnsafeBufferPointer { p in
                try NonUniformQuantizer.quantizeMatrix(
                    weights: p.baseAddress!, rows: 4, cols: 16, bits: 4,
                    options: KMeansOptions(engine: .lloyd))
            }
        }
    }

    /// FP16 tables: every table entry is an FP16 value and labels are nearest among them.
    @Test func halfPrecisionTable() throws {
        var rng = SplitMix64(seed: 11)
        let x = (0..<512).map { _ in Float(rng.normal() * 0.03) }
        let q = try NonUniformQuantizer.quantizeRow(
            values: x, weights: nil, bits: 4,
            options: KMeansOptions(halfPrecisionTable: true))
        for c in q.lut { #expect(Float(Float16(c)) == c) }
    }
}
