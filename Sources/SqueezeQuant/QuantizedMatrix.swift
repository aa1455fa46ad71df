import SqueezeCore

/// A matrix quantized per output row to a look-up table: row r's value at column c is
/// `lut[r * clusters + indices[r * cols + c]]`.
public struct QuantizedMatrix: Sendable, Equatable {
    /// Output rows.
    public let rows: Int
    /// Input columns.
    public let cols: Int
    /// Bits per index.
    public let bits: Int
    /// Per-row look-up tables, `rows * clusters` values, ascending within each row.
    public var lut: [Float]
    /// Per-weight indices into the row's table, `rows * cols`, row-major.
    public var indices: [UInt8]
    /// Per-row sensitivity-weighted squared error, sum_i F_i (w_i - q_i)^2, over dense positions.
    public var rowWeightedError: [Double]
    /// Per-row plain squared error over dense positions.
    public var rowSquaredError: [Double]

    /// Creates a quantized matrix from its parts.
    public init(
        rows: Int, cols: Int, bits: Int, lut: [Float], indices: [UInt8],
        rowWeightedError: [Double], rowSquaredError: [Double]
    ) {
        self.rows = rows; self.cols = cols; self.bits = bits
        self.lut = lut; self.indices = indices
        self.rowWeightedError = rowWeightedError; self.rowSquaredError = rowSquaredError
    }

    /// Table entries per row, 2^bits.
    public var clusters: Int { 1 << bits }
    /// Sum of the per-row weighted errors.
    public var weightedError: Double { rowWeightedError.reduce(0, +) }
    /// Sum of the per-row squared errors.
    public var squaredError: Double { rowSquaredError.reduce(0, +) }

    /// The row's table index whose centroid is nearest to 0 (the first on ties).
    public func nearestZeroIndex(row: Int) -> Int {
        let k = clusters
        var best = 0
        var bestAbs = Float.infinity
        for j in 0..<k {
            let a = abs(lut[row * k + j])
            if a < bestAbs { bestAbs = a; best = j }
        }
        return best
    }

    /// The dequantized dense matrix, rows * cols values.
    public func dequantized() -> [Float] {
        let k = clusters
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols { out[r * cols + c] = lut[r * k + Int(indices[r * cols + c])] }
        }
        return out
    }
}

/// Where the per-weight sensitivities (Fisher information) come from.
public enum SensitivityInput {
    /// All weights count equally.
    case uniform
    /// One value per weight, `rows * cols`, row-major like the weights.
    case full(UnsafePointer<Float>)
    /// One value per input column, `cols`, broadcast over rows.
    case perColumn(UnsafePointer<Float>)
}

/// Options for the non-uniform (k-means) quantizer.
public struct KMeansOptions: Sendable, Equatable {
    /// The k-means engine.
    public var engine: KMeansEngine
    /// Maximum Lloyd iterations (the reference's scikit-learn call uses 50).
    public var maxIterations: Int
    /// Give exact zeros weight 0 in the k-means, as the reference does (`sample_weight = F * (w != 0)`).
    public var zeroValuesGetZeroWeight: Bool
    /// Round each centroid to FP16 before assigning labels and measuring errors, so that errors
    /// describe the FP16 table that is written out.
    public var halfPrecisionTable: Bool
    /// Threads to use (nil: the shared pool's default).
    public var threads: Int?

    /// Creates options; the defaults follow the reference except for the engine (exact DP).
    public init(
        engine: KMeansEngine = .optimal, maxIterations: Int = 50, zeroValuesGetZeroWeight: Bool = true,
        halfPrecisionTable: Bool = false, threads: Int? = nil
    ) {
        self.engine = engine; self.maxIterations = maxIterations
        self.zeroValuesGetZeroWeight = zeroValuesGetZeroWeight
        self.halfPrecisionTable = halfPrecisionTable; self.threads = threads
    }
}

