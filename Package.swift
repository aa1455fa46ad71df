// swift-tools-version: 6.1
// Squeeze: SqueezeLLM in Swift. Dense-and-sparse non-uniform quantization and fast CPU inference.
import PackageDescription

let package = Package(
    name: "Squeeze",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Squeeze", targets: [
            "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer",
            "SqueezeModels", "SqueezeQuant", "SqueezeEval",
        ]),
        .executable(name: "squeeze", targets: ["squeeze"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Hot SIMD kernels with run-time CPU dispatch, and the persistent worker pool.
        .target(name: "CSqueezeKernels"),
        // Data types, mapped files, aligned buffers, tensors, the worker pool.
        .target(name: "SqueezeCore", dependencies: ["CSqueezeKernels"]),
        // The Swift face of the kernels, and plain Swift references for each.
        .target(name: "SqueezeKernels", dependencies: ["SqueezeCore", "CSqueezeKernels"]),
        // safetensors, GGUF, Hugging Face configs. Knows no models.
        .target(name: "SqueezeFormats", dependencies: ["SqueezeCore"]),
        // tokenizer.json and GGUF vocabularies, chat templates.
        .target(name: "SqueezeTokenizer", dependencies: ["SqueezeFormats"]),
        // Model families, forward pass, KV cache, sampling, generation.
        .target(name: "SqueezeModels", dependencies: [
            "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer",
        ]),
        // Sensitivity, k-means, outliers, packing, the quantize pipeline.
        .target(name: "SqueezeQuant", dependencies: [
            "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeModels",
        ]),
        // Perplexity and KL divergence.
        .target(name: "SqueezeEval", dependencies: ["SqueezeModels", "SqueezeTokenizer"]),
        // The command line tool: parses arguments, calls the library.
        .executableTarget(name: "squeeze", dependencies: [
            "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer",
            "SqueezeModels", "SqueezeQuant", "SqueezeEval",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "SqueezeCoreTests", dependencies: ["SqueezeCore"]),
        .testTarget(name: "SqueezeKernelsTests", dependencies: ["SqueezeKernels", "SqueezeCore"]),
        .testTarget(name: "SqueezeFormatsTests", dependencies: ["SqueezeFormats", "SqueezeCore"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SqueezeTokenizerTests", dependencies: ["SqueezeTokenizer", "SqueezeFormats"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SqueezeModelsTests", dependencies: ["SqueezeModels", "SqueezeFormats", "SqueezeTokenizer"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SqueezeQuantTests", dependencies: ["SqueezeQuant", "SqueezeFormats", "SqueezeModels"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SqueezeEvalTests", dependencies: ["SqueezeEval", "SqueezeModels", "SqueezeTokenizer"]),
    ],
    swiftLanguageModes: [.v5]
)
