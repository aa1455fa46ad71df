import Foundation
import SqueezeTokenizer

/// Fixture paths and readers shared by the tokenizer tests.
enum Fx {
    static let dir: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
    static func path(_ p: String) -> String { dir.appendingPathComponent(p).path }
    static func json(_ p: String) -> [String: Any] {
        let d = try! Data(contentsOf: URL(fileURLWithPath: path(p)))
        return try! JSONSerialization.jsonObject(with: d) as! [String: Any]
    }

    static let smol: Tokenizer = try! Tokenizer.load(path: path("smollm2"))
    static let gpt2: Tokenizer = try! Tokenizer.load(path: path("gpt2"))

    /// Path of a llama.cpp vocabulary GGUF, decompressing `.gguf.gz` into a temporary file
    /// (with the system `gzip`); nil if that is not possible.
    static func llamaVocab(_ name: String) -> String? {
        let plain = path("llamacpp/ggml-vocab-\(name).gguf")
        if FileManager.default.fileExists(atPath: plain) { return plain }
        return gunzip(plain + ".gz", as: "\(name).gguf")
    }

    /// Decompresses a fixture `.gz` into a temporary file with the system `gzip`; nil if not possible.
    static func gunzip(_ gz: String, as name: String) -> String? {
        guard FileManager.default.fileExists(atPath: gz) else { return nil }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("squeeze-tok-\(getpid())-\(name)")
        if FileManager.default.fileExists(atPath: out.path) { return out.path }
        FileManager.default.createFile(atPath: out.path, contents: nil)
        guard let h = FileHandle(forWritingAtPath: out.path) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["gzip", "-dc", gz]
        p.standardOutput = h
        do { try p.run() } catch { return nil }
        p.waitUntilExit()
        try? h.close()
        return p.terminationStatus == 0 ? out.path : nil
    }

    /// llama.cpp's test vectors: texts from `.inp`, ids from `.out`.
    static func llamaVectors(_ name: String) -> [(String, [Int])] {
        let inp = try! Data(contentsOf: URL(fileURLWithPath: path("llamacpp/ggml-vocab-\(name).gguf.inp")))
        let out = try! String(contentsOfFile: path("llamacpp/ggml-vocab-\(name).gguf.out"), encoding: .utf8)
        let sep = Array("\n__ggml_vocab_test__\n".utf8)
        var texts = [String]()
        let b = Array(inp)
        var pos = 0
        while pos < b.count {
            var next = -1
            var i = pos
            while i + sep.count <= b.count { if b[i..<(i + sep.count)].elementsEqual(sep) { next = i; break }; i += 1 }
            if next < 0 { texts.append(String(decoding: b[pos...], as: UTF8.self)); break }
            texts.append(String(decoding: b[pos..<next], as: UTF8.self))
            pos = next + sep.count
        }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        precondition(lines.count == texts.count, "\(name): \(lines.count) outputs for \(texts.count) inputs")
        return zip(texts, lines).map { t, l in (t, l.split(separator: " ").map { Int($0)! }) }
    }

    static var modelPath: String? {
        let p =
            ProcessInfo.processInfo.environment["SQUEEZE_MODEL"]
            ?? (NSHomeDirectory() + "/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        if FileManager.default.fileExists(atPath: p) { return p }
        print("test model absent: run `bash scripts/ci/fetch-test-model.sh` (skipping)")
        return nil
    }
}
