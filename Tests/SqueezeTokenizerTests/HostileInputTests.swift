import Foundation
import SqueezeTokenizer
import Testing

/// Hostile tokenizer files and chat templates built in the test (issue #25): each must give a
/// typed `TokenizerError` naming the file and the field, never a trap, a stack overflow, a huge
/// allocation or an unbounded loop.
@Suite struct HostileTokenizerInputTests {
    /// A temporary directory of tokenizer files, removed when the object goes away.
    final class Dir {
        let path: String
        init(_ files: [String: String]) throws {
            path = (NSTemporaryDirectory() as NSString).appendingPathComponent("squeeze-hostile-\(UUID().uuidString)")
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for (name, text) in files { try Data(text.utf8).write(to: URL(fileURLWithPath: file(name))) }
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    }

    /// A minimal byte-pair tokenizer.json with the given vocabulary and extra top-level members.
    static func tokenizerJSON(vocab: String = #"{"a":0,"b":1,"ab":2}"#, extra: String = "") -> String {
        #"{"model":{"type":"BPE","vocab":"# + vocab + #","merges":["a b"]}"# + extra + "}"
    }

    /// One hostile tokenizer directory: its files, the file the error must name, and what the
    /// message must say (nil: it must load).
    struct Case { let name: String; let files: [String: String]; let file: String; let want: String? }

