import Foundation
import LoftFormats

import LoftTensors

/// LoRA adapters in PEFT's on-disk form: adapter_model.safetensors with keys
/// `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight`
/// [out, r], and adapter_config.json, so `PeftModel.from_pretrained` loads
/// what Loft writes and Loft loads what PEFT writes.
///
/// `load` and `readConfig` also read adapters saved by mlx-lm (`mlx_lm.lora`):
/// adapters.safetensors with keys `model.layers.N.<module>.lora_a` [in, r] and
/// `.lora_b` [r, out] (the transposes of PEFT's), and an adapter_config.json
/// with `fine_tune_type`, `num_layers` and `lora_parameters` {rank, scale,
/// dropout, keys}, where the update is scale·(x·lora_a)·lora_b.
public enum PEFTAdapter {
    /// Where an adapter directory came from.
    public enum Format: String, Sendable { case peft, mlx }

    /// PEFT when adapter_model.safetensors is there, mlx-lm when adapters.safetensors is.
    public static func format(of directory: String) throws -> Format {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory + "/adapter_model.safetensors") { return .peft }
        if fm.fileExists(atPath: directory + "/adapters.safetensors") { return .mlx }
        if !fm.fileExists(atPath: directory) { throw FormatError(directory, "does not exist; pass an adapter directory") }
        throw FormatError(directory, "holds neither adapter_model.safetensors (PEFT) nor adapters.safetensors (mlx-lm); pass the directory the trainer wrote")
    }

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
            // The modules adapted, as this model names them (Phi-3: qkv_proj, gate_up_proj).
            "target_modules": LoRAConfig.modules(config.targetModules, for: model.config).sorted(),
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

    /// Reads adapter_config.json (PEFT's or mlx-lm's).
    public static func readConfig(_ directory: String) throws -> LoRAConfig {
        let path = directory + "/adapter_config.json"
        if FileManager.default.fileExists(atPath: directory + "/adapters.safetensors"),
           !FileManager.default.fileExists(atPath: directory + "/adapter_model.safetensors") {
            return try readMLXConfig(path)
        }
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

    /// mlx-lm's adapter_config.json: rank and scale from `lora_parameters`
    /// (alpha = scale·rank, so alpha/r is mlx-lm's scale), target modules from
    /// its `keys` ("self_attn.q_proj" → "q_proj").
    static func readMLXConfig(_ path: String) throws -> LoRAConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path, "not found; an mlx-lm adapter directory holds adapter_config.json next to adapters.safetensors")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(path, "is not a JSON object")
        }
        let kind = json["fine_tune_type"] as? String ?? "lora"
        guard kind == "lora" else {
            throw FormatError(path, "fine_tune_type is \(kind); Loft loads mlx-lm LoRA adapters (\(kind == "full" ? "a full fine-tune is a model, not an adapter" : "DoRA is not supported yet"))")
        }
        guard let params = json["lora_parameters"] as? [String: Any] else {
            throw FormatError(path, "has no lora_parameters; is this an mlx-lm adapter_config.json?")
        }
        guard let r = (params["rank"] as? NSNumber)?.intValue, r > 0 else {
            throw FormatError(path, "lora_parameters.rank is missing or not a positive integer")
        }
        guard let scale = (params["scale"] as? NSNumber)?.doubleValue else {
            throw FormatError(path, "lora_parameters.scale is missing (mlx-lm adds scale·(x·lora_a)·lora_b)")
        }
        let keys = (params["keys"] as? [String] ?? []).map { String($0.split(separator: ".").last ?? "") }
        return LoRAConfig(rank: r, alpha: scale * Double(r), dropout: (params["dropout"] as? NSNumber)?.doubleValue ?? 0,
                          targetModules: keys.isEmpty ? ["q_proj", "v_proj"] : keys, useRSLoRA: false)
    }

    /// Attaches the adapter in `directory` (PEFT or mlx-lm) to the model,
    /// replacing any attached one, with the base adapter it was trained over
    /// (if its loft_run.json names one) under it (StackedAdapter.swift).
    @discardableResult
    public static func load(_ directory: String, into model: LlamaModel) throws -> LoRAConfig {
        try load(directory, into: model, stack: true)
    }

    /// The adapter in `directory` alone.
    static func loadAlone(_ directory: String, into model: LlamaModel) throws -> LoRAConfig {
        let format = try format(of: directory)
        let config = try readConfig(directory)
        let path = directory + (format == .peft ? "/adapter_model.safetensors" : "/adapters.safetensors")
        let file = try SafetensorsCheckpoint(path: path)
        model.detachLoRA()
        var used = 0
        for (i, layer) in model.layers.enumerated() {
            for (modulePath, linear) in layer.projections {
                let prefix: String, aName: String, bName: String
                switch format {
                case .peft:
                    prefix = "base_model.model.model.layers.\(i).\(modulePath)"
                    aName = prefix + ".lora_A.weight"; bName = prefix + ".lora_B.weight"
                case .mlx:
                    // mlx-lm names parameters from the top model ("model.layers…"); some tools drop "model.".
                    let full = "model.layers.\(i).\(modulePath)"
                    prefix = file.tensor(named: full + ".lora_a") != nil ? full : "layers.\(i).\(modulePath)"
                    aName = prefix + ".lora_a"; bName = prefix + ".lora_b"
                }
                guard let a = file.tensor(named: aName) else { continue }
                guard let b = file.tensor(named: bName) else { throw FormatError(path, "\(aName) has no matching \(bName)") }
                let (aShape, bShape) = format == .peft ? ([config.rank, linear.inFeatures], [linear.outFeatures, config.rank])
                                                       : ([linear.inFeatures, config.rank], [config.rank, linear.outFeatures])
                guard a.shape == aShape, b.shape == bShape else {
                    throw FormatError(path, "\(prefix): \(aName.split(separator: ".").suffix(2).joined(separator: ".")) \(a.shape) / \(bName.split(separator: ".").suffix(2).joined(separator: ".")) \(b.shape) do not fit a \(linear.outFeatures)×\(linear.inFeatures) projection with r=\(config.rank) (expected \(aShape) and \(bShape)); was this adapter trained on another base model?")
                }
                var av = a.floats(), bv = b.floats()
                if format == .mlx {  // [in, r] → [r, in] and [r, out] → [out, r]
                    av = transpose(av, rows: linear.inFeatures, cols: config.rank)
                    bv = transpose(bv, rows: config.rank, cols: linear.outFeatures)
                }
                linear.lora = LoRA(a: model.backend.upload(av, shape: [config.rank, linear.inFeatures]),
                                   b: model.backend.upload(bv, shape: [linear.outFeatures, config.rank]),
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

    static func transpose(_ x: [Float], rows: Int, cols: Int) -> [Float] {
        var out = [Float](repeating: 0, count: x.count)
        for r in 0 ..< rows { for c in 0 ..< cols { out[c * rows + r] = x[r * cols + c] } }
        return out
    }
}
