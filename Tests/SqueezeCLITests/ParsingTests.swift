import ArgumentParser
import Foundation
import SqueezeCLI
import SqueezeCore
import SqueezeEval
import SqueezeModels
import SqueezeQuant
import SqueezeServer
import Testing

/// Parses `args` as the subcommand `C` of `squeeze` (validation included).
func parse<C: ParsableCommand>(_ type: C.Type, _ args: [String]) throws -> C {
    let command = try SqueezeCommand.parseAsRoot([C.configuration.commandName!] + args)
    return try #require(command as? C)
}

/// The message `squeeze` prints when it rejects `args` for the subcommand `C`; nil when they parse.
func rejection<C: ParsableCommand>(_ type: C.Type, _ args: [String]) -> String? {
    do {
        _ = try SqueezeCommand.parseAsRoot([C.configuration.commandName!] + args)
        return nil
    } catch {
        return SqueezeCommand.message(for: error)
    }
}

/// Expects `args` to be rejected with a message containing every one of `parts`.
func expectRejected<C: ParsableCommand>(
    _ type: C.Type, _ args: [String], _ parts: String...,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let message = rejection(type, args) else {
        Issue.record("\(args) parsed but should be rejected", sourceLocation: sourceLocation)
        return
    }
    for p in parts {
        #expect(message.contains(p), "message '\(message)' lacks '\(p)'", sourceLocation: sourceLocation)
    }
}

@Suite struct RootCommandTests {
    @Test func everyCommandIsReachable() throws {
        let names = SqueezeCommand.configuration.subcommands.compactMap { $0.configuration.commandName }
        #expect(
            Set(names) == [
                "demo", "generate", "perplexity", "compare", "quantize", "merge", "sensitivity", "dequantize",
                "tokenize",
                "inspect", "convert", "export", "serve", "bench", "bench-kernels", "bench-kmeans",
            ])
    }

    @Test func unknownCommandIsRejected() {
        #expect(throws: (any Error).self) { _ = try SqueezeCommand.parseAsRoot(["squash"]) }
    }
}

@Suite struct GenerateParsingTests {
    @Test func defaults() throws {
        let c = try parse(GenerateCommand.self, ["--prompt", "hi"])
        #expect(c.prompt == "hi")
        #expect(c.model == nil && !c.chat && c.stop.isEmpty)
        #expect(c.maxTokens.value == 128 && c.context.value == 2048)
        #expect(c.dtype == .native && c.kernels == .fast && c.head == .stored && c.kvCache == .f16)
        #expect(
            c.sampling.temperature == 0.7 && c.sampling.topK == 40 && c.sampling.topP == 0.95 && c.sampling.minP == 0.05
        )
        // Off by default, as llama.cpp: otherwise --temperature 0 would not be greedy decoding.
        #expect(c.sampling.repetitionPenalty == 1)
    }

    @Test func values() throws {
        let c = try parse(
            GenerateCommand.self,
            [
                "--prompt", "p", "--model", "m.gguf", "--chat", "--system", "s", "--max-tokens", "5", "--stop", "a",
                "--stop", "b",
                "--context", "64", "--dtype", "bf16", "--kernels", "exact", "--head", "q8", "--kv-cache", "q8",
                "--threads", "3",
                "--temperature", "0.5", "--top-k", "7", "--top-p", "0.5", "--min-p", "0.1", "--repetition-penalty",
                "1.2", "--seed", "9",
            ])
        #expect(c.model == "m.gguf" && c.chat && c.system == "s" && c.maxTokens.value == 5 && c.stop == ["a", "b"])
        #expect(c.context.value == 64 && c.dtype == .bf16 && c.dtype.dtype == .bf16 && c.kernels.lutMode == .float)
        #expect(c.head == .q8 && c.kvCache == .q8 && c.threads?.value == 3)
        #expect(
            c.sampling.parameters
                == SamplingParameters(
                    temperature: 0.5, topK: 7, topP: 0.5, minP: 0.1,
                    repetitionPenalty: 1.2, seed: 9))
    }

    @Test func greedyIsTemperatureZero() throws {
        let greedy = try parse(GenerateCommand.self, ["--prompt", "p", "--greedy"]).sampling.parameters
        let zero = try parse(GenerateCommand.self, ["--prompt", "p", "--temperature", "0"]).sampling.parameters
        #expect(greedy == zero)
        #expect(greedy.temperature == 0 && greedy.repetitionPenalty == 1)
    }

    @Test func badValuesAreRejected() {
        expectRejected(GenerateCommand.self, [], "--prompt")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--kv-cache", "q4"], "--kv-cache", "f16", "q8", "f32")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--kernels", "turbo"], "--kernels", "fast", "exact")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--dtype", "f64"], "--dtype", "native", "bf16")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--head", "q4"], "--head", "stored", "q8")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--max-tokens", "0"], "--max-tokens")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--threads", "-1"], "--threads")
        // The library's sampling checks, reported with the flag's name.
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--top-p", "1.5"], "--top-p", "(0, 1]")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--temperature=-1"], "--temperature", ">= 0")
        expectRejected(GenerateCommand.self, ["--prompt", "p", "--repetition-penalty", "0"], "--repetition-penalty")
    }
}

