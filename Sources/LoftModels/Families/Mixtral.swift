import Foundation
import LoftFormats

/// Mixtral (`model_type` mixtral): Mistral's attention (sliding_window when
/// set) with a sparse MLP in every layer (MixtureOfExperts.swift): the top-k
/// of num_local_experts, always renormalised, each expert of
/// `intermediate_size`. Names: `block_sparse_moe.gate` (router) and
/// `block_sparse_moe.experts.N.{w1,w3,w2}` (gate, up, down).
extension ModelConfig {
    mutating func applyMixtral(hf json: [String: Any], source: String) throws {
        experts = (json["num_local_experts"] as? NSNumber)?.intValue ?? 8
        expertsPerToken = (json["num_experts_per_tok"] as? NSNumber)?.intValue ?? 2
        expertIntermediateSize = intermediateSize
        normalizeTopK = true
        if let jitter = (json["router_jitter_noise"] as? NSNumber)?.doubleValue, jitter > 0 {
            throw FormatError(source, "router_jitter_noise is \(jitter); Loft routes without jitter so far; set it to 0")
        }
        if json["output_router_logits"] as? Bool == true {
            throw FormatError(source, "output_router_logits is true (training with the router's load-balancing loss); Loft trains with the router frozen and no auxiliary loss so far; set it to false")
        }
    }
}
