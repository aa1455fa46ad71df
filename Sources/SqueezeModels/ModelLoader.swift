import Foundation
import SqueezeCore
import SqueezeFormats

/// Opens the model files people have: a GGUF file, or a Hugging Face directory
/// (config.json plus safetensors, single or sharded).
public enum ModelLoader {
    /// Loads the model at `path`.
    /// A hook that builds quantized linear operators for a checkpoint directory (set by the quantized engine).
    nonisolated(unsafe) public static var linearFactory:
        ((_ directory: String, _ tensors: SafeTensorsModel) throws -> LinearFactory?)?

    public static func load(
        path: String, options: LoadOptions = LoadOptions(), pool: WorkerPool = .shared
    ) throws -> DecoderModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError.notAModel(path: path, detail: "no such file or directory")
        }
        if !isDir.boolValue && path.hasSuffix(".gguf") || !isDir.boolValue && isGGUF(path) {
            let g = try GGUFFile(path: path)
            let config = try ModelConfig(gguf: g)
            return try DecoderModel(config: config, source: GGUFTensorSource(g), options: options, pool: pool)
        }
        if !isDir.boolValue && isPyTorchCheckpoint(path) {
            // A SqueezeLLM checkpoint (.pt + quant_config.json; config.json and any missing tensors
            // from safetensors in the same directory).
            return try SqueezeLLMCheckpoint(path: path).loadModel(options: options, pool: pool)
        }
        let dir = isDir.boolValue ? path : URL(fileURLWithPath: path).deletingLastPathComponent().path
        let configPath = dir + "/config.json"
        guard FileManager.default.fileExists(atPath: configPath) else {
            throw ModelError.notAModel(path: path, detail: "expected a .gguf file or a directory with config.json")
        }
        let config = try ModelConfig(configFile: configPath)
        let st = try SafeTensorsModel(path: path)
        var factory = try linearFactory?(dir, st)
        if let q = try QuantizedCheckpoint(configPath: configPath, tensors: st, mode: options.lutMode) {
            factory = q.factory
        }
        return try DecoderModel(
            config: config, source: SafeTensorsSource(st), options: options,
            linearFactory: factory, pool: pool)
    }

    /// Whether `path` is a torch.save zip checkpoint (`.pt`, `.pth`, `.bin`).
    public static func isPyTorchCheckpoint(_ path: String) -> Bool {
        ["pt", "pth", "bin"].contains(URL(fileURLWithPath: path).pathExtension)
            && PyTorchCheckpoint.looksLikeZip(path: path)
    }

    /// Where the tokenizer of a model path lives: the directory of a `.pt` checkpoint, else the path itself.
    public static func tokenizerPath(for path: String) -> String {
        isPyTorchCheckpoint(path) ? URL(fileURLWithPath: path).deletingLastPathComponent().path : path
    }

    static func isGGUF(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return h.readData(ofLength: 4) == Data("GGUF".utf8)
    }
}
