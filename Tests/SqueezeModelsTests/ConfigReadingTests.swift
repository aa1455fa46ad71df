import Foundation
import SqueezeFormats
import SqueezeModels
import Testing

/// Config files read by `JSONConfig` (SqueezeFormats): typed `ConfigError`s naming the file and field,
/// mapped to `ModelError` by the model loader; sizes whose products overflow are refused by name.
@Suite struct ConfigReadingTests {
    func tempDir() -> String {
        let d = NSTemporaryDirectory() + "squeeze-cfg-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
    static let good: [String: Any] = [
        "model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1,
    ]

    @Test func jsonConfigErrorsNameFileAndField() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let p = d + "/config.json"
        try writeJSON(["a": 1, "b": "x", "c": true, "n": ["k": 2.5], "big": 1e300], to: p)
        let c = try JSONConfig(path: p)
        #expect(try c.int("a") == 1)
        #expect(throws: ConfigError.missingField(file: p, field: "z")) { try c.int("z") }
        #expect(throws: ConfigError.self) { try c.int("b") }
        #expect(throws: ConfigError.self) { try c.int("c") }
        // 1e300 is not an Int: an error, not a trap.
        let e = #expect(throws: ConfigError.self) { try c.int("big") }
        #expect(e?.description.contains("'big'") == true)
        #expect(throws: ConfigError.missingField(file: p, field: "n.j")) { try c.nested("n").int("j") }
        #expect(try c.nested("n").double("k") == 2.5)
        #expect(throws: ConfigError.unreadable(path: d + "/none.json", detail: "cannot read the file")) {
            try JSONConfig(path: d + "/none.json")
        }
        try "[1, 2]".write(toFile: p, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.invalidField(file: p, field: "(root)", detail: "not a JSON object")) {
            try JSONConfig(path: p)
        }
    }

    @Test func modelConfigMapsConfigErrorsToModelErrors() throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let p = d + "/config.json"
        var cfg = Self.good
        cfg.removeValue(forKey: "hidden_size")
        try writeJSON(cfg, to: p)
        #expect(throws: ModelError.missingConfigField(file: p, field: "hidden_size")) {
            try ModelConfig(configFile: p)
        }
        cfg = Self.good
        cfg["eos_token_id"] = 1e300
        try writeJSON(cfg, to: p)
        let e = #expect(throws: ModelError.self) { try ModelConfig(configFile: p) }
        #expect(e?.description.contains("eos_token_id") == true)
    }

    /// Sizes each fine alone whose products (weight elements, bytes) overflow `Int`.
    static let overflowing: [[String: Any]] = [
        ["hidden_size": 1 << 40, "num_attention_heads": 1 << 20, "num_key_value_heads": 1 << 20],
        ["hidden_size": 1 << 40, "intermediate_size": 1 << 30, "num_attention_heads": 1, "num_key_value_heads": 1],
        ["vocab_size": 1 << 50, "hidden_size": 1 << 20, "num_attention_heads": 1, "num_key_value_heads": 1],
        ["head_dim": 1 << 62, "hidden_size": 8],
    ]

    @Test(arguments: 0..<4)
    func overflowingSizeProductsAreRefusedByName(_ index: Int) throws {
        let d = tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let p = d + "/config.json"
        try writeJSON(Self.good.merging(Self.overflowing[index]) { $1 }, to: p)
        let e = #expect(throws: ModelError.self) { try ModelConfig(configFile: p) }
        #expect(e?.description.contains("overflows") == true, "\(String(describing: e))")
    }
}
