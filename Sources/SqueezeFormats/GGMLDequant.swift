import SqueezeCore

/// Dequantization of GGML block types to F32, following ggml's reference (`dequantize_row_*`).
public enum GGMLDequantizer {
    /// Types this build can dequantize.
    public static var supportedTypes: Set<GGMLType> {
        [.f32, .f16, .bf16, .f64, .i8, .i16, .i32, .q4_0, .q4_1, .q8_0]
    }

    /// Dequantizes `count` elements (a multiple of the block size) from `source` into `out`.
    /// Large inputs are split over the shared worker pool by blocks.
    public static func dequantize(type: GGMLType, source: UnsafeRawPointer, count: Int,
                                  into out: UnsafeMutablePointer<Float>, file: String, tensor: String) throws {
        guard supportedTypes.contains(type) else {
            throw FormatError.unsupportedDType(file: file, tensor: tensor, dtype: type.name)
        }
        guard count % type.blockSize == 0 else {
            throw FormatError.corrupt(file: file, detail: "tensor '\(tensor)': \(count) elements is not a multiple of the \(type.name) block size")
        }
        let nBlocks = count / type.blockSize
        let chunk = max(1, 65536 / type.blockSize)
        let nChunks = (nBlocks + chunk - 1) / chunk
        WorkerPool.shared.run(tasks: nChunks) { c, _ in
            let b0 = c * chunk
            let b1 = min(nBlocks, b0 + chunk)
            dequantizeBlocks(type: type, source: source + b0 * type.blockBytes, blocks: b1 - b0,
                             into: out + b0 * type.blockSize)
        }
    }

    @inline(__always) static func f16(_ p: UnsafeRawPointer, _ off: Int) -> Float {
        HalfConversion.toFloat(p.loadUnaligned(fromByteOffset: off, as: UInt16.self))
    }

    /// Dequantizes whole blocks (no checks).
    static func dequantizeBlocks(type: GGMLType, source: UnsafeRawPointer, blocks: Int, into y: UnsafeMutablePointer<Float>) {
        let bb = type.blockBytes
        switch type {
        case .f32:
            y.update(from: source.assumingMemoryBound(to: Float.self), count: blocks)
        case .f16:
            HalfConversion.toFloat(source.assumingMemoryBound(to: UInt16.self), y, count: blocks)
        case .bf16:
            HalfConversion.bf16ToFloat(source.assumingMemoryBound(to: UInt16.self), y, count: blocks)
        case .f64:
            for i in 0..<blocks { y[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .i8:
            for i in 0..<blocks { y[i] = Float(source.load(fromByteOffset: i, as: Int8.self)) }
        case .i16:
            for i in 0..<blocks { y[i] = Float(source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i32:
            for i in 0..<blocks { y[i] = Float(source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .q4_0:
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0)
                let q = (p + 2).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 32
                for j in 0..<16 {
                    o[j] = Float(Int(q[j] & 0x0F) - 8) * d
                    o[j + 16] = Float(Int(q[j] >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0), m = f16(p, 2)
                let q = (p + 4).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 32
                for j in 0..<16 {
                    o[j] = Float(q[j] & 0x0F) * d + m
                    o[j + 16] = Float(q[j] >> 4) * d + m
                }
            }
        case .q8_0:
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0)
                let q = (p + 2).assumingMemoryBound(to: Int8.self)
                let o = y + b * 32
                for j in 0..<32 { o[j] = Float(q[j]) * d }
            }
        default:
            fatalError("unreachable: \(type.name) is not in supportedTypes")
        }
    }
}
