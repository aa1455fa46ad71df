import CSqueezeKernels
import SqueezeCore
import SqueezeKernels
import Testing

/// Deterministic generator for test data.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
    mutating func indices(_ n: Int, bits: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8(next() & UInt64((1 << bits) - 1)) }
    }
}

/// A random LUT problem: indices, sorted tables, activations.
struct LUTCase {
    let rows: Int, cols: Int, bits: Int
    let idx: [UInt8], lut: [Float]
    init(rows: Int, cols: Int, bits: Int, rng: inout SplitMix) {
        self.rows = rows
        self.cols = cols
        self.bits = bits
        idx = rng.indices(rows * cols, bits: bits)
        var l = [Float]()
        for _ in 0..<rows {
            let scale = 0.02 + abs(rng.float())
            l += rng.floats(1 << bits).map { $0 * scale }.sorted()
        }
        lut = l
    }
    func reference(_ x: [Float]) -> [Float] {
        LUTReference.gemv(indices: idx, lut: lut, rows: rows, cols: cols, bits: bits, x: x)
    }
    func magnitude(_ x: [Float]) -> [Float] {
        LUTReference.absGemv(indices: idx, lut: lut, rows: rows, cols: cols, bits: bits, x: x)
    }
    func int8Bound(_ x: [Float]) -> [Float] {
        LUTReference.int8ErrorBound(indices: idx, lut: lut, rows: rows, cols: cols, bits: bits, x: x)
    }
}

/// Shapes: small, odd, not multiples of 32/64/128, a few round ones, and rows longer than 2048 inputs
/// (the int8 kernels' pair order, `SQ_I8_CHAIN_MAX_K`).
let lutShapes: [(Int, Int)] = [
    (1, 1), (1, 32), (3, 63), (17, 64), (16, 100), (33, 128), (5, 129), (64, 200),
    (300, 256), (7, 300), (129, 511), (40, 576), (97, 700), (2, 1000), (9, 2049), (4, 4100),
]

/// Everything that switches the dispatch level runs here, one test at a time.
@Suite(.serialized) struct LUTKernelTests {
    static let pool = WorkerPool(threads: 3)

