import Foundation
import SqueezeCore

/// One tensor's entry in a safetensors header.
public struct SafeTensorsInfo: Sendable, Equatable {
    /// The tensor's name.
    public let name: String
    /// Element type.
    public let dtype: DType
    /// Dimensions, outermost first (empty for a scalar).
    public let shape: [Int]
    /// `data_offsets` from the header: bytes relative to the start of the data section.
    public let dataOffsets: Range<Int>
    /// The same bytes as absolute offsets in the file.
    public let fileRange: Range<Int>

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes of data.
    public var byteCount: Int { dataOffsets.count }
}

/// A `.safetensors` file, memory-mapped and validated; tensors are views into the mapping.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The mapping.
    public let file: MappedFile
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    /// Tensor names in the order of their data in the file.
    public let tensorNames: [String]
    /// Byte offset of the data section (8 + header length).
    public let dataOffset: Int
    private let infos: [String: SafeTensorsInfo]

    /// Largest header accepted (the reference library's limit).
    public static let maxHeaderBytes = 100_000_000

    /// Maps `path` and validates its header. Throws `FormatError` naming the file and the tensor or field.
    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        guard file.size >= 8, let base = file.base else {
            throw FormatError.truncated(file: path, detail: "\(file.size) bytes: the 8-byte header length is missing")
        }
        let n64 = base.loadUnaligned(as: UInt64.self).littleEndian
        guard n64 <= UInt64(file.size - 8) else {
            throw FormatError.truncated(
                file: path, detail: "header length \(n64) goes beyond the end of the \(file.size)-byte file")
        }
        let n = Int(n64)
        guard n <= Self.maxHeaderBytes else {
            throw FormatError.corrupt(
                file: path, detail: "header length \(n) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        dataOffset = 8 + n
        let dataSize = file.size - dataOffset
        let headerData = Data(bytes: base + 8, count: n)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData, options: [])
        } catch {
            throw FormatError.corrupt(file: path, detail: "header is not valid JSON (\(n) bytes)")
        }
        guard let top = json as? [String: Any] else {
            throw FormatError.corrupt(file: path, detail: "header is not a JSON object")
        }
        var md: [String: String] = [:]
        var entries: [SafeTensorsInfo] = []
        for (key, value) in top {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw FormatError.invalidField(file: path, field: "__metadata__", detail: "not a JSON object")
                }
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw FormatError.invalidField(
                            file: path, field: "__metadata__.\(k)", detail: "value is not a string")
                    }
                    md[k] = s
                }
                continue
            }
            entries.append(
                try Self.parseEntry(name: key, value: value, path: path, dataOffset: dataOffset, dataSize: dataSize))
        }
        // File order is data order; empty tensors sort before a non-empty one at the same offset.
        entries.sort {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.count, $0.name) < (
                $1.dataOffsets.lowerBound, $1.dataOffsets.count, $1.name
            )
        }
        var lastEnd = 0
        var lastName = ""
        for e in entries where !e.dataOffsets.isEmpty {
            if e.dataOffsets.lowerBound < lastEnd {
                throw FormatError.overlappingTensors(file: path, tensor: e.name, other: lastName)
            }
            lastEnd = e.dataOffsets.upperBound
            lastName = e.name
        }
        metadata = md
        tensorNames = entries.map(\.name)
        infos = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    private static func parseEntry(
        name: String, value: Any, path: String, dataOffset: Int, dataSize: Int
    ) throws -> SafeTensorsInfo {
        guard let obj = value as? [String: Any] else {
            throw FormatError.invalidField(file: path, field: name, detail: "tensor entry is not a JSON object")
        }
        guard let dtName = obj["dtype"] as? String else {
            throw FormatError.missingField(file: path, field: "\(name).dtype")
        }
        guard let dtype = DType(safetensorsName: dtName) else {
            throw FormatError.unsupportedDType(file: path, tensor: name, dtype: dtName)
        }
        guard let shapeAny = obj["shape"] as? [Any] else {
            throw FormatError.missingField(file: path, field: "\(name).shape")
        }
        var shape: [Int] = []
        var count = 1
        for d in shapeAny {
            guard let v = jsonInt(d), v >= 0 else {
                throw FormatError.invalidField(
                    file: path, field: "\(name).shape", detail: "\(shapeAny) is not a list of non-negative integers")
            }
            let (p, overflow) = count.multipliedReportingOverflow(by: v)
            guard !overflow else {
                throw FormatError.invalidField(
                    file: path, field: "\(name).shape", detail: "\(shapeAny) has too many elements")
            }
            count = p
            shape.append(v)
        }
        guard let offAny = obj["data_offsets"] as? [Any] else {
            throw FormatError.missingField(file: path, field: "\(name).data_offsets")
        }
        guard offAny.count == 2, let begin = jsonInt(offAny[0]), let end = jsonInt(offAny[1]), begin >= 0, end >= begin
        else {
            throw FormatError.invalidField(
                file: path, field: "\(name).data_offsets",
                detail: "\(offAny) is not [begin, end] with 0 <= begin <= end")
        }
        let (need, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, end - begin == need else {
            throw FormatError.sizeMismatch(
                file: path, tensor: name, expectedBytes: overflow ? Int.max : need, gotBytes: end - begin)
        }
        guard end <= dataSize else {
            throw FormatError.outOfBounds(
                file: path, tensor: name,
                detail: "data_offsets [\(begin), \(end)] but the data section has \(dataSize) bytes")
        }
        return SafeTensorsInfo(
            name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end,
            fileRange: (dataOffset + begin)..<(dataOffset + end))
    }

    /// Whether the file holds a tensor of this name.
    public func contains(_ name: String) -> Bool { infos[name] != nil }

    /// The header entry of a tensor, or nil.
    public func info(_ name: String) -> SafeTensorsInfo? { infos[name] }

    /// All header entries in file order.
    public var allInfos: [SafeTensorsInfo] { tensorNames.map { infos[$0]! } }

    /// A tensor as a view over the mapping (no copy). If the data is not aligned to its element
    /// size (a header length that is not a multiple of 8), it is copied into an aligned buffer.
    public func tensor(_ name: String) throws -> Tensor {
        guard let info = infos[name] else { throw FormatError.missingTensor(file: path, tensor: name) }
        let p = file.base! + info.fileRange.lowerBound
        if Int(bitPattern: p) % info.dtype.byteSize == 0 {
            return Tensor(name: name, dtype: info.dtype, shape: info.shape, data: p, owner: file)
        }
        let buf = AlignedBuffer<UInt8>(count: info.byteCount)
        buf.pointer.update(from: p.assumingMemoryBound(to: UInt8.self), count: info.byteCount)
        return .owning(buf, name: name, dtype: info.dtype, shape: info.shape)
    }

    /// The raw bytes of a tensor (a view over the mapping).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        guard let info = infos[name] else { throw FormatError.missingTensor(file: path, tensor: name) }
        return UnsafeRawBufferPointer(start: file.base! + info.fileRange.lowerBound, count: info.byteCount)
    }
}

