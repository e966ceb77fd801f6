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
    /// DoRA: a trained magnitude per output row on top of the low-rank update (DoRA.swift).
    public var useDoRA: Bool
    /// Modules trained in full next to the adapters, as PEFT's
    /// `modules_to_save` (Axolotl's lora_modules_to_save): embed_tokens, lm_head.
    public var modulesToSave: [String]

    public init(rank: Int = 16, alpha: Double = 32, dropout: Double = 0, targetModules: [String] = LoRAConfig.allLinear,
                useRSLoRA: Bool = false, useDoRA: Bool = false, modulesToSave: [String] = []) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA
        self.useDoRA = useDoRA
        self.modulesToSave = modulesToSave
    }

    enum CodingKeys: String, CodingKey { case rank, alpha, dropout, targetModules, useRSLoRA, useDoRA, modulesToSave }

    // Configs written before DoRA existed have no useDoRA: they are plain LoRA.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(rank: try c.decode(Int.self, forKey: .rank), alpha: try c.decode(Double.self, forKey: .alpha),
                  dropout: try c.decode(Double.self, forKey: .dropout),
                  targetModules: try c.decode([String].self, forKey: .targetModules),
                  useRSLoRA: try c.decode(Bool.self, forKey: .useRSLoRA),
                  useDoRA: try c.decodeIfPresent(Bool.self, forKey: .useDoRA) ?? false,
                  modulesToSave: try c.decodeIfPresent([String].self, forKey: .modulesToSave) ?? [])
    }

    public var scale: Float {
        Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }

    /// The short name LayerActivations uses for a PEFT module name.
    public static let shortNames = ["q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
                             "gate_proj": "gate", "up_proj": "up", "down_proj": "down",
                             "qkv_proj": "qkv", "gate_up_proj": "gate_up"]

    /// Phi-3's fused modules, which stand for these of `allLinear`.
    public static let fusedModules = ["qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]]

    /// Every module name a config may target: `allLinear` and the fused ones.
    public static let knownModules = allLinear + ["qkv_proj", "gate_up_proj"]

    /// `modules` as the modules a model of `config` has: on a model with
    /// fused projections (Phi-3) q_proj, k_proj or v_proj name its
    /// qkv_proj and gate_proj or up_proj its gate_up_proj (so all-linear
    /// adapts the four modules PEFT's all-linear finds); on other models the
    /// fused names stand for their parts. Order follows `knownModules`.
    public static func modules(_ modules: [String], for config: ModelConfig) -> [String] {
        var wanted = Set<String>()
        for m in modules {
            if config.fusedProjections {
                wanted.insert(fusedModules.first { $0.value.contains(m) }?.key ?? m)
            } else {
                for part in fusedModules[m] ?? [m] { wanted.insert(part) }
            }
        }
        let order = config.fusedProjections ? ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"] : allLinear
        return order.filter(wanted.contains) + modules.filter { !order.contains($0) && wanted.contains($0) }
    }

    /// This config with its target modules as a model of `config` has them.
    public func resolved(for config: ModelConfig) -> LoRAConfig {
        var copy = self
        copy.targetModules = Self.modules(targetModules, for: config)
        return copy
    }
}

/// One adapter attached to the model, with its PEFT key prefix.
public struct AdapterSlot {
    /// e.g. "base_model.model.model.layers.3.self_attn.q_proj"
    public let peftPrefix: String
    public let layer: Int
    public let module: String
    public let lora: LoRA

    public init(peftPrefix: String, layer: Int, module: String, lora: LoRA) {
        self.peftPrefix = peftPrefix
        self.layer = layer
        self.module = module
        self.lora = lora
    }
}

extension LlamaModel {
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
        trainedEmbedding = nil
        trainedLMHead = nil
    }
}

