import Foundation
import SqueezeFormats
import SqueezeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Crafted model, tokenizer and template files (issue #25), each run through the `squeeze` binary
/// in a subprocess: a refused file exits with a nonzero status and a message on stderr, an accepted
/// one exits 0; never by a signal, within a few seconds and under 1 GB of resident memory (the
/// child's own peak, `VmHWM` of its address space).
@Suite(
    .serialized, .enabled(if: SqueezeBinary.available, SqueezeBinary.skipNote))
struct HostileFileTests {
    static var binary: String? { SqueezeBinary.path }

    enum Outcome: Sendable {
        /// Exit status nonzero, and stderr holds this text (any text when nil).
        case refused(String?)
        /// Exit status 0, and stdout holds this text (anything when nil).
        case accepted(String?)
    }

    /// One case: files to write into a fresh directory (`$D` in the arguments), the arguments, and
    /// the outcome.
    struct Case: CustomStringConvertible, Sendable {
        let name: String
        let files: [String: [UInt8]]
        let args: [String]
        let outcome: Outcome
        var description: String { name }
    }

    // MARK: Builders

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func text(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// A minimal byte-pair tokenizer.json.
    static func tokenizerJSON(vocab: String = #"{"a":0,"b":1,"ab":2}"#, extra: String = "") -> [UInt8] {
        text(#"{"model":{"type":"BPE","vocab":"# + vocab + #","merges":["a b"]}"# + extra + "}")
    }

    /// A GGUF v3 file with no tensors and these metadata entries (key, type, value bytes).
    static func gguf(_ kvs: [(String, UInt32, [UInt8])]) -> [UInt8] {
        var b = text("GGUF") + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(kvs.count))
        for (k, t, v) in kvs { b += le(UInt64(k.utf8.count)) + text(k) + le(t) + v }
        return b
    }

    /// A safetensors file of F32 tensors (name, shape, values), or of raw entries.
    static func safetensors(_ tensors: [(String, String, [Int], [UInt8])]) -> [UInt8] {
        var header: [String] = [], data: [UInt8] = []
        for (name, dtype, shape, bytes) in tensors {
            header.append(
                "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(data.count),\(data.count + bytes.count)]}"
            )
            data += bytes
        }
        var h = text("{" + header.joined(separator: ",") + "}")
        while h.count % 8 != 0 { h.append(0x20) }
        return le(UInt64(h.count)) + h + data
    }
    static func f32(_ v: [Float]) -> [UInt8] { v.flatMap { le($0.bitPattern) } }

    /// A tiny Llama directory (hidden 8, one layer, vocabulary 16) with a BPE tokenizer, as files.
    static func tinyModel(
        config extra: [String: String] = [:], chatTemplate: String? = nil, nanEmbeddingRow: Int? = nil,
        replace: [(String, String, [Int], [UInt8])] = [], drop: Set<String> = []
    ) -> [String: [UInt8]] {
        var cfg: [String: String] = [
            "model_type": "\"llama\"", "vocab_size": "16", "hidden_size": "8", "intermediate_size": "16",
            "num_hidden_layers": "1", "num_attention_heads": "2", "num_key_value_heads": "1", "rms_norm_eps": "1e-5",
            "tie_word_embeddings": "false", "max_position_embeddings": "64",
        ]
        for (k, v) in extra { cfg[k] = v }
        let config =
            "{" + cfg.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        let shapes: [(String, [Int])] = [
            ("model.embed_tokens.weight", [16, 8]), ("lm_head.weight", [16, 8]), ("model.norm.weight", [8]),
            ("model.layers.0.input_layernorm.weight", [8]), ("model.layers.0.post_attention_layernorm.weight", [8]),
            ("model.layers.0.self_attn.q_proj.weight", [8, 8]), ("model.layers.0.self_attn.k_proj.weight", [4, 8]),
            ("model.layers.0.self_attn.v_proj.weight", [4, 8]), ("model.layers.0.self_attn.o_proj.weight", [8, 8]),
            ("model.layers.0.mlp.gate_proj.weight", [16, 8]), ("model.layers.0.mlp.up_proj.weight", [16, 8]),
            ("model.layers.0.mlp.down_proj.weight", [8, 16]),
        ]
        var tensors = shapes.filter { !drop.contains($0.0) }.map { n, s -> (String, String, [Int], [UInt8]) in
            var v = (0..<s.reduce(1, *)).map { Float(($0 * 37) % 11) * 0.05 - 0.2 }
            if n == "model.embed_tokens.weight", let r = nanEmbeddingRow { for j in 0..<8 { v[r * 8 + j] = .nan } }
            return (n, "F32", s, f32(v))
        }
        tensors += replace
        var files: [String: [UInt8]] = [
            "config.json": text(config), "model.safetensors": safetensors(tensors),
            "tokenizer.json": tokenizerJSON(
                vocab:
                    #"{"a":0,"b":1,"ab":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15}"#
            ),
        ]
        if let t = chatTemplate {
            let escaped = String(data: try! JSONSerialization.data(withJSONObject: [t]), encoding: .utf8)!.dropFirst()
                .dropLast()
            files["tokenizer_config.json"] = text("{\"chat_template\":\(escaped)}")
        }
        return files
    }

    /// A stored (uncompressed) zip archive.
    static func zip(_ entries: [(String, [UInt8])]) -> [UInt8] {
        var out: [UInt8] = [], central: [UInt8] = []
        for (name, data) in entries {
            let crc = data.withUnsafeBytes { CRC32.checksum($0) }
            let offset = UInt32(out.count), n = text(name)
            let common =
                le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(crc) + le(UInt32(data.count))
                + le(UInt32(data.count)) + le(UInt16(n.count)) + le(UInt16(0))
            out += le(UInt32(0x0403_4b50)) + le(UInt16(20)) + common + n + data
            central +=
                le(UInt32(0x0201_4b50)) + le(UInt16(20)) + le(UInt16(20)) + common + le(UInt16(0)) + le(UInt16(0))
                + le(UInt16(0)) + le(UInt32(0)) + le(offset) + n
        }
        let cd = UInt32(out.count)
        out += central
        out +=
            le(UInt32(0x0605_4b50)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(entries.count))
            + le(UInt16(entries.count)) + le(UInt32(central.count)) + le(cd) + le(UInt16(0))
        return out
    }

    static func pkStr(_ s: String) -> [UInt8] { [0x58] + le(UInt32(s.utf8.count)) + text(s) }
    static func pkInt(_ v: Int) -> [UInt8] { [0x8A, 8] + le(Int64(v)) }
    static func pkTuple(_ items: [[UInt8]]) -> [UInt8] { [0x28] + items.joined() + [0x74] }
    /// `_rebuild_tensor_v2(storage(type, key, count), offset, size, stride)` as torch.save writes it.
    static func pkTensor(_ type: String, key: String, count: Int, size: [Int], stride: [Int]) -> [UInt8] {
        let storage =
            pkTuple([pkStr("storage"), [0x63] + text("torch\n\(type)\n"), pkStr(key), pkStr("cpu"), pkInt(count)])
            + [0x51]
        return [0x63] + text("torch._utils\n_rebuild_tensor_v2\n")
            + pkTuple([storage, pkInt(0), pkTuple(size.map(pkInt)), pkTuple(stride.map(pkInt))]) + [0x52]
    }
    /// A `.pt` archive whose data.pkl is `pickle` and whose storage "0" holds 16 bytes.
    static func pt(pickle: [UInt8]) -> [UInt8] {
        zip([("archive/data.pkl", pickle), ("archive/data/0", [UInt8](repeating: 0, count: 16))])
    }
    static func ptDict(_ tensors: [(String, [UInt8])]) -> [UInt8] {
        pt(pickle: [0x80, 2, 0x7D, 0x28] + tensors.map { pkStr($0.0) + $0.1 }.joined() + [0x75, 0x2E])
    }

    // MARK: The table

    static let deep = 100_000
    static let q = "model.layers.0.self_attn.q_proj"
    /// q_proj as a 4-bit SqueezeLLM layer with the given sparse index tensors.
    static func quantized(rows: (String, [UInt8]), cols: (String, [UInt8])) -> [String: [UInt8]] {
        tinyModel(
            config: ["quantization_config": #"{"quant_method":"squeezellm","wbits":4}"#],
            replace: [
                (q + ".qweight", "I32", [1, 8], (0..<8).flatMap { le(Int32($0 * 1_234_567)) }),
                (q + ".lookup_table", "F32", [8, 16], f32((0..<128).map { Float($0 % 16) * 0.01 })),
                (q + ".rows", rows.0, [9], rows.1), (q + ".cols", cols.0, [2], cols.1),
                (q + ".vals", "F32", [2], f32([0.5, -0.25])),
            ], drop: [q + ".weight"])
    }
    static func template(_ t: String) -> [String: [UInt8]] { tinyModel(chatTemplate: t) }
    static let chat = ["generate", "--model", "$D", "--chat", "--prompt", "ab", "--max-tokens", "2"]
    static let generate = ["generate", "--model", "$D", "--prompt", "ab", "--max-tokens", "2"]

    static let cases: [Case] = [
        // JSON
        Case(
            name: "tokenizer.json arrays nested 100k deep",
            files: [
                "tokenizer.json": tokenizerJSON(
                    extra: #","x":"# + String(repeating: "[", count: deep) + String(repeating: "]", count: deep))
            ], args: ["tokenize", "--model", "$D", "--text", "ab"], outcome: .refused("nested deeper")),
        Case(
            name: #"tokenizer.json key "\uD800\u0041""#,
            files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2,"\uD800\u0041":3}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab", "--ids"], outcome: .accepted("2")),
        Case(
            name: "eos_token_id 1e300 in config.json", files: tinyModel(config: ["eos_token_id": "1e300"]),
            args: generate, outcome: .refused("eos_token_id")),
        Case(
            name: "eos_token_id 1e999 in generation_config.json",
            files: ["tokenizer.json": tokenizerJSON(), "generation_config.json": text(#"{"eos_token_id": 1e999}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab", "--ids"], outcome: .accepted("2")),
        Case(
            name: "vocabulary id 2^31",
            files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2147483648}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab"], outcome: .refused("out of range")),
        Case(
            name: "vocabulary id -1", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":-1,"ab":2}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab"], outcome: .refused("out of range")),
        Case(
            name: "vocabulary id 2e9", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2e9}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab"], outcome: .refused("out of range")),
        Case(
            name: "Metaspace replacement \"\"",
            files: ["tokenizer.json": tokenizerJSON(extra: #","pre_tokenizer":{"type":"Metaspace","replacement":""}"#)],
            args: ["tokenize", "--model", "$D", "--text", "ab"], outcome: .refused("replacement")),
        // GGUF
        Case(
            name: "GGUF arrays of arrays 100k deep",
            files: [
                "x.gguf": gguf([
                    (
                        "x", 9,
                        Array((0..<deep).map { _ in le(UInt32(9)) + le(UInt64(1)) }.joined()) + le(UInt32(0))
                            + le(UInt64(0))
                    )
                ])
            ], args: ["inspect", "$D/x.gguf"], outcome: .refused("nested deeper")),
        Case(
            name: "GGUF array count beyond the file",
            files: ["x.gguf": gguf([("x", 9, le(UInt32(0)) + le(UInt64(UInt32.max)))])],
            args: ["inspect", "$D/x.gguf"], outcome: .refused("array of")),
        Case(
            name: "GGUF u64 metadata >= 2^63", files: ["x.gguf": gguf([("general.big", 10, le(UInt64(1) << 63 | 5))])],
            args: ["inspect", "$D/x.gguf"], outcome: .accepted("9223372036854775813")),
        // safetensors index
        Case(
            name: "index naming one shard two ways",
            files: [
                "a.safetensors": safetensors([("v", "F32", [1], f32([1])), ("w", "F32", [1], f32([2]))]),
                "model.safetensors.index.json": text(#"{"weight_map":{"v":"a.safetensors","w":"./a.safetensors"}}"#),
            ], args: ["inspect", "$D"], outcome: .accepted(nil)),
        // PyTorch
        Case(
            name: "pickle tuples nested a million deep",
            files: [
                "x.pt": pt(
                    pickle: [0x80, 2] + [UInt8](repeating: 0x28, count: 1_000_000) + [0x29]
                        + [UInt8](repeating: 0x74, count: 1_000_000) + [0x2E])
            ], args: ["convert", "--from-squeezellm", "$D/x.pt", "--output", "$D/out"], outcome: .refused(nil)),
        Case(
            name: ".pt storage key reused with a larger dtype",
            files: [
                "x.pt": ptDict([
                    ("a", pkTensor("FloatStorage", key: "0", count: 4, size: [4], stride: [1])),
                    ("b", pkTensor("DoubleStorage", key: "0", count: 4, size: [4], stride: [1])),
                ])
            ], args: ["convert", "--from-squeezellm", "$D/x.pt", "--output", "$D/out"], outcome: .refused(nil)),
        Case(
            name: ".pt huge sizes with stride 0",
            files: [
                "x.pt": ptDict([
                    ("a", pkTensor("FloatStorage", key: "0", count: 1, size: [1 << 30, 1 << 30], stride: [0, 0]))
                ])
            ], args: ["convert", "--from-squeezellm", "$D/x.pt", "--output", "$D/out"], outcome: .refused(nil)),
        // Quantized checkpoints
        Case(
            name: "I64 sparse column index beyond 32 bits",
            files: quantized(
                rows: ("I64", [0, 1, 1, 1, 1, 1, 1, 1, 2].flatMap { le(Int64($0)) }),
                cols: ("I64", le(Int64(3)) + le(Int64(1) << 40))), args: generate, outcome: .refused(q + ".cols")),
        Case(
            name: "NaN in float sparse row pointers",
            files: quantized(
                rows: ("F32", f32([0, .nan, 1, 1, 1, 1, 1, 1, 2])), cols: ("I32", le(Int32(3)) + le(Int32(7)))),
            args: generate, outcome: .refused(q + ".rows")),
        Case(
            name: "sparse row pointers past the values",
            files: quantized(
                rows: ("I32", [0, 1, 1, 1, 1, 1, 1, 1, 9].flatMap { le(Int32($0)) }),
                cols: ("I32", le(Int32(3)) + le(Int32(7)))), args: generate, outcome: .refused(q + ".rows")),
        // Config values whose products overflow
        Case(
            name: "config sizes whose products overflow",
            files: tinyModel(config: ["hidden_size": "4611686018427387904", "intermediate_size": "4611686018427387904"]
            ),
            args: generate, outcome: .refused(nil)),
        // tiktoken
        Case(
            name: "tiktoken rank near 2^31", files: ["x.tiktoken": text("YQ== 0\nYg== 2147483000\n")],
            args: ["tokenize", "--model", "$D/x.tiktoken", "--text", "ab"], outcome: .refused("2147483000")),
        // Chat templates: refused when the tokenizer loads, or when rendered
        Case(
            name: "template integer literal beyond Int64", files: template("{{ 99999999999999999999 }}"), args: chat,
            outcome: .refused("chat_template")),
        Case(
            name: "template blocks nested 10k deep",
            files: template(
                String(repeating: "{% if true %}", count: 10_000) + String(repeating: "{% endif %}", count: 10_000)),
            args: chat, outcome: .refused("chat_template")),
        Case(
            name: "template macro calling itself",
            files: template("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
            args: chat, outcome: .refused(nil)),
        Case(
            name: "template range(10**12)", files: template("{{ range(10 ** 12) | length }}"), args: chat,
            outcome: .refused(nil)),
        Case(name: "template range()", files: template("{{ range() }}"), args: chat, outcome: .refused(nil)),
        Case(
            name: "template negative indent", files: template("{{ 'x' | indent(-1) }}"), args: chat,
            outcome: .refused(nil)),
        Case(
            name: "template arithmetic overflow", files: template("{{ 9223372036854775807 + 1 }}"), args: chat,
            outcome: .refused(nil)),
        Case(
            name: "template string doubling",
            files: template(
                "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
            ), args: chat, outcome: .refused(nil)),
        Case(
            name: "template nested loops",
            files: template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
            args: chat,
            outcome: .refused(nil)),
        // Sampling from a model whose output is NaN (min-p with temperature used to trap): an error
        // naming the broken output, not a token drawn from it.
        Case(
            name: "NaN logits with temperature and min-p", files: tinyModel(nanEmbeddingRow: 2),
            args: [
                "generate", "--model", "$D", "--prompt", "ab", "--max-tokens", "3", "--temperature", "0.8", "--min-p",
                "0.1",
            ],
            outcome: .refused("non-finite logit")),
        // The server's key
        Case(
            name: "serve with an empty --api-key", files: [:], args: ["serve", "--api-key", ""],
            outcome: .refused("empty")),
        Case(
            name: "serve with an empty --api-key-file", files: ["key": text("\n")],
            args: ["serve", "--api-key-file", "$D/key"], outcome: .refused("empty")),
    ]

    @Test(arguments: cases)
    func hostileFile(_ c: Case) throws {
        let bin = try #require(Self.binary)
        let dir = NSTemporaryDirectory() + "squeeze-hostile-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, bytes) in c.files { try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name)) }
        let args = c.args.map { $0.replacingOccurrences(of: "$D", with: dir) }
        let r = try Child.run(bin, args, in: dir, timeout: 20)
        #expect(r.signal == nil, "\(c.name): ended by signal \(r.signal ?? 0); stderr: \(r.stderr.suffix(500))")
        #expect(!r.timedOut, "\(c.name): still running after 20 s")
        #expect(r.seconds < 10, "\(c.name): took \(r.seconds) s")
        #expect(r.maxRSSBytes < 1 << 30, "\(c.name): peak RSS \(r.maxRSSBytes >> 20) MiB")
        switch c.outcome {
        case let .refused(want):
            #expect(r.status != nil && r.status != 0, "\(c.name): exit status \(r.status.map(String.init) ?? "none")")
            #expect(!r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(c.name): no message")
            if let w = want { #expect(r.stderr.contains(w), "\(c.name): stderr lacks '\(w)': \(r.stderr.suffix(500))") }
        case let .accepted(want):
            #expect(
                r.status == 0, "\(c.name): exit status \(r.status.map(String.init) ?? "none"): \(r.stderr.suffix(500))")
            if let w = want { #expect(r.stdout.contains(w), "\(c.name): stdout lacks '\(w)': \(r.stdout.suffix(500))") }
        }
    }
}

/// A child process run with `posix_spawn`; its peak memory is the largest `VmHWM` seen in
/// /proc/PID/status while it runs. (`wait4`'s `ru_maxrss` would not do: glibc spawns through a
/// vfork-style clone sharing this process's address space, and Linux folds that space's peak into
/// the child's at its exec, so a test process grown large makes every child look large.)
enum Child {
    struct Result {
        var status: Int32?
        var signal: Int32?
        var timedOut = false
        var seconds: Double
        var maxRSSBytes: Int
        var stdout: String
        var stderr: String
    }

    static func run(_ path: String, _ args: [String], in dir: String, timeout: Double) throws -> Result {
        let outPath = dir + "/.stdout", errPath = dir + "/.stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        // No model from the environment: every case names its own files.
        let env = ProcessInfo.processInfo.environment.filter {
            $0.key != "SQUEEZE_MODEL" && $0.key != "SQUEEZE_API_KEY"
        }
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for e in envp { free(e) } }
        var pid: pid_t = 0
        let t0 = Date()
        let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
        var status: Int32 = 0
        var usage = rusage()
        var timedOut = false
        var peak = 0
        while true {
            peak = max(peak, highWaterMark(pid))
            let w = wait4(pid, &status, WNOHANG, &usage)
            if w == pid { break }
            if Date().timeIntervalSince(t0) > timeout && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
                _ = wait4(pid, &status, 0, &usage)
                break
            }
            usleep(2_000)
        }
        let seconds = Date().timeIntervalSince(t0)
        // Status word: low 7 bits the terminating signal (0: exited), bits 8-15 the exit status.
        let sig = status & 0x7F
        let read = { (p: String) in (try? String(contentsOfFile: p, encoding: .utf8)) ?? "" }
        return Result(
            status: sig == 0 ? (status >> 8) & 0xFF : nil, signal: sig == 0 ? nil : sig, timedOut: timedOut,
            seconds: seconds, maxRSSBytes: peak, stdout: read(outPath), stderr: read(errPath))
    }

    /// The peak resident bytes of `pid`'s address space (`VmHWM`), or 0 once it has exited.
    static func highWaterMark(_ pid: pid_t) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kb = Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        else { return 0 }
        return kb * 1024
    }
}
