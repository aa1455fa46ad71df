import Foundation
import SqueezeCore
import SqueezeFormats
import Testing

/// Test-only helpers: fixture paths, temporary directories, the real test model.
enum Fixtures {
    /// The copied Fixtures directory in the test bundle.
    static var directory: String {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures directory missing from the test bundle")
        }
        return url.path
    }

    static func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    /// A JSON fixture as a dictionary.
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(name)))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

/// The real test model (SmolLM2-135M-Instruct Q4_1 GGUF): `$SQUEEZE_MODEL`, else the cache path.
enum TestModel {
    static var path: String? {
        let p =
            getenvString("SQUEEZE_MODEL")
            ?? (NSHomeDirectory() as NSString)
            .appendingPathComponent(".cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        if FileManager.default.fileExists(atPath: p) { return p }
        print("test model not found at \(p); fetch it with: bash scripts/ci/fetch-test-model.sh")
        return nil
    }
}

/// A fresh temporary directory, removed when the object goes away.
final class TempDir {
    let path: String
    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("squeeze-formats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }
    func contents() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
}

/// Runs `body`, which must throw a `FormatError`, and returns it.
func formatError(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> FormatError? {
    do {
        try body()
        Issue.record("expected a FormatError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as FormatError {
        return e
    } catch {
        Issue.record("expected a FormatError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// Little-endian bytes of an integer.
func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// The bytes of a safetensors file with the given header text and data.
func safetensorsBytes(header: String, data: [UInt8]) -> [UInt8] {
    let h = Array(header.utf8)
    return le(UInt64(h.count)) + h + data
}

/// Float values of an F32 tensor.
func floats(_ t: Tensor) -> [Float] { t.toFloatArray() }
