import SqueezeCore

/// SqueezeLLM's on-disk packing of quantized indices, and its inverse: the one implementation that
/// the quantizer (packing), the loader and the converters (unpacking) share.
///
/// `qweight` is int32 [in * bits / 32, out] (row-major; column o is output row o).
/// - 4 bits: `qweight[r, o]` nibble t (bits 4t..4t+3) is the index of input 8r + t of output o.
/// - 3 bits (the reference's `pack2`): inputs in groups of 32, three words w0, w1, w2 =
///   `qweight[3g ..< 3g + 3, o]` read as one little-endian 96-bit stream, input 32g + i at stream bit
///   3i: w0 holds values 0..9 at bit 3j and value 10's low 2 bits at bits 30-31; w1 holds value 10's
///   high bit at bit 0, values 11..20 at bits 1 + 3(j - 11) and value 21's low bit at bit 31; w2 holds
///   value 21's high 2 bits at bits 0-1 and values 22..31 at bits 2 + 3(j - 22).
/// - 2 and 8 bits (not in the reference): 32/bits inputs per word, input t at bits bits*t.
public enum SqueezeLLMLayout {
    /// Inputs per packing group and words per group for a bit width (nil: no such packing).
    public static func group(bits: Int) -> (inputs: Int, words: Int)? {
        switch bits {
        case 2: return (16, 1)
        case 3: return (32, 3)
        case 4: return (8, 1)
        case 8: return (4, 1)
        default: return nil
        }
    }

    /// Words per output row for `cols` inputs.
    static func wordRows(rows: Int, cols: Int, bits: Int) throws -> Int {
        guard let g = group(bits: bits) else { throw LUTError.unsupportedBits(bits) }
        guard rows > 0 else { throw LUTError.badDimension(what: "rows", value: rows, requirement: "positive") }
        guard cols > 0, cols % g.inputs == 0 else {
            throw LUTError.badDimension(
                what: "columns", value: cols,
                requirement: "a positive multiple of \(g.inputs) for SqueezeLLM \(bits)-bit packing")
        }
        return cols / g.inputs * g.words
    }

    /// Unpacks a 4-bit `qweight` [in / 8, out] into indices row-major [out, in] (one byte each).
    public static func unpack4(qweight: [Int32], rows: Int, cols: Int) throws -> [UInt8] {
        try unpack(qweight: qweight, bits: 4, rows: rows, cols: cols)
    }

    /// Unpacks a 3-bit `qweight` [in * 3 / 32, out] into indices row-major [out, in] (one byte each).
    public static func unpack3(qweight: [Int32], rows: Int, cols: Int) throws -> [UInt8] {
        try unpack(qweight: qweight, bits: 3, rows: rows, cols: cols)
    }

    /// Unpacks `qweight` [cols * bits / 32, rows] of the given width (2, 3, 4 or 8 bits) into indices
    /// row-major [rows, cols] (one byte each).
    public static func unpack(qweight: [Int32], bits: Int, rows: Int, cols: Int) throws -> [UInt8] {
        let words = try wordRows(rows: rows, cols: cols, bits: bits)
        guard qweight.count == words * rows else {
            throw LUTError.badCount(what: "qweight", expected: words * rows, got: qweight.count)
        }
        var out = [UInt8](repeating: 0, count: rows * cols)
        let mask = UInt32((1 << bits) - 1)
        qweight.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                if bits == 3 {
                    for g in 0..<(cols / 32) {
                        for row in 0..<rows {
                            let w0 = UInt32(bitPattern: q[(3 * g) * rows + row])
                            let w1 = UInt32(bitPattern: q[(3 * g + 1) * rows + row])
                            let w2 = UInt32(bitPattern: q[(3 * g + 2) * rows + row])
                            let base = row * cols + 32 * g
                            for j in 0..<10 { o[base + j] = UInt8((w0 >> UInt32(3 * j)) & 7) }
                            o[base + 10] = UInt8(((w0 >> 30) & 3) | ((w1 & 1) << 2))
                            for j in 11..<21 { o[base + j] = UInt8((w1 >> UInt32(1 + 3 * (j - 11))) & 7) }
                            o[base + 21] = UInt8(((w1 >> 31) & 1) | ((w2 & 3) << 1))
                            for j in 22..<32 { o[base + j] = UInt8((w2 >> UInt32(2 + 3 * (j - 22))) & 7) }
                        }
                    }
                } else {
                    let per = 32 / bits
                    for r in 0..<words {
                        for row in 0..<rows {
                            let w = UInt32(bitPattern: q[r * rows + row])
                            let base = row * cols + per * r
                            for t in 0..<per { o[base + t] = UInt8((w >> UInt32(bits * t)) & mask) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Packs row-major indices [rows, cols] (2, 3, 4 or 8 bits each) into `qweight` [cols * bits / 32, rows].
    public static func pack(
        indices: [UInt8], bits: Int, rows: Int, cols: Int, pool: WorkerPool = .shared
    ) throws -> [Int32] {
        let wr = try wordRows(rows: rows, cols: cols, bits: bits)
        guard indices.count == rows * cols else {
            throw LUTError.badCount(what: "indices", expected: rows * cols, got: indices.count)
        }
        let maxIndex = UInt8((1 << bits) - 1)
        var out = [UInt32](repeating: 0, count: wr * rows)
        indices.withUnsafeBufferPointer { ib in
            out.withUnsafeMutableBufferPointer { ob in
                let ip = ib.baseAddress!, op = ob.baseAddress!
                pool.parallelFor(rows, minBlock: 64) { range, _ in
                    for o in range {
                        let src = ip + o * cols
                        if bits == 3 {
                            for g in 0..<(cols / 32) {
                                var lo: UInt64 = 0, hi: UInt32 = 0  // the 96-bit stream
                                for i in 0..<32 {
                                    let v = UInt64(src[32 * g + i] & maxIndex)
                                    let bit = 3 * i
                                    if bit < 64 {
                                        lo |= v << UInt64(bit)
                                        if bit > 61 { hi |= UInt32(truncatingIfNeeded: v >> UInt64(64 - bit)) }
                                    } else {
                                        hi |= UInt32(truncatingIfNeeded: v << UInt64(bit - 64))
                                    }
                                }
                                op[(3 * g) * rows + o] = UInt32(truncatingIfNeeded: lo)
                                op[(3 * g + 1) * rows + o] = UInt32(truncatingIfNeeded: lo >> 32)
                                op[(3 * g + 2) * rows + o] = hi
                            }
                        } else {
                            let per = 32 / bits
                            for w in 0..<wr {
                                var word: UInt32 = 0
                                for t in 0..<per { word |= UInt32(src[per * w + t] & maxIndex) << UInt32(bits * t) }
                                op[w * rows + o] = word
                            }
                        }
                    }
                }
            }
        }
        return out.map { Int32(bitPattern: $0) }
    }
}
