import ArgumentParser
import SqueezeCore
import SqueezeQuant

struct DequantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dequantize",
        abstract: "Write a quantized directory back as a plain (F16) Hugging Face checkpoint.")

    @Argument(help: "A directory written by `squeeze quantize`.")
    var directory: String
    @Option(help: "Output directory (must not exist).")
    var output: String
    @Option(help: "Weight dtype: f16, bf16 or f32.")
    var dtype: String = "f16"

    func run() throws {
        guard let dt = DType(userName: dtype) else { throw ValidationError("--dtype must be f16, bf16 or f32") }
        try ModelDequantizer.dequantize(directory: directory, output: output, dtype: dt)
        print("wrote \(output)")
    }
}
