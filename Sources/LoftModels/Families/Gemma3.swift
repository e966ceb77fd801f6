import Foundation
import LoftFormats

/// Gemma 3 (text): the Llama decoder of Llama.swift with these switches of
/// `ModelConfig`, as transformers' `Gemma3ForCausalLM` computes it:
///
/// - every RMSNorm multiplies by (1 + w) (`normWeightOffset` 1), q/k norms included;
/// - embeddings scaled by √hidden_size (`embeddingScale`), tied output head;
/// - GeGLU with the tanh gelu (`hiddenActivation` .geluTanh);
/// - four norms per layer: input, post-attention, pre-feed-forward and
///   post-feed-forward (`sandwichNorms`): x += norm(attention(norm(x))),
///   x += norm(mlp(norm(x)));
/// - q·k scaled by query_pre_attn_scalar^-½ (`attentionScale`);
/// - five sliding-window layers to one global (`layerTypes`): sliding layers
///   see the last `sliding_window` keys and rotate with rope_local_base_freq
///   (10 000, never scaled), global ones with rope_theta (10⁶) and its scaling.
///
/// llama.cpp's GGUF stores every norm weight as 1 + w (convert_hf_to_gguf adds
/// the one), so `GGUFWeights` subtracts it on load, as transformers' GGUF
/// loader does, and the exporters add it back.
extension ModelConfig {
    /// The sliding/global pattern of Gemma checkpoints that do not list
    /// `layer_types`: every `pattern`-th layer is global (Gemma 3: 6, Gemma 2: 2).
    static func gemmaLayerTypes(layers: Int, pattern: Int) -> [LayerAttention] {
        (0 ..< layers).map { ($0 + 1) % pattern == 0 ? .full : .sliding }
    }

    /// What Gemma 2 and 3 share: (1 + w) norms, scaled embeddings, GeGLU, four norms a layer.
    mutating func applyGemmaCommon() {
        hiddenActivation = .geluTanh
        normWeightOffset = 1
        embeddingScale = Float(Double(hiddenSize).squareRoot())
        sandwichNorms = true
    }

    /// The sliding/global pattern from `layer_types`, or every `pattern`-th layer global.
    static func gemmaLayerTypes(_ json: [String: Any], layers: Int, pattern: Int, source: String) throws -> [LayerAttention] {
        guard let types = json["layer_types"] as? [String] else { return gemmaLayerTypes(layers: layers, pattern: pattern) }
        return try types.enumerated().map { i, t in
            switch t {
            case "sliding_attention": return .sliding
            case "full_attention": return .full
            default: throw FormatError(source, "layer_types[\(i)] is '\(t)'; expected sliding_attention or full_attention")
            }
        }
    }

    /// Reads Gemma 3's own keys of a config.json (transformers 4's flat
    /// rope_theta/rope_local_base_freq/rope_scaling or 5's rope_parameters per
    /// layer type) and refuses what Loft does not compute.
    mutating func applyGemma3(hf json: [String: Any], source: String) throws {
        applyGemmaCommon()
        qkNorm = true
        if json["tie_word_embeddings"] == nil { tieWordEmbeddings = true }  // Gemma3TextConfig's default
        if let act = json["hidden_activation"] as? String, act != "gelu_pytorch_tanh" {
            throw FormatError(source, "hidden_activation '\(act)' is not supported for gemma3; Loft computes gelu_pytorch_tanh")
        }
        for key in ["final_logit_softcapping", "attn_logit_softcapping"] {
            if let v = json[key] as? NSNumber {
                throw FormatError(source, "\(key) is \(v); Loft's Gemma 3 does not soft-cap (Gemma 3 checkpoints set it to null)")
            }
        }
        if json["use_bidirectional_attention"] as? Bool == true {
            throw FormatError(source, "use_bidirectional_attention is true (an embedding model); Loft runs causal Gemma 3 only")
        }
        let scalar = (json["query_pre_attn_scalar"] as? NSNumber)?.doubleValue ?? 256
        attentionScale = Float(1 / scalar.squareRoot())
        layerTypes = try Self.gemmaLayerTypes(json, layers: layers,
                                              pattern: (json["sliding_window_pattern"] as? NSNumber)?.intValue ?? 6, source: source)
        if slidingWindow == nil { slidingWindow = 4096 }
        let maxPositions = maxPositionEmbeddings
        if let perType = json["rope_parameters"] as? [String: Any], let full = perType["full_attention"] as? [String: Any] {
            ropeTheta = (full["rope_theta"] as? NSNumber)?.doubleValue ?? 1_000_000
            ropeScaling = try Self.ropeScaling(full, maxPositions: maxPositions, source: source)
            let local = perType["sliding_attention"] as? [String: Any]
            localRopeTheta = (local?["rope_theta"] as? NSNumber)?.doubleValue ?? 10_000
            if let type = local?["rope_type"] as? String, type != "default" {
                throw FormatError(source, "rope_parameters.sliding_attention.rope_type '\(type)' is not supported; Loft rotates Gemma 3's sliding layers without scaling")
            }
        } else {
            ropeTheta = (json["rope_theta"] as? NSNumber)?.doubleValue ?? 1_000_000
            ropeScaling = try Self.ropeScaling(json["rope_scaling"] as? [String: Any], maxPositions: maxPositions, source: source)
            localRopeTheta = (json["rope_local_base_freq"] as? NSNumber)?.doubleValue ?? 10_000
        }
    }

    /// Gemma 3's settings that llama.cpp does not store in the GGUF (it fixes
    /// them in llama-model.cpp, as transformers' GGUF loader does by default):
    /// the 5:1 pattern, the local base 10 000, and q·k scaled by head_dim^-½
    /// except in the 27B model, whose query_pre_attn_scalar is hidden/heads.
    mutating func applyGemma3(gguf file: GGUFFile) {
        applyGemmaCommon()
        qkNorm = true
        layerTypes = Self.gemmaLayerTypes(layers: layers, pattern: 6)
        slidingWindow = file.metadata["gemma3.attention.sliding_window"]?.int ?? 4096
        localRopeTheta = 10_000
        let is27B = layers == 62 && hiddenSize == 5376
        attentionScale = Float(1 / Double(is27B ? hiddenSize / heads : headDim).squareRoot())
    }
}
