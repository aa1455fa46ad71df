import CSqueezeKernels
import SqueezeCore
import SqueezeKernels
import Testing

// ---- SqueezeLLM reference packers, written from the format description (not from the unpacker).

/// 4 bits: qweight[r, o] nibble t = index of input 8r + t of output o; qweight is [cols / 8, rows].
func packSqueezeLLM4(_ idx: [UInt8], rows: Int, cols: Int) -> [Int32] {
    var q = [Int32](repeating: 0, count: cols / 8 * rows)
    for o in 0..<rows {
        for i in 0..<cols {
            let r = i / 8, t = i % 8
            var w = UInt32(bitPattern: q[r * rows + o])
            w |= UInt32(idx[o * cols + i]) << UInt32(4 * t)
            q[r * rows + o] = Int32(bitPattern: w)
        }
    }
    return q
}

/// 3 bits (pack2): value j of each 32-group at bit position 3j of the 96-bit little-endian
/// concatenation w0 | w1 << 32 | w2 << 64 — which is exactly the split described for the format.
func packSqueezeLLM3(_ idx: [UInt8], rows: Int, cols: Int) -> [Int32] {
    var q = [Int32](repeating: 0, count: cols / 32 * 3 * rows)
    for o in 0..<rows {
        for g in 0..<(cols / 32) {
            var words: [UInt32] = [0, 0, 0]
            for j in 0..<32 {
                let v = UInt32(idx[o * cols + 32 * g + j])
                for b in 0..<3 where (v >> UInt32(b)) & 1 == 1 {
                    let pos = 3 * j + b
                    words[pos / 32] |= 1 << UInt32(pos % 32)
                }
            }
            for k in 0..<3 { q[(3 * g + k) * rows + o] = Int32(bitPattern: words[k]) }
        }
    }
    return q
}

func randomCSR(rows: Int, cols: Int, density: Double, rng: inout SplitMix) -> ([Int32], [Int32], [Float]) {
    var rp: [Int32] = [0], ci: [Int32] = [], vs: [Float] = []
    for r in 0..<rows {
        // every 5th row empty, row 3 dense, every 11th ten times as dense (rows longer than a chunk of 8)
        if r % 5 != 4 {
            for c in 0..<cols {
                let p = r == 3 ? 0.8 : r % 11 == 6 ? min(1, 10 * density) : density
                if Double(rng.next() >> 11) / Double(1 << 53) < p {
                    ci.append(Int32(c))
                    vs.append(rng.float())
                }
            }
        }
        rp.append(Int32(ci.count))
    }
    return (rp, ci, vs)
}

@Suite struct SqueezeLLMLayoutTests {
    @Test func unpack4RoundTrip() throws {
        var rng = SplitMix(10)
        for (rows, cols) in [(1, 8), (3, 64), (17, 136), (64, 512)] {
            let idx = rng.indices(rows * cols, bits: 4)
            let q = packSqueezeLLM4(idx, rows: rows, cols: cols)
            #expect(try SqueezeLLMLayout.unpack4(qweight: q, rows: rows, cols: cols) == idx)
            let m = try LUTMatrix(squeezeLLMQWeight: q, lut: rng.floats(rows * 16), rows: rows, columns: cols, bits: 4)
            #expect(m.indices(row: rows - 1) == Array(idx[((rows - 1) * cols)...]))
        }
    }

    @Test func unpack3RoundTrip() throws {
        var rng = SplitMix(11)
        for (rows, cols) in [(1, 32), (3, 64), (17, 160), (64, 512)] {
            let idx = rng.indices(rows * cols, bits: 3)
            let q = packSqueezeLLM3(idx, rows: rows, cols: cols)
            #expect(try SqueezeLLMLayout.unpack3(qweight: q, rows: rows, cols: cols) == idx)
            let m = try LUTMatrix(squeezeLLMQWeight: q, lut: rng.floats(rows * 8), rows: rows, columns: cols, bits: 3)
            #expect(m.indices(row: 0) == Array(idx[0..<cols]))
        }
    }

