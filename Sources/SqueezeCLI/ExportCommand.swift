import ArgumentParser
import SqueezeConvert

/// `squeeze export --format vllm DIR --output DIR2`: a quantized directory in another engine's layout.
public struct ExportCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "export",
        abstract:
            "Write a quantized directory in another engine's layout (vllm: vLLM's squeezellm quantization, vLLM 0.2.2 to 0.6.0).",
        discussion: """
            vllm: quant_config.json {"wbits": 4}, qweight int32 [in/8, out], lookup_table F16 [out, 16], every other tensor, \
            config and tokenizer. vLLM's squeezellm method loads only 4-bit dense models with a dense lm_head: \
            3-bit, sparse and --quantize-head inputs are refused.
            """)

    @Argument(help: "A directory written by `squeeze quantize` or `squeeze convert --from-squeezellm`.")
    public var directory: String
    @Option(help: "Target layout.")
    public var format: ExportFormat = .vllm
    @Option(help: "Output directory (must not exist).")
    public var output: String

    public init() {}

    public func run() throws {
        switch format {
        case .vllm:
            let r = try VLLMExporter.export(directory: directory, output: output)
            for w in r.warnings { Progress.eprint("warning: " + w) }
            print("wrote \(output): \(r.quantizedLayers) quantized layers, \(r.tensors) tensors")
        }
    }
}
