import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// `AtomicDirectory` and `AtomicFile`: the destination appears whole or not at all, an existing one
/// is replaced only by a successful write, and no temporary outlives a failure.
@Suite struct AtomicWriteTests {
    struct Failure: Error {}

    /// Writes two files and fails before `commit()`.
    func failingWrite(to destination: String) throws {
        let d = try AtomicDirectory(destination: destination)
        try d.write(Data("new".utf8), to: "a.txt")
        try d.writeJSON(["k": 1], to: "config.json")
        throw Failure()
    }

    @Test func failureMidwayLeavesNoDestinationAndNoTemporary() throws {
        let tmp = try TempDir()
        let out = tmp.file("out")
        #expect(throws: Failure.self) { try failingWrite(to: out) }
        #expect(try tmp.contents() == [])
        // An explicit abort does the same.
        let d = try AtomicDirectory(destination: out)
        try d.write(Data("x".utf8), to: "x")
        d.abort()
        #expect(try tmp.contents() == [])
        #expect(!InterruptCleanup.registered.contains(d.temporaryPath))
    }

    @Test func temporaryIsBesideTheDestinationAndRegisteredForCleanup() throws {
        let tmp = try TempDir()
        let out = tmp.file("model")
        let d = try AtomicDirectory(destination: out)
        #expect((d.temporaryPath as NSString).deletingLastPathComponent == tmp.path)
        #expect(d.temporaryPath == AtomicDirectory.temporaryPath(for: out))
        #expect(d.temporaryPath.hasPrefix(out + ".partial-"))
        #expect(InterruptCleanup.registered.contains(d.temporaryPath))
        #expect(!FileManager.default.fileExists(atPath: out))
        try d.copyFile(from: try tmp.write("src.bin", [1, 2, 3]), to: "copy.bin")
        try d.commit()
        #expect(!InterruptCleanup.registered.contains(d.temporaryPath))
        #expect(try tmp.contents() == ["model", "src.bin"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/copy.bin")) == Data([1, 2, 3]))
    }

    @Test func existingDestinationSurvivesAFailedWriteAndIsReplacedByASuccessfulOne() throws {
        let tmp = try TempDir()
        let out = tmp.file("out")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        try Data("old".utf8).write(to: URL(fileURLWithPath: out + "/old.txt"))
        #expect(throws: Failure.self) { try failingWrite(to: out) }
        #expect(try tmp.contents() == ["out"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["old.txt"])
        #expect(try String(contentsOfFile: out + "/old.txt", encoding: .utf8) == "old")

        let d = try AtomicDirectory(destination: out)
        try d.write(Data("new".utf8), to: "new.txt")
        try d.commit()
        #expect(try tmp.contents() == ["out"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["new.txt"])
        #expect(throws: FormatError.self) { try d.commit() }
    }

    @Test func temporariesOfDeadProcessesAreRemoved() throws {
        let tmp = try TempDir()
        let out = tmp.file("out")
        // No process has this id (above any pid_max), so its temporary is a leftover.
        let stale = out + ".partial-2147483646"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: false)
        let d = try AtomicDirectory(destination: out)
        #expect(!FileManager.default.fileExists(atPath: stale))
        try d.commit()
        #expect(try tmp.contents() == ["out"])
    }

    @Test func fileIsReplacedOnlyByASuccessfulWrite() throws {
        let tmp = try TempDir()
        let path = tmp.file("v.gguf")
        try GGUFWriter.write(metadata: [("general.architecture", .string("llama"))], to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        // A tensor GGUF cannot hold fails the write: the old file stays as it was.
        let bad = Tensor.f32(name: "t", shape: [1], values: [1])
        let u8 = Tensor(name: "t", dtype: .u8, shape: [1], data: bad.data, owner: bad.owner)
        #expect(throws: FormatError.self) { try GGUFWriter.write(metadata: [], tensors: [u8], to: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(try tmp.contents() == ["v.gguf"])
        // A successful write replaces it, leaving no temporary.
        try GGUFWriter.write(metadata: [("general.architecture", .string("qwen2"))], to: path)
        #expect(try GGUFFile(path: path).metadata["general.architecture"]?.string == "qwen2")
        #expect(try tmp.contents() == ["v.gguf"])
        try AtomicFile.write("text", to: tmp.file("r.html"))
        try writeJSON(["a": [1, 2]], to: tmp.file("c.json"))
        #expect(try tmp.contents() == ["c.json", "r.html", "v.gguf"])
        #expect(try String(contentsOfFile: tmp.file("r.html"), encoding: .utf8) == "text")
    }

    @Test func safetensorsTemporaryIsRegisteredUntilFinished() throws {
        let tmp = try TempDir()
        let path = tmp.file("s.safetensors")
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        let w = try SafeTensorsWriter(path: path, entries: [.init(name: "a", dtype: .f32, shape: [1])])
        #expect(w.temporaryPath == AtomicFile.temporaryPath(for: path))
        #expect(InterruptCleanup.registered.contains(w.temporaryPath))
        try [Float(2)].withUnsafeBytes { try w.write(name: "a", bytes: $0) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "old")
        try w.finish()
        #expect(!InterruptCleanup.registered.contains(w.temporaryPath))
        #expect(try SafeTensorsFile(path: path).tensor("a").toFloatArray() == [2])
        #expect(try tmp.contents() == ["s.safetensors"])
    }
}
