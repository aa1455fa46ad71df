import SqueezeCore

/// SqueezeLLM's `qweight` layout: int32 words of shape [cols * bits / 32, rows], column = output row.
///
/// 4-bit: word r of output row o holds the index of input 8r + t in bits 4t..4t+3.
/// 3-bit (the reference's `pack2`): each group of 32 inputs fills 3 words as one little-endian
/// 96-bit stream, input 32g + i at stream bit 3i, so inputs 10 and 21 straddle words.
/// 2-bit and 8-bit (not in the reference): 32/bits inputs per word, input at bit bits*t.
public enum SqueezePacking {
    /// Inputs per packing group, and words per group, for a bit width.
    static func group(_ bits: Int) -> (inputs: Int, words: Int)? {
        switch bits {
        case 2: return (16, 1)
        case 3: return (32, 3)
        case 4: return (8, 1)
        case 8: return (4, 1)
        default: return nil
        }
    }

    /// Words per output row for `cols` inputs (throws unless cols is a multiple of the group size).
    public static func wordRows(cols: Int, bits: Int, tensorName: String = "") throws(QuantError) -> Int {
        guard let g = group(bits) else { throw .unsupportedBits(tensor: tensorName, bits: bits, supported: [2, 3, 4, 8]) }
        guard cols % g.inputs == 0 else {
            throw .badInputDimension(tensor: tensorName, columns: cols, bits: bits, multiple: g.inputs)
        }
        return cols / g.inputs * g.words
    }

    /// Packs row-major indices [rows, cols] into qweight [cols * bits / 32, rows].
    public static func pack(indices: [UInt8], rows: Int, cols: Int, bits: Int,
                            tensorName: String = "") throws(QuantError) -> [Int32] {
        let wr = try wordRows(cols: cols, bits: bits, tensorName: tensorName)
        guard indices.count == rows * cols else {
            throw .shapeMismatch(tensor: tensorName, detail: "\(indices.count) indices for \(rows) x \(cols)")
        }
        let maxIndex = UInt8((1 << bits) - 1)
        var out = [UInt32](repeating: 0, count: wr * rows)
        indices.withUnsafeBufferPointer { ib in
            out.withUnsafeMutableBufferPointer { ob in
                let ip = ib.baseAddress!, op = ob.baseAddress!
                WorkerPool.shared.parallelFor(rows, minBlock: 64) { range, _ in
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

    /// Unpacks qweight [cols * bits / 32, rows] into row-major indices [rows, cols].
    public static func unpack(qweight: [Int32], rows: Int, cols: Int, bits: Int,
                              tensorName: String = "") throws(QuantError) -> [UInt8] {
        let wr = try wordRows(cols: cols, bits: bits, tensorName: tensorName)
        guard qweight.count == wr * rows else {
            throw .shapeMismatch(tensor: tensorName, detail: "qweight has \(qweight.count) words, expected \(wr * rows)")
        }
        var out = [UInt8](repeating: 0, count: rows * cols)
        let mask = UInt32((1 << bits) - 1)
        for o in 0..<rows {
            if bits == 3 {
                for g in 0..<(cols / 32) {
                    let w0 = UInt64(UInt32(bitPattern: qweight[(3 * g) * rows + o]))
                    let w1 = UInt64(UInt32(bitPattern: qweight[(3 * g + 1) * rows + o]))
                    let w2 = UInt64(UInt32(bitPattern: qweight[(3 * g + 2) * rows + o]))
                    let lo = w0 | (w1 << 32)
                    for i in 0..<32 {
                        let bit = 3 * i
                        var v: UInt64
                        if bit + 3 <= 64 { v = lo >> UInt64(bit) }
                        else if bit < 64 { v = (lo >> UInt64(bit)) | (w2 << UInt64(64 - bit)) }
                        else { v = w2 >> UInt64(bit - 64) }
                        out[o * cols + 32 * g + i] = UInt8(truncatingIfNeeded: UInt32(truncatingIfNeeded: v) & mask)
                    }
                }
            } else {
                let per = 32 / bits
                for w in 0..<wr {
                    let word = UInt32(bitPattern: qweight[w * rows + o])
                    for t in 0..<per { out[o * cols + per * w + t] = UInt8((word >> UInt32(bits * t)) & mask) }
                }
            }
        }
        return out
    }

    /// 4-bit packing (see the type's description).
    public static func pack4(indices: [UInt8], rows: Int, cols: Int) throws(QuantError) -> [Int32] {
        try pack(indices: indices, rows: rows, cols: cols, bits: 4)
    }
    /// 3-bit packing in the reference's `pack2` layout.
    public static func pack3(indices: [UInt8], rows: Int, cols: Int) throws(QuantError) -> [Int32] {
        try pack(indices: indices, rows: rows, cols: cols, bits: 3)
    }
    /// Inverse of `pack4`.
    public static func unpack4(qweight: [Int32], rows: Int, cols: Int) throws(QuantError) -> [UInt8] {
        try unpack(qweight: qweight, rows: rows, cols: cols, bits: 4)
    }
    /// Inverse of `pack3`.
    public static func unpack3(qweight: [Int32], rows: Int, cols: Int) throws(QuantError) -> [UInt8] {
        try unpack(qweight: qweight, rows: rows, cols: cols, bits: 3)
    }

    /// A lookup table [rows, 2^bits] as FP16 bit patterns (round to nearest even).
    public static func lutHalf(_ q: QuantizedMatrix) -> [UInt16] { q.lut.map { HalfConversion.toHalf($0) } }
}
