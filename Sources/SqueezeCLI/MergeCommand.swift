import ArgumentParser
import Foundation
import SqueezeQuant

/// `squeeze merge`: assembles partial quantizations (`squeeze quantize --layers A-B`).
public struct MergeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Assemble the partial directories of `squeeze quantize --layers A-B` into one quantized model.",
        discussion: """
            The partials (in any order) must come from the same model and options and cover every block \
            once; the result is the directory one `squeeze quantize` run writes, byte for byte. Written to a \
            temporary directory and renamed on success.
            """)

    @Argument(help: "Partial directories.")
    public var partials: [String]
    @Option(help: "Output directory (must not exist).")
    public var output: String

    public init() {}

    public func validate() throws {
        guard !partials.isEmpty else { throw ValidationError("give at least one partial directory") }
    }

    public func run() throws {
        let r = try PartialQuantization.merge(paths: partials, output: output)
        print("wrote \(output): \(r.partials) partials, \(r.tensors) tensors, \(r.bytes >> 20) MiB")
    }
}
