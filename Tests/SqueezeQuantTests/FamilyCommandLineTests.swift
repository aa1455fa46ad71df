import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeQuant
import SqueezeTokenizer
import Testing

/// What `squeeze generate` and `squeeze sensitivity` do on every family fixture, through the library
/// calls those commands make: each fixture has a byte-level BPE tokenizer (tokenizer.json +
/// tokenizer_config.json, saved by transformers' `save_pretrained`) and the script stored the HF
/// tokenizer's ids and transformers' greedy `generate` output.
@Suite(.serialized)
struct FamilyCommandLineTests {
    /// The fixture's reference metadata entry `key`.
    static func meta(_ ref: SafeTensorsModel, _ key: String) throws -> String {
        try #require(ref.metadata[key], "reference.safetensors has no metadata '\(key)'")
    }

    /// The tokenizer loads from the model directory (as the commands find it) and encodes the stored
    /// strings (spaces, newlines, digits, accents, CJK, an emoji, special-token text) to the ids the
    /// Hugging Face tokenizer gave, with and without special tokens; its ids fit the model.
    @Test(arguments: FamilyFixtures.names)
    func tokenizerMatchesTransformers(_ family: String) throws {
        let ref = try FamilyFixtures.reference(family)
        let tok = try Tokenizer.load(path: ModelLoader.tokenizerPath(for: FamilyFixtures.dir(family)))
        let config = try ModelConfig(configFile: FamilyFixtures.dir(family) + "/config.json")
        #expect(tok.vocabSize == config.vocabSize)
        #expect(tok.bosTokenId == 1 && tok.eosTokenIds.contains(2))
        let texts = try #require(
            try JSONSerialization.jsonObject(with: Data(Self.meta(ref, "tokenizer_texts").utf8)) as? [String])
        #expect(texts.count == 3)
        for (j, text) in texts.enumerated() {
            let special = try ref.tensor("tokenizer.\(j).special").toIntArray()
            let plain = try ref.tensor("tokenizer.\(j).plain").toIntArray()
            #expect(tok.encode(text, addSpecialTokens: true) == special, "\(family): \(text.debugDescription)")
            #expect(tok.encode(text, addSpecialTokens: false) == plain, "\(family): \(text.debugDescription)")
            #expect(tok.decode(plain) == text, "\(family): decode of \(text.debugDescription)")
        }
    }

    /// `squeeze sensitivity --mode fisher` on a calibration text file: tokenize the file, plan and draw
    /// 3 windows of 8 tokens, accumulate, write with the run's metadata. The file has one F32 tensor
    /// per stored linear weight under the checkpoint's name and shape, finite, not all zero, and
    /// passes the quantizer's validation.
    @Test(arguments: FamilyFixtures.names)
    func sensitivityCommandPath(_ family: String) throws {
        let modelPath = FamilyFixtures.dir(family)
        let dir = temporaryDirectory("family-cli-sens")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let calibration = dir + "/calibration.txt"
        try Data(Self.meta(try FamilyFixtures.reference(family), "corpus").utf8).write(
            to: URL(fileURLWithPath: calibration))
        let bytes = try #require(FileManager.default.contents(atPath: calibration))
        let tokenizer = try Tokenizer.load(path: modelPath)
        let tokens = try tokenizer.encode(fileBytes: [UInt8](bytes), file: calibration, addSpecialTokens: false)
        let net = try Sensitivity.loadModel(path: modelPath)
        let options = SensitivityOptions(samples: 3, seqlen: 8, seed: 0, mode: .fisher)
        let starts = try Sensitivity.plan(model: net, tokenCount: tokens.count, options: options)
        #expect(starts.count == 3)
        let acc = try Sensitivity.compute(
            model: net, windows: starts.map { Array(tokens[$0..<($0 + options.seqlen)]) }, mode: .fisher)
        #expect(acc.windows == 3 && acc.losses.allSatisfy { $0.isFinite && $0 > 0 })
        let meta = Sensitivity.metadata(
            options: options, calibrationPath: calibration, calibrationSHA256: SHA256Digest.hex(bytes),
            tokenCount: tokens.count, modelPath: modelPath)
        let out = dir + "/sensitivity.safetensors"
        try acc.write(to: out, dtype: .f32, metadata: meta)

        let file = try SafeTensorsModel(path: out)
        let linears = net.config.allLinearTensors
        #expect(Set(file.tensorNames) == Set(linears.map(\.weightName)))
        let stored = try SafeTensorsModel(path: modelPath + "/model.safetensors")
        for t in linears {
            let info = try #require(file.info(t.weightName), "\(family): no \(t.weightName)")
            #expect(info.dtype == .f32)
            #expect(
                info.shape == t.storedShape && info.shape == stored.info(t.weightName)?.shape,
                "\(family) \(t.weightName): \(info.shape)")
            let v = try file.tensor(t.weightName).toFloatArray()
            #expect(v.allSatisfy { $0.isFinite && $0 >= 0 } && v.contains { $0 > 0 }, "\(family) \(t.weightName)")
        }
        #expect(file.metadata["seqlen"] == "8" && file.metadata["samples"] == "3")
        #expect(try SensitivityFile(path: out).validate(config: net.config) == ())
    }

    /// `squeeze generate --greedy` on the prompt the script used: the prompt encodes to the same ids
    /// (with special tokens, as the command encodes a plain prompt) and the generator produces
    /// transformers' greedy `generate` tokens (a stop at EOS included). The sequences pass mistral's
    /// and qwen2sw's windows, and llamadyn's max_position_embeddings (decode rescaling step by step,
    /// like transformers' generate on a fresh model).
    @Test(arguments: FamilyFixtures.names)
    func greedyGenerationMatchesTransformers(_ family: String) throws {
        let path = FamilyFixtures.dir(family)
        let ref = try FamilyFixtures.reference(family)
        let model = try ModelLoader.load(path: path)
        let tok = try Tokenizer.load(path: ModelLoader.tokenizerPath(for: path))
        let prompt = tok.encode(try Self.meta(ref, "prompt"), addSpecialTokens: true)
        #expect(prompt == (try ref.tensor("generate.prompt").toIntArray()))
        let want = try ref.tensor("generate.output").toIntArray()
        let context = min(2048, model.config.contextLimit ?? 2048)
        let gen = Generator(model: model, context: context)
        var got: [Int] = []
        let stats = try gen.generate(
            prompt: prompt, maxTokens: want.count, sampling: SamplingParameters(temperature: 0),
            stopTokens: tok.eosTokenIds
        ) { id in
            got.append(id)
            return .continue
        }
        #expect(got == want, "\(family): generated \(got), transformers \(want)")
        #expect(stats.promptTokens == prompt.count && stats.generatedTokens == got.count)
        if family == "llamadyn" { #expect(prompt.count + want.count > model.config.maxPositionEmbeddings) }
        if family == "qwen2sw" || family == "mistral" {
            #expect(prompt.count + want.count > model.config.slidingWindow!)
        }
    }

    /// phi3long from a 4-token prompt, shorter than its original context of 8: greedy generation
    /// crosses that context, where transformers' Phi-3 `generate` runs the whole sequence again with
    /// the long factors; the generator does the same and gives its tokens (plain token-by-token
    /// decoding through the cache would differ from the 8th token on).
    @Test func longRopeGenerationMatchesTransformersAcrossTheOriginalContext() throws {
        let path = FamilyFixtures.dir("phi3long")
        let ref = try FamilyFixtures.reference("phi3long")
        let model = try ModelLoader.load(path: path)
        let prompt = try ref.tensor("generate_short.prompt").toIntArray()
        let want = try ref.tensor("generate_short.output").toIntArray()
        guard case let .longrope(_, _, orig, _) = model.config.ropeScaling else {
            Issue.record("phi3long: RoPE scaling \(model.config.ropeScaling)")
            return
        }
        #expect(prompt.count <= orig && prompt.count + want.count > orig + 1)
        var got: [Int] = []
        _ = try Generator(model: model, context: model.config.maxPositionEmbeddings).generate(
            prompt: prompt, maxTokens: want.count, sampling: SamplingParameters(temperature: 0), stopTokens: []
        ) { id in
            got.append(id)
            return .continue
        }
        #expect(got == want, "generated \(got), transformers \(want)")
    }
}
