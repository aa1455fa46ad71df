import SqueezeCore

/// GGML tensor types found in GGUF files, with their block geometry.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .i8, .i16, .i32, .i64, .f64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl: return 32
        default: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8: return 1
        case .i64, .f64: return 8
        case .q4_0: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q8_1: return 36
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .q8_K: return 292
        case .iq2_xxs: return 66
        case .iq2_xs: return 74
        case .iq3_xxs: return 98
        case .iq1_s: return 50
        case .iq4_nl: return 18
        case .iq3_s: return 110
        case .iq2_s: return 82
        case .iq4_xs: return 136
        case .iq1_m: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        }
    }

    /// The name llama.cpp uses ("Q4_1", "F32", ...).
    public var name: String {
        switch self {
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        default: return String(describing: self).uppercased()
        }
    }

    /// The plain dtype when the type is not block-quantized.
    public var plainDType: DType? {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .f64: return .f64
        case .i8: return .i8
        case .i16: return .i16
        case .i32: return .i32
        case .i64: return .i64
        default: return nil
        }
    }
}

/// A GGUF metadata value.
public indirect enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case float32(Float), bool(Bool), string(String), uint64(UInt64), int64(Int64), float64(Double)
    case array([GGUFValue])

    /// The value as an integer, when it is one.
    public var int: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        case let .bool(v): return v ? 1 : 0
        default: return nil
        }
    }
    /// The value as a Double, when it is numeric.
    public var double: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return int.map(Double.init)
        }
    }
    public var string: String? { if case let .string(s) = self { return s }; return nil }
    public var bool: Bool? { if case let .bool(b) = self { return b }; return int.map { $0 != 0 } }
    public var array: [GGUFValue]? { if case let .array(a) = self { return a }; return nil }
    public var stringArray: [String]? { array?.compactMap { $0.string } }

    public var description: String {
        switch self {
        case let .string(s): return s.count > 80 ? "\"\(s.prefix(77))...\"" : "\"\(s)\""
        case let .array(a):
            let head = a.prefix(5).map { $0.description }.joined(separator: ", ")
            return a.count > 5 ? "[\(head), ... (\(a.count) items)]" : "[\(head)]"
        case let .float32(v): return "\(v)"
        case let .float64(v): return "\(v)"
        case let .bool(v): return "\(v)"
        // Printed from the stored value: a u64 at or above 2^63 has no Int.
        case let .uint64(v): return "\(v)"
        case let .int64(v): return "\(v)"
        default: return int.map { "\($0)" } ?? "?"
        }
    }
}

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions as GGUF stores them: `dims[0]` is the fastest-varying (columns).
    public let dims: [Int]
    public let type: GGMLType
    /// Offset of the data from the start of the data section.
    public let offset: Int
    /// Row-major shape, outermost first (reversed `dims`).
    public var shape: [Int] { dims.reversed() }
    public var elementCount: Int { dims.reduce(1, *) }
    /// Bytes of data.
    public var byteCount: Int { elementCount / type.blockSize * type.blockBytes }
}

