import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// The restricted unpickler and zip reader against checkpoints written by torch.save
/// (scripts/fixtures/make_squeezellm_fixtures.py), and malicious or malformed inputs.
@Suite struct PyTorchCheckpointTests {
    static func fixture(_ name: String) -> String { Fixtures.path("pytorch/" + name) }

    static func pyTorchError(
        _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation
    ) -> PyTorchError? {
        do {
            try body()
            Issue.record("expected a PyTorchError, nothing was thrown", sourceLocation: sourceLocation)
        } catch let e as PyTorchError {
            return e
        } catch {
            Issue.record("expected a PyTorchError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    /// Every dtype, a transposed (non-contiguous) view, a slice at a storage offset, a 0-d tensor,
    /// an nn.Parameter, a nested dict and int entries: values and shapes equal what torch saved.
    @Test func readsEveryDtypeAndLayoutAsTorchSavedThem() throws {
        let ck = try PyTorchCheckpoint(path: Self.fixture("state_dict.pt"))
        let exp = try Fixtures.json("pytorch/state_dict_expected.json")
        let tensors = exp["tensors"] as! [String: [String: Any]]
        let dtypes: [String: DType] = [
            "float32": .f32, "float16": .f16, "bfloat16": .bf16, "float64": .f64, "int64": .i64,
            "int32": .i32, "int16": .i16, "int8": .i8, "uint8": .u8, "bool": .bool,
        ]
        #expect(Set(ck.tensorNames) == Set(tensors.keys))
        for (name, e) in tensors {
            let t = try ck.tensor(name)
            #expect(t.shape == (e["shape"] as! [NSNumber]).map { $0.intValue }, "\(name) shape")
            #expect(t.dtype == dtypes[e["dtype"] as! String], "\(name) dtype")
            let want = (e["values"] as! [NSNumber]).map { $0.doubleValue }
            let got: [Double] = t.dtype == .i64 ? t.toIntArray().map(Double.init) : t.toFloatArray().map(Double.init)
            #expect(got.count == want.count, "\(name) count")
            for (g, w) in zip(got, want) { #expect(abs(g - w) <= 1e-6 * max(1, abs(w)), "\(name): \(g) vs \(w)") }
        }
        #expect(ck.int("sparse_threshold.layer") == 17)
        #expect(ck.int("nested.count") == 3)
        if case .string("tiny")? = ck.scalars["name"] {} else { Issue.record("string entry 'name' not read") }
        // Storage sharing: the transposed view and the row slice point into one storage.
        let tr = try #require(ck.reference("transposed")), row = try #require(ck.reference("row2"))
        #expect(!tr.isContiguous && tr.stride == [1, 6])
        #expect(row.storage.key == tr.storage.key && row.storageOffset == 12)
        // Contiguous tensors are views into the mapping, not copies.
        let f = try ck.tensor("f32")
        let base = try #require(ck.archive.file.base)
        #expect(f.data >= base && f.data < base + ck.archive.file.size)
        #expect(f.owner === ck.archive.file)
    }

    /// The zip reader's entries, local header offsets and CRCs equal Python zipfile's listing.
    @Test func zipEntriesMatchPythonZipfile() throws {
        let z = try ZipArchive(path: Self.fixture("state_dict.pt"))
        let listing = try Fixtures.json("pytorch/state_dict_expected.json")["zip"] as! [[String: Any]]
        #expect(z.entries.map(\.name) == listing.map { $0["name"] as! String })
        for (e, l) in zip(z.entries, listing) {
            #expect(e.uncompressedSize == (l["size"] as! NSNumber).intValue)
            #expect(e.crc32 == (l["crc"] as! NSNumber).uint32Value)
            #expect(e.localHeaderOffset == (l["header_offset"] as! NSNumber).intValue)
            #expect(e.method == 0)
            try z.verifyCRC(e)
        }
    }

    /// A pickle that would call os.system (pickled by Python as posix.system) is refused by name
    /// before anything runs; so is builtins.eval reached through STACK_GLOBAL (protocol 4).
    @Test func refusesPicklesThatWouldRunCode() {
        let e1 = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("evil_os_system.pt")) }
        guard case let .forbiddenGlobal(_, m, n)? = e1 else { Issue.record("got \(String(describing: e1))"); return }
        #expect(["posix", "os", "nt"].contains(m) && n == "system")
        #expect(e1!.description.contains("\(m).system"))
        let e2 = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("evil_eval.pt")) }
        #expect(e2 == .forbiddenGlobal(file: Self.fixture("evil_eval.pt"), module: "builtins", name: "eval"))
    }

