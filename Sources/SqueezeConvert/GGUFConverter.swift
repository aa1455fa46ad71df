import Foundation
import SqueezeCore
import SqueezeFormats
import SqueezeModels
import SqueezeTokenizer

/// Converts a llama.cpp GGUF model (llama, mistral, qwen2, gpt2) into a Hugging Face directory:
/// `config.json`, `generation_config.json` and `model.safetensors` with Hugging Face names, Llama
/// Q/K rows un-permuted to the rotate-half layout, GPT-2's Conv1D weights back to [in, out], weights
/// in F32, F16 or BF16. Written through `AtomicDirectory`.
public enum GGUFConverter {
    /// Extra files to write into the output directory (e.g. tokenizer.json), name to contents.
    public typealias ExtraFiles = [String: Data]

    /// `tokenizer.json` and `tokenizer_config.json` written from the GGUF vocabulary (see
    /// `TokenizerExport`), to pass as `extraFiles`.
    public static func tokenizerFiles(forGGUF path: String) throws -> ExtraFiles {
        try TokenizerExport.files(forGGUF: path)
    }

    /// Converts the GGUF at `path` into a new directory `output` (which must not exist).
    public static func convert(
        gguf path: String, to output: String, dtype: DType,
        extraFiles: ExtraFiles = [:], progress: ((String) -> Void)? = nil
    ) throws {
        guard [.f32, .f16, .bf16].contains(dtype) else {
            throw ModelError.invalidArgument(
                "the converted weights' dtype must be f32, f16 or bf16, got \(dtype.rawValue)")
        }
        let g = try GGUFFile(path: path)
        let config = try ModelConfig(gguf: g)
        let src = GGUFTensorSource(g)
        var names: [String] = []
        for info in g.tensors {
            guard let hf = GGUFNames.hf(fromGGUF: info.name, architecture: src.architecture) else {
                // RoPE tables the config already holds (Phi-3's LongRoPE factors go to its rope_scaling).
                if ["rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight"].contains(info.name) {
                    continue
                }
                throw ModelError.unsupportedWeight(
                    file: path, tensor: info.name, detail: "no Hugging Face name for this tensor")
            }
            names.append(hf)
        }
        let entries = names.map { n -> SafeTensorsWriter.Entry in
            let (_, shape) = src.storedInfo(n)!
            let isNorm = shape.count == 1
            return SafeTensorsWriter.Entry(name: n, dtype: isNorm ? .f32 : dtype, shape: shape)
        }
        let fm = FileManager.default
        if fm.fileExists(atPath: output) {
            throw ModelError.invalidArgument("output '\(output)' already exists; remove it or choose another path")
        }
        let dir = try AtomicDirectory(destination: output)
        let writer = try SafeTensorsWriter(
            path: dir.path("model.safetensors"), entries: entries,
            metadata: ["format": "pt", "converted_from": URL(fileURLWithPath: path).lastPathComponent])
        for (i, e) in entries.enumerated() {
            var t = try src.tensor(e.name)
            if src.ropeLayout == .interleaved {
                if e.name.hasSuffix("self_attn.q_proj.weight") { t = RopePermutation.toHF(t, heads: config.numHeads) }
                if e.name.hasSuffix("self_attn.k_proj.weight") { t = RopePermutation.toHF(t, heads: config.numKVHeads) }
            }
            t = try t.converted(to: e.dtype)
            try writer.write(Tensor(name: e.name, dtype: t.dtype, shape: t.shape, data: t.data, owner: t.owner))
            progress?("[\(i + 1)/\(entries.count)] \(e.name)")
        }
        try writer.finish()
        var cfg = config.huggingFaceJSON()
        cfg["torch_dtype"] = dtype == .f32 ? "float32" : (dtype == .f16 ? "float16" : "bfloat16")
        try dir.writeJSON(cfg, to: "config.json")
        var gen: [String: Any] = [:]
        if let b = config.bosTokenId { gen["bos_token_id"] = b }
        if let e = config.eosTokenIds.first { gen["eos_token_id"] = e }
        try dir.writeJSON(gen, to: "generation_config.json")
        for (name, data) in extraFiles { try dir.write(data, to: name) }
        try dir.commit()
    }
}
