import ArgumentParser
import Foundation
import SqueezeConvert
import SqueezeCore

/// `squeeze convert`: GGUF to a Hugging Face directory, or a SqueezeLLM checkpoint to a Squeeze directory.
public struct ConvertCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract:
            "Convert a GGUF model to a Hugging Face safetensors directory, or a SqueezeLLM .pt checkpoint to a Squeeze model directory.",
        discussion: """
            GGUF: writes config.json, generation_config.json, tokenizer files and model.safetensors with Q/K rows in the Hugging Face (rotate-half) layout.
            --from-squeezellm X.pt [--base DIR]: reads SqueezeLLM's checkpoint without executing its pickle, folds the hybrid kernel's dense rows into the sparse part, takes missing tensors (LLaMA-v1/Vicuna-v1.1 checkpoints hold only the quantized layers), config.json and the tokenizer from --base, and writes a directory that generate, perplexity and serve load.
            """)

    @Argument(help: "The input .gguf file.")
    public var input: String?
    @Option(
        name: .customLong("from-squeezellm"),
        help: "A SqueezeLLM checkpoint (.pt) to convert to a Squeeze model directory.")
    public var fromSqueezeLLM: String?
    @Option(
        help:
            "With --from-squeezellm: the original model (Hugging Face directory or GGUF) supplying config, tokenizer and the tensors the checkpoint lacks."
    )
    public var base: String?
    @Option(help: "Output format.")
    public var to: ConvertFormat = .safetensors
    @Option(help: "Weight dtype of a GGUF conversion.")
    public var dtype: FloatType = .f16
    @Option(help: "Output directory (must not exist).")
    public var output: String

    public init() {}

    public func validate() throws {
        if fromSqueezeLLM != nil {
            if input != nil { throw ValidationError("give either an input .gguf file or --from-squeezellm, not both") }
            return
        }
        if base != nil { throw ValidationError("--base is only used with --from-squeezellm") }
        guard let input else { throw ValidationError("give the input .gguf file, or --from-squeezellm X.pt") }
        if ["pt", "pth", "bin"].contains(URL(fileURLWithPath: input).pathExtension) {
            throw ValidationError(
                "'\(input)' is a PyTorch checkpoint: convert a SqueezeLLM checkpoint with --from-squeezellm \(input)")
        }
    }

    public func run() throws {
        if let pt = fromSqueezeLLM {
            try SqueezeLLMConverter.convert(checkpoint: pt, base: base, output: output) { Progress.eprint($0) }
            print("wrote \(output)")
            return
        }
        guard let input else { throw ValidationError("give the input .gguf file, or --from-squeezellm X.pt") }
        let extra = try GGUFConverter.tokenizerFiles(forGGUF: input)
        try GGUFConverter.convert(gguf: input, to: output, dtype: dtype.dtype, extraFiles: extra) { line in
            Progress.line(line)
        }
        print("wrote \(output)")
    }
}
