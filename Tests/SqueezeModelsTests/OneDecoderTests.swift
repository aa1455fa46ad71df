import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeKernels
import SqueezeModels
import Testing

/// The training forward is the inference forward with its activations recorded: for every family
/// fixture (safetensors and GGUF) the logits of `forward(.all)` and of `trainingForward` are the same
/// floats, bit for bit, and both match transformers.
@Suite(.serialized)
struct OneDecoderTests {
    /// Inference and training-forward logits of `ids`, [T, vocab] each.
    static func bothLogits(_ model: DecoderModel, _ ids: [Int]) throws -> (inference: [Float], training: [Float]) {
        let T = ids.count, V = model.config.vocabSize
        let ws = Workspace(model: model, maxTokens: T)
        try model.forward(tokens: ids, cache: KVCache(config: model.config, capacity: T), workspace: ws, logits: .all)
        let tws = TrainingWorkspace(model: model, maxTokens: T)
        try model.trainingForward(tokens: ids, workspace: tws)
        return (Array(ws.logits.buffer.prefix(T * V)), Array(tws.logits.buffer.prefix(T * V)))
    }

    /// Positions whose logits differ in any bit.
    static func differingPositions(_ a: [Float], _ b: [Float], vocab V: Int) -> [Int] {
        (0..<(a.count / V)).filter { t in (0..<V).contains { a[t * V + $0].bitPattern != b[t * V + $0].bitPattern } }
    }

    @Test(arguments: familyNames)
    func trainingLogitsAreInferenceLogits(_ family: String) throws {
        let fx = try FamilyFixture(family)
        let model = try ModelLoader.load(path: fx.dir, options: LoadOptions(weightDType: .f32))
        let V = model.config.vocabSize
        let (inference, training) = try Self.bothLogits(model, fx.ids)
        #expect(Self.differingPositions(inference, training, vocab: V).isEmpty, "\(family): training logits differ")
        // Both are the model's real logits (the bitwise comparison is not of two empty results).
        let (worst, bad) = training.withUnsafeBufferPointer {
            compareLogits($0.baseAddress!, fx.logits, rows: fx.ids.count, vocab: V)
        }
        #expect(
            bad.isEmpty && worst <= FamilyReferenceTests.relativeTolerance * fx.scale,
            "\(family): \(worst) from transformers")
    }

    @Test(arguments: FamilyGGUFTests.families)
    func trainingLogitsAreInferenceLogitsGGUF(_ family: String) throws {
        let fx = FamilyGGUFFixture(family)
        let model = try ModelLoader.load(path: fx.path, options: LoadOptions(weightDType: .f32))
        let (inference, training) = try Self.bothLogits(model, fx.ids)
        #expect(
            Self.differingPositions(inference, training, vocab: model.config.vocabSize).isEmpty,
            "\(family): training logits differ")
        let (worst, bad) = fx.compare(training)
        #expect(
            bad.isEmpty && worst <= FamilyGGUFTests.relativeTolerance * fx.scale,
            "\(family): \(worst) from transformers")
    }

    /// Windows longer than one attention query block (64), through sliding windows too: still the same
    /// bits. The RoPE fixtures' context is raised to 150 (it only bounds the positions of RoPE models).
    @Test(arguments: ["llama", "mistral", "qwen2sw"])
    func longWindowTrainingLogitsAreInferenceLogits(_ family: String) throws {
        let fx = try FamilyFixture(family)
        var config = try ModelConfig(configFile: fx.dir + "/config.json")
        let T = 150
        config.maxPositionEmbeddings = T
        let model = try DecoderModel(
            config: config, source: SafeTensorsSource(try SafeTensorsModel(path: fx.dir)),
            options: LoadOptions(weightDType: .f32))
        let ids = (0..<T).map { fx.ids[($0 * 7) % fx.ids.count] }
        let (inference, training) = try Self.bothLogits(model, ids)
        #expect(
            Self.differingPositions(inference, training, vocab: model.config.vocabSize).isEmpty,
            "\(family): training logits differ")
        #expect(training.contains { $0 != 0 } && training.allSatisfy(\.isFinite))
    }
}
