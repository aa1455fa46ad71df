/// Errors from building look-up-table (LUT) quantized and sparse operators.
public enum LUTError: Error, CustomStringConvertible, Equatable {
    /// Only 3-bit and 4-bit tables are supported.
    case unsupportedBits(Int)
    /// A buffer does not have the element count its shape implies.
    case badCount(what: String, expected: Int, got: Int)
    /// A dimension is not positive or not a required multiple.
    case badDimension(what: String, value: Int, requirement: String)
    /// An index does not fit in the table.
    case indexOutOfRange(row: Int, column: Int, value: Int, bits: Int)
    /// A CSR matrix is malformed.
    case badSparse(String)

    public var description: String {
        switch self {
        case let .unsupportedBits(b): return "unsupported LUT width \(b) bits (3 or 4 are supported)"
        case let .badCount(what, e, g): return "\(what): expected \(e) elements, got \(g)"
        case let .badDimension(what, v, req): return "\(what) = \(v): must be \(req)"
        case let .indexOutOfRange(r, c, v, b): return "index \(v) at row \(r), column \(c) does not fit in \(b) bits"
        case let .badSparse(s): return "malformed CSR matrix: \(s)"
        }
    }
}