/// Whether a JSONSerialization value is a JSON `true`/`false` (a boolean NSNumber).
func isJSONBool(_ v: Any) -> Bool {
    guard let n = v as? NSNumber else { return false }
    return String(cString: n.objCType) == "c"
}

/// An integer from a JSONSerialization value, or nil (booleans are not integers).
func jsonInt(_ v: Any) -> Int? {
    if isJSONBool(v) { return nil }
    if let i = v as? Int { return i }
    if let d = v as? Double, d == d.rounded(), abs(d) < 9.0e15 { return Int(d) }
    return nil
}

/// A safetensors checkpoint: one file, a directory with `model.safetensors`, or a sharded
/// directory with `model.safetensors.index.json`.
public final class SafeTensorsModel: @unchecked Sendable {
    /// The path the model was opened from.
    public let path: String
    /// The files, in shard order.
    public let files: [SafeTensorsFile]
    /// The index file, when the checkpoint is sharded.
    public let indexPath: String?
    /// Tensor names: shard by shard, in file order within each.
    public let tensorNames: [String]
    /// Metadata: the index's `metadata` (values stringified) over the files' `__metadata__`.
    public let metadata: [String: String]
    private let owner: [String: Int]

    /// File name of the index of a sharded checkpoint.
    public static let indexFileName = "model.safetensors.index.json"
    /// File name of a single-file checkpoint in a directory.
    public static let singleFileName = "model.safetensors"

