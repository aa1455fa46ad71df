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
    static func tokenizer(for path: String) throws -> Tokenizer {
        try Tokenizer.load(path: ModelLoader.tokenizerPath(for: path))
    }

    static let kvCacheHelp: ArgumentHelp =
        "KV cache storage: f16 (half the memory and attention reads), q8 (8-bit with a scale per position and head: about a quarter) or f32."

    /// Loads a model with the commands' load options.
    static func load(
        _ path: String, dtype: WeightType = .native, kernels: KernelsMode = .fast, head: HeadFormat = .stored
    ) throws -> DecoderModel {
        try ModelLoader.load(
            path: path, options: LoadOptions(weightDType: dtype.dtype, lutMode: kernels.lutMode, head: head))
    }
}
