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

/// Writes a tiny Llama (hidden 8, one layer, untied head) as a safetensors model
/// directory, with token `nanToken`'s embedding row NaN: a prompt holding that token makes every
/// logit NaN; other prompts give finite logits.
public enum NaNModel {
    /// Writes the model into the existing directory `dir`.
    public static func write(to dir: String, vocab: Int, nanToken: Int) throws {
        let config: [String: Any] = [
            "model_type": "llama", "vocab_size": vocab, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": false, "max_position_embeddings": 512,
        ]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let shapes: [(String, [Int])] = [
            ("model.embed_tokens.weight", [vocab, 8]), ("lm_head.weight", [vocab, 8]), ("model.norm.weight", [8]),
            ("model.layers.0.input_layernorm.weight", [8]), ("model.layers.0.post_attention_layernorm.weight", [8]),
            ("model.layers.0.self_attn.q_proj.weight", [8, 8]), ("model.layers.0.self_attn.k_proj.weight", [4, 8]),
            ("model.layers.0.self_attn.v_proj.weight", [4, 8]), ("model.layers.0.self_attn.o_proj.weight", [8, 8]),
            ("model.layers.0.mlp.gate_proj.weight", [16, 8]), ("model.layers.0.mlp.up_proj.weight", [16, 8]),
            ("model.layers.0.mlp.down_proj.weight", [8, 16]),
        ]
        // safetensors: little-endian u64 header length, JSON header, then the F32 data.
        var header: [String: Any] = [:]
        var data = Data()
        for (name, shape) in shapes {
            var v = (0..<shape.reduce(1, *)).map { Float(($0 * 37) % 11) * 0.05 - 0.2 }
            if name == "model.embed_tokens.weight" { for j in 0..<8 { v[nanToken * 8 + j] = .nan } }
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [data.count, data.count + v.count * 4]]
            v.withUnsafeBytes { data.append(contentsOf: $0) }
        }
        var h = try JSONSerialization.data(withJSONObject: header)
        while h.count % 8 != 0 { h.append(0x20) }
        var file = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(h)
        file.append(data)
        try file.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
    }
}
