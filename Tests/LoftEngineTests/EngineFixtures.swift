import Foundation
import XCTest
@testable import LoftEngine
import LoftFormats
import LoftModels
import LoftTensors
import LoftTestSupport
import LoftTokenizers

/// Models, tokenizers and random adapters the engine tests share.
enum EngineFixtures {
    static let tinyLlama = SharedTestPaths.fixtures(of: "LoftModelsTests").appendingPathComponent("tiny/llama").path

    /// SmolLM2's tokenizer (from the GGUF), also used with the tiny model (its ids are a subset).
    static var smolTokenizer: Tokenizer { get throws { try Tokenizer.load(source: SharedTestPaths.smolLM2) } }

    static func tempDirectory(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loft-engine-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes a PEFT adapter with random non-zero A and B for every projection in
    /// `modules` of `model` (attached only while saving).
    static func randomAdapter(for model: LlamaModel, rank: Int = 4, alpha: Double = 8, scale: Double = 0.05,
                              modules: [String] = LoRAConfig.allLinear, seed: UInt64, name: String) throws -> String {
        var rng = SeededRandom(seed: seed)
        let config = LoRAConfig(rank: rank, alpha: alpha, targetModules: modules)
        let present = LoRAConfig.modules(modules, for: model.config)  // Phi-3: its fused modules
        for layer in model.layers {
            for (path, linear) in layer.projections {
                guard present.contains(String(path.split(separator: ".").last!)) else { continue }
                let a = rng.normals(rank * linear.inFeatures, scale: scale).map(Float.init)
                let b = rng.normals(linear.outFeatures * rank, scale: scale).map(Float.init)
                linear.lora = LoRA(a: Tensor.cpu(a, shape: [rank, linear.inFeatures]),
                                   b: Tensor.cpu(b, shape: [linear.outFeatures, rank]), scale: config.scale)
            }
        }
        defer { model.detachLoRA() }
        let dir = tempDirectory(name)
        try PEFTAdapter.save(model, config: config, baseModel: "test", to: dir)
        return dir
    }

    static func tinyEngine(configuration: EngineConfiguration = EngineConfiguration(maxBatch: 8, contextLength: 128))
        throws -> (BatchEngine, LlamaModel) {
        let (model, _) = try ModelLoader.load(tinyLlama)
        let engine = try BatchEngine(model: model, tokenizer: try smolTokenizer, name: "tiny", modelPath: tinyLlama,
                                     configuration: configuration)
        return (engine, model)
    }

    static func randomPrompt(_ rng: inout SeededRandom, length: Int, vocab: Int) -> [Int32] {
        (0 ..< length).map { _ in Int32.random(in: 20 ..< Int32(vocab), using: &rng) }
    }
}

