import Foundation
import SqueezeCLI
import SqueezeModels
import SqueezeTestSupport
import SqueezeTokenizer
import Testing

@Suite(.enabled(if: TestModel.available, TestModel.skipNote))
struct GreedyGenerationTests {
    /// Tokens `squeeze generate` would produce with these arguments (default options otherwise).
    func tokens(_ args: [String], model m: DecoderModel, tokenizer tok: Tokenizer) throws -> [Int] {
        let c = try parse(GenerateCommand.self, ["--prompt", "The history of the city of Paris"] + args)
        let ids = tok.encode(c.prompt, addSpecialTokens: true)
        var out: [Int] = []
        _ = try Generator(model: m, context: 256).generate(
            prompt: ids, maxTokens: 48, sampling: c.sampling.parameters,
            stopTokens: tok.eosTokenIds
        ) { id in
            out.append(id)
            return .continue
        }
        return out
    }

    /// `--temperature 0` and `--greedy` decode the same tokens on the real model, and they are the
    /// argmax tokens without any penalty (a repetition penalty changes them on this prompt).
    @Test func temperatureZeroIsGreedy() throws {
        let path = try #require(TestModel.path)
        let m = try ModelLoader.load(path: path)
        let tok = try Tokenizer.load(path: path)
        let greedy = try tokens(["--greedy"], model: m, tokenizer: tok)
        let zero = try tokens(["--temperature", "0"], model: m, tokenizer: tok)
        #expect(greedy.count == 48)
        #expect(greedy == zero)
        let penalized = try tokens(["--temperature", "0", "--repetition-penalty", "1.1"], model: m, tokenizer: tok)
        #expect(penalized != zero, "the test prompt should be one where the old default penalty changed the tokens")
    }
}
