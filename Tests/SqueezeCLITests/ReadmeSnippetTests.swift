import Foundation
import SqueezeEval
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer
import Testing

// README.md's library snippet, compiled as part of the tests (the function is never called: it reads
// and writes files named in the README). The test below keeps the two texts the same.

// BEGIN README SNIPPET
func readmeLibrarySnippet() throws {
    // Quantize: 4 bits, Fisher sensitivity, 0.45% kept exactly in the sparse part.
    var options = QuantizeOptions()
    options.bits = 4
    options.sensitivity = .file("fisher.safetensors")  // .none for plain k-means
    options.outliers = .sparsity(percent: 0.45)
    let report = try ModelQuantizer.quantize(
        model: "SmolLM2-135M-Instruct.Q4_1.gguf", output: "smollm2-w4",
        options: options)
    print("bits per linear weight:", report.bitsPerWeight)

    // Load (GGUF, Hugging Face or Squeeze directory) and generate.
    let model = try ModelLoader.load(path: "smollm2-w4")
    let tokenizer = try Tokenizer.load(path: ModelLoader.tokenizerPath(for: "smollm2-w4"))
    let prompt = try tokenizer.applyChatTemplate(
        messages: [ChatMessage(role: "user", content: "Tell me about Paris.")],
        addGenerationPrompt: true)
    let generator = Generator(model: model, context: 2048)
    var ids: [Int] = []
    let stats = try generator.generate(
        prompt: tokenizer.encode(prompt, addSpecialTokens: false), maxTokens: 64,
        sampling: SamplingParameters(temperature: 0.7, topP: 0.95, seed: 1),
        stopTokens: tokenizer.eosTokenIds
    ) { id in
        ids.append(id)
        return .continue
    }
    print(tokenizer.decode(ids, skipSpecialTokens: true), stats.decodeTokensPerSecond)

    // Perplexity, GPTQ protocol, windows of 512 tokens.
    var evaluator = PerplexityEvaluator(model: model)
    evaluator.context = 512
    let tokens = try TextFile.tokens(path: "wiki.test.txt", tokenizer: tokenizer)
    print(try evaluator.run(tokens: tokens, textName: "wiki.test.txt").perplexity)
}
// END README SNIPPET

@Suite struct ReadmeSnippetTests {
    /// README.md's Swift block is, line for line, the body of `readmeLibrarySnippet` (which compiles).
    @Test func readmeSnippetIsTheCompiledOne() throws {
        let here = URL(fileURLWithPath: #filePath)
        let root = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let source = try String(contentsOf: here, encoding: .utf8)
        func lines(_ s: Substring) -> [String] {
            s.split(separator: "\n", omittingEmptySubsequences: true).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("import ") }
        }
        let block = try #require(readme.range(of: "```swift\n")).upperBound
        let blockEnd = try #require(readme.range(of: "```", range: block..<readme.endIndex)).lowerBound
        let start = try #require(source.range(of: "func readmeLibrarySnippet() throws {\n")).upperBound
        let end = try #require(source.range(of: "}\n// END README SNIPPET")).lowerBound
        #expect(lines(readme[block..<blockEnd]) == lines(source[start..<end]))
    }
}
