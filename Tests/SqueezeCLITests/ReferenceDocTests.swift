import ArgumentParser
import Foundation
import SqueezeCLI
import Testing

/// docs/cli.md documents every command and every flag that `--help` lists.
@Suite struct ReferenceDocTests {
    static let docPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/cli.md").path

    /// Whether `text` holds `flag` as a whole flag (not the start of a longer one).
    static func mentions(_ text: Substring, _ flag: String) -> Bool {
        var rest = text[...]
        while let r = rest.range(of: flag) {
            let next = rest[r.upperBound...].first
            if next.map({ !($0.isLetter || $0.isNumber || $0 == "-") }) ?? true { return true }
            rest = rest[r.upperBound...]
        }
        return false
    }

    @Test func everyCommandAndFlagIsDocumented() throws {
        let doc = try String(contentsOfFile: Self.docPath, encoding: .utf8)
        for command in SqueezeCommand.configuration.subcommands {
            let name = try #require(command.configuration.commandName)
            let heading = "## `squeeze \(name)`"
            guard let start = doc.range(of: heading + "\n") else {
                Issue.record("docs/cli.md has no section '\(heading)'")
                continue
            }
            let rest = doc[start.upperBound...]
            let section = rest.range(of: "\n## ").map { rest[..<$0.lowerBound] } ?? rest
            let help = SqueezeCommand.helpMessage(for: command)
            let flags = Set(
                help.split(whereSeparator: { " \n,()[]".contains($0) }).filter { $0.hasPrefix("--") && $0.count > 2 }
                    .map { String($0.prefix { $0 == "-" || $0.isLetter || $0.isNumber }) })
            for flag in flags where flag != "--help" {
                #expect(Self.mentions(section, flag), "docs/cli.md: \(heading) does not document \(flag)")
            }
        }
    }
}
