import LoftFormats
import LoftTensors

/// A weight trained in full (not through a low-rank adapter), with its gradient.
public final class TrainedWeight: @unchecked Sendable {
    public let value: Tensor
    public var gradient: Tensor?
    public init(value: Tensor) { self.value = value }
}

/// PEFT's `modules_to_save` for the embedding and the LM head: each listed
/// module gets its own trainable copy of its weight, saved in the adapter as
/// `base_model.model.model.embed_tokens.weight` / `base_model.model.lm_head.weight`.
///
/// With tied embeddings (SmolLM2, Qwen3 small models) PEFT 0.21 by default
/// (ensure_weight_tying false) copies each listed module separately, so the
/// two are untied from then on: listing both trains two independent
/// matrices, and listing one leaves the other on the original weights. Loft
/// does the same, so the adapter means what it means under PEFT; merging
/// then writes lm_head.weight and tie_word_embeddings false.
extension LlamaModel {
    public static let fullyTrainableModules = ["embed_tokens", "lm_head"]

    public static func peftKey(fullyTrained module: String) -> String {
        module == "lm_head" ? "base_model.model.lm_head.weight" : "base_model.model.model.\(module).weight"
    }

    /// The fully trained weights attached, with their PEFT keys (embedding first).
    public var fullyTrainedWeights: [(key: String, weight: TrainedWeight)] {
        var out: [(String, TrainedWeight)] = []
        if let e = trainedEmbedding { out.append((Self.peftKey(fullyTrained: "embed_tokens"), e)) }
        if let h = trainedLMHead { out.append((Self.peftKey(fullyTrained: "lm_head"), h)) }
        return out
    }

    /// Attaches trainable copies of the listed modules, initialised from the
    /// base weights (training) or from an adapter file (loading).
    public func attachFullyTrained(_ modules: [String], from file: SafetensorsCheckpoint? = nil, path: String = "modules_to_save") throws {
        let unknown = modules.filter { !Self.fullyTrainableModules.contains($0) }
        if !unknown.isEmpty {
            throw FormatError(path, "modules_to_save lists \(unknown); Loft trains only \(Self.fullyTrainableModules.joined(separator: " and ")) in full")
        }
        let b = backend
        func copy(_ module: String, of base: Tensor) throws -> TrainedWeight {
            let key = Self.peftKey(fullyTrained: module)
            if let file {
                guard let t = file.tensor(named: key) else {
                    throw FormatError(path, "adapter_config.json lists \(module) in modules_to_save but \(key) is missing; the adapter is incomplete")
                }
                guard t.shape == base.shape else {
                    throw FormatError(path, "\(key) has shape \(t.shape) but this model's is \(base.shape); was the adapter trained on another base model?")
                }
                return TrainedWeight(value: b.upload(t.floats(), shape: t.shape))
            }
            let value = b.zeros(base.shape, dtype: .f32)
            b.copy(base, into: value)
            return TrainedWeight(value: value)
        }
        trainedEmbedding = modules.contains("embed_tokens") ? try copy("embed_tokens", of: baseEmbedding) : nil
        trainedLMHead = modules.contains("lm_head") ? try copy("lm_head", of: baseLMHead) : nil
    }
}