    @Test func refusesStorageOffsetOutOfRange() {
        let e = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("offset_out_of_range.pt")) }
        guard case let .storageOutOfRange(_, t, d)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(t == "w" && d.contains("offset 100"))
    }

    @Test func refusesUnsupportedDType() {
        let e = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("complex_dtype.pt")) }
        guard case let .unsupportedDType(_, _, s)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(s == "ComplexFloatStorage")
    }

    /// The storage claims 4 floats, its entry holds 8 bytes.
    @Test func refusesStorageShorterThanItsSize() {
        let e = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("short_storage.pt")) }
        guard case let .storageOutOfRange(_, t, d)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(t == "w" && d.contains("8 bytes"))
    }

    @Test func refusesCompressedTensorData() {
        let e = Self.pyTorchError { _ = try PyTorchCheckpoint(path: Self.fixture("deflated.pt")) }
        guard case let .unsupportedEntry(_, entry, d)? = e else { Issue.record("got \(String(describing: e))"); return }
        #expect(entry.hasSuffix("data/0") && d.contains("method 8"))
    }

    /// Every truncation of a real checkpoint is refused with a PyTorchError (never a crash).
    @Test func truncatedArchivesAreRefused() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.fixture("state_dict.pt"))))
        let tmp = try TempDir()
        var cuts = Set([0, 1, 4, 21, 22, 100, bytes.count / 2, bytes.count - 23, bytes.count - 22, bytes.count - 1])
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<30 { cuts.insert(Int.random(in: 0..<bytes.count, using: &rng)) }
        for c in cuts.sorted() {
            let p = try tmp.write("t\(c).pt", Array(bytes[..<c]))
            #expect(Self.pyTorchError { _ = try PyTorchCheckpoint(path: p) } != nil, "cut at \(c)")
        }
    }

    /// A file that is not a zip, and the legacy (pre-1.6) format, are named as such.
    @Test func notAZipAndLegacyFormat() throws {
        let tmp = try TempDir()
        let junk = try tmp.write("junk.pt", Array(repeating: 0x41, count: 200))
        guard case .notAZipArchive? = Self.pyTorchError({ _ = try PyTorchCheckpoint(path: junk) }) else {
            Issue.record("junk not refused as a non-zip"); return
        }
        let legacy = try tmp.write("legacy.pt", [0x80, 0x02, 0x8A, 0x0A] + Array(repeating: 0, count: 40))
        guard case .unsupportedFormat? = Self.pyTorchError({ _ = try PyTorchCheckpoint(path: legacy) }) else {
            Issue.record("legacy format not named"); return
        }
    }

    static func unpickle(_ b: [UInt8]) throws -> PickleValue {
        try b.withUnsafeBytes { try RestrictedUnpickler(bytes: $0, file: "test.pkl").load() }
    }

    /// Hand-made pickles: what is allowed works; stack underflow, unknown memo, unknown opcodes
    /// (NEWOBJ, INST), REDUCE on a non-callable and a missing STOP are typed errors.
    @Test func handMadePickles() throws {
        // {'a': 1, 'b': (2, 'x')} with memo use: PROTO 2, EMPTY_DICT, BINPUT 0, MARK, 'a', 1, 'b', 2, 'x', TUPLE2, SETITEMS, STOP
        let ok: [UInt8] = [
            0x80, 2, 0x7D, 0x71, 0, 0x28, 0x58, 1, 0, 0, 0, 0x61, 0x4B, 1, 0x58, 1, 0, 0, 0, 0x62,
            0x4B, 2, 0x8C, 1, 0x78, 0x86, 0x75, 0x2E,
        ]
        guard case let .dict(d) = try Self.unpickle(ok), case .int(1)? = d["a"], case let .tuple(t)? = d["b"],
            t.count == 2
        else {
            Issue.record("allowed pickle not read"); return
        }
        let cases: [([UInt8], String)] = [
            ([0x80, 2, 0x2E], "stack underflow"),
            ([0x80, 2, 0x68, 5, 0x2E], "memo index 5"),
            ([0x80, 2, 0x7D], "without STOP"),
            ([0x80, 2, 0x4B, 1, 0x29, 0x52, 0x2E], "not an allowed callable"),
            ([0x80, 2, 0x58, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E], "runs past the end"),
        ]
        for (b, want) in cases {
            do {
                _ = try Self.unpickle(b)
                Issue.record("accepted: \(want)")
            } catch let PyTorchError.malformedPickle(_, _, d) {
                #expect(d.contains(want), "\(d) should mention \(want)")
            }
        }
        for op: UInt8 in [0x81, 0x69, 0x6F, 0x82, 0x92] {
            do { _ = try Self.unpickle([0x80, 2, op, 0x2E]); Issue.record("opcode \(op) accepted") } catch let
                PyTorchError.unsupportedOpcode(_, o, at)
            {
                #expect(o == op && at == 2)
            }
        }
    }

    /// Random byte flips in a real data.pkl never crash the unpickler: each run returns or throws a PyTorchError.
    @Test func mutatedPicklesNeverCrash() throws {
        let z = try ZipArchive(path: Self.fixture("state_dict.pt"))
        let pkl = try #require(z.entries.first { $0.name.hasSuffix("data.pkl") })
        let orig = Array(try z.data(pkl))
        var rng = SystemRandomNumberGenerator()
        var refused = 0
        for _ in 0..<2000 {
            var b = orig
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0..<b.count, using: &rng))) }
            do { _ = try Self.unpickle(b) } catch is PyTorchError { refused += 1 }
        }
        #expect(refused > 0)
    }
}