    /// Value 10 and 21 straddle words: check them bit by bit against the format description.
    @Test func unpack3StraddlingValues() throws {
        var idx = [UInt8](repeating: 0, count: 32)
        idx[10] = 0b101
        idx[21] = 0b110
        let q = packSqueezeLLM3(idx, rows: 1, cols: 32)
        let w0 = UInt32(bitPattern: q[0]), w1 = UInt32(bitPattern: q[1]), w2 = UInt32(bitPattern: q[2])
        #expect(w0 >> 30 == 0b01 && w1 & 1 == 1)  // value 10: low 2 bits in w0 30-31, high bit in w1 bit 0
        #expect(w1 >> 31 == 0 && w2 & 3 == 0b11)  // value 21: low bit in w1 bit 31, high 2 bits in w2 0-1
        #expect(try SqueezeLLMLayout.unpack3(qweight: q, rows: 1, cols: 32) == idx)
    }

    @Test func rejectsBadSizes() {
        #expect(throws: LUTError.self) { try SqueezeLLMLayout.unpack4(qweight: [0], rows: 1, cols: 12) }
        #expect(throws: LUTError.self) { try SqueezeLLMLayout.unpack3(qweight: [0, 0], rows: 1, cols: 32) }
        #expect(throws: LUTError.unsupportedBits(5)) {
            try SqueezeLLMLayout.unpack(qweight: [], bits: 5, rows: 1, cols: 32)
        }
    }
}

@Suite struct SparseTests {
    static let pool = WorkerPool(threads: 3)

