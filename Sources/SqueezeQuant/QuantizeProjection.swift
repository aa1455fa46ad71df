import Foundation
import SqueezeCore

/// Times the quantizer on one transformer block with LLaMA-7B's shapes (random normal weights and
/// random positive sensitivities, generated one matrix at a time), to project the time of a whole
/// 7B model (32 blocks). Outlier selection with 0.45% sparsity is included when `sparse`.
public enum QuantizeProjection {
    public struct Result: Codable, Sendable {
        public var bits: Int
        public var engine: String
        public var sparse: Bool
        public var threads: Int
        public var secondsPerBlock: Double
        public var projectedSeconds7B: Double
    }

    public static func llama7BBlock(bits: Int, engine: KMeansEngine, sparse: Bool, threads: Int) throws -> Result {
        let shapes = [
            (4096, 4096), (4096, 4096), (4096, 4096), (4096, 4096), (11008, 4096), (11008, 4096), (4096, 11008),
        ]
        var seed: UInt64 = 0x5eed
        func next() -> Double {
            seed &+= 0x9E37_79B9_7F4A_7C15
            var z = seed
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
        }
        var total = 0.0
        var opts = KMeansOptions(engine: engine)
        opts.threads = threads
        for (rows, cols) in shapes {
            let n = rows * cols
            var w = [Float](repeating: 0, count: n), f = [Float](repeating: 0, count: n)
            for i in 0..<n {
                let u1 = max(next(), 1e-300), u2 = next()
                w[i] = Float(0.02 * (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
                f[i] = Float(pow(next(), 4) * 1e-6)
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            try w.withUnsafeBufferPointer { wb in
                try f.withUnsafeBufferPointer { fb in
                    var mask: [UInt8]?
                    if sparse {
                        mask = try OutlierSelector.sparsity(percent: 0.45).select(
                            weights: wb.baseAddress!, sensitivity: fb.baseAddress!, count: n
                        ).mask
                    }
                    _ = try mask.withOptionalPointer { mp in
                        try NonUniformQuantizer.quantizeMatrix(
                            weights: wb.baseAddress!, sensitivity: .full(fb.baseAddress!), rows: rows,
                            cols: cols, bits: bits, keepMask: mp, options: opts)
                    }
                }
            }
            total += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        return Result(
            bits: bits, engine: engine.rawValue, sparse: sparse, threads: threads, secondsPerBlock: total,
            projectedSeconds7B: total * 32)
    }
}
