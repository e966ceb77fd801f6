import Foundation

/// Preference training (`rl:`), with Axolotl's keys and TRL's defaults.
public struct PreferenceConfig: Sendable, Equatable, Codable {
    /// dpo, ipo, orpo, kto or simpo.
    public var method = "dpo"
    /// β (`rl_beta`); TRL's default 0.1. ORPO's λ is `orpo_alpha`.
    public var beta = 0.1
    /// DPO's loss: sigmoid, hinge, ipo or robust (`dpo_loss_type`).
    public var dpoLossType = "sigmoid"
    /// Robust DPO's flip probability ε (`dpo_label_smoothing`), in [0, 0.5).
    public var labelSmoothing = 0.0
    /// ORPO's λ (`orpo_alpha`, TRL's ORPOConfig.beta, default 0.1).
    public var orpoAlpha = 0.1
    /// SimPO's target margin γ (`simpo_gamma`; TRL's default 0.5).
    public var simpoGamma = 0.5
    /// CPO-SimPO's weight of the chosen NLL (`cpo_alpha`; 0 = pure SimPO).
    public var cpoAlpha = 0.0
    public var ktoDesirableWeight = 1.0
    public var ktoUndesirableWeight = 1.0
    /// Compute the reference log-probs once before training and cache them on disk.
    public var precomputeReference = false
    /// Continue training this adapter (`lora_model_dir`, e.g. the SFT run's output); a frozen copy is the reference.
    public var startingAdapter: String?
    /// Keep this adapter frozen under a new one (`base_adapter`); base + it is the reference, and
    /// `loft merge --adapter IT --adapter NEW` applies the two in sequence.
    public var baseAdapter: String?
    /// Longest prompt kept (tokens; its start is cut), nil = no limit but sequence_len.
    public var maxPromptLen: Int?
    public init() {}

    /// The objective this config trains.
    public func objective() -> PreferenceObjective {
        switch method {
        case "ipo": return IPO(beta: beta)
        case "orpo": return ORPO(alpha: orpoAlpha)
        case "simpo": return SimPO(beta: beta, gamma: simpoGamma, cpoAlpha: cpoAlpha)
        case "kto": return KTO(beta: beta, desirableWeight: ktoDesirableWeight, undesirableWeight: ktoUndesirableWeight)
        default:
            switch dpoLossType {
            case "hinge": return DPOHinge(beta: beta)
            case "ipo": return IPO(beta: beta)
            case "robust": return RobustDPO(beta: beta, labelSmoothing: labelSmoothing)
            default: return DPOSigmoid(beta: beta)
            }
        }
    }

    /// The TRL release whose definitions Loft follows (losses, metrics, tokenization).
    public static let trlVersion = "1.16.0"
}

extension TrainConfig {
    static let preferenceKeys = ["rl", "rl_beta", "dpo_beta", "dpo_loss_type", "dpo_label_smoothing", "orpo_alpha", "simpo_gamma",
                                 "cpo_alpha", "kto_desirable_weight", "kto_undesirable_weight", "rl_precompute_reference",
                                 "precompute_ref_log_probs", "lora_model_dir", "base_adapter", "max_prompt_len"]

    static func parsePreference(_ dict: [String: Any], into c: inout TrainConfig, problems: inout [String]) {
        func number(_ key: String) -> Double? {
            guard let v = dict[key] else { return nil }
            if let d = v as? Double { return d }
            if let i = v as? Int { return Double(i) }
            problems.append("\(key): expected a number, got \(v)")
            return nil
        }
        let rlKeys = preferenceKeys.filter { $0 != "rl" && $0 != "lora_model_dir" && dict[$0] != nil }
        guard let rl = dict["rl"] else {
            if !rlKeys.isEmpty { problems.append("\(rlKeys.joined(separator: ", ")): preference options without `rl:`; add rl: dpo (or ipo, orpo, kto, simpo)") }
            // SFT does not start from an adapter yet: listed as ignored, as before.
            if dict["lora_model_dir"] != nil { c.ignoredKeys.append("lora_model_dir"); c.ignoredKeys.sort() }
            return
        }
        var p = PreferenceConfig()
        guard let method = rl as? String, ["dpo", "ipo", "orpo", "kto", "simpo"].contains(method) else {
            problems.append("rl: '\(rl)' is not supported; use dpo, ipo, orpo, kto or simpo")
            return
        }
        p.method = method
        if let v = number("rl_beta") ?? number("dpo_beta") {
            if v <= 0 { problems.append("rl_beta: must be > 0 (TRL's default is 0.1)") } else { p.beta = v }
        }
        if let v = dict["dpo_loss_type"] {
            let t = (v as? [String])?.first ?? (v as? String) ?? ""
            if ["sigmoid", "hinge", "ipo", "robust"].contains(t) { p.dpoLossType = t }
            else { problems.append("dpo_loss_type: '\(v)' is not supported; use sigmoid, hinge, ipo or robust") }
        }
        if method == "ipo" { p.dpoLossType = "ipo" }
        if let v = number("dpo_label_smoothing") {
            if !(0 ..< 0.5).contains(v) { problems.append("dpo_label_smoothing: must be in [0, 0.5) (the probability a label is flipped)") }
            else { p.labelSmoothing = v }
        }
        if let v = number("orpo_alpha") { if v <= 0 { problems.append("orpo_alpha: must be > 0") } else { p.orpoAlpha = v } }
        if let v = number("simpo_gamma") { p.simpoGamma = v }
        if let v = number("cpo_alpha") { if v < 0 { problems.append("cpo_alpha: must be ≥ 0") } else { p.cpoAlpha = v } }
        if let v = number("kto_desirable_weight") { if v < 0 { problems.append("kto_desirable_weight: must be ≥ 0") } else { p.ktoDesirableWeight = v } }
        if let v = number("kto_undesirable_weight") { if v < 0 { problems.append("kto_undesirable_weight: must be ≥ 0") } else { p.ktoUndesirableWeight = v } }
        for key in ["rl_precompute_reference", "precompute_ref_log_probs"] {
            if let v = dict[key] {
                if let b = v as? Bool { p.precomputeReference = b } else { problems.append("\(key): expected true or false, got \(v)") }
            }
        }
        if let v = dict["max_prompt_len"] {
            if let i = v as? Int, i >= 1 { p.maxPromptLen = i } else { problems.append("max_prompt_len: expected a whole number ≥ 1, got \(v)") }
        }
        if let v = dict["lora_model_dir"] {
            if let s = v as? String { p.startingAdapter = s } else { problems.append("lora_model_dir: expected a directory path, got \(v)") }
        }
        if let v = dict["base_adapter"] {
            if let s = v as? String { p.baseAdapter = s } else { problems.append("base_adapter: expected a directory path, got \(v)") }
        }
        if p.startingAdapter != nil && p.baseAdapter != nil {
            problems.append("lora_model_dir and base_adapter: set one (lora_model_dir trains that adapter further; base_adapter keeps it frozen under a new one)")
        }
        if p.baseAdapter != nil && c.lora.useDoRA { problems.append("use_dora: a DoRA adapter cannot sit over a frozen base_adapter; merge the base adapter first or use plain LoRA") }
        if c.samplePacking { problems.append("sample_packing: not used by preference training (each pair is its own sequences); remove it or set it to false") }
        if !c.lora.modulesToSave.isEmpty { problems.append("lora_modules_to_save: not supported with rl: yet; remove it") }
        c.preference = p
    }
}
