import ArgumentParser
import Foundation
import SqueezeCore
import SqueezeKernels
import SqueezeModels
import SqueezeTokenizer

/// Opening a model and its tokenizer for the commands.
enum ModelOpening {
    /// The model path, or the default cached model.
    static func resolve(_ path: String?) throws -> String { try path ?? DefaultModel.requirePath() }

    /// Loads the tokenizer that belongs to a model path (a GGUF file or a model directory).
    static func tokenizer(for path: String) throws -> Tokenizer { try Tokenizer.load(path: ModelLoader.tokenizerPath(for: path)) }

    /// Parses `--kv-cache`.
    static func kvCache(_ value: String) throws -> KVCachePrecision {
        guard let p = KVCachePrecision(rawValue: value) else {
            throw ValidationError("--kv-cache must be f16 (half the memory, llama.cpp's default), q8 (8-bit, a quarter) or f32")
        }
        return p
    }

    static let kvCacheHelp: ArgumentHelp = "KV cache storage: f16 (half the memory and attention reads), q8 (8-bit with a scale per position and head: about a quarter) or f32."

    static func load(_ path: String, dtype: String?, kernels: String = "fast", head: String = "stored") throws -> DecoderModel {
        var opts = LoadOptions()
        guard let h = HeadFormat(rawValue: head) else {
            throw ValidationError("--head must be stored (as in the file) or q8 (8-bit, quantized at load)")
        }
        opts.head = h
        switch kernels {
        case "fast": opts.lutMode = .int8
        case "exact": opts.lutMode = .float
        default: throw ValidationError("--kernels must be fast (7-bit table codes, int8 activations) or exact (float tables)")
        }
        if let d = dtype, d != "native" {
            guard let dt = DType(userName: d), [.f32, .f16, .bf16].contains(dt) else {
                throw ValidationError("--dtype must be native, f32, f16 or bf16")
            }
            opts.weightDType = dt
        }
        return try ModelLoader.load(path: path, options: opts)
    }
}