    /// Products equal the Double reference for one and several tokens, 1-3 threads (cuts at nonzero
    /// quantiles snapped to windows), in both storages: compact (values exact in half precision) and
    /// wide (values that are not, or compact storage refused).
    @Test func spmvAndSpmmMatchReference() throws {
        var rng = SplitMix(20)
        let saved = SparseCSRMatrix.parallelThreshold
        SparseCSRMatrix.parallelThreshold = 0
        defer { SparseCSRMatrix.parallelThreshold = saved }
        for (rows, cols, density) in [
            (1, 1, 1.0), (7, 50, 0.1), (100, 37, 0.0045), (333, 500, 0.02), (64, 4096, 0.0045),
            (3, 2000, 0.3), (97, 70, 0.05),
        ] {
            let (rp, ci, raw) = randomCSR(rows: rows, cols: cols, density: density, rng: &rng)
            let halves = raw.map { sq_f16_to_f32_1(sq_f32_to_f16_1($0)) }
            for (vs, compact) in [(raw, false), (halves, true), (halves, false)] {
                let s = try SparseCSRMatrix(
                    rows: rows, columns: cols, rowPointers: rp, columnIndices: ci, values: vs,
                    compact: compact)
                #expect(s.isCompact == (compact && vs == halves))
                #expect(s.slotCount >= vs.count && s.slotCount % 8 == 0)
                #expect(s.byteCount >= (rows + 1) * 4 + s.slotCount * (s.isCompact ? 4 : 8))
                let back = s.csr
                #expect(back.rowPointers == rp && back.columnIndices == ci && back.values == vs)
                for level in ISALevel.available {
                    ISALevel.with(level) {
                        for threads in [1, 2, 3] {
                            // m > 1 runs in blocks of 8 tokens: 3 (one partial block), 9 and 17 (full blocks plus a tail).
                            for m in [1, 3, 9, 17] {
                                let ldx = cols + 1, ldy = rows + 2
                                let x = rng.floats(m * ldx)
                                var y = rng.floats(m * ldy)
                                var ref = y
                                for t in 0..<m {
                                    let xt = Array(x[(t * ldx)..<(t * ldx + cols)]),
                                        yt = Array(y[(t * ldy)..<(t * ldy + rows)])
                                    let rt = SparseReference.addMultiply(
                                        rowPointers: rp, columnIndices: ci, values: vs, x: xt, y: yt)
                                    for r in 0..<rows { ref[t * ldy + r] = rt[r] }
                                }
                                x.withUnsafeBufferPointer { xp in
                                    y.withUnsafeMutableBufferPointer { yp in
                                        if m == 1 {
                                            s.addMultiply(
                                                xp.baseAddress!, yp.baseAddress!, pool: SparseTests.pool,
                                                threads: threads)
                                        } else {
                                            s.addMultiply(
                                                xp.baseAddress!, ldx: ldx, m: m, yp.baseAddress!, ldy: ldy,
                                                pool: SparseTests.pool, threads: threads)
                                        }
                                    }
                                }
                                for i in 0..<y.count {
                                    #expect(
                                        abs(y[i] - ref[i]) <= 1e-5 * (abs(ref[i]) + Float(cols).squareRoot()),
                                        "\(level) \(rows)x\(cols) compact \(s.isCompact) threads \(threads) m \(m) at \(i): \(y[i]) vs \(ref[i])"
                                    )
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Row ranges that cut windows anywhere (inside one window, across one or several) add exactly the
    /// rows asked for and no others, and each row's sum is bit-identical to the whole matrix's product
    /// of that token alone (any range, any token count, in both storages), and to the portable path's.
    @Test func rowRangesAndBatchesGiveIdenticalSums() throws {
        var rng = SplitMix(21)
        // 150 rows: no window divides the halves (window 128); 576 and 192 rows: windows 144 and 96.
        for (rows, cols, density) in [(150, 90, 0.06), (576, 300, 0.01), (192, 40, 0.08)] {
            let (rp, ci, raw) = randomCSR(rows: rows, cols: cols, density: density, rng: &rng)
            let halves = raw.map { sq_f16_to_f32_1(sq_f32_to_f16_1($0)) }
            let ranges = [
                (0, rows), (5, 20), (5, 40), (32, 64), (31, 33), (40, rows), (0, 1), (rows - 1, rows),
                (10, rows - 10), (64, 100), (rows / 2, rows),
            ]
            for s in [
                try SparseCSRMatrix(rows: rows, columns: cols, rowPointers: rp, columnIndices: ci, values: halves),
                try SparseCSRMatrix(rows: rows, columns: cols, rowPointers: rp, columnIndices: ci, values: raw),
            ] {
                let values = s.csr.values
                let m = 5
                let x = rng.floats(m * cols)
                // One token at a time over all rows, on the portable path: the sums every other call must equal.
                var single = [Float](repeating: 0, count: m * rows)
                ISALevel.with(.scalar) {
                    x.withUnsafeBufferPointer { xp in
                        single.withUnsafeMutableBufferPointer { yp in
                            for t in 0..<m {
                                s.addMultiply(
                                    rows: 0..<rows, xp.baseAddress! + t * cols, ldx: cols, m: 1,
                                    yp.baseAddress! + t * rows, ldy: rows)
                            }
                        }
                    }
                }
                for t in 0..<m {
                    let xt = Array(x[(t * cols)..<((t + 1) * cols)])
                    let full = SparseReference.addMultiply(
                        rowPointers: rp, columnIndices: ci, values: values, x: xt,
                        y: [Float](repeating: 0, count: rows))
                    for r in 0..<rows {
                        #expect(
                            abs(single[t * rows + r] - full[r]) <= 1e-5 * (abs(full[r]) + 10), "row \(r) token \(t)")
                    }
                }
                for level in ISALevel.available {
                    ISALevel.with(level) {
                        for (lo, hi) in ranges {
                            for mm in [1, 4, 5] {
                                var y = [Float](repeating: 0, count: m * rows)
                                x.withUnsafeBufferPointer { xp in
                                    y.withUnsafeMutableBufferPointer { yp in
                                        s.addMultiply(
                                            rows: lo..<hi, xp.baseAddress!, ldx: cols, m: mm, yp.baseAddress!, ldy: rows
                                        )
                                    }
                                }
                                for t in 0..<m {
                                    for r in 0..<rows {
                                        let want: Float = t < mm && (lo..<hi).contains(r) ? single[t * rows + r] : 0
                                        #expect(
                                            y[t * rows + r].bitPattern == want.bitPattern,
                                            "\(level) \(rows) rows \(lo)..<\(hi) m \(mm) token \(t) row \(r) compact \(s.isCompact)"
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

    /// The window divides half the rows when a multiple of 8 from 64 to 256 does, else it is 128; the
    /// layout holds every nonzero once, sorted rows first by count.
    @Test func windowsAndLayout() throws {
        #expect(sq_sell_window(576) == 144)
        #expect(sq_sell_window(1536) == 256)
        #expect(sq_sell_window(192) == 96)
        #expect(sq_sell_window(11008) == 128)
        #expect(sq_sell_window(150) == 128)
        #expect(sq_sell_window(1) == 128)
        var rng = SplitMix(22)
        let (rp, ci, vs) = randomCSR(rows: 300, cols: 64, density: 0.05, rng: &rng)
        #expect((0..<300).contains { rp[$0 + 1] - rp[$0] > 2 * Int32(SQ_SELL_CHUNK) })
        let s = try SparseCSRMatrix(
            rows: 300, columns: 64, rowPointers: rp, columnIndices: ci, values: vs, compact: false)
        let back = s.csr
        #expect(back.rowPointers == rp && back.columnIndices == ci && back.values == vs)
        // Every lane holds a chunk of 1...8 nonzeros of a row of its window; inside a window counts do
        // not increase; a slice is as deep as its longest chunk; the chunks of a row add up to the row.
        var perRow = [Int](repeating: 0, count: 300)
        let (windowSlices, sliceLevels, laneRows, laneCounts) = s.layout
        #expect(s.slotCount == Int(sliceLevels.last!) * 8 && s.slotCount >= vs.count)
        for w in 0..<(windowSlices.count - 1) {
            var last = Int.max
            for sl in Int(windowSlices[w])..<Int(windowSlices[w + 1]) {
                var deepest = 0
                for l in 0..<8 {
                    let n = Int(laneCounts[sl * 8 + l])
                    if laneRows[sl * 8 + l] == UInt16(SQ_SELL_EMPTY) { #expect(n == 0); continue }
                    let r = w * s.window + Int(laneRows[sl * 8 + l])
                    #expect(r < min(300, (w + 1) * s.window))
                    #expect(n >= 1 && n <= Int(SQ_SELL_CHUNK) && n <= last)
                    perRow[r] += n
                    last = n
                    deepest = max(deepest, n)
                }
                #expect(deepest == Int(sliceLevels[sl + 1] - sliceLevels[sl]))
            }
        }
        #expect(perRow == (0..<300).map { Int(rp[$0 + 1] - rp[$0]) })
    }

    @Test func buildsFromEntriesAndValidates() throws {
        let s = try SparseCSRMatrix(rows: 3, columns: 4, entries: [(2, 1, 1), (0, 3, 2), (2, 1, 0.5), (0, 0, -1)])
        let csr = s.csr
        #expect(csr.rowPointers == [0, 2, 2, 3])
        #expect(csr.columnIndices == [0, 3, 1])
        #expect(csr.values == [-1, 2, 1.5])
        #expect(throws: LUTError.self) {
            try SparseCSRMatrix(rows: 2, columns: 2, rowPointers: [0, 2, 1], columnIndices: [0], values: [1])
        }
        #expect(throws: LUTError.self) {
            try SparseCSRMatrix(rows: 1, columns: 2, rowPointers: [0, 1], columnIndices: [2], values: [1])
        }
    }
}