@Suite struct PerplexityParsingTests {
    @Test func defaultsAndValues() throws {
        let d = try parse(PerplexityCommand.self, ["--text", "t.txt"])
        #expect(d.text == "t.txt" && d.proto == .gptq && d.context == nil && d.windows == nil && d.topK.value == 32)
        #expect(d.dtype == .native && d.kernels == .exact && d.head == .stored && d.kvCache == .f32 && !d.json)
        let c = try parse(
            PerplexityCommand.self,
            [
                "--text", "t", "--protocol", "llamacpp", "--context", "512", "--windows", "4", "--save-logits", "s",
                "--kl-base", "k",
                "--top-k", "8", "--dtype", "f16", "--kernels", "fast", "--head", "q8", "--kv-cache", "q8", "--threads",
                "2", "--json",
            ])
        #expect(
            c.proto == .llamacpp && c.context?.value == 512 && c.windows?.value == 4 && c.saveLogits == "s"
                && c.klBase == "k")
        #expect(
            c.topK.value == 8 && c.dtype == .f16 && c.kernels == .fast && c.head == .q8 && c.kvCache == .q8 && c.json)
    }

    @Test func badValuesAreRejected() {
        expectRejected(PerplexityCommand.self, [], "--text")
        expectRejected(PerplexityCommand.self, ["--text", "t", "--protocol", "hf"], "--protocol", "gptq", "llamacpp")
        expectRejected(PerplexityCommand.self, ["--text", "t", "--windows", "0"], "--windows")
        expectRejected(PerplexityCommand.self, ["--text", "t", "--context", "x"], "--context")
    }
}

@Suite struct CompareParsingTests {
    @Test func values() throws {
        let c = try parse(
            CompareCommand.self,
            [
                "--base", "b", "--candidates", "x", "y", "--text", "t", "--kernels", "fast",
                "--protocol", "llamacpp", "--context", "256", "--windows", "2", "--markdown",
            ])
        #expect(
            c.base == "b" && c.candidates == ["x", "y"] && c.text == "t" && c.kernels == .fast && c.proto == .llamacpp)
        #expect(c.context.value == 256 && c.windows?.value == 2 && c.markdown)
        let d = try parse(CompareCommand.self, ["--base", "b", "--candidates", "x", "--text", "t"])
        #expect(d.context.value == 512 && d.kernels == .exact && d.proto == .gptq)
    }

    @Test func badValuesAreRejected() {
        expectRejected(CompareCommand.self, ["--base", "b", "--text", "t"], "--candidates")
        expectRejected(
            CompareCommand.self, ["--base", "b", "--candidates", "x", "--text", "t", "--protocol", "x"], "--protocol")
        expectRejected(
            CompareCommand.self, ["--base", "b", "--candidates", "x", "--text", "t", "--context", "0"], "--context")
    }
}

@Suite struct QuantizeParsingTests {
    @Test func defaults() throws {
        let c = try parse(QuantizeCommand.self, ["--model", "m", "--output", "o"])
        #expect(c.bits == .four && c.sensitivity == .none && c.kmeans == .optimal && c.method == nil)
        #expect(c.resolvedMethod == .squeezellm && !c.refitTables && c.dampening == nil)
        #expect(c.sparseDtype == .f16 && !c.quantizeHead && c.threads == nil && c.calibrationSamples.value == 100)
        let o = c.options
        #expect(o.bits == 4 && o.outliers == nil && o.sensitivity == .none && o.sparseDType == .f16)
        #expect(o.method == .squeezellm && !o.usesCalibration && o.dampening == 0.01 && o.gptqBlockSize == 128)
    }

