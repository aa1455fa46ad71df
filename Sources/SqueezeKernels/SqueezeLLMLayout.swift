/// SqueezeLLM's on-disk packing of quantized indices, and its inverse.
///
/// `qweight` is int32 [in * bits / 32, out] (row-major; column o is output row o).
/// - 4 bits: `qweight[r, o]` nibble t (bits 4t..4t+3) is the index of input 8r + t of output o.
/// - 3 bits (`pack2`): inputs in groups of 32, three words w0, w1, w2 = `qweight[3g ..< 3g + 3, o]`;
///   w0 holds values 0..9 at bit 3j and value 10's low 2 bits at bits 30-31; w1 holds value 10's high
///   bit at bit 0, values 11..20 at bits 1 + 3(j - 11) and value 21's low bit at bit 31; w2 holds
///   value 21's high 2 bits at bits 0-1 and values 22..31 at bits 2 + 3(j - 22).
public enum SqueezeLLMLayout {
    /// Unpacks a 4-bit `qweight` [in / 8, out] into indices row-major [out, in] (one byte each).
    public static func unpack4(qweight: [Int32], rows: Int, cols: Int) throws -> [UInt8] {
        guard rows > 0 else { throw LUTError.badDimension(what: "rows", value: rows, requirement: "positive") }
        guard cols > 0, cols % 8 == 0 else {
            throw LUTError.badDimension(what: "columns", value: cols, requirement: "a positive multiple of 8 for SqueezeLLM 4-bit packing")
        }
        let words = cols / 8
        guard qweight.count == words * rows else { throw LUTError.badCount(what: "qweight", expected: words * rows, got: qweight.count) }
        var out = [UInt8](repeating: 0, count: rows * cols)
        qweight.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                for r in 0..<words {
                    for row in 0..<rows {
                        let w = UInt32(bitPattern: q[r * rows + row])
                        let base = row * cols + 8 * r
                        for t in 0..<8 { o[base + t] = UInt8((w >> UInt32(4 * t)) & 15) }
                    }
                }
            }
        }
        return out
    }

    /// Unpacks a 3-bit `qweight` [in * 3 / 32, out] into indices row-major [out, in] (one byte each).
    public static func unpack3(qweight: [Int32], rows: Int, cols: Int) throws -> [UInt8] {
        guard rows > 0 else { throw LUTError.badDimension(what: "rows", value: rows, requirement: "positive") }
        guard cols > 0, cols % 32 == 0 else {
            throw LUTError.badDimension(what: "columns", value: cols, requirement: "a positive multiple of 32 for SqueezeLLM 3-bit packing")
        }
        let groups = cols / 32
        guard qweight.count == 3 * groups * rows else {
            throw LUTError.badCount(what: "qweight", expected: 3 * groups * rows, got: qweight.count)
        }
        var out = [UInt8](repeating: 0, count: rows * cols)
        qweight.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                for g in 0..<groups {
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
            }
        }
        return out
    }

    /// Unpacks `qweight` of the given width (3 or 4 bits).
    public static func unpack(qweight: [Int32], bits: Int, rows: Int, cols: Int) throws -> [UInt8] {
        switch bits {
        case 4: return try unpack4(qweight: qweight, rows: rows, cols: cols)
        case 3: return try unpack3(qweight: qweight, rows: rows, cols: cols)
        default: throw LUTError.unsupportedBits(bits)
        }
    }
}
