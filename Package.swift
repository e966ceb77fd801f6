// swift-tools-version:6.0
import PackageDescription

// Loft's layers, lowest first. Each library target is usable from a Swift
// program without the CLI; `loft` is a thin shell over them.
let package = Package(
    name: "Loft",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "loft", targets: ["loft"]),
        .library(name: "LoftFormats", targets: ["LoftFormats"]),
        .library(name: "LoftTensors", targets: ["LoftTensors"]),
        .library(name: "LoftTokenizers", targets: ["LoftTokenizers"]),
        .library(name: "LoftTemplates", targets: ["LoftTemplates"]),
        .library(name: "LoftModels", targets: ["LoftModels"]),
        .library(name: "LoftInference", targets: ["LoftInference"]),
        .library(name: "LoftData", targets: ["LoftData"]),
        .library(name: "LoftTraining", targets: ["LoftTraining"]),
        .library(name: "LoftCUDA", targets: ["LoftCUDA"]),
        .library(name: "LoftHub", targets: ["LoftHub"]),
        .library(name: "LoftEngine", targets: ["LoftEngine"]),
        .library(name: "LoftEval", targets: ["LoftEval"]),
        .library(name: "LoftRuns", targets: ["LoftRuns"]),
        .library(name: "LoftServer", targets: ["LoftServer"]),
        .library(name: "LoftUI", targets: ["LoftUI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // BLAS binding: OpenBLAS on Linux (Debian's libopenblas-dev). On macOS
        // the tensor code imports Accelerate instead and this module is unused.
        .systemLibrary(name: "CLoftBLAS", path: "Sources/CLoftBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        // zlib for gzip-compressed datasets (Debian's zlib1g-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        // zstd for ZSTD-compressed Parquet pages (Debian's libzstd-dev).
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        // File formats: safetensors, GGUF (with dequantization), HF config.json.
        .target(name: "LoftFormats", swiftSettings: settings),
        // Hugging Face Hub ids: downloads into the shared Hugging Face cache.
        .target(name: "LoftHub", swiftSettings: settings),
        // Loft's own bf16 GEMM kernel (AVX512-BF16, chosen at run time).
        .target(name: "CLoftGEMM", path: "Sources/CLoftGEMM",
                linkerSettings: [.linkedLibrary("pthread", .when(platforms: [.linux]))]),
        // Vectorized exp-based rows (softmax, log-sum-exp, SwiGLU) for AVX-512, AVX2 and baseline x86-64.
        .target(name: "CLoftKernels", path: "Sources/CLoftKernels", exclude: ["kernels_body.inc"]),
        // Decoding on GGUF blocks: integer and float dot products (AVX2, scalar fallback).
        .target(name: "CLoftQuant", path: "Sources/CLoftQuant"),
        // Tensors, dtypes and the Backend interface with its CPU implementation.
        // LoftFormats (itself dependency-free) supplies the blockwise 8-bit
        // quantizer that 8-bit AdamW shares with NF4/FP4 double quantization.
        .target(name: "LoftTensors", dependencies: [
            "LoftFormats", "CLoftGEMM", "CLoftQuant", "CLoftKernels",
            .target(name: "CLoftBLAS", condition: .when(platforms: [.linux])),
        ], swiftSettings: settings),
        // CUDA driver, NVRTC and cuBLASLt declared by Loft itself and opened
        // with dlopen at run time: nothing from CUDA is needed to build.
        .target(name: "CLoftCUDA", path: "Sources/CLoftCUDA",
                linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        // The CUDA backend: kernels compiled by NVRTC at run time, GEMMs by cuBLASLt.
        .target(name: "LoftCUDA", dependencies: ["LoftTensors", "LoftFormats", "CLoftCUDA"], swiftSettings: settings),
        // Tokenizers (BPE, byte-level, SentencePiece, tiktoken); independent of tensors.
        .target(name: "LoftTokenizers", dependencies: ["LoftFormats"], swiftSettings: settings),
        // Jinja chat templates; independent of everything else.
        .target(name: "LoftTemplates", swiftSettings: settings),
        // Model families built on the backend interface.
        .target(name: "LoftModels", dependencies: ["LoftTensors", "LoftFormats", "LoftTokenizers"], swiftSettings: settings),
        // KV-cache generation and sampling.
        .target(name: "LoftInference", dependencies: ["LoftHub", "LoftModels", "LoftTensors", "LoftTokenizers", "LoftTemplates", "LoftFormats"], swiftSettings: settings),
        // Datasets: reading, format detection, rendering with templates, loss masks, packing.
        .target(name: "LoftData", dependencies: ["LoftFormats", "LoftTokenizers", "LoftTemplates", "LoftHub", "CZlib", "CZstd"], swiftSettings: settings),
        // LoRA layers, the backward pass, optimiser, trainer, checkpoints and PEFT adapters.
        .target(name: "LoftTraining", dependencies: ["LoftHub", "LoftModels", "LoftTensors", "LoftCUDA", "LoftFormats", "LoftData", "LoftTokenizers", "LoftTemplates", "Yams"], swiftSettings: settings),
        // The batched generation engine that serving, evaluation and the UI's
        // chat share: continuous batching, per-row adapters, sampling.
        .target(name: "LoftEngine", dependencies: ["LoftInference", "LoftModels", "LoftTensors", "LoftTokenizers", "LoftTemplates", "LoftFormats", "LoftData"], swiftSettings: settings),
        // `loft eval`: metrics exact to their reference packages, lm-eval tasks,
        // the judge, safety sets, paired bootstrap verdicts and the reports.
        .target(name: "LoftEval", dependencies: ["LoftEngine", "LoftInference", "LoftModels", "LoftTokenizers", "LoftTemplates", "LoftData", "LoftFormats", "Yams"], swiftSettings: settings),
        // The run registry (SQLite at $LOFT_HOME/loft.db) and the SVG charts of runs.
        .target(name: "LoftRuns", dependencies: [.product(name: "GRDB", package: "GRDB.swift")], swiftSettings: settings),
        // The OpenAI-compatible HTTP server over any GenerationEngine (`loft serve`).
        .target(name: "LoftServer", dependencies: [
            "LoftEngine", "LoftTemplates", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: settings),
        // `loft ui`: the web app over the registry (pages rendered here, charts as SVG, live points by SSE).
        .target(name: "LoftUI", dependencies: [
            "LoftRuns", "LoftTraining", "LoftData", "LoftTokenizers", "LoftTemplates", "LoftEngine", "LoftInference", "LoftModels",
            "LoftTensors", "Yams", .product(name: "Hummingbird", package: "hummingbird"),
        ], swiftSettings: settings),
        .executableTarget(name: "loft", dependencies: [
            "LoftFormats", "LoftTensors", "LoftModels", "LoftInference",
            "LoftTokenizers", "LoftTemplates", "LoftData", "LoftTraining", "LoftCUDA", "LoftHub", "LoftEngine",
            "LoftEval", "LoftServer", "LoftRuns", "LoftUI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: settings),
        // Paths to fixtures and the real model, shared by every test target.
        .target(name: "LoftTestSupport", dependencies: ["LoftFormats"], path: "Tests/LoftTestSupport", swiftSettings: settings),
        .testTarget(name: "LoftFormatsTests", dependencies: ["LoftTestSupport", "LoftFormats"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftTensorsTests", dependencies: ["LoftTestSupport", "LoftTensors", "CLoftKernels"], swiftSettings: settings),
        .testTarget(name: "LoftTokenizersTests", dependencies: ["LoftTestSupport", "LoftTokenizers", "LoftFormats"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftTemplatesTests", dependencies: ["LoftTestSupport", "LoftTemplates"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftDataTests", dependencies: ["LoftTestSupport", "LoftData", "LoftHub", "LoftTokenizers", "LoftTemplates", "LoftFormats"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftTrainingTests", dependencies: ["LoftTestSupport", "LoftTraining", "LoftModels", "LoftTensors", "LoftFormats", "LoftData"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftCUDATests", dependencies: ["LoftTestSupport", "LoftCUDA", "LoftTraining", "LoftModels", "LoftTensors", "LoftFormats"], swiftSettings: settings),
        .testTarget(name: "LoftHubTests", dependencies: ["LoftTestSupport", "LoftHub"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftEngineTests", dependencies: ["LoftTestSupport", "LoftEngine", "LoftInference", "LoftModels", "LoftTensors", "LoftTokenizers", "LoftFormats"], swiftSettings: settings),
        .testTarget(name: "LoftEvalTests", dependencies: ["LoftTestSupport", "LoftEval", "LoftEngine", "LoftInference", "LoftTemplates"], exclude: ["Fixtures"], swiftSettings: settings),
        .testTarget(name: "LoftRunsTests", dependencies: ["LoftTestSupport", "LoftRuns"], swiftSettings: settings),
        .testTarget(name: "LoftServerTests", dependencies: [
            "LoftServer", "LoftEngine", "LoftTemplates", .product(name: "Hummingbird", package: "hummingbird"),
        ], swiftSettings: settings),
        .testTarget(name: "LoftUITests", dependencies: ["LoftTestSupport", "LoftUI", "LoftRuns", "LoftEngine"], swiftSettings: settings),
        .testTarget(name: "LoftModelsTests", dependencies: ["LoftTestSupport", "LoftModels", "LoftInference", "LoftFormats", "LoftTensors"], exclude: ["Fixtures"], swiftSettings: settings),
    ]
)

// Swift 5 language mode: the numeric code passes raw pointers between threads on
// purpose, and strict Sendable checking would only add noise there.
var settings: [SwiftSetting] { [.swiftLanguageMode(.v5), .unsafeFlags(["-Ounchecked"], .when(configuration: .release))] }
