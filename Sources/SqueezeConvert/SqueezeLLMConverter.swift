import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels

/// `squeeze convert --from-squeezellm X.pt [--base DIR] --output DIR`: writes a SqueezeLLM checkpoint
/// as a Squeeze model directory (the layout `squeeze quantize` writes): config.json with
/// `quantization_config` (`quant_method: squeezellm`, `wbits`), model.safetensors with every tensor
/// the model needs (quantized layers as `qweight`/`lookup_table` and the whole sparse part, hybrid
/// dense rows folded in, as `rows`/`cols`/`vals`; values kept in F32 as the reference stores them),
/// and the base model's tokenizer and generation config. Written through `AtomicDirectory`.
public enum SqueezeLLMConverter {
    /// Files copied from the base model's directory.
    public static let tokenizerFiles = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json",
        "tokenizer.gguf",
    ]

    /// Converts; `progress` gets one line per step. Returns the opened checkpoint (for a summary).
    @discardableResult
    public static func convert(
        checkpoint path: String, base: String?, output: String,
        progress: ((String) -> Void)? = nil
    ) throws -> SqueezeLLMCheckpoint {
        let fm = FileManager.default
        if fm.fileExists(atPath: output) {
            throw FormatError.writeFailed(path: output, reason: "already exists; remove it or choose another path")
        }
        let ck = try SqueezeLLMCheckpoint(path: path, base: base)
        progress?(
            "\(URL(fileURLWithPath: path).lastPathComponent): \(ck.bits)-bit, \(ck.quantizedLayers.count) quantized layers, config from \(ck.configPath)"
        )
        // Check that every tensor the model needs is there before writing anything.
        try ck.checkComplete()

        var names: [String] = []
        for n in ck.tensorNames where ck.contains(n) { names.append(n) }
        var entries: [SafeTensorsWriter.Entry] = []
        var tensors: [String: Tensor] = [:]
        for n in names {
            let t = try ck.tensor(n)
            tensors[n] = t
            entries.append(.init(name: n, dtype: t.dtype, shape: t.shape))
        }
        let dir = try AtomicDirectory(destination: output)
        let meta = [
            "format": "pt", "quant_method": "squeezellm", "wbits": "\(ck.bits)",
            "converted_from": URL(fileURLWithPath: path).lastPathComponent,
        ]
        let writer = try ShardedSafeTensorsWriter(
            directory: dir.temporaryPath, entries: entries, metadata: meta, maxShardBytes: 4 << 30)
        for e in writer.plan.flatMap({ $0.entries }) { try writer.write(tensors[e.name]!) }
        try writer.finish()
        progress?("wrote \(entries.count) tensors")

        var cfg: [String: Any]
        if ck.configPath.hasSuffix(".json") {
            cfg = try ModelError.mappingConfigErrors { try JSONConfig(path: ck.configPath).object }
        } else {
            cfg = ck.config.huggingFaceJSON()
        }
        let sparse = ck.quantizedLayers.contains { ck.contains($0 + ".rows") }
        cfg["quantization_config"] =
            [
                "quant_method": "squeezellm", "wbits": ck.bits, "sparse_dtype": "f32", "lookup_table_dtype": "f32",
                "sparsity": sparse ? "from checkpoint" : "dense",
                "source": URL(fileURLWithPath: path).lastPathComponent,
            ] as [String: Any]
        try dir.writeJSON(cfg, to: "config.json")
        if let bd = ck.baseDirectory {
            for f in tokenizerFiles where fm.fileExists(atPath: bd + "/" + f) {
                try dir.copyFile(from: bd + "/" + f, to: f)
            }
        }
        try dir.commit()
        return ck
    }
}