    /// `--method squeezellm-gptq`, `--refit-tables` and `--dampening` with `--calibration`.
    @Test func calibratedMethods() throws {
        let base = ["--model", "m", "--output", "o", "--calibration", "c.txt"]
        let g = try parse(
            QuantizeCommand.self,
            base + ["--method", "squeezellm-gptq", "--dampening", "0.05", "--calibration-samples", "32"])
        #expect(g.method == .squeezellmGPTQ && g.dampening?.value == 0.05 && g.calibrationSamples.value == 32)
        #expect(g.options.method == .squeezellmGPTQ && g.options.usesCalibration && g.options.dampening == 0.05)
        let r = try parse(QuantizeCommand.self, base + ["--refit-tables", "--method", "rtn"])
        #expect(r.refitTables && r.options.refitTables && r.options.method == .rtn && r.options.usesCalibration)
    }

    @Test func values() throws {
        let c = try parse(
            QuantizeCommand.self,
            [
                "--model", "m", "--output", "o", "--bits", "3", "--sensitivity", "grads.safetensors", "--sparsity",
                "0.45",
                "--kmeans", "lloyd", "--method", "rtn-minmax", "--sparse-dtype", "f32", "--quantize-head", "--threads",
                "2",
                "--report", "r.html", "--json-report", "r.json", "--verbose",
            ])
        #expect(c.bits == .three && c.sensitivity == .file("grads.safetensors") && c.sparsity?.value == 0.45)
        #expect(
            c.kmeans == .lloyd && c.method == .rtnMinmax && c.sparseDtype == .f32 && c.quantizeHead
                && c.threads?.value == 2)
        #expect(c.report == "r.html" && c.jsonReport == "r.json" && c.verbose)
        let o = c.options
        #expect(
            o.bits == 3 && o.kmeans.engine == .lloyd && o.method == .rtnMinmax && o.sparseDType == .f32
                && o.quantizeHead)
        #expect(o.sensitivity == .file("grads.safetensors") && o.outliers == OutlierSelector.sparsity(percent: 0.45))
        let a = try parse(
            QuantizeCommand.self,
            [
                "--model", "m", "--output", "o", "--sensitivity", "activations", "--calibration", "c.txt",
                "--calibration-samples", "10", "--outlier-range", "1.5", "--sensitive-fraction", "0.1",
            ])
        #expect(a.sensitivity == .activations && a.calibration == "c.txt" && a.calibrationSamples.value == 10)
        #expect(a.options.outliers == OutlierSelector(sensitiveFraction: 0.1 / 100, threshold: .range(1.5)))
    }

    @Test func badValuesAreRejected() {
        let base = ["--model", "m", "--output", "o"]
        expectRejected(QuantizeCommand.self, ["--model", "m"], "--output")
        expectRejected(QuantizeCommand.self, base + ["--bits", "5"], "--bits", "2", "3", "4")
        expectRejected(QuantizeCommand.self, base + ["--kmeans", "fast"], "--kmeans", "optimal", "lloyd")
        expectRejected(QuantizeCommand.self, base + ["--method", "gptq"], "--method", "squeezellm", "rtn")
        expectRejected(QuantizeCommand.self, base + ["--sparse-dtype", "bf16"], "--sparse-dtype", "f16", "f32")
        expectRejected(QuantizeCommand.self, base + ["--sparsity", "120"], "--sparsity")
        expectRejected(QuantizeCommand.self, base + ["--outlier-range", "0"], "--outlier-range")
        expectRejected(QuantizeCommand.self, base + ["--threads", "0"], "--threads")
        // Rules over several options.
        expectRejected(QuantizeCommand.self, base + ["--sensitivity", "activations"], "--calibration")
        expectRejected(QuantizeCommand.self, base + ["--method", "squeezellm-gptq"], "--calibration")
        expectRejected(QuantizeCommand.self, base + ["--refit-tables"], "--refit-tables", "--calibration")
        expectRejected(QuantizeCommand.self, base + ["--dampening", "0"], "--dampening")
        expectRejected(
            QuantizeCommand.self,
            base + ["--method", "squeezellm-gptq", "--calibration", "c", "--layers", "0-3"], "--layers")
        expectRejected(
            QuantizeCommand.self, base + ["--outlier-fraction", "0.4", "--outlier-range", "2"], "--outlier-fraction",
            "--outlier-range")
        expectRejected(QuantizeCommand.self, base + ["--sparsity", "0.45", "--outlier-fraction", "0.4"], "--sparsity")
    }
}

