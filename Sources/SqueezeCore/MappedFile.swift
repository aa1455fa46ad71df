#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory. Views into it stay valid while the object lives.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// Start of the mapping (nil for an empty file).
    public let base: UnsafeRawPointer?
    /// Size of the file in bytes.
    public let size: Int

    /// Maps `path` read-only. Throws `CoreError.cannotOpen` / `.cannotMap` naming the file.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw CoreError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw CoreError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw CoreError.cannotOpen(path: path, reason: "is a directory") }
        size = Int(st.st_size)
        if size == 0 { base = nil; return }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw CoreError.cannotMap(path: path, reason: String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(p!)
    }

    deinit {
        if let b = base { munmap(UnsafeMutableRawPointer(mutating: b), size) }
    }

    /// A raw buffer over bytes [offset, offset + count); throws if it leaves the file.
    public func bytes(at offset: Int, count: Int) throws -> UnsafeRawBufferPointer {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw CoreError.outOfRange(what: path, detail: "bytes \(offset)..<\(offset + count) of a \(size)-byte file")
        }
        guard let b = base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: b + offset, count: count)
    }

    /// Asks the kernel to read the mapping ahead (sequential use).
    public func adviseWillNeed() {
        if let b = base { madvise(UnsafeMutableRawPointer(mutating: b), size, MADV_WILLNEED) }
    }
}
