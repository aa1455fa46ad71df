import ArgumentParser

/// The root command, `squeeze`; the executable only calls its `main()`.
public struct SqueezeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "squeeze",
        abstract: "SqueezeLLM in Swift: dense-and-sparse non-uniform quantization and fast CPU inference.",
        subcommands: [
            DemoCommand.self, GenerateCommand.self, PerplexityCommand.self, CompareCommand.self, QuantizeCommand.self,
            MergeCommand.self, SensitivityGroupCommand.self, DequantizeCommand.self, TokenizeCommand.self,
            InspectCommand.self,
            ConvertCommand.self,
            ExportCommand.self, ServeCommand.self, BenchCommand.self, BenchKernelsCommand.self, BenchKMeansCommand.self,
        ])

    public init() {}
}