/// Non-uniform per-row quantization: each output row gets its own table of 2^bits centroids chosen
/// by sensitivity-weighted 1-D k-means.
public enum NonUniformQuantizer {
    /// Quantizes a row-major `rows x cols` matrix, one look-up table per row.
    ///
    /// Positions with a nonzero `keepMask` byte (the sparse part) are left out of the k-means and get
    /// the index of the row's centroid nearest 0, so that `SparseCSR.build` can store `w - centroid`.
    /// If the included positions of a row have zero total sensitivity, uniform weights are used.
    /// Rows are independent and run in parallel; results do not depend on the thread count.
    public static func quantizeMatrix(
        weights: UnsafePointer<Float>, sensitivity: SensitivityInput = .uniform,
        rows: Int, cols: Int, bits: Int, keepMask: UnsafePointer<UInt8>? = nil,
        options: KMeansOptions = KMeansOptions(),
        tensorName: String = ""
    ) throws(QuantError) -> QuantizedMatrix {
        guard (1...8).contains(bits) else {
            throw .unsupportedBits(tensor: tensorName, bits: bits, supported: Array(1...8))
        }
        guard rows >= 0, cols >= 0 else { throw .shapeMismatch(tensor: tensorName, detail: "negative shape") }
        guard options.maxIterations >= 1 else { throw .invalidOption("maxIterations must be at least 1") }
        let k = 1 << bits
        var lut = [Float](repeating: 0, count: rows * k)
        var indices = [UInt8](repeating: 0, count: rows * cols)
        var werr = [Double](repeating: 0, count: rows)
        var serr = [Double](repeating: 0, count: rows)
        let pool = WorkerPool.shared
        let threads = min(options.threads ?? pool.defaultThreads, pool.threadCount)
        let workspaces = (0..<pool.threadCount).map { _ in KMeansWorkspace(capacity: cols, k: k) }
        // The first failing row per thread; the smallest is reported.
        let failures = UnsafeMutablePointer<(Int, QuantError)?>.allocate(capacity: pool.threadCount)
        failures.initialize(repeating: nil, count: pool.threadCount)
        defer { failures.deinitialize(count: pool.threadCount); failures.deallocate() }
        lut.withUnsafeMutableBufferPointer { lutB in
            indices.withUnsafeMutableBufferPointer { idxB in
                werr.withUnsafeMutableBufferPointer { weB in
                    serr.withUnsafeMutableBufferPointer { seB in
                        let lutP = lutB.baseAddress!, idxP = idxB.baseAddress, weP = weB.baseAddress,
                            seP = seB.baseAddress
                        pool.parallelFor(rows, minBlock: 1, blocksPerThread: 8, threads: threads) { range, thread in
                            let ws = workspaces[thread]
                            for r in range {
                                if failures[thread] != nil { return }
                                let sRow: UnsafePointer<Float>?
                                switch sensitivity {
                                case .uniform: sRow = nil
                                case .full(let p): sRow = p + r * cols
                                case .perColumn(let p): sRow = p
                                }
                                do {
                                    let (we, se) = try quantizeRow(
                                        ws, values: weights + r * cols, sens: sRow,
                                        keep: keepMask.map { $0 + r * cols },
                                        n: cols, k: k, options: options, lutOut: lutP + r * k,
                                        idxOut: idxP.map { $0 + r * cols }, row: r, tensorName: tensorName)
                                    weP![r] = we; seP![r] = se
                                } catch {
                                    failures[thread] = (r, error as! QuantError)
                                    return
                                }
                            }
                        }
                    }
                }
            }
        }
        var first: (Int, QuantError)?
        for t in 0..<pool.threadCount {
            if let f = failures[t], first == nil || f.0 < first!.0 { first = f }
        }
        if let f = first { throw f.1 }
        return QuantizedMatrix(
            rows: rows, cols: cols, bits: bits, lut: lut, indices: indices,
            rowWeightedError: werr, rowSquaredError: serr)
    }

    /// Quantizes one row given as arrays (a convenience for tests and tools).
    public static func quantizeRow(
        values: [Float], weights: [Float]?, bits: Int,
        options: KMeansOptions = KMeansOptions(),
        tensorName: String = ""
    ) throws(QuantError) -> QuantizedMatrix {
        if let w = weights, w.count != values.count {
            throw .shapeMismatch(tensor: tensorName, detail: "\(values.count) values but \(w.count) weights")
        }
        return try values.withUnsafeBufferPointer { (v) throws(QuantError) -> QuantizedMatrix in
            let base = v.baseAddress ?? UnsafePointer(bitPattern: 64)!
            if let w = weights {
                return try w.withUnsafeBufferPointer { (wb) throws(QuantError) -> QuantizedMatrix in
                    try quantizeMatrix(
                        weights: base, sensitivity: .full(wb.baseAddress ?? base), rows: 1,
                        cols: values.count, bits: bits, options: options, tensorName: tensorName)
                }
            }
            return try quantizeMatrix(
                weights: base, rows: 1, cols: values.count, bits: bits,
                options: options, tensorName: tensorName)
        }
    }

