import ArgumentParser
import SqueezeConvert
import SqueezeCore

/// `squeeze dequantize`: a quantized directory back to a plain checkpoint.
public struct DequantizeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dequantize",
        abstract: "Write a quantized directory back as a plain (F16) Hugging Face checkpoint.")

    @Argument(help: "A directory written by `squeeze quantize`.")
    public var directory: String
    @Option(help: "Output directory (must not exist).")
    public var output: String
    @Option(help: "Weight dtype.")
    public var dtype: FloatType = .f16

    public init() {}

    public func run() throws {
        try ModelDequantizer.dequantize(directory: directory, output: output, dtype: dtype.dtype)
        print("wrote \(output)")
    }
}
