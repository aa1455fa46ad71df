/// Errors raised by the quantization algorithms; each names the tensor (and row, where one applies).
public enum QuantError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A weight is NaN or infinite.
    case nonFiniteWeight(tensor: String, row: Int, column: Int, value: Float)
    /// A sensitivity value is NaN, infinite or negative.
    case invalidSensitivity(tensor: String, row: Int, column: Int, value: Float)
    /// The bit width is not supported by the operation.
    case unsupportedBits(tensor: String, bits: Int, supported: [Int])
    /// The input dimension cannot be packed at this bit width.
    case badInputDimension(tensor: String, columns: Int, bits: Int, multiple: Int)
    /// Buffer sizes or shapes do not agree.
    case shapeMismatch(tensor: String, detail: String)
    /// An option is out of range.
    case invalidOption(String)

    public var description: String {
        func t(_ s: String) -> String { s.isEmpty ? "tensor" : "tensor \(s)" }
        switch self {
        case let .nonFiniteWeight(tensor, row, column, value):
            return
                "\(t(tensor)), row \(row), column \(column): weight is \(value) (NaN or infinite weights cannot be quantized)"
        case let .invalidSensitivity(tensor, row, column, value):
            return "\(t(tensor)), row \(row), column \(column): sensitivity is \(value) (must be finite and >= 0)"
        case let .unsupportedBits(tensor, bits, supported):
            return
                "\(t(tensor)): \(bits)-bit quantization is not supported here (supported: \(supported.map(String.init).joined(separator: ", ")))"
        case let .badInputDimension(tensor, columns, bits, multiple):
            return
                "\(t(tensor)): input dimension \(columns) is not a multiple of \(multiple), required to pack \(bits)-bit indices"
        case let .shapeMismatch(tensor, detail):
            return "\(t(tensor)): \(detail)"
        case let .invalidOption(detail):
            return detail
        }
    }
}