@Suite struct SensitivityParsingTests {
    /// `squeeze sensitivity ARGS` (the default subcommand, compute).
    func parse(_ type: SensitivityCommand.Type, _ args: [String]) throws -> SensitivityCommand {
        try #require(try SqueezeCommand.parseAsRoot(["sensitivity"] + args) as? SensitivityCommand)
    }

    func expectRejected(
        _ type: SensitivityCommand.Type, _ args: [String], _ parts: String...,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        do {
            _ = try SqueezeCommand.parseAsRoot(["sensitivity"] + args)
            Issue.record("\(args) parsed but should be rejected", sourceLocation: sourceLocation)
        } catch {
            let message = SqueezeCommand.message(for: error)
            for p in parts {
                #expect(message.contains(p), "message '\(message)' lacks '\(p)'", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func shardsAndMerge() throws {
        let c = try parse(SensitivityCommand.self, ["--calibration", "c", "--output", "o", "--shard", "2/4"])
        #expect(c.shard == ShardSpec(argument: "2/4") && c.shard?.index == 2 && c.shard?.count == 4)
        #expect(try parse(SensitivityCommand.self, ["compute", "--calibration", "c", "--output", "o"]).shard == nil)
        let base = ["--calibration", "c", "--output", "o"]
        expectRejected(SensitivityCommand.self, base + ["--shard", "4/4"], "--shard")
        expectRejected(SensitivityCommand.self, base + ["--shard", "1"], "--shard")
        let m = try #require(
            try SqueezeCommand.parseAsRoot(["sensitivity", "merge", "a", "b", "--output", "o"])
                as? SensitivityMergeCommand)
        #expect(m.shards == ["a", "b"] && m.output == "o")
        #expect(throws: (any Error).self) { try SqueezeCommand.parseAsRoot(["sensitivity", "merge", "--output", "o"]) }
    }

    @Test func quantizeLayersAndMerge() throws {
        let q = try #require(
            try SqueezeCommand.parseAsRoot(["quantize", "--model", "m", "--output", "o", "--layers", "3-7"])
                as? QuantizeCommand)
        #expect(q.options.layers == 3...7)
        let one = try #require(
            try SqueezeCommand.parseAsRoot(["quantize", "--model", "m", "--output", "o", "--layers", "5"])
                as? QuantizeCommand)
        #expect(one.options.layers == 5...5)
        for bad in ["7-3", "a-b", "-1", "1-2-3"] {
            #expect(throws: (any Error).self) {
                try SqueezeCommand.parseAsRoot(["quantize", "--model", "m", "--output", "o", "--layers", bad])
            }
        }
        let m = try #require(try SqueezeCommand.parseAsRoot(["merge", "p1", "p0", "--output", "o"]) as? MergeCommand)
        #expect(m.partials == ["p1", "p0"] && m.output == "o")
    }
    @Test func values() throws {
        let d = try parse(SensitivityCommand.self, ["--calibration", "c", "--output", "o"])
        #expect(d.samples.value == 100 && d.seqlen.value == 512 && d.seed == 0 && d.mode == .fisher && d.dtype == .f32)
        #expect(d.threads == nil && d.lanes == nil)
        let c = try parse(
            SensitivityCommand.self,
            [
                "--calibration", "c", "--output", "o", "--model", "m", "--samples", "4",
                "--seqlen", "64", "--seed", "3", "--mode", "activations", "--dtype", "bf16",
                "--threads", "2", "--lanes", "1",
            ])
        #expect(c.model == "m" && c.samples.value == 4 && c.seqlen.value == 64 && c.seed == 3 && c.mode == .activations)
        #expect(c.dtype.dtype == .bf16 && c.threads?.value == 2 && c.lanes?.value == 1)
    }

    @Test func badValuesAreRejected() {
        let base = ["--calibration", "c", "--output", "o"]
        expectRejected(SensitivityCommand.self, ["--output", "o"], "--calibration")
        expectRejected(SensitivityCommand.self, base + ["--mode", "hessian"], "--mode", "fisher", "activations")
        expectRejected(SensitivityCommand.self, base + ["--dtype", "f16"], "--dtype", "f32", "bf16")
        expectRejected(SensitivityCommand.self, base + ["--lanes", "0"], "--lanes")
        expectRejected(SensitivityCommand.self, base + ["--samples", "0"], "--samples")
    }
}

