import Foundation
import SqueezeTokenizer

/// Reading evaluation and calibration texts.
public enum TextFile {
    /// Tokenizes a UTF-8 file without special tokens. Errors name the file (missing, empty, invalid UTF-8).
    public static func tokens(path: String, tokenizer: Tokenizer) throws -> [Int] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EvalError.badArgument("\(path): cannot read the file (missing or unreadable)")
        }
        guard !data.isEmpty else { throw EvalError.badArgument("\(path): the file is empty") }
        return try tokenizer.encode(fileBytes: [UInt8](data), file: path, addSpecialTokens: false)
    }
}

extension PerplexityResult {
    /// Human-readable summary.
    public var summary: String {
        var s = String(
            format:
                "PPL = %.4f +/- %.4f  (%@ protocol, context %d, %d windows, %d tokens scored, %.1f tokens/s, %.1f s)",
            perplexity, perplexityStdError, protocolName, context, windows, tokensScored, tokensPerSecond, seconds)
        if let k = kl {
            s += String(
                format: "\nKL divergence: mean %.6f, median %.6f, p99 %.6f; same top token %.2f%% (%d positions; %@)",
                k.mean, k.median, k.p99, 100 * k.topTokenAgreement, k.positions, k.storage)
        }
        return s
    }
}