/// A GGUF file (v2 or v3), memory-mapped: metadata, tensor infos and access to the raw data.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let version: Int
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let tensorIndex: [String: Int]
    /// Byte offset of the data section.
    public let dataOffset: Int
    public let alignment: Int

    /// Opens and validates `path`.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        var r = ByteReader(file: file, path: path)
        let magic = try r.u32()
        guard magic == 0x4655_4747 else {  // "GGUF" little-endian
            throw FormatError.corrupt(file: path, detail: "not a GGUF file (magic bytes are not 'GGUF')")
        }
        let v = Int(try r.u32())
        guard v == 2 || v == 3 else { throw FormatError.unsupportedVersion(file: path, version: v) }
        version = v
        let nTensors = try r.u64()
        let nKV = try r.u64()
        guard nTensors < 1_000_000, nKV < 1_000_000 else {
            throw FormatError.corrupt(
                file: path, detail: "implausible counts: \(nTensors) tensors, \(nKV) metadata entries")
        }
        var keys: [String] = []
        var md: [String: GGUFValue] = [:]
        for _ in 0..<nKV {
            let key = try r.string()
            let t = try r.u32()
            let value = try r.value(type: t, key: key, depth: 0)
            keys.append(key)
            md[key] = value
        }
        metadataKeys = keys
        metadata = md
        var infos: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for _ in 0..<nTensors {
            let name = try r.string()
            let nd = Int(try r.u32())
            guard nd >= 1 && nd <= 4 else {
                throw FormatError.corrupt(file: path, detail: "tensor '\(name)': \(nd) dimensions")
            }
            var dims: [Int] = []
            for _ in 0..<nd {
                let d = try r.u64()
                guard d > 0 && d < (1 << 40) else {
                    throw FormatError.corrupt(file: path, detail: "tensor '\(name)': dimension \(d)")
                }
                dims.append(Int(d))
            }
            let traw = try r.u32()
            guard let t = GGMLType(rawValue: traw) else {
                throw FormatError.unsupportedDType(file: path, tensor: name, dtype: "GGML type \(traw)")
            }
            let off = try r.u64()
            guard off < (1 << 52) else {
                throw FormatError.corrupt(file: path, detail: "tensor '\(name)': offset \(off)")
            }
            var count = 1
            for d in dims {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p < (1 << 52) else {
                    throw FormatError.corrupt(file: path, detail: "tensor '\(name)': \(dims) has too many elements")
                }
                count = p
            }
            guard dims[0] % t.blockSize == 0 else {
                throw FormatError.corrupt(
                    file: path,
                    detail:
                        "tensor '\(name)': row length \(dims[0]) is not a multiple of the \(t.name) block size \(t.blockSize)"
                )
            }
            guard index[name] == nil else {
                throw FormatError.corrupt(file: path, detail: "tensor '\(name)' appears twice")
            }
            index[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, dims: dims, type: t, offset: Int(off)))
        }
        tensors = infos
        tensorIndex = index
        alignment = md["general.alignment"].map { $0.int ?? -1 } ?? 32
        // Bounded so the data offset below cannot overflow.
        guard alignment > 0 && alignment <= 1 << 30 && alignment & (alignment - 1) == 0 else {
            throw FormatError.invalidField(
                file: path, field: "general.alignment", detail: "\(alignment) is not a power of two")
        }
        dataOffset = (r.offset + alignment - 1) / alignment * alignment
        for info in infos {
            guard info.offset % alignment == 0 else {
                throw FormatError.corrupt(
                    file: path, detail: "tensor '\(info.name)': offset \(info.offset) not aligned to \(alignment)")
            }
            let end = dataOffset + info.offset + info.byteCount
            guard end <= file.size else {
                throw FormatError.truncated(
                    file: path, detail: "tensor '\(info.name)' ends at byte \(end) but the file has \(file.size)")
            }
        }
    }

    /// The info of a tensor, or nil.
    public func info(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The raw bytes of a tensor.
    public func rawData(_ info: GGUFTensorInfo) -> UnsafeRawPointer {
        file.base! + dataOffset + info.offset
    }

    /// A tensor as stored when its type is plain (F32, F16, BF16, integers): a view, no copy.
    /// Quantized types are dequantized to F32 into a new buffer.
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = info(name) else { throw FormatError.missingTensor(file: path, tensor: name) }
        if let dt = info.type.plainDType {
            return Tensor(name: name, dtype: dt, shape: info.shape, data: rawData(info), owner: file)
        }
        return try dequantized(name)
    }

    /// A tensor dequantized (or converted) to F32 in a new aligned buffer.
    public func dequantized(_ name: String) throws -> Tensor {
        guard let info = info(name) else { throw FormatError.missingTensor(file: path, tensor: name) }
        let buf = AlignedBuffer<Float>(count: info.elementCount)
        try GGMLDequantizer.dequantize(
            type: info.type, source: rawData(info), count: info.elementCount,
            into: buf.pointer, file: path, tensor: name)
        return .owning(buf, name: name, dtype: .f32, shape: info.shape)
    }

    /// A metadata value that must be present.
    public func require(_ key: String) throws -> GGUFValue {
        guard let v = metadata[key] else { throw FormatError.missingField(file: path, field: key) }
        return v
    }
}