@Suite struct ConversionCommandsParsingTests {
    @Test func convert() throws {
        let g = try parse(ConvertCommand.self, ["in.gguf", "--output", "o"])
        #expect(g.input == "in.gguf" && g.to == .safetensors && g.dtype == .f16 && g.dtype.dtype == .f16)
        let s = try parse(ConvertCommand.self, ["--from-squeezellm", "x.pt", "--base", "b", "--output", "o"])
        #expect(s.fromSqueezeLLM == "x.pt" && s.base == "b" && s.input == nil)
        #expect(try parse(ConvertCommand.self, ["in.gguf", "--output", "o", "--dtype", "bf16"]).dtype == .bf16)
        expectRejected(
            ConvertCommand.self, ["in.gguf", "--output", "o", "--dtype", "q8"], "--dtype", "f32", "f16", "bf16")
        expectRejected(ConvertCommand.self, ["in.gguf", "--output", "o", "--to", "gguf"], "--to", "safetensors")
        expectRejected(ConvertCommand.self, ["--output", "o"], "--from-squeezellm")
        expectRejected(ConvertCommand.self, ["in.gguf", "--from-squeezellm", "x.pt", "--output", "o"], "not both")
        expectRejected(ConvertCommand.self, ["in.gguf", "--base", "b", "--output", "o"], "--base")
        expectRejected(ConvertCommand.self, ["x.pt", "--output", "o"], "--from-squeezellm x.pt")
    }

    @Test func dequantize() throws {
        let d = try parse(DequantizeCommand.self, ["q", "--output", "o"])
        #expect(d.directory == "q" && d.output == "o" && d.dtype == .f16)
        #expect(try parse(DequantizeCommand.self, ["q", "--output", "o", "--dtype", "f32"]).dtype.dtype == .f32)
        expectRejected(DequantizeCommand.self, ["q", "--output", "o", "--dtype", "int8"], "--dtype", "bf16")
        expectRejected(DequantizeCommand.self, ["--output", "o"], "<directory>")
    }

    @Test func export() throws {
        let e = try parse(ExportCommand.self, ["q", "--output", "o"])
        #expect(e.directory == "q" && e.format == .vllm && e.output == "o")
        expectRejected(ExportCommand.self, ["q", "--output", "o", "--format", "gguf"], "--format", "vllm")
    }

    @Test func inspect() throws {
        let i = try parse(InspectCommand.self, ["m.gguf", "--json"])
        #expect(i.path == "m.gguf" && i.json)
        expectRejected(InspectCommand.self, [], "<path>")
    }
}

@Suite struct TokenizeParsingTests {
    @Test func values() throws {
        let t = try parse(TokenizeCommand.self, ["--text", "hello", "--ids", "--no-special"])
        #expect(t.text == "hello" && t.file == nil && t.ids && t.noSpecial && !t.countOnly && t.repeats.value == 5)
        let f = try parse(TokenizeCommand.self, ["--file", "f.txt", "--bench", "--repeats", "3", "--count-only"])
        #expect(f.file == "f.txt" && f.bench && f.repeats.value == 3 && f.countOnly)
    }

    @Test func badValuesAreRejected() {
        expectRejected(TokenizeCommand.self, [], "--text", "--file")
        expectRejected(TokenizeCommand.self, ["--text", "a", "--file", "b"], "exactly one")
        expectRejected(TokenizeCommand.self, ["--text", "a", "--repeats", "0"], "--repeats")
    }
}

