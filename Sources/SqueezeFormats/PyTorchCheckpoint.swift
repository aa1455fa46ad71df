import SqueezeCore

/// A `torch.save` checkpoint (`.pt`, `.pth`, `.bin`: the zip format of PyTorch 1.6+), read without
/// executing anything: the archive is mapped, `<prefix>/data.pkl` is run through
/// `RestrictedUnpickler`, and tensors are views into the archive's STORED `<prefix>/data/<key>`
/// entries.
///
/// The top-level object must be a dict (a state dict, or a dict of dicts such as
/// `{"model": state_dict}`); nested dicts are flattened with "." between keys. Entries that are not
/// tensors (ints such as SqueezeLLM's `sparse_threshold.*`, strings, floats) are in `scalars`.
///
/// Tensors: contiguous ones are views into the mapping (not copied). Non-contiguous ones (a
/// transposed view saved as is) are gathered into a new row-major buffer when asked for. Every
/// tensor's reach (storage offset, sizes, strides) is checked against its storage and the storage
/// against its archive entry when the checkpoint is opened, so a bad offset is refused up front.
public final class PyTorchCheckpoint: @unchecked Sendable {
    /// The file the checkpoint was read from.
    public let path: String
    /// The archive.
    public let archive: ZipArchive
    /// The archive's top-level folder (`archive` or the file's stem, as torch.save writes it).
    public let prefix: String
    /// The unpickled top-level object.
    public let root: PickleValue
    /// Tensor names in pickle order.
    public let tensorNames: [String]
    /// Non-tensor entries (ints, floats, strings, bools, None) by flattened name.
    public let scalars: [String: PickleValue]
    private let refs: [String: PyTorchTensorRef]
    private let storageData: [String: UnsafeRawBufferPointer]

