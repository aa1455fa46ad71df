import SqueezeCore

/// Dequantization of GGML block types to F32, following ggml's reference (`dequantize_row_*`).
public enum GGMLDequantizer {
    /// Types this build can dequantize.
    public static var supportedTypes: Set<GGMLType> {
        [
            .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
            .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs,
        ]
    }

    /// Dequantizes `count` elements (a multiple of the block size) from `source` into `out`.
    /// Large inputs are split over the shared worker pool by blocks.
    public static func dequantize(
        type: GGMLType, source: UnsafeRawPointer, count: Int,
        into out: UnsafeMutablePointer<Float>, file: String, tensor: String
    ) throws {
        guard supportedTypes.contains(type) else {
            throw FormatError.unsupportedDType(file: file, tensor: tensor, dtype: type.name)
        }
        guard count % type.blockSize == 0 else {
            throw FormatError.corrupt(
                file: file,
                detail: "tensor '\(tensor)': \(count) elements is not a multiple of the \(type.name) block size")
        }
        let nBlocks = count / type.blockSize
        let chunk = max(1, 65536 / type.blockSize)
        let nChunks = (nBlocks + chunk - 1) / chunk
        WorkerPool.shared.run(tasks: nChunks) { c, _ in
            let b0 = c * chunk
            let b1 = min(nBlocks, b0 + chunk)
            dequantizeBlocks(
                type: type, source: source + b0 * type.blockBytes, blocks: b1 - b0,
                into: out + b0 * type.blockSize)
        }
    }

