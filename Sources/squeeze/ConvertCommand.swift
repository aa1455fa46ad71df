import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeModels

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a GGUF model to a Hugging Face safetensors directory.",
        discussion: "Writes config.json, generation_config.json, tokenizer files and model.safetensors with Q/K rows in the Hugging Face (rotate-half) layout.")

    @Argument(help: "The input .gguf file.")
    var input: String
    @Option(help: "Output format (safetensors).")
    var to: String = "safetensors"
    @Option(help: "Weight dtype: f32, f16 or bf16.")
    var dtype: String = "f16"
    @Option(help: "Output directory (must not exist).")
    var output: String

    func run() throws {
        guard to == "safetensors" else { throw ValidationError("--to: only 'safetensors' is supported") }
        guard let dt = DType(userName: dtype), [.f32, .f16, .bf16].contains(dt) else {
            throw ValidationError("--dtype must be f32, f16 or bf16")
        }
        let extra = try GGUFConverter.tokenizerFiles(forGGUF: input)
        try GGUFConverter.convert(gguf: input, to: output, dtype: dt, extraFiles: extra) { line in
            Progress.line(line)
        }
        print("wrote \(output)")
    }
}
