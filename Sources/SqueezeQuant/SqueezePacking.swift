import SqueezeCore
import SqueezeKernels

/// SqueezeLLM's `qweight` packing with the quantizer's errors (`QuantError`, naming the tensor): the
/// bit layout itself is `SqueezeLLMLayout`'s (see there), shared with the loader and the converters.
public enum SqueezePacking {
    /// Inputs per packing group, and words per group, for a bit width.
    static func group(_ bits: Int) -> (inputs: Int, words: Int)? { SqueezeLLMLayout.group(bits: bits) }

    /// Words per output row for `cols` inputs (throws unless cols is a multiple of the group size).
    public static func wordRows(cols: Int, bits: Int, tensorName: String = "") throws(QuantError) -> Int {
        guard let g = group(bits) else {
            throw .unsupportedBits(tensor: tensorName, bits: bits, supported: [2, 3, 4, 8])
        }
        guard cols % g.inputs == 0 else {
            throw .badInputDimension(tensor: tensorName, columns: cols, bits: bits, multiple: g.inputs)
        }
        return cols / g.inputs * g.words
    }

    /// Packs row-major indices [rows, cols] into qweight [cols * bits / 32, rows].
    public static func pack(
        indices: [UInt8], rows: Int, cols: Int, bits: Int,
        tensorName: String = ""
    ) throws(QuantError) -> [Int32] {
        _ = try wordRows(cols: cols, bits: bits, tensorName: tensorName)
        guard indices.count == rows * cols else {
            throw .shapeMismatch(tensor: tensorName, detail: "\(indices.count) indices for \(rows) x \(cols)")
        }
        do { return try SqueezeLLMLayout.pack(indices: indices, bits: bits, rows: rows, cols: cols) } catch {
            throw .shapeMismatch(tensor: tensorName, detail: "\(error)")
        }
    }

    /// Unpacks qweight [cols * bits / 32, rows] into row-major indices [rows, cols].
    public static func unpack(
        qweight: [Int32], rows: Int, cols: Int, bits: Int,
        tensorName: String = ""
    ) throws(QuantError) -> [UInt8] {
        let wr = try wordRows(cols: cols, bits: bits, tensorName: tensorName)
        guard qweight.count == wr * rows else {
            throw .shapeMismatch(
                tensor: tensorName, detail: "qweight has \(qweight.count) words, expected \(wr * rows)")
        }
        do { return try SqueezeLLMLayout.unpack(qweight: qweight, bits: bits, rows: rows, cols: cols) } catch {
            throw .shapeMismatch(tensor: tensorName, detail: "\(error)")
        }
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
