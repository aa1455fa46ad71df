import ArgumentParser
import Foundation
import SqueezeTokenizer

/// `squeeze tokenize`: encode text with a model's tokenizer and print ids or pieces and counts.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize text with a model's tokenizer (tokenizer.json, model directory or GGUF).")

    @Option(help: "Tokenizer: a .gguf file, a tokenizer.json, or a directory. Default: $SQUEEZE_MODEL or the cached test model.")
    var model: String?
    @Option(help: "Text to tokenize.")
    var text: String?
    @Option(help: "UTF-8 text file to tokenize.")
    var file: String?
    @Flag(help: "Print only the ids, on one line.")
    var ids = false
    @Flag(help: "Do not add the model's special tokens (BOS/EOS).")
    var noSpecial = false
    @Flag(help: "Print only the counts.")
    var countOnly = false
    @Flag(help: "Time encoding on one thread (median of --repeats runs after a first, cold one).")
    var bench = false
    @Option(help: "Runs for --bench.")
    var repeats: Int = 5

    func validate() throws {
        if (text == nil) == (file == nil) { throw ValidationError("give exactly one of --text or --file") }
    }

    func run() throws {
        let path = model ?? ProcessInfo.processInfo.environment["SQUEEZE_MODEL"]
            ?? (NSHomeDirectory() + "/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let tok = try Tokenizer.load(path: path)
        let input = try text ?? TokenizeTool.readText(file: file!)
        if bench {
            print(TokenizeTool.bench(tokenizer: tok, text: input, repeats: repeats).description)
            return
        }
        print(TokenizeTool.report(tokenizer: tok, text: input, idsOnly: ids, addSpecialTokens: !noSpecial, countOnly: countOnly))
    }
}