/// Little-endian reader over a mapped file, with bounds checks that name the file.
struct ByteReader {
    let file: MappedFile
    let path: String
    var offset = 0

    init(file: MappedFile, path: String) { self.file = file; self.path = path }

    mutating func take(_ n: Int) throws -> UnsafeRawPointer {
        guard n >= 0, offset <= file.size, n <= file.size - offset, let b = file.base else {
            throw FormatError.truncated(
                file: path, detail: "needed \(n) bytes at offset \(offset), file has \(file.size)")
        }
        defer { offset += n }
        return b + offset
    }
    mutating func u8() throws -> UInt8 { try take(1).load(as: UInt8.self) }
    mutating func u16() throws -> UInt16 { try take(2).loadUnaligned(as: UInt16.self) }
    mutating func u32() throws -> UInt32 { try take(4).loadUnaligned(as: UInt32.self) }
    mutating func u64() throws -> UInt64 { try take(8).loadUnaligned(as: UInt64.self) }
    mutating func string() throws -> String {
        let n = try u64()
        guard n < (1 << 31) else {
            throw FormatError.corrupt(file: path, detail: "string of length \(n) at offset \(offset - 8)")
        }
        let p = try take(Int(n))
        return String(decoding: UnsafeRawBufferPointer(start: p, count: Int(n)), as: UTF8.self)
    }
    /// Deepest nesting of arrays of arrays accepted (llama.cpp writes at most one level).
    static let maxArrayDepth = 8

    /// The smallest number of bytes one value of a type takes in the file (an array: its type and count).
    static func minimumBytes(type: UInt32) -> Int {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 9: return 12
        default: return 8
        }
    }

    mutating func value(type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try u8())
        case 1: return .int8(Int8(bitPattern: try u8()))
        case 2: return .uint16(try u16())
        case 3: return .int16(Int16(bitPattern: try u16()))
        case 4: return .uint32(try u32())
        case 5: return .int32(Int32(bitPattern: try u32()))
        case 6: return .float32(Float(bitPattern: try u32()))
        case 7:
            let b = try u8()
            guard b <= 1 else { throw FormatError.corrupt(file: path, detail: "metadata '\(key)': bool byte \(b)") }
            return .bool(b == 1)
        case 8: return .string(try string())
        case 9:
            let et = try u32()
            let n = try u64()
            guard n < (1 << 32), et != 9 || n < 1 << 20 else {
                throw FormatError.corrupt(file: path, detail: "metadata '\(key)': array of \(n) items")
            }
            guard et != 9 || depth < Self.maxArrayDepth else {
                throw FormatError.corrupt(
                    file: path, detail: "metadata '\(key)': arrays nested deeper than \(Self.maxArrayDepth)")
            }
            // Refused before allocating when the rest of the file cannot hold n items.
            let (need, o) = Int(n).multipliedReportingOverflow(by: Self.minimumBytes(type: et))
            guard !o, need <= file.size - offset else {
                throw FormatError.truncated(
                    file: path,
                    detail:
                        "metadata '\(key)': array of \(n) items needs at least \(o ? Int.max : need) bytes at offset \(offset), file has \(file.size)"
                )
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(min(Int(n), 1 << 20))
            for _ in 0..<n { items.append(try value(type: et, key: key, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint64(try u64())
        case 11: return .int64(Int64(bitPattern: try u64()))
        case 12: return .float64(Double(bitPattern: try u64()))
        default: throw FormatError.corrupt(file: path, detail: "metadata '\(key)': unknown value type \(type)")
        }
    }
}
