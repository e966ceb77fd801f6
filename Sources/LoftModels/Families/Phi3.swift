import Foundation
import LoftFormats

/// Phi-3 and Phi-4 (`model_type` phi3): the Llama decoder of Llama.swift with
/// these switches of `ModelConfig`, as transformers' `Phi3ForCausalLM`
/// computes it:
///
/// - q, k and v are one projection, `self_attn.qkv_proj` (output rows: q's,
///   then k's, then v's), and gate and up another, `mlp.gate_up_proj` (gate's
///   rows, then up's) (`fusedProjections`). LoRA adapts them as PEFT does: one
///   adapter on each fused module, so A is shared by q, k and v. The model
///   keeps them fused (`LlamaModel.Layer.qkv`/`gateUp`, one product each) and
///   copies the output's columns apart for RoPE, attention and SwiGLU.
/// - LongRoPE (`rope_scaling` type longrope, also spelled su): each rotary
///   frequency divided by its own factor, the short list's while the
///   sequence fits original_max_position_embeddings and the long list's past
///   it, and cos and sin multiplied by √(1 + ln(s)/ln(L)) (`RoPEScaling.longRoPE`).
/// - sliding_window, when set, limits every layer's attention, as Mistral's.
/// - partial_rotary_factor (Phi-4-mini: 0.75): RoPE turns only each head's
///   first head_dim·factor dimensions (`rotaryDims`; any family may set it).
///
/// llama.cpp's GGUF (`phi3`) stores the same fused tensors (`attn_qkv`, and
/// `ffn_up` with gate's rows first) and the LongRoPE factors as the tensors
/// `rope_factors_short`/`rope_factors_long`.
extension ModelConfig {
    mutating func applyPhi3(hf json: [String: Any], source: String) throws {
        fusedProjections = true
        if let act = json["hidden_act"] as? String, act != "silu" {
            throw FormatError(source, "hidden_act '\(act)' is not supported for phi3; Loft computes silu")
        }
    }

    /// From llama.cpp's `phi3.*` keys and its rope factor tensors.
    mutating func applyPhi3(gguf file: GGUFFile) throws {
        fusedProjections = true
        let m = file.metadata
        slidingWindow = m["phi3.attention.sliding_window"]?.int.flatMap { $0 > 0 ? $0 : nil }
        if let rotary = m["phi3.rope.dimension_count"]?.int, rotary != headDim { rotaryDims = rotary }  // Phi-4-mini
        guard let shortInfo = file.tensor(named: "rope_factors_short.weight"),
              let longInfo = file.tensor(named: "rope_factors_long.weight") else { return }
        func factors(_ info: GGUFTensorInfo) throws -> [Double] {
            var values = [Float](repeating: 0, count: info.elementCount)
            try values.withUnsafeMutableBufferPointer { try file.dequantizeRows(info, rows: 0 ..< file.rowCount(info), into: $0.baseAddress!) }
            return values.map(Double.init)
        }
        let original = m["phi3.rope.scaling.original_context_length"]?.int ?? maxPositionEmbeddings
        let scale = Double(maxPositionEmbeddings) / Double(original)
        let attention = m["phi3.rope.scaling.attn_factor"]?.double
            ?? (scale <= 1 ? 1 : (1 + Foundation.log(scale) / Foundation.log(Double(original))).squareRoot())
        ropeScaling = .longRoPE(shortFactor: try factors(shortInfo), longFactor: try factors(longInfo),
                                originalContext: original, attentionFactor: attention)
    }
}
