import CSqueezeKernels

/// A read-only, row-major tensor: a dtype, a shape and a pointer into memory owned by `owner`
/// (a mapped file or an aligned buffer). Copying a `Tensor` copies the view, never the data.
public struct Tensor: @unchecked Sendable {
    /// The tensor's name in its file (or a description).
    public let name: String
    /// Element type.
    public let dtype: DType
    /// Dimensions, outermost first.
    public let shape: [Int]
    /// Start of the data.
    public let data: UnsafeRawPointer
    /// Keeps the memory behind `data` alive.
    public let owner: AnyObject?

    /// Makes a view; `data` must hold `elementCount * dtype.byteSize` bytes for as long as `owner` lives.
    public init(name: String, dtype: DType, shape: [Int], data: UnsafeRawPointer, owner: AnyObject?) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.data = data
        self.owner = owner
    }

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }
    /// Size of the data in bytes.
    public var byteCount: Int { elementCount * dtype.byteSize }
    /// Number of rows of a 2-D tensor (the product of all but the last dimension).
    public var rows: Int { shape.count <= 1 ? 1 : shape.dropLast().reduce(1, *) }
    /// Length of the last dimension.
    public var columns: Int { shape.last ?? 1 }

    /// Makes an F32 tensor that owns a copy of `values`.
    public static func f32(name: String, shape: [Int], values: [Float]) -> Tensor {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        let buf = AlignedBuffer<Float>(values)
        return Tensor(name: name, dtype: .f32, shape: shape, data: UnsafeRawPointer(buf.pointer), owner: buf)
    }

    /// Makes a tensor that owns the given aligned buffer.
    public static func owning<T>(_ buffer: AlignedBuffer<T>, name: String, dtype: DType, shape: [Int]) -> Tensor {
        precondition(shape.reduce(1, *) * dtype.byteSize <= buffer.count * MemoryLayout<T>.stride)
        return Tensor(name: name, dtype: dtype, shape: shape, data: UnsafeRawPointer(buffer.pointer), owner: buffer)
    }

    /// The same data under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        guard newShape.reduce(1, *) == elementCount else {
            throw CoreError.shapeMismatch(what: name, expected: shape, got: newShape)
        }
        return Tensor(name: name, dtype: dtype, shape: newShape, data: data, owner: owner)
    }

    /// Elements converted to Float (floating-point and integer types).
    public func toFloatArray() -> [Float] {
        let n = elementCount
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { dst in convertToFloat(into: dst.baseAddress!, offset: 0, count: n) }
        return out
    }

    /// Converts `count` elements starting at element `offset` into `dst` as Float.
    public func convertToFloat(into dst: UnsafeMutablePointer<Float>, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= elementCount)
        let p = data + offset * dtype.byteSize
        switch dtype {
        case .f32: dst.update(from: p.assumingMemoryBound(to: Float.self), count: count)
        case .f16: sq_f16_to_f32(p.assumingMemoryBound(to: UInt16.self), dst, Int64(count))
        case .bf16: sq_bf16_to_f32(p.assumingMemoryBound(to: UInt16.self), dst, Int64(count))
        case .f64:
            let s = p.assumingMemoryBound(to: Double.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .i64:
            let s = p.assumingMemoryBound(to: Int64.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .i32:
            let s = p.assumingMemoryBound(to: Int32.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .i16:
            let s = p.assumingMemoryBound(to: Int16.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .i8:
            let s = p.assumingMemoryBound(to: Int8.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .u64:
            let s = p.assumingMemoryBound(to: UInt64.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .u32:
            let s = p.assumingMemoryBound(to: UInt32.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .u16:
            let s = p.assumingMemoryBound(to: UInt16.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        case .u8, .bool:
            let s = p.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { dst[i] = Float(s[i]) }
        }
    }

    /// Integer elements as Int (integer types only; floats are truncated).
    public func toIntArray() -> [Int] {
        let n = elementCount
        switch dtype {
        case .i64:
            return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: Int64.self), count: n)).map { Int($0) }
        case .i32:
            return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: Int32.self), count: n)).map { Int($0) }
        case .u32:
            return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: UInt32.self), count: n)).map {
                Int($0)
            }
        default: return toFloatArray().map { Int($0) }
        }
    }

    /// The data converted to F32, F16 or BF16 in a new aligned buffer (self when already of that dtype).
    public func converted(to target: DType) throws -> Tensor {
        if dtype == target { return self }
        let f = toF32()
        switch target {
        case .f32: return f
        case .f16, .bf16:
            let n = f.elementCount
            let buf = AlignedBuffer<UInt16>(count: n)
            let src = f.data.assumingMemoryBound(to: Float.self)
            let chunk = 1 << 16
            WorkerPool.shared.run(tasks: (n + chunk - 1) / chunk) { c, _ in
                let lo = c * chunk, cnt = min(chunk, n - lo)
                if target == .f16 {
                    HalfConversion.toHalf(src + lo, buf.pointer + lo, count: cnt)
                } else {
                    HalfConversion.toBF16(src + lo, buf.pointer + lo, count: cnt)
                }
            }
            return .owning(buf, name: name, dtype: target, shape: shape)
        default:
            throw CoreError.dtypeMismatch(what: "\(name): conversion target", expected: .f32, got: target)
        }
    }

    /// A copy of the data converted to F32, in a new aligned buffer.
    public func toF32() -> Tensor {
        if dtype == .f32 { return self }
        let buf = AlignedBuffer<Float>(count: elementCount)
        convertToFloat(into: buf.pointer, offset: 0, count: elementCount)
        return .owning(buf, name: name, dtype: .f32, shape: shape)
    }
}

/// Float16 conversions with F16C where the CPU has it (the standard library's are slow on baseline x86-64).
public enum HalfConversion {
    /// IEEE half bits to Float.
    @inlinable public static func toFloat(_ h: UInt16) -> Float { sq_f16_to_f32_1(h) }
    /// Float to IEEE half bits (round to nearest even).
    @inlinable public static func toHalf(_ f: Float) -> UInt16 { sq_f32_to_f16_1(f) }
    /// bfloat16 bits to Float.
    @inlinable public static func bf16ToFloat(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }
    /// Float to bfloat16 bits (round to nearest even).
    @inlinable public static func toBF16(_ f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(x >> 16) | 0x40 }
        return UInt16((x &+ 0x7fff &+ ((x >> 16) & 1)) >> 16)
    }
    /// Bulk conversions.
    public static func toFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        sq_f16_to_f32(src, dst, Int64(count))
    }
    public static func toHalf(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        sq_f32_to_f16(src, dst, Int64(count))
    }
    public static func bf16ToFloat(_ src: UnsafePointer<UInt16>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        sq_bf16_to_f32(src, dst, Int64(count))
    }
    public static func toBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        sq_f32_to_bf16(src, dst, Int64(count))
    }
}
