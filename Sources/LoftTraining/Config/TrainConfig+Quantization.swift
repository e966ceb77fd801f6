import Foundation
import LoftModels
import LoftTensors

/// QLoRA and the other base-weight storages, with bitsandbytes' Axolotl keys:
/// `load_in_4bit` + `bnb_4bit_quant_type` (nf4, fp4) + `bnb_4bit_use_double_quant`
/// (Axolotl's default: true) + `bnb_4bit_compute_dtype`, `load_in_8bit`
/// (LLM.int8 rows), `bf16: true` (the base kept in bf16), and Loft's
/// `keep_gguf_quantization` (a GGUF base stays in its own blocks). `bf16`,
/// `fp16` and, for a 4-bit base, `bnb_4bit_compute_dtype` also pick the
/// compute precision (`ComputePrecision`).
extension TrainConfig {
    static let quantizationKeys = ["load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
                                   "bnb_4bit_compute_dtype", "bf16", "fp16", "keep_gguf_quantization"]

    static func parseQuantization(_ dict: [String: Any], into c: inout TrainConfig, problems: inout [String]) {
        func flag(_ key: String) -> Bool {
            guard let v = dict[key] else { return false }
            if let b = v as? Bool { return b }
            if key == "bf16", let s = v as? String, s == "auto" {
                // Axolotl's "if the GPU can": on CPU Loft keeps f32, so the key is listed as ignored
                c.ignoredKeys.append(key)
                c.ignoredKeys.sort()
                return false
            }
            problems.append("\(key): expected true or false, got \(v)")
            return false
        }
        let in4 = flag("load_in_4bit"), in8 = flag("load_in_8bit"), bf16 = flag("bf16"), keep = flag("keep_gguf_quantization")
        let fp16 = flag("fp16")
        var format = BaseWeightFormat()
        format.doubleQuant = true
        if let v = dict["bnb_4bit_use_double_quant"] {
            if let b = v as? Bool { format.doubleQuant = b } else { problems.append("bnb_4bit_use_double_quant: expected true or false, got \(v)") }
        }
        var fourBit = BaseWeightKind.nf4
        if let v = dict["bnb_4bit_quant_type"] {
            switch v as? String {
            case "nf4": fourBit = .nf4
            case "fp4": fourBit = .fp4
            default: problems.append("bnb_4bit_quant_type: '\(v)' is not supported; use nf4 or fp4")
            }
        }
        if let v = dict["bnb_4bit_compute_dtype"] {
            let names = ["bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "fp32": "fp32", "float32": "fp32"]
            if let s = v as? String, let d = names[s] { c.computeDType = d }
            else { problems.append("bnb_4bit_compute_dtype: '\(v)' is not one of bf16, fp16, fp32") }
        }
        resolveComputePrecision(bf16: bf16, fp16: fp16, fourBit: in4, computeKeyGiven: dict["bnb_4bit_compute_dtype"] != nil,
                                into: &c, problems: &problems)
        let chosen = [("load_in_4bit", in4), ("load_in_8bit", in8), ("keep_gguf_quantization", keep)].filter(\.1).map(\.0)
        if chosen.count > 1 {
            problems.append("\(chosen.joined(separator: " and ")) are all set; the base is stored one way, keep one of them")
        }
        if keep && !c.baseModel.lowercased().hasSuffix(".gguf") && !c.baseModel.isEmpty {
            problems.append("keep_gguf_quantization: the base_model \(c.baseModel) is not a .gguf file; remove the key, or use load_in_4bit")
        }
        let stored = Self.bnbCheckpoint(c.baseModel)
        // a pre-quantized 4-bit base (a local bnb directory, or a Hub id named -bnb-4bit) is QLoRA as it stands
        if c.adapter == "qlora" && !in4 && !keep && stored?.format.kind != .nf4 && stored?.format.kind != .fp4
            && !c.baseModel.lowercased().contains("bnb-4bit") {
            problems.append("adapter: qlora needs load_in_4bit: true (or keep_gguf_quantization: true for a GGUF base); or use adapter: lora")
        }
        if in4 { format.kind = fourBit }
        else if in8 { format.kind = .int8 }
        else if keep { format.kind = .gguf }
        else if bf16 { format.kind = .bf16 }
        else { format.kind = .f32 }
        if format.kind != .nf4 && format.kind != .fp4 { format.doubleQuant = false }
        c.baseWeights = format
        if let stored {
            // A pre-quantized bitsandbytes base keeps its own storage; a different kind is refused here, before any compute.
            do { _ = try stored.resolve(format, source: c.baseModel) } catch { problems.append("base_model: \(error)") }
        }
    }

    /// The bitsandbytes quantization of a local model directory's config.json,
    /// if it has one (Hub ids are checked when the model is loaded).
    static func bnbCheckpoint(_ baseModel: String) -> BnBCheckpointFormat? {
        let path = (baseModel as NSString).expandingTildeInPath + "/config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        return try? BnBCheckpointFormat.read(config: json, source: path)
    }

    /// bf16: true → bf16, fp16: true → fp16, else a 4-bit base's
    /// bnb_4bit_compute_dtype, else fp32. Autocast computes in one precision,
    /// so settings that disagree are refused rather than one silently winning.
    static func resolveComputePrecision(bf16: Bool, fp16: Bool, fourBit: Bool, computeKeyGiven: Bool,
                                        into c: inout TrainConfig, problems: inout [String]) {
        if bf16 && fp16 {
            problems.append("bf16: true and fp16: true are both set; the GEMMs compute in one precision, keep one of them")
            return
        }
        let flagged: (key: String, precision: ComputePrecision)? = bf16 ? ("bf16", .bf16) : fp16 ? ("fp16", .fp16) : nil
        let fourBitPrecision = fourBit && computeKeyGiven ? ComputePrecision(rawValue: c.computeDType) : nil
        if let flagged, let fourBitPrecision, fourBitPrecision != flagged.precision {
            problems.append("\(flagged.key): true and bnb_4bit_compute_dtype: \(c.computeDType) disagree; the GEMMs compute in one precision, set bnb_4bit_compute_dtype: \(flagged.precision.rawValue) or remove one of them")
            return
        }
        c.computePrecision = flagged?.precision ?? fourBitPrecision ?? .fp32
    }
}