    @Test func repackKeepsIndices() throws {
        var rng = SplitMix(1)
        for bits in [3, 4] {
            for (rows, cols) in lutShapes {
                let c = LUTCase(rows: rows, cols: cols, bits: bits, rng: &rng)
                let m = try LUTMatrix(indices: c.idx, lut: c.lut, rows: rows, columns: cols, bits: bits)
                #expect(m.paddedColumns % (bits == 4 ? 64 : 128) == 0 && m.paddedColumns >= cols)
                for r in [0, rows / 2, rows - 1] {
                    #expect(
                        m.indices(row: r) == Array(c.idx[(r * cols)..<((r + 1) * cols)]),
                        "bits \(bits) shape \(rows)x\(cols) row \(r)")
                    #expect(m.table(row: r) == Array(c.lut[(r << bits)..<((r + 1) << bits)]))
                }
            }
        }
    }

    /// Float path equals the reference within 1e-5 * sum|w x| (+1e-30) on every ISA level, for
    /// gemv and gemm (m = 1...6, strided x and y), 1 and 3 threads.
    @Test func floatPathMatchesReference() throws {
        var rng = SplitMix(2)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for bits in [3, 4] {
                    for (rows, cols) in lutShapes {
                        let c = LUTCase(rows: rows, cols: cols, bits: bits, rng: &rng)
                        let m = try LUTMatrix(
                            indices: c.idx, lut: c.lut, rows: rows, columns: cols, bits: bits, mode: .float)
                        let tokens = (rows * cols) % 6 + 1
                        let ldx = cols + 3, ldy = rows + 5
                        let xs = (0..<tokens).map { _ in rng.floats(cols) }
                        var xbuf = [Float](repeating: 9, count: tokens * ldx)
                        for t in 0..<tokens { for i in 0..<cols { xbuf[t * ldx + i] = xs[t][i] } }
                        var y1 = [Float](repeating: .nan, count: rows)
                        var ym = [Float](repeating: -7, count: tokens * ldy)
                        for threads in [1, 3] {
                            xs[0].withUnsafeBufferPointer { xp in
                                y1.withUnsafeMutableBufferPointer { yp in
                                    m.gemv(
                                        xp.baseAddress!, yp.baseAddress!, pool: LUTKernelTests.pool, threads: threads)
                                }
                            }
                            xbuf.withUnsafeBufferPointer { xp in
                                ym.withUnsafeMutableBufferPointer { yp in
                                    m.gemm(
                                        xp.baseAddress!, ldx: ldx, m: tokens, yp.baseAddress!, ldy: ldy,
                                        pool: LUTKernelTests.pool, threads: threads)
                                }
                            }
                            for t in 0..<tokens {
                                let ref = c.reference(xs[t]), mag = c.magnitude(xs[t])
                                for r in 0..<rows {
                                    let got = ym[t * ldy + r]
                                    #expect(
                                        abs(got - ref[r]) <= 1e-5 * mag[r] + 1e-30,
                                        "\(level) bits \(bits) \(rows)x\(cols) token \(t) row \(r): \(got) vs \(ref[r])"
                                    )
                                    if t == 0 {
                                        #expect(
                                            abs(y1[r] - ref[r]) <= 1e-5 * mag[r] + 1e-30,
                                            "gemv \(level) bits \(bits) \(rows)x\(cols) row \(r)")
                                    }
                                }
                                if t + 1 < tokens { #expect(ym[t * ldy + rows] == -7, "gemm wrote past row count") }
                            }
                        }
                    }
                }
            }
        }
    }

    /// int8 path: |y - reference| <= bound * (1 + 1e-3) + 1e-5 * sum|w x|, where the bound is the
    /// sum over terms of half a quantization step of each factor (`LUTReference.int8ErrorBound`);
    /// all ISA levels agree with each other to 1e-5 * sum|w x| (same integers, other float order); and
    /// on each level, every token of a GEMM (1 to 11 tokens) equals its own GEMV exactly.
    @Test func int8PathWithinDerivedBound() throws {
        var rng = SplitMix(3)
        for bits in [3, 4] {
            for (rows, cols) in lutShapes {
                let c = LUTCase(rows: rows, cols: cols, bits: bits, rng: &rng)
                let m = try LUTMatrix(indices: c.idx, lut: c.lut, rows: rows, columns: cols, bits: bits, mode: .int8)
                let tokens = (rows + cols) % 11 + 1  // up to 11: a pass of 8 tokens and a rest
                let xs = (0..<tokens).map { t in rng.floats(cols).map { t == 1 ? $0 * 1000 : $0 } }
                let xbuf = xs.flatMap { $0 }
                var results: [[Float]] = []
                for level in ISALevel.available {
                    var ym = [Float](repeating: .nan, count: tokens * rows)
                    var y1 = [[Float]](repeating: [Float](repeating: .nan, count: rows), count: tokens)
                    ISALevel.with(level) {
                        xbuf.withUnsafeBufferPointer { xp in
                            ym.withUnsafeMutableBufferPointer { yp in
                                m.gemm(
                                    xp.baseAddress!, ldx: cols, m: tokens, yp.baseAddress!, ldy: rows,
                                    pool: LUTKernelTests.pool, threads: 2)
                            }
                            for t in 0..<tokens {
                                m.gemv(
                                    xp.baseAddress! + t * cols, &y1[t], pool: LUTKernelTests.pool, threads: t % 2 + 1)
                            }
                        }
                    }
                    for t in 0..<tokens {
                        let ref = c.reference(xs[t]), mag = c.magnitude(xs[t]), bound = c.int8Bound(xs[t])
                        for r in 0..<rows {
                            let err = abs(ym[t * rows + r] - ref[r])
                            #expect(
                                err <= bound[r] * 1.001 + 1e-5 * mag[r] + 1e-30,
                                "\(level) bits \(bits) \(rows)x\(cols) token \(t) row \(r): err \(err) bound \(bound[r])"
                            )
                        }
                    }
                    // Batch invariance: each token's GEMM result equals its own GEMV, bit for bit.
                    for t in 0..<tokens {
                        for r in 0..<rows where y1[t][r] != ym[t * rows + r] {
                            Issue.record(
                                "\(level) bits \(bits) \(rows)x\(cols): gemv and gemm token \(t) of \(tokens) differ at row \(r)"
                            )
                        }
                    }
                    results.append(ym)
                }
                for i in 1..<results.count {
                    for t in 0..<tokens {
                        let mag = c.magnitude(xs[t])
                        for r in 0..<rows {
                            #expect(abs(results[i][t * rows + r] - results[0][t * rows + r]) <= 1e-5 * mag[r] + 1e-30)
                        }
                    }
                }
            }
        }
    }

    /// Prefill-sized GEMM (37 tokens: crosses the 32-token cache block; 150 rows: crosses the
    /// 64-row block) on every level and both modes, against per-token GEMV. From
    /// `LUTMatrix.prefillThreshold` tokens on, GEMM decodes rows to F32 (exact in both modes), so it
    /// is compared with the exact float-path GEMV.
    @Test func largeTokenCountGemm() throws {
        var rng = SplitMix(5)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for bits in [3, 4] {
                    let rows = 150, cols = 200, m = 37
                    let c = LUTCase(rows: rows, cols: cols, bits: bits, rng: &rng)
                    let mat = try LUTMatrix(indices: c.idx, lut: c.lut, rows: rows, columns: cols, bits: bits)
                    let x = rng.floats(m * cols)
                    for mode in LUTMode.allCases {
                        mat.mode = mode
                        var y = [Float](repeating: .nan, count: m * rows)
                        mat.gemm(x, ldx: cols, m: m, &y, ldy: rows, pool: LUTKernelTests.pool, threads: 2)
                        for t in [0, 31, 32, 36] {
                            let xt = Array(x[(t * cols)..<((t + 1) * cols)])
                            var y1 = [Float](repeating: .nan, count: rows)
                            if m >= LUTMatrix.prefillThreshold { mat.mode = .float }
                            mat.gemv(xt, &y1, pool: LUTKernelTests.pool, threads: 1)
                            mat.mode = mode
                            let mag = c.magnitude(xt)
                            for r in 0..<rows {
                                #expect(
                                    abs(y[t * rows + r] - y1[r]) <= 1e-5 * mag[r] + 1e-30,
                                    "\(level) \(mode) bits \(bits) token \(t) row \(r)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// The dense part plus the sparse part equals the reference of both, both modes, all levels, both
    /// schedules, wide and compact sparse storage, for one token, a few (decode batch) and many
    /// (prefill, where the sparse values are added to the decoded rows); a decode batch on the int8
    /// path equals each token's own product bit for bit.
    @Test func lutWithSparsePart() throws {
        var rng = SplitMix(4)
        for level in ISALevel.available {
            try ISALevel.with(level) {
                for (rows, cols) in [(37, 100), (200, 333)] {
                    let c = LUTCase(rows: rows, cols: cols, bits: 4, rng: &rng)
                    let sp = randomCSR(rows: rows, cols: cols, density: 0.05, rng: &rng)
                    for values in [sp.2, sp.2.map { sq_f16_to_f32_1(sq_f32_to_f16_1($0)) }] {
                        let s = try SparseCSRMatrix(
                            rows: rows, columns: cols, rowPointers: sp.0, columnIndices: sp.1, values: values)
                        let m = try LUTMatrix(
                            indices: c.idx, lut: c.lut, rows: rows, columns: cols, bits: 4, sparse: s, mode: .float)
                        #expect(m.kind == "lut4+sparse")
                        for tokens in [1, 5, 20, 40] {
                            let x = rng.floats(tokens * cols)
                            let xs = (0..<tokens).map { Array(x[($0 * cols)..<(($0 + 1) * cols)]) }
                            let refs = xs.map {
                                SparseReference.addMultiply(
                                    rowPointers: sp.0, columnIndices: sp.1, values: values, x: $0, y: c.reference($0))
                            }
                            let mags = xs.map { c.magnitude($0) }, bounds = xs.map { c.int8Bound($0) }
                            for schedule in SparseSchedule.allCases {
                                for mode in LUTMode.allCases {
                                    m.sparseSchedule = schedule
                                    m.mode = mode
                                    var y = [Float](repeating: .nan, count: tokens * rows)
                                    if tokens == 1 {
                                        m.gemv(x, &y, pool: LUTKernelTests.pool, threads: 2)
                                    } else {
                                        x.withUnsafeBufferPointer { xp in
                                            y.withUnsafeMutableBufferPointer { yp in
                                                m.gemm(
                                                    xp.baseAddress!, ldx: cols, m: tokens, yp.baseAddress!, ldy: rows,
                                                    pool: LUTKernelTests.pool, threads: 2)
                                            }
                                        }
                                    }
                                    // Batched decoding (int8, fewer tokens than prefill) gives each token
                                    // its own product bit for bit, sparse part included.
                                    if mode == .int8 && tokens > 1 && tokens < LUTMatrix.prefillThreshold {
                                        for t in 0..<tokens {
                                            var y1 = [Float](repeating: .nan, count: rows)
                                            m.gemv(xs[t], &y1, pool: LUTKernelTests.pool, threads: t % 2 + 1)
                                            for r in 0..<rows where y1[r].bitPattern != y[t * rows + r].bitPattern {
                                                Issue.record(
                                                    "\(level) \(schedule) compact \(s.isCompact): gemv and gemm token \(t) of \(tokens) differ at row \(r)"
                                                )
                                            }
                                        }
                                    }
                                    for t in 0..<tokens {
                                        let exact = mode == .float || tokens >= LUTMatrix.prefillThreshold
                                        for r in 0..<rows {
                                            let slack = 1e-5 * (mags[t][r] + 1) + (exact ? 0 : bounds[t][r] * 1.001)
                                            #expect(
                                                abs(y[t * rows + r] - refs[t][r]) <= slack,
                                                "\(level) \(schedule) \(mode) compact \(s.isCompact) tokens \(tokens) token \(t) row \(r)"
                                            )
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

@Suite struct LUTErrorTests {
    @Test func rejectsBadInput() {
        #expect(throws: LUTError.unsupportedBits(2)) {
            try LUTMatrix(indices: [0, 1], lut: [0, 1, 2, 3], rows: 1, columns: 2, bits: 2)
        }
        #expect(throws: LUTError.indexOutOfRange(row: 0, column: 1, value: 8, bits: 3)) {
            try LUTMatrix(indices: [0, 8], lut: [Float](repeating: 0, count: 8), rows: 1, columns: 2, bits: 3)
        }
        #expect(throws: LUTError.badCount(what: "lookup table", expected: 16, got: 8)) {
            try LUTMatrix(indices: [0, 1], lut: [Float](repeating: 0, count: 8), rows: 1, columns: 2, bits: 4)
        }
        #expect(throws: LUTError.badCount(what: "indices", expected: 4, got: 2)) {
            try LUTMatrix(indices: [0, 1], lut: [Float](repeating: 0, count: 32), rows: 2, columns: 2, bits: 4)
        }
        #expect((try? SqueezeLLMLayout.unpack3(qweight: [0, 0, 0], rows: 1, cols: 31)) == nil)
        let e = LUTError.badDimension(what: "columns", value: 31, requirement: "a multiple of 32")
        #expect(e.description.contains("31"))
    }

    /// The int8 path's 7-bit tables: codes in 0...127, every entry within scale / 2 of its value, the
    /// scale between (max - min) / 127 and 1.5x that, and a squared error no larger than the plain
    /// min-max mapping's (computed here); entries on a 127-step grid come back exactly; a constant
    /// row has scale 0 and its value as offset, and its product is exact.
    @Test func int8TableCodes() throws {
        let lut: [Float] = [-2, -1, -0.5, 0, 0.25, 0.5, 1, 1.5]
        let m = try LUTMatrix(indices: [0, 7], lut: lut, rows: 1, columns: 2, bits: 3)
        let (q, s, o) = m.int8Table(row: 0)
        let range: Float = 3.5
        #expect(s >= range / 127 * 0.9999 && s <= 1.5 * range / 127 * 1.0001)
        var err: Float = 0, minMaxErr: Float = 0
        for e in 0..<8 {
            #expect(q[e] <= 127)
            let v = Float(q[e]) * s + o
            #expect(abs(v - lut[e]) <= s / 2 * 1.0001, "entry \(e): \(v) vs \(lut[e])")
            err += (v - lut[e]) * (v - lut[e])
            let base = range / 127, c = ((lut[e] + 2) / base).rounded()
            minMaxErr += (c * base - 2 - lut[e]) * (c * base - 2 - lut[e])
        }
        #expect(err <= minMaxErr * 1.0001)

        var rng = SplitMix(11)
        let codes: [Float] = [0, 127] + (0..<14).map { _ in Float(Int(rng.next() % 128)) }
        let grid = codes.map { -0.3 + 0.004 * $0 }
        let g = try LUTMatrix(indices: [0, 1], lut: grid, rows: 1, columns: 2, bits: 4)
        let (gq, gs, go) = g.int8Table(row: 0)
        for e in 0..<16 { #expect(abs(Float(gq[e]) * gs + go - grid[e]) <= 1e-6, "grid entry \(e)") }

        let flat = try LUTMatrix(
            indices: [3, 5, 0], lut: [Float](repeating: 0.75, count: 16), rows: 1, columns: 3, bits: 4)
        let (_, fs, fo) = flat.int8Table(row: 0)
        #expect(fs == 0 && fo == 0.75)
        let x: [Float] = [1, -2, 0.5]
        var y: [Float] = [0]
        flat.gemv(x, &y, pool: LUTKernelTests.pool, threads: 1)
        let flatBound: Float = 3 * 0.75 * (2 / 127) / 2  // LUTReference.int8ErrorBound with s = 0
        let flatErr: Float = abs(y[0] + 0.375)
        #expect(flatErr <= flatBound)
    }
}
