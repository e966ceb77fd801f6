import Foundation
import LoftFormats

import LoftTensors

/// LoRA adapters in PEFT's on-disk form: adapter_model.safetensors with keys
/// `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight`
/// [out, r], and adapter_config.json, so `PeftModel.from_pretrained` loads
/// what Loft writes and Loft loads what PEFT writes.
public enum PEFTAdapter {
    /// Writes the model's attached adapters into `directory`.
    public static func save(_ model: LlamaModel, config: LoRAConfig, baseModel: String, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var writer = SafetensorsWriter()
        for slot in model.adapterSlots {
            try writer.add(name: slot.peftPrefix + ".lora_A.weight", shape: slot.lora.a.shape, floats: model.backend.download(slot.lora.a))
            try writer.add(name: slot.peftPrefix + ".lora_B.weight", shape: slot.lora.b.shape, floats: model.backend.download(slot.lora.b))
            if let m = slot.lora.magnitude {
                try writer.add(name: slot.peftPrefix + ".lora_magnitude_vector", shape: m.shape, floats: model.backend.download(m))
            }
        }
        for (key, weight) in model.fullyTrainedWeights {
            try writer.add(name: key, shape: weight.value.shape, floats: model.backend.download(weight.value))
        }
        try writer.write(to: directory + "/adapter_model.safetensors")
        let json: [String: Any] = [
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": baseModel,
            "r": config.rank,
            "lora_alpha": config.alpha,
            "lora_dropout": config.dropout,
            "target_modules": config.targetModules.sorted(),
            "use_rslora": config.useRSLoRA,
            "use_dora": config.useDoRA,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": config.modulesToSave.isEmpty ? NSNull() as Any : config.modulesToSave,
            "layers_to_transform": NSNull(),
            "layers_pattern": NSNull(),
            "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](),
            "revision": NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: directory + "/adapter_config.json"), options: .atomic)
    }

    /// Reads adapter_config.json.
    public static func readConfig(_ directory: String) throws -> LoRAConfig {
        let path = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path, "not found; an adapter directory holds adapter_config.json and adapter_model.safetensors")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(path, "is not a JSON object")
        }
        if let type = json["peft_type"] as? String, type != "LORA" {
            throw FormatError(path, "peft_type is \(type); Loft loads LORA adapters")
        }
        guard let r = (json["r"] as? NSNumber)?.intValue, r > 0 else { throw FormatError(path, "missing or invalid 'r'") }
        let alpha = (json["lora_alpha"] as? NSNumber)?.doubleValue ?? Double(r)
        var targets = json["target_modules"] as? [String] ?? []
        if targets.isEmpty, let one = json["target_modules"] as? String { targets = [one] }
        return LoRAConfig(rank: r, alpha: alpha, dropout: (json["lora_dropout"] as? NSNumber)?.doubleValue ?? 0,
                          targetModules: targets, useRSLoRA: json["use_rslora"] as? Bool ?? false,
                          useDoRA: json["use_dora"] as? Bool ?? false,
                          modulesToSave: json["modules_to_save"] as? [String] ?? [])
    }

    /// Attaches the adapter in `directory` to the model (replacing any attached one).
    @discardableResult
    public static func load(_ directory: String, into model: LlamaModel) throws -> LoRAConfig {
        let config = try readConfig(directory)
        let path = directory + "/adapter_model.safetensors"
        let file = try SafetensorsCheckpoint(path: path)
        model.detachLoRA()
        var used = 0
        for (i, layer) in model.layers.enumerated() {
            for (modulePath, linear) in layer.projections {
                let prefix = "base_model.model.model.layers.\(i).\(modulePath)"
                let aName = prefix + ".lora_A.weight", bName = prefix + ".lora_B.weight"
                guard let a = file.tensor(named: aName) else { continue }
                guard let b = file.tensor(named: bName) else { throw FormatError(path, "\(aName) has no matching \(bName)") }
                guard a.shape == [config.rank, linear.inFeatures], b.shape == [linear.outFeatures, config.rank] else {
                    throw FormatError(path, "\(prefix): lora_A \(a.shape) / lora_B \(b.shape) do not fit a \(linear.outFeatures)×\(linear.inFeatures) projection with r=\(config.rank); was this adapter trained on another base model?")
                }
                linear.lora = LoRA(a: model.backend.upload(a.floats(), shape: a.shape),
                                   b: model.backend.upload(b.floats(), shape: b.shape),
                                   scale: config.scale, dropout: 0)
                used += 2
                let mName = prefix + ".lora_magnitude_vector"
                if config.useDoRA {
                    guard let m = file.tensor(named: mName) else {
                        throw FormatError(path, "adapter_config.json says use_dora but \(mName) is missing; the adapter is incomplete")
                    }
                    guard m.shape == [linear.outFeatures] else {
                        throw FormatError(path, "\(mName) has shape \(m.shape); a \(linear.outFeatures)×\(linear.inFeatures) projection needs [\(linear.outFeatures)]")
                    }
                    linear.lora?.magnitude = model.backend.upload(m.floats(), shape: m.shape)
                    used += 1
                }
            }
        }
        try model.attachFullyTrained(config.modulesToSave, from: file, path: path)
        let loraKeys = file.tensorNames.filter { $0.contains(".lora_") }
        if used == 0 {
            throw FormatError(path, "no LoRA weights match this model's modules (keys look like \(loraKeys.first ?? "none")); was it trained for another architecture?")
        }
        if used != loraKeys.count {
            let unused = loraKeys.count - used
            throw FormatError(path, "\(unused) LoRA tensors match no module of this model (e.g. embeddings or lm_head adapters, which Loft does not load yet)")
        }
        return config
    }
}
