import Foundation
import SqueezeCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a `.safetensors` file: the header first (all entries are declared up front), then each
/// tensor's data streamed in declared order, into `AtomicFile.temporaryPath(for: path)` beside it;
/// `finish()` syncs and renames it onto `path` (replacing a file there only then). Dropping the
/// writer without `finish()`, or SIGINT/SIGTERM (`InterruptCleanup`), removes the temporary file.
public final class SafeTensorsWriter {
    /// A tensor to be written: name, dtype and shape.
    public struct Entry: Sendable, Equatable {
        /// The tensor's name.
        public let name: String
        /// Element type.
        public let dtype: DType
        /// Dimensions, outermost first.
        public let shape: [Int]
        /// Makes an entry.
        public init(name: String, dtype: DType, shape: [Int]) {
            self.name = name; self.dtype = dtype; self.shape = shape
        }
        /// Bytes of data.
        public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
    }

    /// The final path.
    public let path: String
    /// The temporary path written until `finish()`.
    public let temporaryPath: String
    /// The declared entries, in data order.
    public let entries: [Entry]
    private var fd: Int32
    private var next = 0
    private var done = false

    /// Creates the temporary file and writes the header. Names must be unique and not `__metadata__`.
    public init(path: String, entries: [Entry], metadata: [String: String] = [:]) throws {
        self.path = path
        self.entries = entries
        temporaryPath = AtomicFile.temporaryPath(for: path)
        var seen = Set<String>()
        for e in entries {
            guard e.name != "__metadata__", seen.insert(e.name).inserted else {
                throw FormatError.invalidField(file: path, field: e.name, detail: "duplicate or reserved tensor name")
            }
            guard e.shape.allSatisfy({ $0 >= 0 }) else {
                throw FormatError.invalidField(
                    file: path, field: "\(e.name).shape", detail: "negative dimension in \(e.shape)")
            }
        }
        let header = Self.header(entries: entries, metadata: metadata)
        removeStaleTemporaries(of: path, marker: ".tmp-")
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw FormatError.writeFailed(path: temporaryPath, reason: String(cString: strerror(errno))) }
        InterruptCleanup.register(temporaryPath)
        var prefix = [UInt8](repeating: 0, count: 8)
        var n = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &n) { for i in 0..<8 { prefix[i] = $0[i] } }
        do {
            try prefix.withUnsafeBytes { try writeAll($0) }
            try header.withUnsafeBytes { try writeAll($0) }
        } catch {
            abort()
            throw error
        }
    }

    deinit { abort() }

    /// The header JSON, padded with spaces to a multiple of 8 bytes as the reference library does.
    static func header(entries: [Entry], metadata: [String: String]) -> [UInt8] {
        var s = "{"
        var first = true
        if !metadata.isEmpty {
            s += "\"__metadata__\":{"
            s += metadata.sorted(by: { $0.key < $1.key }).map {
                "\(TextEscaping.jsonQuoted($0.key)):\(TextEscaping.jsonQuoted($0.value))"
            }
            .joined(separator: ",")
            s += "}"
            first = false
        }
        var offset = 0
        for e in entries {
            if !first { s += "," }
            first = false
            let end = offset + e.byteCount
            s +=
                "\(TextEscaping.jsonQuoted(e.name)):{\"dtype\":\"\(e.dtype.safetensorsName)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        s += "}"
        var bytes = Array(s.utf8)
        while bytes.count % 8 != 0 { bytes.append(0x20) }
        return bytes
    }

    private func writeAll(_ buf: UnsafeRawBufferPointer) throws { try writeFully(fd, buf, path: temporaryPath) }

    /// The name of the next tensor to write, or nil when all are written.
    public var nextName: String? { next < entries.count ? entries[next].name : nil }

    /// Writes the data of the next declared tensor; `name` and the byte count must match it.
    public func write(name: String, bytes: UnsafeRawBufferPointer) throws {
        guard !done, fd >= 0 else { throw FormatError.writeFailed(path: path, reason: "writer is finished or aborted") }
        guard next < entries.count else {
            throw FormatError.writeFailed(path: path, reason: "tensor '\(name)' written after all declared tensors")
        }
        let e = entries[next]
        guard e.name == name else {
            throw FormatError.writeFailed(path: path, reason: "expected tensor '\(e.name)' next, got '\(name)'")
        }
        guard bytes.count == e.byteCount else {
            throw FormatError.sizeMismatch(file: path, tensor: name, expectedBytes: e.byteCount, gotBytes: bytes.count)
        }
        try writeAll(bytes)
        next += 1
    }

    /// Writes a tensor's data; its name, dtype and shape must match the next declared entry.
    public func write(_ tensor: Tensor) throws {
        if next < entries.count, entries[next].name == tensor.name,
            entries[next].dtype != tensor.dtype || entries[next].shape != tensor.shape
        {
            throw FormatError.shapeMismatch(
                file: path, tensor: tensor.name, expected: entries[next].shape, got: tensor.shape)
        }
        try write(name: tensor.name, bytes: UnsafeRawBufferPointer(start: tensor.data, count: tensor.byteCount))
    }

    /// Syncs and closes the temporary file without renaming it (for the sharded writer).
    func finishData() throws {
        guard !done, fd >= 0 else { throw FormatError.writeFailed(path: path, reason: "writer is finished or aborted") }
        guard next == entries.count else {
            throw FormatError.writeFailed(
                path: path, reason: "finish() before tensor '\(entries[next].name)' was written")
        }
        if fsync(fd) != 0 {
            let r = String(cString: strerror(errno))
            abort()
            throw FormatError.writeFailed(path: temporaryPath, reason: "fsync: \(r)")
        }
        close(fd)
        fd = -1
        done = true
    }

    /// Checks every tensor was written, syncs, and renames the file onto `path`.
    public func finish() throws {
        try finishData()
        defer { InterruptCleanup.unregister(temporaryPath) }
        try AtomicFile.commit(temporary: temporaryPath, to: path)
    }

    /// Stops writing and removes the temporary file (nothing if already finished).
    public func abort() {
        if fd >= 0 { close(fd); fd = -1 }
        if !done {
            unlink(temporaryPath)
            done = true
            InterruptCleanup.unregister(temporaryPath)
        }
    }

    /// Writes `tensors` (in order) and `metadata` to `path`.
    public static func write(tensors: [Tensor], metadata: [String: String] = [:], to path: String) throws {
        let w = try SafeTensorsWriter(
            path: path, entries: tensors.map { Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
            metadata: metadata)
        for t in tensors { try w.write(t) }
        try w.finish()
    }
}