    /// One row: gather, sort, cluster, label, measure. Returns (weighted error, squared error).
    static func quantizeRow(
        _ ws: KMeansWorkspace, values: UnsafePointer<Float>, sens: UnsafePointer<Float>?,
        keep: UnsafePointer<UInt8>?, n: Int, k: Int, options: KMeansOptions,
        lutOut: UnsafeMutablePointer<Float>, idxOut: UnsafeMutablePointer<UInt8>?,
        row: Int, tensorName: String
    ) throws -> (Double, Double) {
        // Gather the included positions as (key, column) items with their k-means weights.
        var m = 0
        var total = 0.0
        var keptAny = false
        for c in 0..<n {
            let v = values[c]
            if !v.isFinite { throw QuantError.nonFiniteWeight(tensor: tensorName, row: row, column: c, value: v) }
            var f: Float = 1
            if let s = sens {
                f = s[c]
                if !(f >= 0) || !f.isFinite {
                    throw QuantError.invalidSensitivity(tensor: tensorName, row: row, column: c, value: f)
                }
            }
            if let kp = keep, kp[c] != 0 { keptAny = true; continue }
            if options.zeroValuesGetZeroWeight && v == 0 { f = 0 }
            ws.keysA[m] = (UInt64(monotoneKey(v)) << 32) | UInt64(c)
            ws.rawWeight[c] = f
            total += Double(f)
            m += 1
        }
        let uniform = !(total > 0)
        var d = 0  // distinct values
        var dp = 0  // distinct positive-weight values
        if m > 0 {
            ws.radixSort(m)
            let sorted = ws.sorted
            var lastKey = UInt64.max
            for i in 0..<m {
                let item = sorted[i]
                let key = item >> 32
                let f = uniform ? 1.0 : Double(ws.rawWeight[Int(item & 0xFFFF_FFFF)])
                if key != lastKey {
                    ws.ux[d] = Double(floatFromMonotoneKey(UInt32(key)))
                    ws.uw[d] = f
                    d += 1
                    lastKey = key
                } else {
                    ws.uw[d - 1] += f
                }
            }
            var allPositive = true
            for i in 0..<d where !(ws.uw[i] > 0) { allPositive = false; break }
            if allPositive {
                ws.px = ws.ux; ws.pw = ws.uw; dp = d
            } else {
                ws.px = ws.pxStore; ws.pw = ws.pwStore
                for i in 0..<d where ws.uw[i] > 0 { ws.px[dp] = ws.ux[i]; ws.pw[dp] = ws.uw[i]; dp += 1 }
            }
        }
        let cen = ws.centroids
        if d <= k {
            // Every distinct value gets its own centroid (pad with the last one, or 0 for an empty row).
            for j in 0..<k { cen[j] = d == 0 ? 0 : ws.ux[min(j, d - 1)] }
        } else if dp >= k {
            switch options.engine {
            case .optimal: ws.optimal(n: dp, kk: k)
            case .lloyd: ws.lloyd(n: dp, kk: k, maxIterations: options.maxIterations)
            }
        } else {
            // Fewer positive-weight values than clusters: those values exactly (error 0), and the
            // remaining clusters spent on the zero-weight values, unweighted.
            var saved = [Double](repeating: 0, count: dp)
            for i in 0..<dp { saved[i] = ws.px[i] }
            ws.px = ws.pxStore; ws.pw = ws.pwStore
            var z = 0
            for i in 0..<d where !(ws.uw[i] > 0) { ws.px[z] = ws.ux[i]; ws.pw[z] = 1; z += 1 }
            let rest = k - dp
            if z <= rest {
                for j in 0..<rest { cen[dp + j] = z == 0 ? (dp > 0 ? saved[dp - 1] : 0) : ws.px[min(j, z - 1)] }
                for i in 0..<dp { cen[i] = saved[i] }
            } else {
                switch options.engine {
                case .optimal: ws.optimal(n: z, kk: rest)
                case .lloyd: ws.lloyd(n: z, kk: rest, maxIterations: options.maxIterations)
                }
                for j in stride(from: rest - 1, through: 0, by: -1) { cen[dp + j] = cen[j] }
                for i in 0..<dp { cen[i] = saved[i] }
            }
        }
        // Table: Float (optionally FP16-rounded), ascending.
        for j in 0..<k {
            var c = Float(cen[j])
            if options.halfPrecisionTable { c = HalfConversion.toFloat(HalfConversion.toHalf(c)) }
            lutOut[j] = c
        }
        sortAscending(lutOut, k)
        var zeroIdx = 0
        for j in 1..<max(k, 1) where abs(lutOut[j]) < abs(lutOut[zeroIdx]) { zeroIdx = j }
        // Nearest centroid, walking the sorted items: the label only moves up. A value exactly
        // halfway between two centroids takes the lower one.
        var we = 0.0, se = 0.0
        if m > 0 {
            let sorted = ws.sorted
            var label = 0
            var next = k > 1 ? Double(lutOut[1]) : .infinity
            var here = Double(lutOut[0])
            for i in 0..<m {
                let item = sorted[i]
                let c = Int(item & 0xFFFF_FFFF)
                let v = Double(floatFromMonotoneKey(UInt32(truncatingIfNeeded: item >> 32)))
                while v > here && next - v < v - here {
                    label += 1
                    here = next
                    next = label + 1 < k ? Double(lutOut[label + 1]) : .infinity
                }
                idxOut?[c] = UInt8(truncatingIfNeeded: label)
                let e = v - here
                let e2 = e * e
                se += e2
                we += (sens.map { Double($0[c]) } ?? 1) * e2
            }
        }
        if keptAny, let kp = keep, let out = idxOut {
            for c in 0..<n where kp[c] != 0 { out[c] = UInt8(truncatingIfNeeded: zeroIdx) }
        }
        return (we, se)
    }

    @inline(__always) static func sortAscending(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        if n < 2 { return }
        for i in 1..<n {
            let x = p[i]
            var j = i - 1
            while j >= 0 && p[j] > x { p[j + 1] = p[j]; j -= 1 }
            p[j + 1] = x
        }
    }
}
