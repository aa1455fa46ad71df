import SqueezeCore

/// Errors raised while reading a PyTorch checkpoint (its zip archive or its pickle). Each names the
/// file and the entry, tensor, global or byte offset that is wrong.
public enum PyTorchError: Error, CustomStringConvertible, Equatable {
    /// The file is not a zip archive (or its end-of-central-directory record is missing).
    case notAZipArchive(file: String, detail: String)
    /// The archive's structures are inconsistent or point outside the file.
    case corruptArchive(file: String, detail: String)
    /// An entry is compressed or encrypted; tensor data must be STORED to be mapped.
    case unsupportedEntry(file: String, entry: String, detail: String)
    /// An entry the checkpoint needs is not in the archive.
    case missingEntry(file: String, entry: String)
    /// The pickle names a global that the restricted unpickler refuses to resolve.
    case forbiddenGlobal(file: String, module: String, name: String)
    /// The pickle uses an opcode the restricted unpickler does not implement.
    case unsupportedOpcode(file: String, opcode: UInt8, offset: Int)
    /// The pickle stream is malformed (stack underflow, bad memo index, truncated argument, ...).
    case malformedPickle(file: String, offset: Int, detail: String)
    /// A tensor's storage type (dtype) is not one Squeeze reads.
    case unsupportedDType(file: String, tensor: String, storageType: String)
    /// A tensor reaches outside its storage, or a storage is shorter than it claims.
    case storageOutOfRange(file: String, tensor: String, detail: String)
    /// A tensor's size and stride are inconsistent (negative, overflowing, mismatched ranks).
    case badTensorLayout(file: String, tensor: String, detail: String)
    /// The checkpoint is the legacy (pre-1.6, non-zip) torch.save format, or big-endian.
    case unsupportedFormat(file: String, detail: String)
    /// A tensor name is not in the checkpoint.
    case missingTensor(file: String, tensor: String)

    public var description: String {
        switch self {
        case let .notAZipArchive(f, d): return "\(f): not a PyTorch zip checkpoint: \(d)"
        case let .corruptArchive(f, d): return "\(f): corrupt zip archive: \(d)"
        case let .unsupportedEntry(f, e, d): return "\(f): archive entry '\(e)': \(d)"
        case let .missingEntry(f, e): return "\(f): archive entry '\(e)' is missing"
        case let .forbiddenGlobal(f, m, n):
            return
                "\(f): refusing to load: the pickle references the global '\(m).\(n)', which is not a tensor, storage or container type (a checkpoint that names it could run code when loaded by torch.load)"
        case let .unsupportedOpcode(f, op, o):
            return
                "\(f): pickle opcode 0x\(String(op, radix: 16)) at byte \(o) is not supported by the restricted unpickler"
        case let .malformedPickle(f, o, d): return "\(f): malformed pickle at byte \(o): \(d)"
        case let .unsupportedDType(f, t, s): return "\(f): tensor '\(t)': unsupported storage type \(s)"
        case let .storageOutOfRange(f, t, d): return "\(f): tensor '\(t)': storage out of range: \(d)"
        case let .badTensorLayout(f, t, d): return "\(f): tensor '\(t)': bad size/stride: \(d)"
        case let .unsupportedFormat(f, d): return "\(f): \(d)"
        case let .missingTensor(f, t): return "\(f): tensor '\(t)' is missing"
        }
    }
}

/// One entry of a zip archive's central directory.
public struct ZipEntry: Sendable, Equatable {
    /// The entry's path inside the archive.
    public let name: String
    /// Compression method (0 = stored, 8 = deflate).
    public let method: Int
    /// General-purpose flags (bit 0: encrypted).
    public let flags: Int
    /// CRC-32 of the uncompressed data, as recorded.
    public let crc32: UInt32
    /// Stored (compressed) size in bytes.
    public let compressedSize: Int
    /// Uncompressed size in bytes.
    public let uncompressedSize: Int
    /// Offset of the entry's local file header.
    public let localHeaderOffset: Int
    /// Offset of the entry's data (after the local header, its name and extra field).
    public let dataOffset: Int
}

