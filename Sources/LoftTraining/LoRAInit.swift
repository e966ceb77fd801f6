import Foundation
import LoftData
import LoftFormats
import LoftModels
import LoftTensors

extension LlamaModel {
    /// Attaches fresh adapters as PEFT initialises them: A Kaiming-uniform
    /// (a = √5, so bound 1/√in), B zero. Returns them in PEFT's key order.
    @discardableResult
    public func attachLoRA(_ config: LoRAConfig, seed: UInt64) throws -> [AdapterSlot] {
        let unknown = Set(config.targetModules).subtracting(LoRAConfig.knownModules)
        if !unknown.isEmpty {
            throw TrainingError("lora_target_modules has \(unknown.sorted()); supported modules are \(LoRAConfig.knownModules.joined(separator: ", "))")
        }
        // Phi-3's q/k/v and gate/up are fused modules: the names map onto them.
        let config = config.resolved(for: self.config)
        var rng = TrainingRandom(seed: seed)
        var slots: [AdapterSlot] = []
        for (i, layer) in layers.enumerated() {
            for (path, linear) in layer.projections {
                let module = String(path.split(separator: ".").last!)
                guard config.targetModules.contains(module) else { continue }
                let bound = 1 / Float(linear.inFeatures).squareRoot()
                let a = (0 ..< config.rank * linear.inFeatures).map { _ in Float.random(in: -bound ..< bound, using: &rng) }
                let lora = LoRA(a: backend.upload(a, shape: [config.rank, linear.inFeatures]),
                                b: backend.zeros([linear.outFeatures, config.rank], dtype: .f32),
                                scale: config.scale, dropout: Float(config.dropout))
                linear.lora = lora
                if config.useDoRA { linear.initializeDoRAMagnitude(backend: backend) }
                slots.append(AdapterSlot(peftPrefix: "base_model.model.model.layers.\(i).\(path)", layer: i,
                                         module: module, lora: lora))
            }
        }
        try attachFullyTrained(config.modulesToSave)
        return slots
    }

}

/// Errors in a training setup, each saying what to change.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The generator behind adapter initialisation and shuffling.
public typealias TrainingRandom = SplitMix64
