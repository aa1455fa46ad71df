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

    /// Dequantizes whole blocks (no checks).
    static func dequantizeBlocks(
        type: GGMLType, source: UnsafeRawPointer, blocks: Int, into y: UnsafeMutablePointer<Float>
    ) {
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
        case .i64:
            for i in 0..<blocks { y[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
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
        case .q5_0:
            // d: f16, qh: u32 (bit j = high bit of element j), qs: 16 bytes of nibbles.
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0)
                let qh = p.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
                let q = (p + 6).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 32
                for j in 0..<16 {
                    let lo = Int(q[j] & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
                    let hi = Int(q[j] >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
                    o[j] = d * Float(lo - 16)
                    o[j + 16] = d * Float(hi - 16)
                }
            }
        case .q5_1:
            // d: f16, m: f16, qh: u32, qs: 16 bytes.
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0), m = f16(p, 2)
                let qh = p.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
                let q = (p + 8).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 32
                for j in 0..<16 {
                    let lo = UInt32(q[j] & 0x0F) | ((qh >> UInt32(j)) & 1) << 4
                    let hi = UInt32(q[j] >> 4) | ((qh >> UInt32(j + 16)) & 1) << 4
                    o[j] = d * Float(lo) + m
                    o[j + 16] = d * Float(hi) + m
                }
            }
        case .q2_K:
            // scales[16] (low nibble scale, high nibble min), qs[64] (2 bits), d: f16, dmin: f16.
            for b in 0..<blocks {
                let p = source + b * bb
                let sc = p.assumingMemoryBound(to: UInt8.self)
                let qs = (p + 16).assumingMemoryBound(to: UInt8.self)
                let d = f16(p, 80), dmin = f16(p, 82)
                let o = y + b * 256
                for h in 0..<2 {
                    for s in 0..<4 {
                        for l in 0..<32 {
                            let i = h * 128 + s * 32 + l
                            let g = Int(sc[i / 16])
                            let dl = d * Float(g & 0xF)
                            let ml = dmin * Float(g >> 4)
                            let q = Float((Int(qs[h * 32 + l]) >> (2 * s)) & 3)
                            o[i] = dl * q - ml
                        }
                    }
                }
            }
        case .q3_K:
            // hmask[32], qs[64] (low 2 bits), scales[12] (16 6-bit scales), d: f16.
            for b in 0..<blocks {
                let p = source + b * bb
                let hm = p.assumingMemoryBound(to: UInt8.self)
                let qs = (p + 32).assumingMemoryBound(to: UInt8.self)
                let sc = (p + 96).assumingMemoryBound(to: UInt8.self)
                let d = f16(p, 108)
                let o = y + b * 256
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
        case .q4_K, .q5_K:
            // d: f16, dmin: f16, scales[12] (8 6-bit scales and mins), [qh[32] for Q5_K], qs[128].
            let isQ5 = type == .q5_K
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0), dmin = f16(p, 2)
                let sc = (p + 4).assumingMemoryBound(to: UInt8.self)
                let qh = (p + 16).assumingMemoryBound(to: UInt8.self)
                let qs = (p + (isQ5 ? 48 : 16)).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 256
                for j in 0..<8 {
                    let s: Int, m: Int
                    if j < 4 {
                        s = Int(sc[j] & 0x3F); m = Int(sc[j + 4] & 0x3F)
                    } else {
                        s = Int(sc[j + 4] & 0x0F) | Int((sc[j - 4] >> 2) & 0x30)
                        m = Int(sc[j + 4] >> 4) | Int((sc[j] >> 2) & 0x30)
                    }
                    let dj = d * Float(s), mj = dmin * Float(m)
                    let c = j / 2, shift = 4 * (j % 2)
                    for l in 0..<32 {
                        var q = (Int(qs[c * 32 + l]) >> shift) & 0xF
                        if isQ5 { q |= ((Int(qh[l]) >> j) & 1) << 4 }
                        o[j * 32 + l] = dj * Float(q) - mj
                    }
                }
            }
        case .q6_K:
            // ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d: f16.
            for b in 0..<blocks {
                let p = source + b * bb
                let ql = p.assumingMemoryBound(to: UInt8.self)
                let qh = (p + 128).assumingMemoryBound(to: UInt8.self)
                let sc = (p + 192).assumingMemoryBound(to: Int8.self)
                let d = f16(p, 208)
                let o = y + b * 256
                for i in 0..<256 {
                    let h = i / 128, r = i % 128
                    let lo = (Int(ql[h * 64 + r % 64]) >> (4 * (r / 64))) & 0xF
                    let hi = (Int(qh[h * 32 + r % 32]) >> (2 * (r / 32))) & 3
                    o[i] = (d * Float(sc[i / 16])) * Float((lo | hi << 4) - 32)
                }
            }
        case .iq4_nl:
            // d: f16, qs[16] nibbles indexing the non-linear table.
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0)
                let q = (p + 2).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 32
                for j in 0..<16 {
                    o[j] = d * Float(iq4nlValues[Int(q[j] & 0x0F)])
                    o[j + 16] = d * Float(iq4nlValues[Int(q[j] >> 4)])
                }
            }
        case .iq4_xs:
            // d: f16, scales_h: u16 (2 bits per sub-block), scales_l[4] (nibbles), qs[128].
            for b in 0..<blocks {
                let p = source + b * bb
                let d = f16(p, 0)
                let sh = Int(p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let sl = (p + 4).assumingMemoryBound(to: UInt8.self)
                let qs = (p + 8).assumingMemoryBound(to: UInt8.self)
                let o = y + b * 256
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
        default:
            fatalError("unreachable: \(type.name) is not in supportedTypes")
        }
    }
}
