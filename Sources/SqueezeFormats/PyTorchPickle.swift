import SqueezeCore

/// A mutable Python list (APPEND may reach it through the memo after it was stored).
public final class PickleList {
    public var items: [PickleValue] = []
    /// Nesting depth while unpickling (1 + the deepest item).
    var depth = 1
    /// Set once the list is placed in another container; it may not change after that.
    var nested = false
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// A mutable Python dict (`dict` or `collections.OrderedDict`), in insertion order.
public final class PickleDict {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var index: [PickleKey: Int] = [:]
    /// Nesting depth while unpickling (1 + the deepest key or value).
    var depth = 1
    /// Set once the dict is placed in another container; it may not change after that.
    var nested = false
    init() {}

    /// Sets `key` (replacing an existing value, as Python does).
    func set(_ key: PickleValue, _ value: PickleValue) {
        if let k = PickleKey(key), let i = index[k] { values[i] = value; return }
        if let k = PickleKey(key) { index[k] = keys.count }
        keys.append(key)
        values.append(value)
    }

    /// The value under a string key.
    public subscript(_ key: String) -> PickleValue? {
        index[.string(key)].map { values[$0] }
    }

    /// (key, value) pairs in insertion order.
    public var pairs: [(PickleValue, PickleValue)] { Array(zip(keys, values)) }
}

/// Hashable dictionary keys (strings and ints are all a state dict uses).
enum PickleKey: Hashable {
    case string(String), int(Int)
    init?(_ v: PickleValue) {
        switch v {
        case let .string(s): self = .string(s)
        case let .int(i): self = .int(i)
        default: return nil
        }
    }
}

/// A PyTorch storage referenced by a persistent id: `('storage', torch.FloatStorage, key, location, numel)`.
public struct PyTorchStorageRef: Sendable, Equatable {
    /// The archive key: data lives in entry `<prefix>/data/<key>`.
    public let key: String
    /// The element type named by the storage class.
    public let dtype: DType
    /// The storage class name as written (for messages).
    public let typeName: String
    /// Number of elements the pickle says the storage holds.
    public let count: Int
}

/// A tensor as `torch._utils._rebuild_tensor_v2` would rebuild it: a view of a storage.
public struct PyTorchTensorRef: Sendable, Equatable {
    public let storage: PyTorchStorageRef
    /// Offset into the storage, in elements.
    public let storageOffset: Int
    public let shape: [Int]
    /// Strides in elements.
    public let stride: [Int]

    /// Whether the strides are those of a row-major contiguous tensor (size-1 dims ignored).
    public var isContiguous: Bool {
        var expected = 1
        for d in stride.indices.reversed() {
            if shape[d] != 1 && stride[d] != expected { return false }
            // Sizes come from the file: an overflowing product is not a layout this reads as contiguous.
            let (p, o) = expected.multipliedReportingOverflow(by: shape[d])
            if o { return false }
            expected = p
        }
        return true
    }
}

/// The values the restricted unpickler produces. Anything it cannot represent is refused.
public indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// An allowed global that is a value in itself (a storage class or a dtype), as `module.name`.
    case global(module: String, name: String)
    case storage(PyTorchStorageRef)
    case tensor(PyTorchTensorRef)

    /// A short description for error messages.
    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case let .global(m, n): return "\(m).\(n)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// A pickle reader that never executes code: it implements the opcodes `torch.save` uses for state
/// dicts (protocols 2 to 5) and resolves only these globals:
/// `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`
/// (and `_rebuild_parameter_with_state`), the typed storage classes (`torch.FloatStorage`,
/// `torch.HalfStorage`, `torch.BFloat16Storage`, `torch.DoubleStorage`, `torch.LongStorage`,
/// `torch.IntStorage`, `torch.ShortStorage`, `torch.CharStorage`, `torch.ByteStorage`,
/// `torch.BoolStorage`, `torch.UntypedStorage`) and `torch` dtypes (`torch.float16`, ...).
/// Any other global (`os.system`, `posix.system`, `builtins.eval`, ...) is refused by name before
/// anything else happens, as is any opcode outside the list (NEWOBJ, INST, OBJ, EXT*, ...).
public struct RestrictedUnpickler {
    /// Storage class names and their element types.
    public static let storageTypes: [String: DType] = [
        "FloatStorage": .f32, "HalfStorage": .f16, "BFloat16Storage": .bf16, "DoubleStorage": .f64,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool, "UntypedStorage": .u8,
    ]
    /// `torch` dtype names accepted as plain values.
    public static let dtypeNames: Set<String> = [
        "float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32", "int",
        "int16", "short", "int8", "uint8", "bool",
    ]
    /// Callables REDUCE may apply.
    enum Callable: Equatable { case orderedDict, rebuildTensor, rebuildParameter }