/// Writes a sharded safetensors checkpoint into a directory: `model-00001-of-0000N.safetensors`
/// files of at most `maxShardBytes` of data each (a larger tensor gets a shard of its own) and
/// `model.safetensors.index.json`. A plan of one shard writes `model.safetensors` and no index,
/// as Hugging Face does. Shards are written to temporary files and all renamed by `finish()`.
public final class ShardedSafeTensorsWriter {
    /// The output directory.
    public let directory: String
    /// Shard file names and the entries each holds, in order.
    public let plan: [(file: String, entries: [SafeTensorsWriter.Entry])]
    private let metadata: [String: String]
    private var shard = -1
    private var current: SafeTensorsWriter?
    private var finishedTemps: [(temp: String, final: String)] = []
    private var done = false

    /// Plans the shards. Entries are kept in order; a new shard starts when the next entry would
    /// push the current one past `maxShardBytes`.
    public init(
        directory: String, entries: [SafeTensorsWriter.Entry], metadata: [String: String] = [:],
        maxShardBytes: Int
    ) throws {
        guard maxShardBytes > 0 else {
            throw FormatError.invalidField(
                file: directory, field: "maxShardBytes", detail: "\(maxShardBytes) is not positive")
        }
        self.directory = directory
        self.metadata = metadata
        var groups: [[SafeTensorsWriter.Entry]] = []
        var cur: [SafeTensorsWriter.Entry] = []
        var bytes = 0
        for e in entries {
            if !cur.isEmpty && bytes + e.byteCount > maxShardBytes {
                groups.append(cur); cur = []; bytes = 0
            }
            cur.append(e); bytes += e.byteCount
        }
        if !cur.isEmpty || groups.isEmpty { groups.append(cur) }
        let n = groups.count
        if n == 1 {
            plan = [(SafeTensorsModel.singleFileName, groups[0])]
        } else {
            plan = groups.enumerated().map { i, g in
                (String(format: "model-%05d-of-%05d.safetensors", i + 1, n), g)
            }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try openNext()
    }

    deinit { abort() }

    private func openNext() throws {
        shard += 1
        guard shard < plan.count else { current = nil; return }
        current = try SafeTensorsWriter(
            path: (directory as NSString).appendingPathComponent(plan[shard].file),
            entries: plan[shard].entries, metadata: metadata)
    }

    /// Writes the data of the next declared tensor (same rules as `SafeTensorsWriter.write`).
    public func write(name: String, bytes: UnsafeRawBufferPointer) throws {
        while let w = current, w.nextName == nil {
            try w.finishData()
            finishedTemps.append((w.temporaryPath, w.path))
            try openNext()
        }
        guard let w = current else {
            throw FormatError.writeFailed(
                path: directory, reason: "tensor '\(name)' written after all declared tensors")
        }
        try w.write(name: name, bytes: bytes)
    }

    /// Writes a tensor's data; it must match the next declared entry.
    public func write(_ tensor: Tensor) throws {
        try write(name: tensor.name, bytes: UnsafeRawBufferPointer(start: tensor.data, count: tensor.byteCount))
    }

    /// Finishes the last shard, renames every shard into place and writes the index.
    public func finish() throws {
        while let w = current {
            try w.finishData()
            finishedTemps.append((w.temporaryPath, w.path))
            try openNext()
        }
        if plan.count > 1 {
            let total = plan.reduce(0) { $0 + $1.entries.reduce(0) { $0 + $1.byteCount } }
            var s = "{\n  \"metadata\": {\n    \"total_size\": \(total)"
            for (k, v) in metadata.sorted(by: { $0.key < $1.key }) where k != "total_size" {
                s += ",\n    \(TextEscaping.jsonQuoted(k)): \(TextEscaping.jsonQuoted(v))"
            }
            s += "\n  },\n  \"weight_map\": {\n"
            let pairs = plan.flatMap { p in p.entries.map { ($0.name, p.file) } }.sorted { $0.0 < $1.0 }
            s += pairs.map { "    \(TextEscaping.jsonQuoted($0.0)): \(TextEscaping.jsonQuoted($0.1))" }.joined(
                separator: ",\n")
            s += "\n  }\n}\n"
            let idx = (directory as NSString).appendingPathComponent(SafeTensorsModel.indexFileName)
            let tmp = AtomicFile.temporaryPath(for: idx)
            InterruptCleanup.register(tmp)
            do { try AtomicFile.writeSynced(Data(s.utf8), temporary: tmp, reportAs: idx) } catch {
                InterruptCleanup.unregister(tmp)
                abort()
                throw error
            }
            finishedTemps.append((tmp, idx))
        }
        // Each temporary (registered for cleanup when it was created) is released once renamed.
        for (t, f) in finishedTemps {
            try AtomicFile.commit(temporary: t, to: f)
            InterruptCleanup.unregister(t)
        }
        finishedTemps = []
        done = true
    }

    /// Stops writing and removes every temporary file.
    public func abort() {
        current?.abort()
        current = nil
        if !done { for (t, _) in finishedTemps { unlink(t); InterruptCleanup.unregister(t) } }
        finishedTemps = []
        done = true
    }
}
