import Foundation
import LoftFormats

/// Qwen3-MoE (`model_type` qwen3_moe): Qwen3's attention (q/k norms) with a
/// sparse MLP (MixtureOfExperts.swift) in every layer but those listed in
/// `mlp_only_layers` or skipped by `decoder_sparse_step`, which keep a dense
/// one of `intermediate_size`. The router's top-k probabilities are
/// renormalised when `norm_topk_prob` is true (Qwen3-30B-A3B), kept as they
/// are otherwise. Names: `mlp.gate` (router) and `mlp.experts.N.{gate,up,down}_proj`.
extension ModelConfig {
    mutating func applyQwen3MoE(hf json: [String: Any], source: String) throws {
        func int(_ key: String, _ fallback: Int) -> Int { (json[key] as? NSNumber)?.intValue ?? fallback }
        experts = int("num_experts", int("num_local_experts", 128))  // transformers 5 writes num_local_experts
        expertsPerToken = int("num_experts_per_tok", 8)
        expertIntermediateSize = int("moe_intermediate_size", 768)
        normalizeTopK = json["norm_topk_prob"] as? Bool ?? false
        let step = max(1, int("decoder_sparse_step", 1))
        let only = Set((json["mlp_only_layers"] as? [NSNumber] ?? []).map(\.intValue))
        denseLayers = Set((0 ..< layers).filter { only.contains($0) || ($0 + 1) % step != 0 })
        if json["output_router_logits"] as? Bool == true {
            throw FormatError(source, "output_router_logits is true (training with the router's load-balancing loss); Loft trains with the router frozen and no auxiliary loss so far; set it to false")
        }
    }
}