@Suite struct ServeParsingTests {
    @Test func values() throws {
        let d = try parse(ServeCommand.self, [])
        #expect(
            d.host == "127.0.0.1" && d.port == 8080 && d.maxBatch.value == 8 && d.context.value == 2048
                && d.queue.value == 64)
        #expect(d.maxBody.value == 1 << 20 && d.shutdownGrace == 30 && d.head == .stored && d.kvCache == .f16)
        let c = try parse(
            ServeCommand.self,
            [
                "--host", "0.0.0.0", "--port", "0", "--api-key", "k", "--max-batch", "2",
                "--context", "256", "--queue", "0", "--max-body", "1000", "--name", "n",
                "--shutdown-grace", "1.5", "--head", "q8", "--kv-cache", "q8", "--model", "m",
            ])
        let config = c.serverConfiguration(apiKey: c.apiKey)
        #expect(
            config.host == "0.0.0.0" && config.port == 0 && config.apiKey == "k" && config.maxBatch == 2
                && config.context == 256)
        #expect(
            config.queueLimit == 0 && config.maxBodyBytes == 1000 && config.modelName == "n"
                && config.shutdownGrace == 1.5)
        #expect(c.head == .q8 && c.kvCache == .q8 && c.model == "m")
    }

    @Test func badValuesAreRejected() {
        expectRejected(ServeCommand.self, ["--port", "70000"], "--port")
        expectRejected(ServeCommand.self, ["--max-batch", "0"], "--max-batch")
        expectRejected(ServeCommand.self, ["--queue", "-1"], "--queue")
        expectRejected(ServeCommand.self, ["--context", "8"], "--context", "16")
        expectRejected(ServeCommand.self, ["--kv-cache", "f8"], "--kv-cache")
        expectRejected(ServeCommand.self, ["--head", "f16"], "--head")
        expectRejected(ServeCommand.self, ["--idle-timeout", "0"], "--idle-timeout")
        expectRejected(ServeCommand.self, ["--request-timeout", "nan"], "--request-timeout")
        expectRejected(ServeCommand.self, ["--max-connections", "0"], "--max-connections")
        expectRejected(ServeCommand.self, ["--api-key", ""], "--api-key")
        expectRejected(ServeCommand.self, ["--api-key", "k", "--api-key-file", "f"], "--api-key-file")
    }

    @Test func hardeningFlags() throws {
        let d = try parse(ServeCommand.self, [])
        let c = d.serverConfiguration(apiKey: nil)
        #expect(c.idleTimeout == 60 && c.readTimeout == 30 && c.requestTimeout == 600 && c.slowReaderTimeout == 30)
        #expect(c.maxConnections == 512 && !c.allowSpecialTokensInContent)
        let e = try parse(
            ServeCommand.self,
            [
                "--idle-timeout", "5", "--read-timeout", "6", "--request-timeout", "7", "--slow-reader-timeout", "8",
                "--max-connections", "9", "--allow-special-tokens-in-content",
            ])
        let f = e.serverConfiguration(apiKey: nil)
        #expect(f.idleTimeout == 5 && f.readTimeout == 6 && f.requestTimeout == 7 && f.slowReaderTimeout == 8)
        #expect(f.maxConnections == 9 && f.allowSpecialTokensInContent)
    }

    @Test func apiKeySources() throws {
        let dir = NSTemporaryDirectory() + "squeeze-key-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("  s3cret\n".utf8).write(to: URL(fileURLWithPath: dir + "/key"))
        try Data(" \n".utf8).write(to: URL(fileURLWithPath: dir + "/empty"))
        #expect(
            try parse(ServeCommand.self, ["--api-key-file", dir + "/key"]).resolveAPIKey(environment: [:]) == "s3cret")
        #expect(try parse(ServeCommand.self, []).resolveAPIKey(environment: ["SQUEEZE_API_KEY": "env"]) == "env")
        #expect(try parse(ServeCommand.self, []).resolveAPIKey(environment: [:]) == nil)
        #expect(
            try parse(ServeCommand.self, ["--api-key", "flag"]).resolveAPIKey(environment: ["SQUEEZE_API_KEY": "env"])
                == "flag")
        #expect(throws: (any Error).self) {
            try parse(ServeCommand.self, ["--api-key-file", dir + "/empty"]).resolveAPIKey(environment: [:])
        }
        #expect(throws: (any Error).self) {
            try parse(ServeCommand.self, ["--api-key-file", dir + "/missing"]).resolveAPIKey(environment: [:])
        }
        #expect(throws: (any Error).self) {
            try parse(ServeCommand.self, []).resolveAPIKey(environment: ["SQUEEZE_API_KEY": ""])
        }
    }
}

