import Foundation

/// Locates the real test model (SmolLM2-135M-Instruct Q4_1 GGUF) and the fixtures.
enum TestModel {
    /// `$SQUEEZE_MODEL`, else the cache that `bash scripts/fetch-test-model.sh` fills; nil when absent.
    static let path: String? = {
        if let p = ProcessInfo.processInfo.environment["SQUEEZE_MODEL"], FileManager.default.fileExists(atPath: p) { return p }
        let cache = ProcessInfo.processInfo.environment["SQUEEZE_CACHE"]
            ?? (NSHomeDirectory() + "/.cache/squeeze")
        let p = cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }()
    static let available = path != nil
    static let skipNote: Comment = "real test model absent: fetch it with `bash scripts/fetch-test-model.sh`"
}

import Testing

enum Fixtures {
    static func url(_ name: String) -> URL {
        Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
    }
    static func json(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: url(name))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}
