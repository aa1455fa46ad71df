import Foundation
import SqueezeCore

/// Writes GGUF v3 files: metadata and plain (F32/F16/BF16/integer) tensors, through `AtomicFile`
/// (temporary file beside, fsynced, renamed over the destination). Used for vocabulary-only files (`tokenizer.gguf`) beside converted models.
public enum GGUFWriter {
    /// Writes `metadata` (in the given order) and `tensors` to `path`.
    public static func write(
        metadata: [(String, GGUFValue)], tensors: [Tensor] = [], to path: String, alignment: Int = 32
    ) throws {
        var out = Data()
        func u32(_ v: UInt32) { var x = v.littleEndian; withUnsafeBytes(of: &x) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { var x = v.littleEndian; withUnsafeBytes(of: &x) { out.append(contentsOf: $0) } }
        func str(_ s: String) { let b = Array(s.utf8); u64(UInt64(b.count)); out.append(contentsOf: b) }
        func typeCode(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint8: return 0
            case .int8: return 1
            case .uint16: return 2
            case .int16: return 3
            case .uint32: return 4
            case .int32: return 5
            case .float32: return 6
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            case .uint64: return 10
            case .int64: return 11
            case .float64: return 12
            }
        }
        func value(_ v: GGUFValue) {
            switch v {
            case let .uint8(x): out.append(x)
            case let .int8(x): out.append(UInt8(bitPattern: x))
            case let .uint16(x): var y = x.littleEndian; withUnsafeBytes(of: &y) { out.append(contentsOf: $0) }
            case let .int16(x): var y = x.littleEndian; withUnsafeBytes(of: &y) { out.append(contentsOf: $0) }
            case let .uint32(x): u32(x)
            case let .int32(x): u32(UInt32(bitPattern: x))
            case let .float32(x): u32(x.bitPattern)
            case let .bool(x): out.append(x ? 1 : 0)
            case let .string(s): str(s)
            case let .uint64(x): u64(x)
            case let .int64(x): u64(UInt64(bitPattern: x))
            case let .float64(x): u64(x.bitPattern)
            case let .array(items):
                u32(items.first.map(typeCode) ?? 8)
                u64(UInt64(items.count))
                for i in items { value(i) }
            }
        }
        func ggmlType(_ d: DType, _ name: String) throws -> GGMLType {
            switch d {
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            case .i8: return .i8
            case .i16: return .i16
            case .i32: return .i32
            case .i64: return .i64
            case .f64: return .f64
            default: throw FormatError.unsupportedDType(file: path, tensor: name, dtype: d.rawValue)
            }
        }
        out.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(typeCode(v)); value(v) }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            str(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }
            u32(try ggmlType(t.dtype, t.name).rawValue)
            u64(UInt64(offset))
            offsets.append(offset)
            offset += (t.byteCount + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out.append(Data(bytes: t.data, count: t.byteCount))
            while out.count % alignment != 0 { out.append(0) }
        }
        // An existing file at `path` is replaced only by the final rename.
        try AtomicFile.write(out, to: path)
    }

    /// Writes the `tokenizer.*` metadata of `source` (plus `general.architecture`) as a vocabulary-only GGUF.
    public static func writeVocabulary(of source: GGUFFile, to path: String) throws {
        var md: [(String, GGUFValue)] = []
        if let a = source.metadata["general.architecture"] { md.append(("general.architecture", a)) }
        for k in source.metadataKeys where k.hasPrefix("tokenizer.") { md.append((k, source.metadata[k]!)) }
        try write(metadata: md, to: path)
    }
}