/// A read-only zip archive over a memory-mapped file: the central directory (with ZIP64 records)
/// is parsed once, and STORED entries are handed out as views into the mapping (never copied).
///
/// Only what `torch.save` writes is needed: stored entries, optional ZIP64 records, no encryption,
/// a single disk. Compressed or encrypted entries are listed but their data is refused.
/// Not ZIPFoundation: its stream-based API cannot hand out views into the mapping.
/// Checked against archives written by Python's `zipfile` and `torch.save`.
public final class ZipArchive: @unchecked Sendable {
    /// The mapped file.
    public let file: MappedFile
    /// Entries in central-directory order.
    public let entries: [ZipEntry]
    private let byName: [String: Int]

    /// The path of the archive.
    public var path: String { file.path }

    /// Maps and indexes the archive at `path`.
    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    /// Indexes an already mapped archive.
    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        let size = file.size
        guard size >= 22, let base = file.base else {
            throw PyTorchError.notAZipArchive(file: path, detail: "\(size) bytes is too short for a zip archive")
        }
        func u16(_ o: Int) -> Int { Int(base.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian) }
        func u32(_ o: Int) -> Int { Int(base.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian) }
        func u64(_ o: Int) throws -> Int {
            let v = base.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian
            guard v <= UInt64(Int.max) else {
                throw PyTorchError.corruptArchive(file: path, detail: "64-bit field at byte \(o) is too large")
            }
            return Int(v)
        }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        var eocd = -1
        var o = size - 22
        let lowest = max(0, size - 22 - 65_535)
        while o >= lowest {
            if u32(o) == 0x0605_4b50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else {
            throw PyTorchError.notAZipArchive(
                file: path, detail: "no end-of-central-directory record (truncated or not a zip file)")
        }
        var count = u16(eocd + 10)
        var cdSize = u32(eocd + 12)
        var cdOffset = u32(eocd + 16)
        if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
            let loc = eocd - 20
            guard loc >= 0, u32(loc) == 0x0706_4b50 else {
                throw PyTorchError.corruptArchive(
                    file: path, detail: "ZIP64 fields without a ZIP64 end-of-central-directory locator")
            }
            let rec = try u64(loc + 8)
            guard rec >= 0, rec <= size - 56, u32(rec) == 0x0606_4b50 else {
                throw PyTorchError.corruptArchive(
                    file: path, detail: "ZIP64 end-of-central-directory record missing at byte \(rec)")
            }
            count = try u64(rec + 32)
            cdSize = try u64(rec + 40)
            cdOffset = try u64(rec + 48)
        }
        guard cdOffset <= size, cdSize <= size - cdOffset else {
            throw PyTorchError.corruptArchive(
                file: path,
                detail: "central directory \(cdOffset)..<\(cdOffset + cdSize) lies outside the \(size)-byte file")
        }
        guard count <= cdSize / 46 else {
            throw PyTorchError.corruptArchive(
                file: path, detail: "\(count) entries cannot fit a \(cdSize)-byte central directory")
        }
        var list: [ZipEntry] = []
        list.reserveCapacity(count)
        var names: [String: Int] = [:]
        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        for i in 0..<count {
            guard p + 46 <= cdEnd, u32(p) == 0x0201_4b50 else {
                throw PyTorchError.corruptArchive(
                    file: path, detail: "central directory entry \(i) at byte \(p) has a bad signature")
            }
            let flags = u16(p + 8), method = u16(p + 10)
            let crc = UInt32(u32(p + 16))
            var csize = u32(p + 20), usize = u32(p + 24)
            let nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32)
            var lho = u32(p + 42)
            let next = p + 46 + nameLen + extraLen + commentLen
            guard next <= cdEnd else {
                throw PyTorchError.corruptArchive(
                    file: path, detail: "central directory entry \(i) runs past the directory")
            }
            let name = String(decoding: UnsafeRawBufferPointer(start: base + p + 46, count: nameLen), as: UTF8.self)
            // ZIP64 extended information: the fields that overflowed, in this order.
            if usize == 0xFFFF_FFFF || csize == 0xFFFF_FFFF || lho == 0xFFFF_FFFF {
                var e = p + 46 + nameLen
                let extraEnd = e + extraLen
                var found = false
                while e + 4 <= extraEnd {
                    let id = u16(e), len = u16(e + 2)
                    guard e + 4 + len <= extraEnd else { break }
                    if id == 0x0001 {
                        var f = e + 4
                        func take() throws -> Int {
                            guard f + 8 <= e + 4 + len else {
                                throw PyTorchError.corruptArchive(
                                    file: path, detail: "entry '\(name)': short ZIP64 extra field")
                            }
                            defer { f += 8 }
                            return try u64(f)
                        }
                        if usize == 0xFFFF_FFFF { usize = try take() }
                        if csize == 0xFFFF_FFFF { csize = try take() }
                        if lho == 0xFFFF_FFFF { lho = try take() }
                        found = true
                        break
                    }
                    e += 4 + len
                }
                guard found else {
                    throw PyTorchError.corruptArchive(
                        file: path, detail: "entry '\(name)': 32-bit fields overflow but there is no ZIP64 extra field")
                }
            }
            guard lho <= size - 30, u32(lho) == 0x0403_4b50 else {
                throw PyTorchError.corruptArchive(
                    file: path, detail: "entry '\(name)': no local file header at byte \(lho)")
            }
            let dataOffset = lho + 30 + u16(lho + 26) + u16(lho + 28)
            guard dataOffset <= size, csize <= size - dataOffset else {
                throw PyTorchError.corruptArchive(
                    file: path,
                    detail:
                        "entry '\(name)': data \(dataOffset)..<\(dataOffset + csize) lies outside the \(size)-byte file (truncated archive?)"
                )
            }
            names[name] = list.count
            list.append(
                ZipEntry(
                    name: name, method: method, flags: flags, crc32: crc, compressedSize: csize,
                    uncompressedSize: usize, localHeaderOffset: lho, dataOffset: dataOffset))
            p = next
        }
        entries = list
        byName = names
    }

    /// The entry with this exact name.
    public func entry(_ name: String) -> ZipEntry? { byName[name].map { entries[$0] } }

    /// A view of a STORED entry's bytes inside the mapping (throws for compressed or encrypted entries).
    public func data(_ entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        guard entry.flags & 1 == 0 else {
            throw PyTorchError.unsupportedEntry(
                file: path, entry: entry.name, detail: "encrypted entries are not supported")
        }
        guard entry.method == 0 else {
            throw PyTorchError.unsupportedEntry(
                file: path, entry: entry.name,
                detail:
                    "compressed with method \(entry.method); torch.save stores entries uncompressed, so re-save the checkpoint with torch.save"
            )
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw PyTorchError.corruptArchive(
                file: path,
                detail: "stored entry '\(entry.name)' has sizes \(entry.compressedSize) and \(entry.uncompressedSize)")
        }
        return try file.bytes(at: entry.dataOffset, count: entry.uncompressedSize)
    }

    /// Checks an entry's CRC-32 against the central directory (reads every byte of it).
    public func verifyCRC(_ entry: ZipEntry) throws {
        let got = CRC32.checksum(try data(entry))
        guard got == entry.crc32 else {
            throw PyTorchError.corruptArchive(
                file: path,
                detail:
                    "entry '\(entry.name)': CRC-32 is \(String(got, radix: 16)), the directory records \(String(entry.crc32, radix: 16))"
            )
        }
    }
}

/// CRC-32 (ISO-HDLC, as zip uses).
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The CRC-32 of the bytes.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c ^ 0xFFFF_FFFF
    }
}
