import ArgumentParser
import SqueezeQuant

/// `squeeze export --format vllm DIR --output DIR2`: a quantized directory in another engine's layout.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a quantized directory in another engine's layout (vllm: vLLM's squeezellm quantization, vLLM 0.2.2 to 0.6.0).",
        discussion: """
            vllm: quant_config.json {"wbits": 4}, qweight int32 [in/8, out], lookup_table F16 [out, 16], every other tensor, \
            config and tokenizer. vLLM's squeezellm method loads only 4-bit dense models with a dense lm_head: \
            3-bit, sparse and --quantize-head inputs are refused.
            """)

    @Argument(help: "A directory written by `squeeze quantize` or `squeeze convert --from-squeezellm`.")
    var directory: String
    @Option(help: "Target layout (vllm).")
    var format: String = "vllm"
    @Option(help: "Output directory (must not exist).")
    var output: String

    func run() throws {
        guard format == "vllm" else { throw ValidationError("--format: only 'vllm' is supported") }
        let r = try VLLMExporter.export(directory: directory, output: output)
        for w in r.warnings { Progress.eprint("warning: " + w) }
        print("wrote \(output): \(r.quantizedLayers) quantized layers, \(r.tensors) tensors")
    }
}
