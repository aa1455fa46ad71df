import Foundation
import Testing

/// Locates the real test model (SmolLM2-135M-Instruct Q4_1 GGUF) for the test targets.
public enum TestModel {
    /// `$SQUEEZE_MODEL`, else the cache that `bash scripts/ci/fetch-test-model.sh` fills; nil when absent.
    public static let path: String? = {
        if let p = ProcessInfo.processInfo.environment["SQUEEZE_MODEL"], FileManager.default.fileExists(atPath: p) {
            return p
        }
        let cache =
            ProcessInfo.processInfo.environment["SQUEEZE_CACHE"]
            ?? (NSHomeDirectory() + "/.cache/squeeze")
        let p = cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }()
    /// Whether the real test model is cached.
    public static let available = path != nil
    /// Why a test that needs the real model was skipped, and how to fetch it.
    public static let skipNote: Comment = "real test model absent: fetch it with `bash scripts/ci/fetch-test-model.sh`"
}

/// The `Fixtures` folder a test target copies into its bundle.
public struct FixtureFiles: Sendable {
    let root: URL

    /// The fixtures of `bundle` (a test target passes its `Bundle.module`).
    public init(bundle: Bundle) {
        guard let url = bundle.url(forResource: "Fixtures", withExtension: nil) else {
            fatalError("Fixtures directory missing from the test bundle \(bundle.bundlePath)")
        }
        root = url
    }

    /// The URL of a fixture file or folder.
    public func url(_ name: String) -> URL { root.appendingPathComponent(name) }

    /// A JSON fixture as a dictionary.
    public func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

/// A fresh directory under the system's temporary folder, named after `tag`.
public func temporaryDirectory(_ tag: String) -> String {
    let d = NSTemporaryDirectory() + "squeeze-\(tag)-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// The `squeeze` binary built beside the test bundle, for tests that run it as a child process.
public enum SqueezeBinary {
    /// Its path, if it is built (`swift build -c release` before `swift test -c release`).
    public static let path: String? = {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        let p = dir.appendingPathComponent("squeeze").path
        return FileManager.default.isExecutableFile(atPath: p) ? p : nil
    }()
    /// Whether it is built.
    public static let available = path != nil
    /// Why a test that runs it was skipped.
    public static let skipNote: Comment =
        "the squeeze binary is not built beside the tests: run `swift build -c release` first"

    /// Starts `squeeze arguments...` with its output discarded.
    public static func start(_ arguments: [String]) throws -> Process {
        guard let path else { throw CocoaError(.fileNoSuchFile) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }
}
