#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The alignment of every SIMD buffer Squeeze allocates (one cache line, one AVX-512 vector).
public let simdAlignment = 64

/// A fixed-size buffer of trivial elements, 64-byte aligned, zero-initialised.
/// Invariant: `pointer` holds `count` initialised elements for the object's lifetime.
public final class AlignedBuffer<Element>: @unchecked Sendable {
    /// Start of the storage (64-byte aligned).
    public let pointer: UnsafeMutablePointer<Element>
    /// Number of elements.
    public let count: Int

    /// Allocates `count` zeroed elements.
    public init(count: Int) {
        precondition(count >= 0, "negative buffer size")
        self.count = count
        let bytes = max(count * MemoryLayout<Element>.stride, 1)
        let raw = UnsafeMutableRawPointer.allocate(
            byteCount: (bytes + simdAlignment - 1) / simdAlignment * simdAlignment,
            alignment: simdAlignment)
        memset(raw, 0, bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: max(count, 1))
    }

    /// Allocates and copies the given elements.
    public convenience init(_ values: [Element]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let b = src.baseAddress { pointer.update(from: b, count: values.count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// A buffer pointer over all elements.
    @inlinable public var buffer: UnsafeMutableBufferPointer<Element> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    /// Element access (bounds-checked in debug builds only).
    @inlinable public subscript(i: Int) -> Element {
        get { assert(i >= 0 && i < count); return pointer[i] }
        set { assert(i >= 0 && i < count); pointer[i] = newValue }
    }

    /// Copies the contents into an array.
    public func toArray() -> [Element] { Array(buffer) }

    /// Sets every byte to zero.
    public func zero() { memset(pointer, 0, count * MemoryLayout<Element>.stride) }
}