@Suite struct BenchParsingTests {
    @Test func defaultsMapToTheSuite() throws {
        let b = try parse(BenchCommand.self, [])
        let c = b.configuration(modelPath: "m.gguf")
        #expect(c.variants.map(\.label) == ["f32", "f16"])
        #expect(c.variants.map(\.options.weightDType) == [.f32, .f16])
        #expect(
            c.threads == [1, 2] && c.promptTokens == 512 && c.decodeTokens == 64 && c.decodeContext == 16
                && c.rounds == 1)
        #expect(
            c.batchSizes.isEmpty && c.kernelShapes == nil && c.kvCache == .f16 && c.measureKernels && c.measureModels)
    }

    @Test func listsAndLabels() throws {
        let b = try parse(
            BenchCommand.self,
            [
                "--weights", "native,bf16", "--quantized", "w4=/tmp/q4", "--quantized", "/tmp/q3", "--head",
                "stored,q8",
                "--threads", "1, 4", "--batch", "1,8", "--shapes", "64x32,128x64", "--rounds", "3", "--decode-context",
                "0",
                "--prompt", "32", "--decode", "8", "--kv-cache", "q8", "--skip-kernels",
            ])
        let c = b.configuration(modelPath: "m.gguf")
        #expect(c.variants.map(\.label) == ["native", "bf16", "w4", "w4+q8 head", "q3", "q3+q8 head"])
        #expect(c.variants.map(\.path) == ["m.gguf", "m.gguf", "/tmp/q4", "/tmp/q4", "/tmp/q3", "/tmp/q3"])
        #expect(c.variants[0].options.weightDType == nil && c.variants[3].options.head == .q8)
        #expect(c.threads == [1, 4] && c.batchSizes == [1, 8] && c.rounds == 3 && c.decodeContext == 0)
        #expect(
            c.kernelShapes == [
                BenchmarkSuite.Shape(rows: 64, columns: 32), BenchmarkSuite.Shape(rows: 128, columns: 64),
            ])
        #expect(c.promptTokens == 32 && c.decodeTokens == 8 && c.kvCache == .q8 && !c.measureKernels && c.measureModels)
        #expect(try parse(BenchCommand.self, ["--weights", ""]).configuration(modelPath: "m").variants.isEmpty)
    }

    @Test func badValuesAreRejected() {
        expectRejected(BenchCommand.self, ["--threads", "1,x"], "--threads")
        expectRejected(BenchCommand.self, ["--threads", "0"], "--threads")
        expectRejected(BenchCommand.self, ["--threads", ""], "--threads")
        expectRejected(BenchCommand.self, ["--batch", "1,-4"], "--batch")
        expectRejected(BenchCommand.self, ["--weights", "f32,q4"], "--weights", "native", "f16")
        expectRejected(BenchCommand.self, ["--head", "stored,f16"], "--head", "q8")
        expectRejected(BenchCommand.self, ["--shapes", "64by32"], "--shapes")
        expectRejected(BenchCommand.self, ["--rounds", "0"], "--rounds")
        expectRejected(BenchCommand.self, ["--decode-context", "-1"], "--decode-context")
        expectRejected(BenchCommand.self, ["--quantized", "label="], "--quantized")
        expectRejected(BenchCommand.self, ["--kv-cache", "bf16"], "--kv-cache")
    }

    @Test func kernelsAndKMeans() throws {
        let k = try parse(BenchKernelsCommand.self, [])
        #expect(k.shapes.values.map(\.description) == ["4096x4096", "11008x4096", "4096x11008"])
        #expect(
            k.threads.values.map(\.value) == [1, 2] && k.repeats.value == 20 && k.gemmTokens.value == 8
                && k.minMB.value == 128)
        let k2 = try parse(
            BenchKernelsCommand.self,
            ["--shapes", "8x16", "--threads", "3", "--gemm-tokens", "0", "--min-mb", "0", "--cpu-time", "--bandwidth"])
        #expect(k2.shapes.values == [MatrixShape(rows: 8, columns: 16)] && k2.threads.values.map(\.value) == [3])
        #expect(k2.gemmTokens.value == 0 && k2.minMB.value == 0 && k2.cpuTime && k2.bandwidth)
        expectRejected(BenchKernelsCommand.self, ["--shapes", "8x"], "--shapes")
        expectRejected(BenchKernelsCommand.self, ["--repeats", "0"], "--repeats")

        let m = try parse(BenchKMeansCommand.self, ["--values", "v", "--weights", "w", "--rows", "2", "--cols", "16"])
        #expect(m.values == "v" && m.weights == "w" && m.rows.value == 2 && m.cols.value == 16 && m.bits.value == 4)
        #expect(m.engines.values == [.optimal, .lloyd] && m.repeats.value == 1)
        #expect(
            try parse(
                BenchKMeansCommand.self,
                ["--values", "v", "--weights", "w", "--rows", "2", "--cols", "16", "--engines", "lloyd"]
            )
            .engines.values == [.lloyd])
        expectRejected(
            BenchKMeansCommand.self,
            ["--values", "v", "--weights", "w", "--rows", "2", "--cols", "16", "--engines", "fast"],
            "--engines", "optimal", "lloyd")
        expectRejected(
            BenchKMeansCommand.self, ["--values", "v", "--weights", "w", "--rows", "0", "--cols", "16"], "--rows")
        expectRejected(BenchKMeansCommand.self, ["--values", "v", "--weights", "w", "--cols", "16"], "--rows")
    }
}