/// ZIP64 archives (torch.save writes them past 4 GiB): built here byte by byte with every size and
/// offset in ZIP64 extra fields and a ZIP64 end-of-central-directory record, from the entries of a
/// real torch.save file; the checkpoint read from it equals the original.
@Suite struct Zip64Tests {
    static func zip64(_ entries: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        for (name, data) in entries {
            let crc = data.withUnsafeBytes { CRC32.checksum($0) }
            let lho = UInt64(out.count), n = Array(name.utf8)
            out +=
                le(UInt32(0x0403_4b50)) + le(UInt16(45)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
            out += le(crc) + le(UInt32.max) + le(UInt32.max) + le(UInt16(n.count)) + le(UInt16(20)) + n
            out += le(UInt16(1)) + le(UInt16(16)) + le(UInt64(data.count)) + le(UInt64(data.count)) + data
            central +=
                le(UInt32(0x0201_4b50)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt16(0)) + le(UInt16(0))
                + le(UInt16(0)) + le(UInt16(0))
            central += le(crc) + le(UInt32.max) + le(UInt32.max) + le(UInt16(n.count)) + le(UInt16(28)) + le(UInt16(0))
            central += le(UInt16(0)) + le(UInt16(0)) + le(UInt32(0)) + le(UInt32.max) + n
            central += le(UInt16(1)) + le(UInt16(24)) + le(UInt64(data.count)) + le(UInt64(data.count)) + le(lho)
        }
        let cdOffset = UInt64(out.count)
        out += central
        let rec = UInt64(out.count)
        out +=
            le(UInt32(0x0606_4b50)) + le(UInt64(44)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt32(0)) + le(UInt32(0))
        out += le(UInt64(entries.count)) + le(UInt64(entries.count)) + le(UInt64(central.count)) + le(cdOffset)
        out += le(UInt32(0x0706_4b50)) + le(UInt32(0)) + le(rec) + le(UInt32(1))
        out += le(UInt32(0x0605_4b50)) + le(UInt16.max) + le(UInt16.max) + le(UInt16.max) + le(UInt16.max)
        out += le(UInt32.max) + le(UInt32.max) + le(UInt16(0))
        return out
    }

    @Test func zip64ArchiveReadsLikeTheOriginal() throws {
        let orig = try PyTorchCheckpoint(path: PyTorchCheckpointTests.fixture("state_dict.pt"))
        let entries = try orig.archive.entries.map { ($0.name, Array(try orig.archive.data($0))) }
        let tmp = try TempDir()
        let p = try tmp.write("z64.pt", Self.zip64(entries))
        let z = try ZipArchive(path: p)
        #expect(z.entries.map(\.name) == entries.map(\.0))
        for e in z.entries { try z.verifyCRC(e) }
        let ck = try PyTorchCheckpoint(path: p)
        #expect(ck.tensorNames == orig.tensorNames)
        for n in orig.tensorNames { #expect(try ck.tensor(n).toFloatArray() == orig.tensor(n).toFloatArray(), "\(n)") }
        // ZIP64 fields without the locator are refused.
        var broken = Self.zip64(entries)
        let loc = broken.count - 22 - 20
        broken[loc] = 0
        let q = try tmp.write("broken.pt", broken)
        guard case .corruptArchive? = PyTorchCheckpointTests.pyTorchError({ _ = try ZipArchive(path: q) }) else {
            Issue.record("missing ZIP64 locator not refused"); return
        }
    }
}