    static let deep = 100_000
    static let cases: [Case] = [
        Case(
            name: "JSON nested 100k deep",
            files: [
                "tokenizer.json": tokenizerJSON(
                    extra: #","x":"# + String(repeating: "[", count: deep) + String(repeating: "]", count: deep))
            ],
            file: "tokenizer.json", want: "nested deeper"),
        Case(
            name: "JSON objects nested 100k deep",
            files: [
                "tokenizer.json": tokenizerJSON(
                    extra: #","x":"# + String(repeating: #"{"a":"#, count: deep) + "1"
                        + String(repeating: "}", count: deep))
            ],
            file: "tokenizer.json", want: "nested deeper"),
        // A high surrogate followed by a non-surrogate escape: U+FFFD then "A", no overflow.
        Case(
            name: #"\uD800\u0041 in a key"#,
            files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2,"\uD800\u0041":3}"#)],
            file: "tokenizer.json", want: nil),
        Case(
            name: #"lone \uDC00"#, files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2,"\uDC00":3}"#)],
            file: "tokenizer.json", want: nil),
        Case(
            name: #"\uD800 at the end"#,
            files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2,"\uD800":3}"#)],
            file: "tokenizer.json", want: nil),
        Case(
            name: "eos_token_id 1e300",
            files: ["tokenizer.json": tokenizerJSON(), "generation_config.json": #"{"eos_token_id": 1e300}"#], file: "",
            want: nil),
        Case(
            name: "eos_token_id 1e19",
            files: ["tokenizer.json": tokenizerJSON(), "generation_config.json": #"{"eos_token_id": [1e19, 2]}"#],
            file: "", want: nil),
        Case(
            name: "eos_token_id 1e999",
            files: ["tokenizer.json": tokenizerJSON(), "generation_config.json": #"{"eos_token_id": 1e999}"#], file: "",
            want: nil),
        Case(
            name: "vocab id 2^31", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2147483648}"#)],
            file: "tokenizer.json", want: "out of range"),
        Case(
            name: "vocab id -1", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":-1,"ab":2}"#)],
            file: "tokenizer.json", want: "out of range"),
        Case(
            name: "vocab id 2e9", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2e9}"#)],
            file: "tokenizer.json", want: "out of range"),
        Case(
            name: "vocab id 2^63",
            files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":9223372036854775808}"#)],
            file: "tokenizer.json", want: "not an integer"),
        Case(
            name: "vocab id 1e300", files: ["tokenizer.json": tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":1e300}"#)],
            file: "tokenizer.json", want: "not an integer"),
        Case(
            name: "added token id 2^32",
            files: ["tokenizer.json": tokenizerJSON(extra: #","added_tokens":[{"id":4294967296,"content":"<x>"}]"#)],
            file: "tokenizer.json", want: "out of range"),
        Case(
            name: "Metaspace replacement \"\"",
            files: ["tokenizer.json": tokenizerJSON(extra: #","pre_tokenizer":{"type":"Metaspace","replacement":""}"#)],
            file: "tokenizer.json", want: "replacement"),
        Case(
            name: "Metaspace replacement of two characters",
            files: [
                "tokenizer.json": tokenizerJSON(extra: #","pre_tokenizer":{"type":"Metaspace","replacement":"ab"}"#)
            ], file: "tokenizer.json", want: "replacement"),
        Case(
            name: "Metaspace decoder replacement \"\"",
            files: ["tokenizer.json": tokenizerJSON(extra: #","decoder":{"type":"Metaspace","replacement":""}"#)],
            file: "tokenizer.json", want: "replacement"),
        Case(
            name: "post-processor id 1e300",
            files: [
                "tokenizer.json": tokenizerJSON(
                    extra:
                        #","post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"ids":[1e300]}}}"#
                )
            ],
            file: "tokenizer.json", want: "not an integer"),
        Case(
            name: "post-processor cls -5",
            files: [
                "tokenizer.json": tokenizerJSON(
                    extra: #","post_processor":{"type":"BertProcessing","cls":["[CLS]",-5],"sep":["[SEP]",1]}"#)
            ],
            file: "tokenizer.json", want: "out of range"),
        Case(
            name: "vocab.json id 2^31",
            files: ["vocab.json": #"{"a":0,"b":2147483648}"#, "merges.txt": "#version: 0.2\n"], file: "vocab.json",
            want: "out of range"),
        Case(
            name: "tiktoken rank near 2^31", files: ["x.tiktoken": "YQ== 0\nYg== 2147483000\n"], file: "x.tiktoken",
            want: "rank 2147483000"),
        Case(
            name: "tiktoken rank 2^40", files: ["x.tiktoken": "YQ== 1099511627776\n"], file: "x.tiktoken",
            want: "out of range"),
        Case(
            name: "broken chat template in tokenizer_config.json",
            files: ["tokenizer.json": tokenizerJSON(), "tokenizer_config.json": #"{"chat_template": "{% if %}"}"#],
            file: "tokenizer.json", want: "tokenizer_config.json chat_template"),
        Case(
            name: "chat_template.jinja with a huge literal",
            files: ["tokenizer.json": tokenizerJSON(), "chat_template.jinja": "{{ 99999999999999999999 }}"],
            file: "tokenizer.json", want: "chat_template.jinja"),
    ]

    @Test func hostileTokenizerFiles() throws {
        for c in Self.cases {
            let d = try Dir(c.files)
            let start = ContinuousClock.now
            do {
                let t = try Tokenizer.load(path: d.path)
                if let want = c.want { Issue.record("\(c.name): loaded, expected an error with '\(want)'"); continue }
                _ = t.encode("ab a b")
                _ = t.decode(Array(0..<t.vocabSize))
            } catch let e as TokenizerError {
                guard let want = c.want else { Issue.record("\(c.name): \(e)"); continue }
                #expect(e.description.contains(d.file(c.file)) && e.description.contains(want), "\(c.name): \(e)")
            }
            #expect(ContinuousClock.now - start < .seconds(20), "\(c.name) took too long")
        }
    }

    @Test func surrogateEscapesDecode() throws {
        let d = try Dir([
            "tokenizer.json": Self.tokenizerJSON(vocab: #"{"a":0,"b":1,"ab":2,"\uD800\u0041":3,"\uD83D\uDE00":4}"#)
        ])
        let t = try Tokenizer.load(path: d.path)
        #expect(t.tokenString(3) == "\u{FFFD}A")
        #expect(t.tokenString(4) == "😀")
    }

    @Test func badTemplateIsRefusedAtLoad() throws {
        let d = try Dir([
            "tokenizer.json": Self.tokenizerJSON(), "tokenizer_config.json": #"{"chat_template": "{% for %}"}"#,
        ])
        do { _ = try Tokenizer.load(path: d.path); Issue.record("loaded") } catch let TokenizerError.badChatTemplate(
            file, place, _)
        {
            #expect(file == d.file("tokenizer.json"))
            #expect(place == d.file("tokenizer_config.json") + " chat_template")
        }
    }

    // MARK: Jinja

    static let user = [ChatMessage(role: "user", content: "hi")]

    /// Templates that must be refused (when parsed or rendered) with `TokenizerError.template`.
    static let refused: [(String, String)] = [
        ("integer literal beyond Int64", "{{ 99999999999999999999 }}"),
        ("+ overflow", "{{ 9223372036854775807 + 1 }}"),
        ("- overflow", "{{ -9223372036854775807 - 2 }}"),
        ("* overflow", "{{ 4611686018427387904 * 4 }}"),
        ("** overflow", "{{ 2 ** 64 }}"),
        ("// overflow", "{{ (-9223372036854775807 - 1) // -1 }}"),
        ("unary - overflow", "{{ -(-9223372036854775807 - 1) }}"),
        ("range()", "{{ range() }}"),
        ("range with 4 arguments", "{{ range(1, 2, 3, 4) }}"),
        ("range of a string", "{{ range('x') }}"),
        ("range(10**12)", "{{ range(10 ** 12) | length }}"),
        ("range to Int.max", "{{ range(0, 9223372036854775807) | length }}"),
        ("range span overflows", "{{ range(-9223372036854775807 - 1, 9223372036854775807) | length }}"),
        ("range of a float beyond Int", "{{ range(10.0 ** 300) }}"),
        ("negative indent", "{{ 'x' | indent(-1) }}"),
        ("huge indent", "{{ 'x' | indent(10 ** 9) }}"),
        ("negative tojson indent", "{{ messages | tojson(indent=-1) }}"),
        ("int of 1e300", "{{ (10.0 ** 300) | int }}"),
        ("string repetition 10**12", "{{ 'ab' * 10 ** 12 }}"),
        (
            "string doubling",
            "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
        ),
        (
            "list doubling",
            "{% set ns = namespace(s=[1]) %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}"
        ),
        (
            "repeated concatenation",
            "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ 'xxxxxxxxxxxxxxxx' %}{% endfor %}"
        ),
        ("output bytes", "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"),
        ("loop iterations", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
        ("macro recursion", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"),
        (
            "mutual macro recursion",
            "{% macro f(n) %}{{ g(n) }}{% endmacro %}{% macro g(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"
        ),
        (
            "deep parentheses",
            "{{ " + String(repeating: "(", count: 10_000) + "1" + String(repeating: ")", count: 10_000) + " }}"
        ),
        ("deep not", "{{ " + String(repeating: "not ", count: 10_000) + "1 }}"),
        ("deep unary minus", "{{ " + String(repeating: "-", count: 10_000) + "1 }}"),
        ("deep lists", "{{ " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + " }}"),
        (
            "deep filter arguments",
            "{{ 1" + String(repeating: " | default(", count: 5_000) + "1" + String(repeating: ")", count: 5_000) + " }}"
        ),
        (
            "deep blocks",
            String(repeating: "{% if true %}", count: 10_000) + String(repeating: "{% endif %}", count: 10_000)
        ),
        (
            "values nested in a loop",
            "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}"
        ),
        (
            "a namespace holding itself",
            "{% set ns = namespace(a=1) %}{% for i in range(100000) %}{% set ns.a = ns %}{% endfor %}{{ ns }}"
        ),
        (
            "shared lists doubling",
            "{% set ns = namespace(x=[]) %}{% for i in range(100) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x | length }}"
        ),
    ]

    @Test func hostileTemplatesAreRefused() {
        for (name, src) in Self.refused {
            let start = ContinuousClock.now
            do {
                let out = try ChatTemplate(src).render(messages: Self.user, addGenerationPrompt: true)
                Issue.record("\(name): rendered \(out.utf8.count) bytes")
            } catch let e as TokenizerError {
                guard case .template = e else { Issue.record("\(name): \(e)"); continue }
            } catch { Issue.record("\(name): \(error)") }
            #expect(ContinuousClock.now - start < .seconds(20), "\(name) took too long")
        }
    }

    /// Edge values that Python handles: rendered without a trap.
    static let rendered: [(String, String)] = [
        ("{{ 'abc'[1::9223372036854775807] }}", "b"),
        ("{{ 'abc'[::-9223372036854775807] }}", "c"),
        ("{{ (-9223372036854775807 - 1) % -1 }}", "0"),
        ("{{ -7 // 2 }} {{ 7 // -2 }} {{ -7 % 3 }}", "-4 -4 2"),
        ("{{ 2 ** 62 }} {{ 2 ** -1 }}", "4611686018427387904 0.5"),
        ("{{ (10.0 ** 300) is even }}", "False"),
        ("{{ '%d'.format(10.0 ** 300) }}", "1e+300"),
        ("{{ 'x' | indent(2, true) }}", "  x"),
        ("{{ range(3) | list }} {{ range(5, 0, -2) | list }}", "[0, 1, 2] [5, 3, 1]"),
        ("{{ [1, [2, [3]]] | tojson(indent=None) }}", "[1, [2, [3]]]"),
    ]

    @Test func edgeValuesRender() throws {
        for (src, want) in Self.rendered {
            #expect(try ChatTemplate(src).render(messages: Self.user, addGenerationPrompt: false) == want, "\(src)")
        }
    }
}