@Suite struct DemoParsingTests {
    @Test func values() throws {
        let d = try parse(DemoCommand.self, [])
        #expect(
            d.text == nil && d.windows.value == 8 && d.workdir == nil && d.prompt == "What is the capital of France?")
        let c = try parse(DemoCommand.self, ["--text", "t", "--windows", "2", "--workdir", "w", "--prompt", "p"])
        #expect(c.text == "t" && c.windows.value == 2 && c.workdir == "w" && c.prompt == "p")
        expectRejected(DemoCommand.self, ["--windows", "0"], "--windows")
    }

    /// The demo's default text ships with the package: real prose, not a repeated paragraph.
    @Test func demoTextShipsWithThePackage() throws {
        let path = try DemoText.path()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.utf8.count > 150_000 && text.utf8.count <= 200_000)
        #expect(text.hasPrefix(" = Albedo = "))
        let lines = text.split(separator: "\n").filter { $0.count > 80 }
        #expect(Set(lines).count == lines.count, "paragraphs repeat")
        let attribution = URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent(
            "ATTRIBUTION.md")
        #expect(try String(contentsOf: attribution, encoding: .utf8).contains("CC BY-SA 3.0"))
    }
}

@Suite struct ArgumentTypeTests {
    @Test func commaSeparated() {
        #expect(CommaSeparated<PositiveInt>(argument: "1, 2,4")?.values.map(\.value) == [1, 2, 4])
        #expect(CommaSeparated<PositiveInt>(argument: "")?.values.isEmpty == true)
        #expect(CommaSeparated<PositiveInt>(argument: "1,0") == nil)
        #expect(CommaSeparated<HeadFormat>(argument: "q8,stored")?.values == [.q8, .stored])
        #expect(CommaSeparated<HeadFormat>([.stored, .q8]).defaultValueDescription == "stored,q8")
    }

    @Test func shapesAndLabels() {
        #expect(MatrixShape(argument: "11008x4096") == MatrixShape(rows: 11008, columns: 4096))
        for bad in ["11008", "x4096", "0x4", "4x4x4", "ax4"] { #expect(MatrixShape(argument: bad) == nil, "\(bad)") }
        let l = LabeledPath(argument: "w4=/a/b=c")
        #expect(l?.label == "w4" && l?.path == "/a/b=c")
        #expect(LabeledPath(argument: "/x/y/q3")?.label == "q3")
        #expect(
            Percentage(argument: "100")?.value == 100 && Percentage(argument: "-0.1") == nil
                && Percentage(argument: "nan") == nil)
        #expect(PositiveDouble(argument: "inf") == nil && PositiveDouble(argument: "0.5")?.value == 0.5)
    }
}
