import ArgumentParser
import SqueezeFormats

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List the metadata, config and every tensor of a safetensors file, a sharded directory or a GGUF file.")

    @Argument(help: "A .safetensors file, a model directory or a .gguf file.")
    var path: String
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        print(json ? try ModelInspector.describeJSON(path: path) : try ModelInspector.describe(path: path))
    }
}