    /// Largest memo index and stack depth accepted (a state dict of a 70B model uses a few thousand).
    static let maxMemo = 50_000_000
    /// Deepest nesting of containers accepted (a state dict nests a few levels): deeper values
    /// would overflow the stack when they are freed.
    static let maxNesting = 256

    let file: String
    let bytes: UnsafeRawBufferPointer

    /// Reads a pickle held in `bytes`; `file` names it in errors.
    public init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    /// A stack or memo entry; a value carries its nesting depth (0 for scalars).
    private enum Item {
        case value(PickleValue, depth: Int)
        case callable(Callable)
        case mark
    }

    /// Runs the pickle to its STOP and returns the top-level object.
    public func load() throws -> PickleValue {
        var stack: [Item] = []
        var memo: [Int: Item] = [:]
        var pos = 0
        let n = bytes.count
        let file = self.file

        func fail(_ d: String, at o: Int) -> PyTorchError { .malformedPickle(file: file, offset: o, detail: d) }
        func need(_ k: Int, _ at: Int) throws {
            guard k >= 0, pos <= n, k <= n - pos else {
                throw fail("argument of \(k) bytes runs past the end of the pickle (\(n) bytes)", at: at)
            }
        }
        func readU8(_ at: Int) throws -> Int { try need(1, at); defer { pos += 1 }; return Int(bytes[pos]) }
        func readLE(_ k: Int, _ at: Int) throws -> UInt64 {
            try need(k, at)
            var v: UInt64 = 0
            for i in 0..<k { v |= UInt64(bytes[pos + i]) << UInt64(8 * i) }
            pos += k
            return v
        }
        func readBytes(_ k: Int, _ at: Int) throws -> UnsafeRawBufferPointer {
            try need(k, at)
            defer { pos += k }
            return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + k)])
        }
        func readLine(_ at: Int) throws -> String {
            var e = pos
            while e < n && bytes[e] != 0x0A { e += 1 }
            guard e < n else { throw fail("unterminated text argument", at: at) }
            defer { pos = e + 1 }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<e]), as: UTF8.self)
        }
        func pop(_ at: Int) throws -> Item {
            guard let top = stack.popLast() else { throw fail("stack underflow", at: at) }
            return top
        }
        // Nesting is tracked so a pickle cannot build values deep enough to overflow the stack:
        // lists and dicts are sealed once placed in a container (torch.save fills each container
        // before nesting it), so a container's depth is final when it is nested.
        func depthOf(_ v: PickleValue, _ stored: Int) -> Int {
            switch v {
            case let .list(l): return l.depth
            case let .dict(d): return d.depth
            default: return stored
            }
        }
        func seal(_ v: PickleValue) {
            if case let .list(l) = v { l.nested = true }
            if case let .dict(d) = v { d.nested = true }
        }
        func checkDepth(_ d: Int, _ at: Int) throws -> Int {
            guard d <= Self.maxNesting else { throw fail("containers nested deeper than \(Self.maxNesting)", at: at) }
            return d
        }
        func push(_ v: PickleValue) { stack.append(.value(v, depth: 0)) }
        /// Pushes a new container holding items whose deepest has depth `inner`.
        func pushContainer(_ v: PickleValue, inner: Int, _ at: Int) throws {
            let d = try checkDepth(inner + 1, at)
            if case let .list(l) = v { l.depth = d }
            if case let .dict(x) = v { x.depth = d }
            stack.append(.value(v, depth: d))
        }
        func popValueD(_ at: Int) throws -> (PickleValue, Int) {
            switch try pop(at) {
            case let .value(v, d): return (v, depthOf(v, d))
            case .mark: throw fail("unexpected MARK on the stack", at: at)
            case .callable: throw fail("a callable used as a value", at: at)
            }
        }
        func popValue(_ at: Int) throws -> PickleValue { try popValueD(at).0 }
        /// Pops a value that goes into a container: sealed, with its depth.
        func popItem(_ at: Int) throws -> (PickleValue, Int) {
            let (v, d) = try popValueD(at)
            seal(v)
            return (v, d)
        }
        /// Pops the values above the topmost MARK (sealed, as they go into a container) and their deepest depth.
        func popMark(_ at: Int) throws -> ([PickleValue], Int) {
            guard let m = stack.lastIndex(where: { if case .mark = $0 { return true } else { return false } }) else {
                throw fail("no MARK on the stack", at: at)
            }
            var out: [PickleValue] = []
            var deepest = 0
            out.reserveCapacity(stack.count - m - 1)
            for item in stack[(m + 1)...] {
                guard case let .value(v, d) = item else { throw fail("a callable used as a value", at: at) }
                seal(v)
                deepest = max(deepest, depthOf(v, d))
                out.append(v)
            }
            stack.removeSubrange(m...)
            return (out, deepest)
        }
        /// The list or dict on top of the stack, to be filled: refused once sealed.
        func fillable(_ at: Int, _ what: String) throws -> PickleValue {
            guard case let .value(v, _) = try top(at) else { throw fail("\(what) on a callable", at: at) }
            if case let .list(l) = v, l.nested {
                throw fail("\(what) on a list already placed in another container", at: at)
            }
            if case let .dict(d) = v, d.nested {
                throw fail("\(what) on a dict already placed in another container", at: at)
            }
            return v
        }
        func top(_ at: Int) throws -> Item {
            guard let t = stack.last else { throw fail("stack underflow", at: at) }
            return t
        }
        func put(_ i: Int, _ at: Int) throws {
            guard i >= 0, i < Self.maxMemo else { throw fail("memo index \(i) out of range", at: at) }
            memo[i] = try top(at)
        }
        func get(_ i: Int, _ at: Int) throws {
            guard let v = memo[i] else { throw fail("memo index \(i) was never stored", at: at) }
            stack.append(v)
        }
        func resolve(_ module: String, _ name: String) throws -> Item {
            func value(_ v: PickleValue) -> Item { .value(v, depth: 0) }
            switch (module, name) {
            case ("collections", "OrderedDict"): return .callable(.orderedDict)
            case ("torch._utils", "_rebuild_tensor_v2"): return .callable(.rebuildTensor)
            case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
                return .callable(.rebuildParameter)
            default: break
            }
            // Storage classes are inert markers here (never called): one of an unsupported dtype
            // (ComplexFloatStorage, QInt8Storage, ...) is named as such when a tensor uses it.
            if module == "torch" && name.hasSuffix("Storage") && name.allSatisfy({ $0.isLetter || $0.isNumber }) {
                return value(.global(module: module, name: name))
            }
            if module == "torch.storage" && (name == "UntypedStorage" || name == "TypedStorage") {
                return value(.global(module: module, name: name))
            }
            if module == "torch" && Self.dtypeNames.contains(name) { return value(.global(module: module, name: name)) }
            throw PyTorchError.forbiddenGlobal(file: file, module: module, name: name)
        }
        func int(_ v: PickleValue, _ what: String, _ at: Int) throws -> Int {
            switch v {
            case let .int(i): return i
            case let .bool(b): return b ? 1 : 0
            default: throw fail("\(what) should be an int, got \(v.kind)", at: at)
            }
        }
        func ints(_ v: PickleValue, _ what: String, _ at: Int) throws -> [Int] {
            guard case let .tuple(items) = v else {
                if case let .list(l) = v { return try l.items.map { try int($0, what, at) } }
                throw fail("\(what) should be a tuple of ints, got \(v.kind)", at: at)
            }
            return try items.map { try int($0, what, at) }
        }
        func persistentLoad(_ pid: PickleValue, _ at: Int) throws -> PickleValue {
            guard case let .tuple(t) = pid, t.count >= 5, case .string("storage") = t[0] else {
                throw fail("persistent id is not a ('storage', type, key, location, numel) tuple", at: at)
            }
            guard case let .global(_, typeName) = t[1] else {
                throw fail("persistent id names no storage type", at: at)
            }
            guard case let .string(key) = t[2] else { throw fail("persistent id key is not a string", at: at) }
            let count = try int(t[4], "storage size", at)
            guard count >= 0 else { throw fail("negative storage size \(count)", at: at) }
            guard let dt = Self.storageTypes[typeName] else {
                throw PyTorchError.unsupportedDType(file: file, tensor: "storage \(key)", storageType: typeName)
            }
            return .storage(PyTorchStorageRef(key: key, dtype: dt, typeName: typeName, count: count))
        }
        func apply(_ c: Callable, _ args: [PickleValue], _ at: Int) throws -> PickleValue {
            switch c {
            case .orderedDict:
                guard args.isEmpty else { throw fail("OrderedDict called with \(args.count) arguments", at: at) }
                return .dict(PickleDict())
            case .rebuildTensor:
                guard args.count >= 4, case let .storage(s) = args[0] else {
                    throw fail("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)", at: at)
                }
                let off = try int(args[1], "storage offset", at)
                let size = try ints(args[2], "tensor size", at)
                let stride = try ints(args[3], "tensor stride", at)
                guard size.count == stride.count else {
                    throw fail("size \(size) and stride \(stride) differ in rank", at: at)
                }
                return .tensor(PyTorchTensorRef(storage: s, storageOffset: off, shape: size, stride: stride))
            case .rebuildParameter:
                guard let first = args.first, case .tensor = first else {
                    throw fail("_rebuild_parameter needs a tensor", at: at)
                }
                return first
            }
        }

        while true {
            let at = pos
            guard pos < n else { throw fail("the pickle ends without STOP", at: at) }
            let op = bytes[pos]
            pos += 1
            switch op {
            case 0x80: _ = try readU8(at)  // PROTO
            case 0x95: _ = try readLE(8, at)  // FRAME
            case 0x2E:  // STOP
                let v = try popValue(at)
                return v
            case 0x28: stack.append(.mark)  // MARK
            case 0x30: _ = try pop(at)  // POP
            case 0x31: _ = try popMark(at)  // POP_MARK
            case 0x32: stack.append(try top(at))  // DUP
            case 0x7D: try pushContainer(.dict(PickleDict()), inner: 0, at)  // EMPTY_DICT
            case 0x5D: try pushContainer(.list(PickleList()), inner: 0, at)  // EMPTY_LIST
            case 0x29: try pushContainer(.tuple([]), inner: 0, at)  // EMPTY_TUPLE
            case 0x74:  // TUPLE
                let (items, d) = try popMark(at)
                try pushContainer(.tuple(items), inner: d, at)
            case 0x85:  // TUPLE1
                let (a, da) = try popItem(at)
                try pushContainer(.tuple([a]), inner: da, at)
            case 0x86:  // TUPLE2
                let (b, db) = try popItem(at), (a, da) = try popItem(at)
                try pushContainer(.tuple([a, b]), inner: max(da, db), at)
            case 0x87:  // TUPLE3
                let (c, dc) = try popItem(at), (b, db) = try popItem(at), (a, da) = try popItem(at)
                try pushContainer(.tuple([a, b, c]), inner: max(da, db, dc), at)
            case 0x6C:  // LIST
                let (items, d) = try popMark(at)
                try pushContainer(.list(PickleList(items)), inner: d, at)
            case 0x64:  // DICT
                let (items, depth) = try popMark(at)
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items", at: at) }
                let d = PickleDict()
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                try pushContainer(.dict(d), inner: depth, at)
            case 0x71: try put(try readU8(at), at)  // BINPUT
            case 0x72: try put(Int(try readLE(4, at)), at)  // LONG_BINPUT
            case 0x94: try put(memo.count, at)  // MEMOIZE
            case 0x70:  // PUT
                guard let i = Int(try readLine(at)) else { throw fail("PUT with a non-integer index", at: at) }
                try put(i, at)
            case 0x68: try get(try readU8(at), at)  // BINGET
            case 0x6A: try get(Int(try readLE(4, at)), at)  // LONG_BINGET
            case 0x67:  // GET
                guard let i = Int(try readLine(at)) else { throw fail("GET with a non-integer index", at: at) }
                try get(i, at)
            case 0x4A: push(.int(Int(Int32(truncatingIfNeeded: try readLE(4, at)))))  // BININT
            case 0x4B: push(.int(try readU8(at)))  // BININT1
            case 0x4D: push(.int(Int(try readLE(2, at))))  // BININT2
            case 0x8A, 0x8B:  // LONG1, LONG4
                let len = op == 0x8A ? try readU8(at) : Int(Int32(truncatingIfNeeded: try readLE(4, at)))
                guard len >= 0, len <= 8 else { throw fail("integer of \(len) bytes is too large", at: at) }
                let b = try readBytes(len, at)
                var v: UInt64 = 0
                for i in 0..<len { v |= UInt64(b[i]) << UInt64(8 * i) }
                if len > 0 && len < 8 && b[len - 1] & 0x80 != 0 { v |= ~UInt64(0) << UInt64(8 * len) }  // sign-extend
                push(.int(Int(Int64(bitPattern: v))))
            case 0x49:  // INT (text)
                let s = try readLine(at)
                if s == "00" {
                    push(.bool(false))
                } else if s == "01" {
                    push(.bool(true))
                } else if let i = Int(s) {
                    push(.int(i))
                } else {
                    throw fail("INT '\(s)' is not an integer", at: at)
                }
            case 0x47:  // BINFLOAT (big-endian)
                let b = try readBytes(8, at)
                var v: UInt64 = 0
                for i in 0..<8 { v = v << 8 | UInt64(b[i]) }
                push(.float(Double(bitPattern: v)))
            case 0x4E: push(.none)  // NONE
            case 0x88: push(.bool(true))  // NEWTRUE
            case 0x89: push(.bool(false))  // NEWFALSE
            case 0x58, 0x8C, 0x8D:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                let len = op == 0x8C ? try readU8(at) : Int(clamping: try readLE(op == 0x58 ? 4 : 8, at))
                let b = try readBytes(len, at)
                guard let s = String(validating: b, as: UTF8.self) else {
                    throw fail("string is not valid UTF-8", at: at)
                }
                push(.string(s))
            case 0x55, 0x54:  // SHORT_BINSTRING, BINSTRING
                let len = op == 0x55 ? try readU8(at) : Int(Int32(truncatingIfNeeded: try readLE(4, at)))
                let b = try readBytes(len, at)
                push(.string(String(decoding: b, as: UTF8.self)))
            case 0x43, 0x42, 0x8E:  // SHORT_BINBYTES, BINBYTES, BINBYTES8
                let len = op == 0x43 ? try readU8(at) : Int(clamping: try readLE(op == 0x42 ? 4 : 8, at))
                push(.bytes(Array(try readBytes(len, at))))
            case 0x63:  // GLOBAL
                let module = try readLine(at), name = try readLine(at)
                stack.append(try resolve(module, name))
            case 0x93:  // STACK_GLOBAL
                let nameV = try popValue(at), moduleV = try popValue(at)
                guard case let .string(module) = moduleV, case let .string(name) = nameV else {
                    throw fail("STACK_GLOBAL needs two strings", at: at)
                }
                stack.append(try resolve(module, name))
            case 0x52:  // REDUCE
                let argsV = try popValue(at)
                guard case let .callable(c) = try pop(at) else {
                    throw fail("REDUCE on something that is not an allowed callable", at: at)
                }
                guard case let .tuple(args) = argsV else { throw fail("REDUCE arguments are not a tuple", at: at) }
                // The result holds no containers of the pickle (a dict, a tensor, or the tensor argument).
                let r = try apply(c, args, at)
                if case .dict = r { try pushContainer(r, inner: 0, at) } else { push(r) }
            case 0x62:  // BUILD: object state is not needed; dropped
                _ = try popValue(at)
                guard case .value = try top(at) else { throw fail("BUILD on a callable", at: at) }
            case 0x51:  // BINPERSID
                push(try persistentLoad(try popValue(at), at))
            case 0x73:  // SETITEM
                let (v, dv) = try popItem(at), (k, dk) = try popItem(at)
                guard case let .dict(d) = try fillable(at, "SETITEM") else {
                    throw fail("SETITEM on a non-dict", at: at)
                }
                d.depth = max(d.depth, try checkDepth(max(dv, dk) + 1, at))
                d.set(k, v)
            case 0x75:  // SETITEMS
                let (items, depth) = try popMark(at)
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items", at: at) }
                guard case let .dict(d) = try fillable(at, "SETITEMS") else {
                    throw fail("SETITEMS on a non-dict", at: at)
                }
                d.depth = max(d.depth, try checkDepth(depth + 1, at))
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x61:  // APPEND
                let (v, dv) = try popItem(at)
                guard case let .list(l) = try fillable(at, "APPEND") else { throw fail("APPEND on a non-list", at: at) }
                l.depth = max(l.depth, try checkDepth(dv + 1, at))
                l.items.append(v)
            case 0x65:  // APPENDS
                let (items, depth) = try popMark(at)
                guard case let .list(l) = try fillable(at, "APPENDS") else {
                    throw fail("APPENDS on a non-list", at: at)
                }
                l.depth = max(l.depth, try checkDepth(depth + 1, at))
                l.items.append(contentsOf: items)
            default:
                throw PyTorchError.unsupportedOpcode(file: file, opcode: op, offset: at)
            }
            if stack.count > Self.maxMemo { throw fail("stack deeper than \(Self.maxMemo)", at: at) }
        }
    }
}
