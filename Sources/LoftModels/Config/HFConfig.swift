import Foundation
import LoftFormats

extension ModelConfig {
    /// Reads a Hugging Face `config.json`.
    public static func fromHF(path: String) throws -> ModelConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(path, "file not found; a model directory needs a config.json")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(path, "is not a JSON object")
        }
        return try fromHF(json: json, source: path)
    }

    public static func fromHF(json: [String: Any], source: String) throws -> ModelConfig {
        let modelType = json["model_type"] as? String ?? ""
        guard let arch = Architecture(modelType: modelType) else {
            if modelType == "gemma3" {
                throw FormatError(source, "model_type 'gemma3' is the multimodal Gemma 3 checkpoint; Loft reads its text model (model_type gemma3_text, e.g. google/gemma-3-270m or gemma-3-1b)")
            }
            throw FormatError(source, "model_type '\(modelType)' is not supported; Loft supports \(Architecture.supportedList) (gemma3 as gemma3_text)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = (json[key] as? NSNumber)?.intValue else {
                throw FormatError(source, "missing or non-integer '\(key)'")
            }
            return v
        }
        func optionalInt(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
        func double(_ key: String, _ fallback: Double) -> Double { (json[key] as? NSNumber)?.doubleValue ?? fallback }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let maxPositions = optionalInt("max_position_embeddings") ?? 2048
        let eos: [Int]
        if let list = json["eos_token_id"] as? [NSNumber] { eos = list.map(\.intValue) }
        else if let one = optionalInt("eos_token_id") { eos = [one] }
        else { eos = [] }
        // transformers 5 keeps rope_theta inside rope_parameters; older configs keep both at top level.
        let ropeParams = (json["rope_parameters"] as? [String: Any]) ?? (json["rope_scaling"] as? [String: Any])
        let theta = (json["rope_theta"] as? NSNumber)?.doubleValue
            ?? (ropeParams?["rope_theta"] as? NSNumber)?.doubleValue ?? 10000
        var config = ModelConfig(
            architecture: arch,
            vocabSize: try int("vocab_size"),
            hiddenSize: hidden,
            intermediateSize: try int("intermediate_size"),
            layers: try int("num_hidden_layers"),
            heads: heads,
            kvHeads: optionalInt("num_key_value_heads") ?? heads,
            headDim: optionalInt("head_dim") ?? hidden / heads,
            rmsNormEps: double("rms_norm_eps", 1e-6),
            ropeTheta: theta,
            ropeScaling: try ropeScaling(ropeParams, maxPositions: maxPositions, source: source,
                                         originalContext: optionalInt("original_max_position_embeddings")),
            maxPositionEmbeddings: maxPositions,
            tieWordEmbeddings: json["tie_word_embeddings"] as? Bool ?? false,
            attentionBias: json["attention_bias"] as? Bool ?? (arch == .qwen2),
            qkNorm: arch == .qwen3 || arch == .qwen3Moe,
            slidingWindow: slidingWindow(json, arch),
            bosTokenID: optionalInt("bos_token_id"),
            eosTokenIDs: eos)
        // Partial rotary (Phi-4-mini): only the first head_dim·factor dimensions turn, as transformers' int().
        let partial = (json["partial_rotary_factor"] as? NSNumber)?.doubleValue
            ?? (ropeParams?["partial_rotary_factor"] as? NSNumber)?.doubleValue ?? 1
        if partial != 1 { config.rotaryDims = Int(Double(config.headDim) * partial) }
        if arch == .gemma3 { try config.applyGemma3(hf: json, source: source) }
        if arch == .gemma2 { try config.applyGemma2(hf: json, source: source) }
        if arch == .phi3 { try config.applyPhi3(hf: json, source: source) }
        if arch == .qwen3Moe { try config.applyQwen3MoE(hf: json, source: source) }
        if arch == .mixtral { try config.applyMixtral(hf: json, source: source) }
        try config.validate(source: source)
        return config
    }

    /// Mistral honours `sliding_window`; Qwen2/3 only when `use_sliding_window` is true.
    static func slidingWindow(_ json: [String: Any], _ arch: Architecture) -> Int? {
        guard let w = (json["sliding_window"] as? NSNumber)?.intValue, w > 0 else { return nil }
        switch arch {
        case .mistral, .mixtral: return w
        case .qwen2, .qwen3, .qwen3Moe: return (json["use_sliding_window"] as? Bool ?? false) ? w : nil
        case .gemma2, .gemma3, .phi3: return w
        case .llama: return nil
        }
    }

    /// `originalContext`: config.json's top-level original_max_position_embeddings
    /// (Phi-3 keeps it there rather than in rope_scaling).
    static func ropeScaling(_ params: [String: Any]?, maxPositions: Int, source: String,
                            originalContext: Int? = nil) throws -> RoPEScaling {
        guard let params else { return .none }
        let type = (params["rope_type"] as? String) ?? (params["type"] as? String) ?? "default"
        let factor = (params["factor"] as? NSNumber)?.doubleValue ?? 1
        let original = (params["original_max_position_embeddings"] as? NSNumber)?.intValue ?? originalContext ?? maxPositions
        switch type {
        case "longrope", "su":
            guard let short = (params["short_factor"] as? [NSNumber])?.map(\.doubleValue),
                  let long = (params["long_factor"] as? [NSNumber])?.map(\.doubleValue) else {
                throw FormatError(source, "rope_scaling type '\(type)' needs short_factor and long_factor lists")
            }
            // As transformers: without `factor`, the ratio of the context to the
            // pretraining length; without `attention_factor`, √(1 + ln s / ln L).
            let scale = (params["factor"] as? NSNumber)?.doubleValue ?? Double(maxPositions) / Double(original)
            let attention = (params["attention_factor"] as? NSNumber)?.doubleValue
                ?? (scale <= 1 ? 1 : (1 + Foundation.log(scale) / Foundation.log(Double(original))).squareRoot())
            return .longRoPE(shortFactor: short, longFactor: long, originalContext: original, attentionFactor: attention)
        case "default": return .none
        case "linear": return .linear(factor: factor)
        case "dynamic": return .dynamic(factor: factor, originalContext: original)
        case "llama3":
            return .llama3(factor: factor,
                           lowFreqFactor: (params["low_freq_factor"] as? NSNumber)?.doubleValue ?? 1,
                           highFreqFactor: (params["high_freq_factor"] as? NSNumber)?.doubleValue ?? 4,
                           originalContext: original)
        default:
            throw FormatError(source, "rope scaling type '\(type)' is not supported; Loft supports default, linear, dynamic, llama3 and longrope")
        }
    }
}
