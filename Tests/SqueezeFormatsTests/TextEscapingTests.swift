import Foundation
import SqueezeFormats
import Testing

/// The escaper against Python's own `json.dumps`, `repr` and markupsafe-style HTML escaping
/// (fixture from scripts/fixtures/make_escaping_fixtures.py).
@Suite struct TextEscapingTests {
    @Test func matchesPython() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("escaping_expected.json")))
        let cases = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: String]])
        #expect(cases.count >= 10)
        for c in cases {
            let text = try #require(c["text"])
            #expect(TextEscaping.jsonQuoted(text) == c["json"], "json of \(c["json"] ?? "")")
            #expect(TextEscaping.pythonRepr(text) == c["repr"], "repr of \(c["repr"] ?? "")")
            #expect(TextEscaping.htmlEscaped(text) == c["html"], "html of \(c["html"] ?? "")")
        }
    }

    @Test func jsonLiteralsParseBack() throws {
        let text = "a\u{01}\"\\\n\u{7F}é🙂"
        let parsed =
            try JSONSerialization.jsonObject(
                with: Data("[\(TextEscaping.jsonQuoted(text))]".utf8)) as? [String]
        #expect(parsed == [text])
    }
}
