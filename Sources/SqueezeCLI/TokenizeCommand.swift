import ArgumentParser
import Foundation
import SqueezeTokenizer

/// `squeeze tokenize`: encode text with a model's tokenizer and print ids or pieces and counts.
public struct TokenizeCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize text with a model's tokenizer (tokenizer.json, model directory or GGUF).")

    @Option(
        help:
            "Tokenizer: a .gguf file, a tokenizer.json, or a directory. Default: $SQUEEZE_MODEL or the cached test model."
    )
    public var model: String?
    @Option(help: "Text to tokenize.")
    public var text: String?
    @Option(help: "UTF-8 text file to tokenize.")
    public var file: String?
    @Flag(help: "Print only the ids, on one line.")
    public var ids = false
    @Flag(help: "Do not add the model's special tokens (BOS/EOS).")
    public var noSpecial = false
    @Flag(help: "Print only the counts.")
    public var countOnly = false
    @Flag(help: "Time encoding on one thread (median of --repeats runs after a first, cold one).")
    public var bench = false
    @Option(help: "Runs for --bench.")
    public var repeats = PositiveInt(5)

    public init() {}

    public func validate() throws {
        if (text == nil) == (file == nil) { throw ValidationError("give exactly one of --text or --file") }
    }

    public func run() throws {
        let path = model ?? DefaultModel.path
        let tok = try Tokenizer.load(path: path)
        let input = try text ?? UTF8File.read(file!)
        if bench {
            print(TokenizeOutput.describe(TokenizerBenchmark.run(tokenizer: tok, text: input, repeats: repeats.value)))
            return
        }
        print(
            TokenizeOutput.report(
                tokenizer: tok, text: input, idsOnly: ids, addSpecialTokens: !noSpecial, countOnly: countOnly))
    }
}
