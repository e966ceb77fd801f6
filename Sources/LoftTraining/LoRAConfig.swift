import Foundation
import LoftModels
import LoftTensors

/// Which projections get adapters and how they are scaled, with PEFT's names.
public struct LoRAConfig: Sendable, Equatable, Codable {
    public static let allLinear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    /// Module names as PEFT's `target_modules` spells them ("q_proj", …).
    public var targetModules: [String]
    /// rsLoRA: scale alpha/√r instead of alpha/r.
    public var useRSLoRA: Bool

    public init(rank: Int = 16, alpha: Double = 32, dropout: Double = 0, targetModules: [String] = LoRAConfig.allLinear,
                useRSLoRA: Bool = false) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA
    }

    public var scale: Float {
        Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// The short name LayerActivations uses for a PEFT module name.
    static let shortNames = ["q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
                             "gate_proj": "gate", "up_proj": "up", "down_proj": "down"]
}

/// One adapter attached to the model, with its PEFT key prefix.
public struct AdapterSlot {
    /// e.g. "base_model.model.model.layers.3.self_attn.q_proj"
    public let peftPrefix: String
    public let layer: Int
    public let module: String
    public let lora: LoRA
}

extension LlamaModel {
    /// Attaches fresh adapters as PEFT initialises them: A Kaiming-uniform
    /// (a = √5, so bound 1/√in), B zero. Returns them in PEFT's key order.
    @discardableResult
    public func attachLoRA(_ config: LoRAConfig, seed: UInt64) throws -> [AdapterSlot] {
        let unknown = Set(config.targetModules).subtracting(LoRAConfig.allLinear)
        if !unknown.isEmpty {
            throw TrainingError("lora_target_modules has \(unknown.sorted()); supported modules are \(LoRAConfig.allLinear.joined(separator: ", "))")
        }
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
                slots.append(AdapterSlot(peftPrefix: "base_model.model.model.layers.\(i).\(path)", layer: i,
                                         module: module, lora: lora))
            }
        }
        return slots
    }

    /// The adapters currently attached, in PEFT's key order.
    public var adapterSlots: [AdapterSlot] {
        var slots: [AdapterSlot] = []
        for (i, layer) in layers.enumerated() {
            for (path, linear) in layer.projections {
                guard let lora = linear.lora else { continue }
                slots.append(AdapterSlot(peftPrefix: "base_model.model.model.layers.\(i).\(path)", layer: i,
                                         module: String(path.split(separator: ".").last!), lora: lora))
            }
        }
        return slots
    }

    public func detachLoRA() {
        for layer in layers { for (_, linear) in layer.projections { linear.lora = nil } }
    }
}

/// Errors in a training setup, each saying what to change.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The generator behind adapter initialisation and shuffling: seeded, and
/// its state can be saved in a checkpoint.
public struct TrainingRandom: RandomNumberGenerator, Codable, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed ^ 0x5DEE_CE66_D1CE_4E5B }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
