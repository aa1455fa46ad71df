/// The element types Squeeze reads and writes.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f64, f32, f16, bf16
    case i64, i32, i16, i8
    case u64, u32, u16, u8
    case bool

    /// Size of one element in bytes.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    /// Whether the type is a floating-point type.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: return true
        default: return false
        }
    }

    /// The dtype name used in safetensors headers ("F32", "BF16", "I64", "BOOL", ...).
    public var safetensorsName: String {
        switch self {
        case .f64: return "F64"
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .i64: return "I64"
        case .i32: return "I32"
        case .i16: return "I16"
        case .i8: return "I8"
        case .u64: return "U64"
        case .u32: return "U32"
        case .u16: return "U16"
        case .u8: return "U8"
        case .bool: return "BOOL"
        }
    }

    /// Parses a safetensors dtype name; nil when unknown.
    public init?(safetensorsName: String) {
        guard let d = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = d
    }

    /// Parses a user-facing name such as "f16", "bf16", "f32" (case-insensitive).
    public init?(userName: String) {
        let n = userName.lowercased()
        if let d = DType(rawValue: n) { self = d; return }
        switch n {
        case "float32", "fp32": self = .f32
        case "float16", "fp16", "half": self = .f16
        case "bfloat16": self = .bf16
        default: return nil
        }
    }
}
