import ArgumentParser
import SqueezeFormats

/// `squeeze inspect`: the metadata, config and tensors of a model file or directory.
public struct InspectCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract:
            "List the metadata, config and every tensor of a safetensors file, a sharded directory or a GGUF file.")

    @Argument(help: "A .safetensors file, a model directory or a .gguf file.")
    public var path: String
    @Flag(help: "Print JSON.")
    public var json = false

    public init() {}

    public func run() throws {
        print(json ? try ModelInspector.describeJSON(path: path) : try ModelInspector.describe(path: path))
    }
}