    /// The IQ4_NL / IQ4_XS code book (ggml's `kvalues_iq4nl`).
    static let iq4nlValues: [Int8] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]

    @inline(__always) static func f16(_ p: UnsafeRawPointer, _ off: Int) -> Float {
        HalfConversion.toFloat(p.loadUnaligned(fromByteOffset: off, as: UInt16.self))
    }

    /// The bytes of a block from byte `off` on.
    @inline(__always) static func u8(_ p: UnsafeRawPointer, _ off: Int) -> UnsafePointer<UInt8> {
        (p + off).assumingMemoryBound(to: UInt8.self)
    }

    /// Dequantizes whole blocks (no checks).
    static func dequantizeBlocks(
        type: GGMLType, source: UnsafeRawPointer, blocks: Int, into y: UnsafeMutablePointer<Float>
    ) {
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
        case .i64:
            for i in 0..<blocks { y[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        default:
            guard let block = blockDequantizer(type) else { return }  // supportedTypes is checked by the caller
            let bb = type.blockBytes, n = type.blockSize
            for b in 0..<blocks { block(source + b * bb, y + b * n) }
        }
    }

    /// The function that dequantizes one block of a block-quantized type into its `blockSize` floats.
    static func blockDequantizer(_ type: GGMLType) -> ((UnsafeRawPointer, UnsafeMutablePointer<Float>) -> Void)? {
        switch type {
        case .q4_0: return q4_0
        case .q4_1: return q4_1
        case .q5_0: return q5_0
        case .q5_1: return q5_1
        case .q8_0: return q8_0
        case .q2_K: return q2_K
        case .q3_K: return q3_K
        case .q4_K: return { q45_K($0, $1, q5: false) }
        case .q5_K: return { q45_K($0, $1, q5: true) }
        case .q6_K: return q6_K
        case .iq4_nl: return iq4_nl
        case .iq4_xs: return iq4_xs
        default: return nil
        }
    }

    /// d: f16, qs[16]: element j in the low nibble of byte j, element j + 16 in its high nibble.
    static func q4_0(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), q = u8(p, 2)
        for j in 0..<16 {
            o[j] = Float(Int(q[j] & 0x0F) - 8) * d
            o[j + 16] = Float(Int(q[j] >> 4) - 8) * d
        }
    }

    /// d: f16, m: f16, qs[16] as Q4_0.
    static func q4_1(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), m = f16(p, 2), q = u8(p, 4)
        for j in 0..<16 {
            o[j] = Float(q[j] & 0x0F) * d + m
            o[j + 16] = Float(q[j] >> 4) * d + m
        }
    }

    /// d: f16, qs[32]: int8.
    static func q8_0(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0)
        let q = (p + 2).assumingMemoryBound(to: Int8.self)
        for j in 0..<32 { o[j] = Float(q[j]) * d }
    }

    /// d: f16, qh: u32 (bit j = high bit of element j), qs: 16 bytes of nibbles.
    static func q5_0(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), qh = p.loadUnaligned(fromByteOffset: 2, as: UInt32.self), q = u8(p, 6)
        for j in 0..<16 {
            let lo = Int(q[j] & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
            let hi = Int(q[j] >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
            o[j] = d * Float(lo - 16)
            o[j + 16] = d * Float(hi - 16)
        }
    }

    /// d: f16, m: f16, qh: u32, qs: 16 bytes.
    static func q5_1(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), m = f16(p, 2), qh = p.loadUnaligned(fromByteOffset: 4, as: UInt32.self), q = u8(p, 8)
        for j in 0..<16 {
            let lo = UInt32(q[j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
            let hi = UInt32(q[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
            o[j] = d * Float(lo) + m
            o[j + 16] = d * Float(hi) + m
        }
    }

    /// scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d: f16, dmin: f16.
    static func q2_K(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let sc = u8(p, 0), qs = u8(p, 16), d = f16(p, 80), dmin = f16(p, 82)
        for h in 0..<2 {
            for s in 0..<4 {
                for l in 0..<32 {
                    let i = h * 128 + s * 32 + l
                    let g = Int(sc[i / 16])
                    let q = Float((Int(qs[h * 32 + l]) >> (2 * s)) & 3)
                    o[i] = d * Float(g & 0xF) * q - dmin * Float(g >> 4)
                }
            }
        }
    }

    /// hmask[32], qs[64] (low 2 bits), scales[12] (16 6-bit scales), d: f16.
    static func q3_K(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let hm = u8(p, 0), qs = u8(p, 32), sc = u8(p, 96), d = f16(p, 108)
        for sb in 0..<16 {
            let low = sb < 8 ? Int(sc[sb] & 0xF) : Int(sc[sb - 8] >> 4)
            let high = (Int(sc[8 + sb % 4]) >> (2 * (sb / 4))) & 3
            let dl = d * Float((low | high << 4) - 32)
            for k in 0..<16 {
                let i = sb * 16 + k
                let h = i / 128, s = (i % 128) / 32, l = i % 32
                let ql = (Int(qs[h * 32 + l]) >> (2 * s)) & 3
                let bit = (Int(hm[l]) >> (i / 32)) & 1
                o[i] = dl * Float(ql - ((bit ^ 1) << 2))
            }
        }
    }

    /// d: f16, dmin: f16, scales[12] (8 6-bit scales and mins), [qh[32] for Q5_K], qs[128].
    static func q45_K(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>, q5: Bool) {
        let d = f16(p, 0), dmin = f16(p, 2), sc = u8(p, 4), qh = u8(p, 16), qs = u8(p, q5 ? 48 : 16)
        for j in 0..<8 {
            let s: Int, m: Int
            if j < 4 {
                s = Int(sc[j] & 0x3F)
                m = Int(sc[j + 4] & 0x3F)
            } else {
                s = Int(sc[j + 4] & 0x0F) | Int((sc[j - 4] >> 2) & 0x30)
                m = Int(sc[j + 4] >> 4) | Int((sc[j] >> 2) & 0x30)
            }
            let dj = d * Float(s), mj = dmin * Float(m)
            let c = j / 2, shift = 4 * (j % 2)
            for l in 0..<32 {
                var q = (Int(qs[c * 32 + l]) >> shift) & 0xF
                if q5 { q |= ((Int(qh[l]) >> j) & 1) << 4 }
                o[j * 32 + l] = dj * Float(q) - mj
            }
        }
    }

    /// ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d: f16.
    static func q6_K(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let ql = u8(p, 0), qh = u8(p, 128), d = f16(p, 208)
        let sc = (p + 192).assumingMemoryBound(to: Int8.self)
        for i in 0..<256 {
            let h = i / 128, r = i % 128
            let lo = (Int(ql[h * 64 + r % 64]) >> (4 * (r / 64))) & 0xF
            let hi = (Int(qh[h * 32 + r % 32]) >> (2 * (r / 32))) & 3
            o[i] = (d * Float(sc[i / 16])) * Float((lo | hi << 4) - 32)
        }
    }

    /// d: f16, qs[16] nibbles indexing the non-linear table.
    static func iq4_nl(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), q = u8(p, 2)
        for j in 0..<16 {
            o[j] = d * Float(iq4nlValues[Int(q[j] & 0x0F)])
            o[j + 16] = d * Float(iq4nlValues[Int(q[j] >> 4)])
        }
    }

    /// d: f16, scales_h: u16 (2 bits per sub-block), scales_l[4] (nibbles), qs[128].
    static func iq4_xs(_ p: UnsafeRawPointer, _ o: UnsafeMutablePointer<Float>) {
        let d = f16(p, 0), sh = Int(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)), sl = u8(p, 4), qs = u8(p, 8)
        for j in 0..<8 {
            let low = (Int(sl[j / 2]) >> (4 * (j % 2))) & 0xF
            let high = (sh >> (2 * j)) & 3
            let dl = d * Float((low | high << 4) - 32)
            for l in 0..<16 {
                let v = qs[j * 16 + l]
                o[j * 32 + l] = dl * Float(iq4nlValues[Int(v & 0x0F)])
                o[j * 32 + l + 16] = dl * Float(iq4nlValues[Int(v >> 4)])
            }
        }
    }
}
