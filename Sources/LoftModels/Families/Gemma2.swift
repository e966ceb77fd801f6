import Foundation
import LoftFormats

/// Gemma 2: Gemma 3's layer (Gemma3.swift: (1 + w) norms, four a layer,
/// √hidden embeddings, GeGLU, query_pre_attn_scalar) without q/k norms and
/// with one RoPE base for every layer, plus two soft-caps, as transformers'
/// `Gemma2ForCausalLM` computes them:
///
/// - attention scores become 50·tanh(score/50) before the mask and softmax
///   (`attentionSoftcap`; the CPU attention kernels, forward and backward);
/// - output logits become 30·tanh(logit/30) (`finalLogitSoftcap`;
///   `LlamaModel.logits`, and the loss heads through `softcapLogits`);
/// - even layers see the last `sliding_window` keys (4096), odd ones all.
extension ModelConfig {
    mutating func applyGemma2(hf json: [String: Any], source: String) throws {
        applyGemmaCommon()
        if json["tie_word_embeddings"] == nil { tieWordEmbeddings = true }  // Gemma2Config's default
        if let act = json["hidden_activation"] as? String, act != "gelu_pytorch_tanh" {
            throw FormatError(source, "hidden_activation '\(act)' is not supported for gemma2; Loft computes gelu_pytorch_tanh")
        }
        if json["use_bidirectional_attention"] as? Bool == true {
            throw FormatError(source, "use_bidirectional_attention is true (an embedding model); Loft runs causal Gemma 2 only")
        }
        attentionScale = Float(1 / ((json["query_pre_attn_scalar"] as? NSNumber)?.doubleValue ?? 256).squareRoot())
        // Absent keys take Gemma2Config's defaults; null turns the cap off.
        func cap(_ key: String, _ fallback: Float) -> Float? {
            guard let v = json[key] else { return fallback }
            return (v as? NSNumber).map { Float($0.doubleValue) }
        }
        attentionSoftcap = cap("attn_logit_softcapping", 50)
        finalLogitSoftcap = cap("final_logit_softcapping", 30)
        layerTypes = try Self.gemmaLayerTypes(json, layers: layers, pattern: 2, source: source)
        if slidingWindow == nil { slidingWindow = 4096 }
    }

    /// From llama.cpp's `gemma2.*` keys, with what it fixes in code: every
    /// other layer sliding (the first included), q·k scaled by head_dim^-½
    /// except in the 27B model (hidden/heads).
    mutating func applyGemma2(gguf file: GGUFFile) {
        applyGemmaCommon()
        let m = file.metadata
        layerTypes = Self.gemmaLayerTypes(layers: layers, pattern: 2)
        slidingWindow = m["gemma2.attention.sliding_window"]?.int ?? 4096
        attentionSoftcap = m["gemma2.attn_logit_softcapping"]?.double.map(Float.init) ?? 50
        finalLogitSoftcap = m["gemma2.final_logit_softcapping"]?.double.map(Float.init) ?? 30
        let is27B = layers == 46 && hiddenSize == 4608
        attentionScale = Float(1 / Double(is27B ? hiddenSize / heads : headDim).squareRoot())
    }
}
