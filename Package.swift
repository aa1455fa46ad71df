// swift-tools-version: 6.1
// Squeeze: SqueezeLLM in Swift. Dense-and-sparse non-uniform quantization and fast CPU inference.
import PackageDescription

let package = Package(
    name: "Squeeze",
    platforms: [.macOS(.v14)],
    products: [
        // Quantization only: no tokenizer, evaluation or HTTP dependencies.
        .library(
            name: "SqueezeQuantization",
            targets: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeModels", "SqueezeQuant",
            ]),
        // Loading, generating and evaluating models.
        .library(
            name: "SqueezeInference",
            targets: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer", "SqueezeModels", "SqueezeEval",
            ]),
        // Inference plus the OpenAI-compatible server (pulls in Hummingbird and Prometheus).
        .library(
            name: "SqueezeServer",
            targets: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer", "SqueezeModels", "SqueezeEval",
                "SqueezeServer",
            ]),
        // Everything, the command line's commands included.
        .library(
            name: "Squeeze",
            targets: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer",
                "SqueezeModels", "SqueezeQuant", "SqueezeConvert", "SqueezeEval", "SqueezeServer", "SqueezeCLI",
            ]),
        .executable(name: "squeeze", targets: ["squeeze"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
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
        .target(
            name: "SqueezeModels",
            dependencies: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats",
            ]),
        // Sensitivity, k-means, outliers, packing, the quantize pipeline.
        .target(
            name: "SqueezeQuant",
            dependencies: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeModels",
            ]),
        // Converters: GGUF -> Hugging Face, SqueezeLLM .pt -> Squeeze, vLLM export, dequantize.
        .target(
            name: "SqueezeConvert",
            dependencies: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeModels", "SqueezeTokenizer",
            ]),
        // Perplexity and KL divergence.
        .target(name: "SqueezeEval", dependencies: ["SqueezeModels", "SqueezeTokenizer"]),
        // OpenAI-compatible HTTP server with continuous batching.
        .target(
            name: "SqueezeServer",
            dependencies: [
                "SqueezeCore", "SqueezeModels", "SqueezeTokenizer",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The commands: parse and check arguments, call the library, print its results.
        .target(
            name: "SqueezeCLI",
            dependencies: [
                "SqueezeCore", "SqueezeKernels", "SqueezeFormats", "SqueezeTokenizer",
                "SqueezeModels", "SqueezeQuant", "SqueezeConvert", "SqueezeEval", "SqueezeServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], resources: [.copy("DemoText")]),
        // The executable: only runs the root command.
        .executableTarget(name: "squeeze", dependencies: ["SqueezeCLI"]),
        // Helpers shared by the test targets (the real test model's location, fixture folders).
        .target(name: "SqueezeTestSupport", path: "Tests/SqueezeTestSupport"),
        .testTarget(name: "SqueezeCoreTests", dependencies: ["SqueezeCore"]),
        .testTarget(name: "SqueezeKernelsTests", dependencies: ["SqueezeKernels", "SqueezeCore"]),
        .testTarget(
            name: "SqueezeFormatsTests", dependencies: ["SqueezeFormats", "SqueezeCore"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeTokenizerTests", dependencies: ["SqueezeTokenizer", "SqueezeFormats"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeModelsTests",
            dependencies: [
                "SqueezeTestSupport", "SqueezeModels", "SqueezeFormats", "SqueezeTokenizer", "SqueezeConvert",
            ],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeQuantTests",
            dependencies: [
                "SqueezeTestSupport", "SqueezeQuant", "SqueezeFormats", "SqueezeModels", "SqueezeTokenizer",
                "SqueezeConvert",
            ],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeConvertTests",
            dependencies: [
                "SqueezeTestSupport", "SqueezeConvert", "SqueezeFormats", "SqueezeModels", "SqueezeTokenizer",
            ],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeEvalTests",
            dependencies: ["SqueezeTestSupport", "SqueezeEval", "SqueezeModels", "SqueezeTokenizer"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "SqueezeCLITests",
            dependencies: [
                "SqueezeCLI", "SqueezeTestSupport", "SqueezeCore", "SqueezeModels", "SqueezeQuant", "SqueezeEval",
                "SqueezeTokenizer", "SqueezeServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(
            name: "SqueezeServerTests",
            dependencies: [
                "SqueezeServer", "SqueezeModels", "SqueezeTokenizer", "SqueezeTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]),
    ],
    swiftLanguageModes: [.v5]
)