    /// Opens and checks the checkpoint at `path`.
    public init(path: String) throws {
        self.path = path
        let file = try MappedFile(path: path)
        if file.size >= 2, let b = file.base, b.load(as: UInt8.self) == 0x80 {
            throw PyTorchError.unsupportedFormat(
                file: path,
                detail:
                    "legacy (pre-1.6, non-zip) torch.save format; load it with torch and save it again with a current torch.save"
            )
        }
        archive = try ZipArchive(file: file)
        guard
            let pkl = archive.entries.first(where: {
                $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") && !$0.name.dropLast(9).contains("/")
            })
        else {
            throw PyTorchError.missingEntry(file: path, entry: "<prefix>/data.pkl")
        }
        prefix = String(pkl.name.dropLast("data.pkl".count))
        if let bo = archive.entry(prefix + "byteorder") {
            let text = String(decoding: try archive.data(bo), as: UTF8.self)
            guard text == "little" else {
                throw PyTorchError.unsupportedFormat(
                    file: path, detail: "byte order '\(text)': only little-endian checkpoints are read")
            }
        }
        try archive.verifyCRC(pkl)
        root = try RestrictedUnpickler(bytes: try archive.data(pkl), file: path).load()
        guard case let .dict(top) = root else {
            throw PyTorchError.unsupportedFormat(
                file: path, detail: "the checkpoint holds a \(root.kind), not a dict of tensors")
        }
        var names: [String] = [], refs: [String: PyTorchTensorRef] = [:], scalars: [String: PickleValue] = [:]
        var stack: [(String, PickleDict)] = [("", top)]
        var visited = Set<ObjectIdentifier>()
        while let (pre, d) = stack.popLast() {
            guard visited.insert(ObjectIdentifier(d)).inserted else { continue }
            var nested: [(String, PickleDict)] = []
            for (k, v) in d.pairs {
                let key: String
                switch k {
                case let .string(s): key = s
                case let .int(i): key = String(i)
                default: continue
                }
                let name = pre + key
                switch v {
                case let .tensor(t): if refs[name] == nil { names.append(name) }; refs[name] = t
                case let .dict(inner): nested.append((name + ".", inner))
                case .int, .float, .string, .bool, .none: scalars[name] = v
                default: continue
                }
            }
            stack.append(contentsOf: nested.reversed())
        }
        tensorNames = names
        self.refs = refs
        self.scalars = scalars
        // Check every storage against its entry and every tensor against its storage.
        var storages: [String: UnsafeRawBufferPointer] = [:]
        for name in names {
            let t = refs[name]!
            let s = t.storage
            if storages[s.key] == nil {
                let entryName = prefix + "data/" + s.key
                guard let e = archive.entry(entryName) else {
                    throw PyTorchError.missingEntry(file: path, entry: entryName)
                }
                storages[s.key] = try archive.data(e)
            }
            // Every reference is checked against the entry: a key referenced again with a larger
            // dtype or count must not reach past it.
            let data = storages[s.key]!
            let (need, o) = s.count.multipliedReportingOverflow(by: s.dtype.byteSize)
            guard !o, data.count >= need else {
                throw PyTorchError.storageOutOfRange(
                    file: path, tensor: name,
                    detail:
                        "storage \(s.key) claims \(s.count) \(s.typeName) elements but its entry holds \(data.count) bytes"
                )
            }
            try Self.checkReach(t, name: name, file: path)
            // A strided view (stride 0 repeats elements) is copied out when read: bounded by the
            // checkpoint's own size so a huge size cannot allocate terabytes.
            if !t.isContiguous {
                let (count, o1) = t.shape.reduce((1, false)) { acc, d in
                    let (p, ov) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || ov)
                }
                let (bytes, o2) = count.multipliedReportingOverflow(by: s.dtype.byteSize)
                guard !o1, !o2, bytes <= max(file.size, 1 << 20) else {
                    throw PyTorchError.badTensorLayout(
                        file: path, tensor: name,
                        detail:
                            "size \(t.shape) with stride \(t.stride) would copy \(o1 || o2 ? "more than \(Int.max)" : "\(bytes)") bytes out of a \(file.size)-byte file"
                    )
                }
            }
        }
        storageData = storages
    }

    /// Checks that sizes and strides are non-negative and the furthest element lies inside the storage.
    static func checkReach(_ t: PyTorchTensorRef, name: String, file: String) throws {
        guard t.storageOffset >= 0 else {
            throw PyTorchError.storageOutOfRange(
                file: file, tensor: name, detail: "negative storage offset \(t.storageOffset)")
        }
        guard t.shape.allSatisfy({ $0 >= 0 }), t.stride.allSatisfy({ $0 >= 0 }) else {
            throw PyTorchError.badTensorLayout(
                file: file, tensor: name, detail: "size \(t.shape), stride \(t.stride) must be non-negative")
        }
        var count = 1, last = 0
        for (d, st) in zip(t.shape, t.stride) {
            let (c, o1) = count.multipliedReportingOverflow(by: d)
            guard !o1 else {
                throw PyTorchError.badTensorLayout(file: file, tensor: name, detail: "size \(t.shape) overflows")
            }
            count = c
            if d > 0 {
                let (r, o2) = (d - 1).multipliedReportingOverflow(by: st)
                let (l, o3) = last.addingReportingOverflow(r)
                guard !o2, !o3 else {
                    throw PyTorchError.badTensorLayout(file: file, tensor: name, detail: "stride \(t.stride) overflows")
                }
                last = l
            }
        }
        if count == 0 { return }
        let (end, o) = t.storageOffset.addingReportingOverflow(last)
        guard !o, end < t.storage.count else {
            throw PyTorchError.storageOutOfRange(
                file: file, tensor: name,
                detail:
                    "offset \(t.storageOffset) with size \(t.shape) and stride \(t.stride) reaches element \(o ? Int.max : end), but storage \(t.storage.key) has \(t.storage.count)"
            )
        }
    }

    /// Whether a tensor of this name exists.
    public func contains(_ name: String) -> Bool { refs[name] != nil }

    /// How a tensor is stored (storage, offset, shape, strides).
    public func reference(_ name: String) -> PyTorchTensorRef? { refs[name] }

    /// The tensor: a view into the mapped archive when contiguous, else a row-major copy.
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = refs[name] else { throw PyTorchError.missingTensor(file: path, tensor: name) }
        let data = storageData[t.storage.key]!
        let dt = t.storage.dtype
        let count = t.shape.reduce(1, *)
        if count == 0 {
            let buf = AlignedBuffer<UInt8>(count: 1)
            return Tensor(name: name, dtype: dt, shape: t.shape, data: UnsafeRawPointer(buf.pointer), owner: buf)
        }
        let base = data.baseAddress!
        if t.isContiguous {
            return Tensor(
                name: name, dtype: dt, shape: t.shape, data: base + t.storageOffset * dt.byteSize, owner: archive.file)
        }
        // Gather a strided view into a row-major buffer.
        let es = dt.byteSize
        let buf = AlignedBuffer<UInt8>(count: count * es)
        let rank = t.shape.count
        var idx = [Int](repeating: 0, count: rank)
        var src = t.storageOffset
        for i in 0..<count {
            (buf.pointer + i * es).update(from: base.assumingMemoryBound(to: UInt8.self) + src * es, count: es)
            var d = rank - 1
            while d >= 0 {
                idx[d] += 1
                src += t.stride[d]
                if idx[d] < t.shape[d] { break }
                src -= t.stride[d] * t.shape[d]
                idx[d] = 0
                d -= 1
            }
        }
        return Tensor(name: name, dtype: dt, shape: t.shape, data: UnsafeRawPointer(buf.pointer), owner: buf)
    }

    /// An integer entry (such as `sparse_threshold.model.layers.0.self_attn.q_proj`).
    public func int(_ name: String) -> Int? {
        if case let .int(i)? = scalars[name] { return i }
        return nil
    }

    /// Whether the file starts like a zip archive (`PK\u{3}\u{4}`), i.e. could be a torch.save checkpoint.
    public static func looksLikeZip(path: String) -> Bool {
        guard let f = try? MappedFile(path: path), f.size >= 4, let b = f.base else { return false }
        return b.loadUnaligned(as: UInt32.self).littleEndian == 0x0403_4b50
    }
}