    /// Opens a `.safetensors` file, a checkpoint directory, or a `*.safetensors.index.json` file;
    /// validates every shard.
    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CoreError.cannotOpen(path: path, reason: "no such file or directory")
        }
        var filePaths: [String]
        var weightMap: [String: String]? = nil
        var md: [String: String] = [:]
        let dir = isDir.boolValue ? path : (path as NSString).deletingLastPathComponent
        let idx =
            isDir.boolValue
            ? (path as NSString).appendingPathComponent(Self.indexFileName)
            : (path.hasSuffix(".index.json") ? path : nil)
        let single = (path as NSString).appendingPathComponent(Self.singleFileName)
        if let idx = idx, FileManager.default.fileExists(atPath: idx) {
            indexPath = idx
            let (map, indexMD) = try Self.readIndex(idx)
            weightMap = map
            md = indexMD
            // One shard may be named two ways ("a.safetensors", "./a.safetensors"): open each file once.
            filePaths = Array(Set(map.values.map { Self.shardPath(dir, $0) })).sorted()
            for (tensor, shard) in map.sorted(by: { $0.key < $1.key }) {
                let sp = (dir as NSString).appendingPathComponent(shard)
                if !FileManager.default.fileExists(atPath: sp) {
                    throw FormatError.missingShard(index: idx, shard: shard, tensor: tensor)
                }
            }
        } else if !isDir.boolValue {
            filePaths = [path]
            indexPath = nil
        } else if FileManager.default.fileExists(atPath: single) {
            indexPath = nil
            filePaths = [single]
        } else {
            throw FormatError.corrupt(
                file: path, detail: "directory has neither \(Self.singleFileName) nor \(Self.indexFileName)")
        }
        files = try filePaths.map { try SafeTensorsFile(path: $0) }
        var own: [String: Int] = [:]
        var names: [String] = []
        if let map = weightMap {
            let fileIndex = Dictionary(
                filePaths.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
            for (tensor, shard) in map {
                guard let fi = fileIndex[Self.shardPath(dir, shard)] else {
                    throw FormatError.missingShard(index: idx ?? path, shard: shard, tensor: tensor)
                }
                guard files[fi].contains(tensor) else {
                    throw FormatError.missingTensor(file: files[fi].path, tensor: tensor)
                }
                own[tensor] = fi
            }
            for (fi, f) in files.enumerated() {
                names += f.tensorNames.filter { own[$0] == fi }
            }
        } else {
            for (fi, f) in files.enumerated() {
                for n in f.tensorNames where own[n] == nil { own[n] = fi; names.append(n) }
            }
        }
        for f in files.reversed() { md.merge(f.metadata) { indexValue, _ in indexValue } }
        owner = own
        tensorNames = names
        metadata = md
    }

    /// The path of a shard named by the index, normalized so that two spellings of one file agree.
    private static func shardPath(_ dir: String, _ shard: String) -> String {
        ((dir as NSString).appendingPathComponent(shard) as NSString).standardizingPath
    }

    private static func readIndex(_ idx: String) throws -> ([String: String], [String: String]) {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: idx)) } catch {
            throw CoreError.cannotOpen(path: idx, reason: "\(error.localizedDescription)")
        }
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError.corrupt(file: idx, detail: "not a JSON object")
        }
        guard let wm = top["weight_map"] as? [String: Any] else {
            throw FormatError.missingField(file: idx, field: "weight_map")
        }
        var map: [String: String] = [:]
        for (k, v) in wm {
            guard let s = v as? String, !s.isEmpty, !s.hasPrefix("/"), !s.split(separator: "/").contains("..") else {
                throw FormatError.invalidField(
                    file: idx, field: "weight_map.\(k)", detail: "not a shard file name inside the directory")
            }
            map[k] = s
        }
        var md: [String: String] = [:]
        if let m = top["metadata"] as? [String: Any] {
            for (k, v) in m { md[k] = (v as? String) ?? "\(v)" }
        }
        return (map, md)
    }

    /// Whether the checkpoint holds a tensor of this name.
    public func contains(_ name: String) -> Bool { owner[name] != nil }

    /// The file holding a tensor, or nil.
    public func file(for name: String) -> SafeTensorsFile? { owner[name].map { files[$0] } }

    /// The header entry of a tensor, or nil.
    public func info(_ name: String) -> SafeTensorsInfo? { file(for: name)?.info(name) }

    /// A tensor as a view over its shard's mapping. Missing names throw `FormatError.missingTensor`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let f = file(for: name) else { throw FormatError.missingTensor(file: indexPath ?? path, tensor: name) }
        return try f.tensor(name)
    }
}
