import Foundation
import LoftCUDA
import LoftModels
import LoftTensors

/// One full LoRA training step of a tiny random Llama on two backends (the
/// CPU as reference, a GPU under test): loss, every adapter gradient, the
/// gradient norm and the adapters after one AdamW step must agree within
/// bf16 tolerance. Covers the whole Backend as the model uses it: packed
/// segments, GQA, RoPE, LoRA dropout (same seeded masks), chunked loss.
public enum BackendAgreement {
    public static let tolerance = 1e-2

    /// A Llama with 2 layers, 4 heads over 2 KV heads, vocabulary 128.
    public static let tinyConfig = ModelConfig(architecture: .llama, vocabSize: 128, hiddenSize: 64, intermediateSize: 96,
                                               layers: 2, heads: 4, kvHeads: 2, maxPositionEmbeddings: 256)

    public static func trainingStep(reference: Backend, candidate: Backend, seed: UInt64) throws -> [CUDACheck] {
        var rng = TrainingRandom(seed: seed)
        let weights = RandomWeights(config: tinyConfig, rng: &rng)
        let models = try [reference, candidate].map { try LlamaModel(config: tinyConfig, weights: weights, backend: $0) }
        // B starts at zero in PEFT, which would zero A's gradient: give both
        // models the same random B so every path carries signal.
        for model in models { try model.attachLoRA(LoRAConfig(rank: 8, alpha: 16, dropout: 0.1), seed: seed) }
        var bValues: [[Float]] = []
        for slot in models[0].adapterSlots {
            bValues.append((0 ..< slot.lora.b.count).map { _ in Float.random(in: -0.05 ..< 0.05, using: &rng) })
        }
        for model in models {
            for (slot, values) in zip(model.adapterSlots, bValues) {
                model.backend.copy(model.backend.upload(values, shape: slot.lora.b.shape), into: slot.lora.b)
            }
        }
        let sequences = [23, 17, 30].map { length -> (ids: [Int32], labels: [Int32]) in
            let ids = (0 ..< length).map { _ in Int32.random(in: 0 ..< Int32(tinyConfig.vocabSize), using: &rng) }
            var labels = ids
            for t in 0 ..< length / 4 { labels[t] = -100 }  // an unlabelled prompt
            return (ids, labels)
        }
        let batch = MicroBatch(sequences: sequences)
        let gradScale = 1 / Float(batch.targetCount)
        var losses: [Double] = []
        var norms: [Double] = []
        for model in models {
            let step = TrainingStep(model: model)
            step.lossChunkRows = 32  // several loss chunks even for this short batch
            losses.append(step.accumulate(batch, gradScale: gradScale, dropoutSeed: seed ^ 0x5EED))
        }
        func gathered(_ model: LlamaModel, _ pick: (LoRA) -> Tensor?) -> [Float] {
            model.adapterSlots.flatMap { slot in pick(slot.lora).map { model.backend.download($0) } ?? [] }
        }
        var checks = [
            CUDACheck(name: "training step loss", error: abs(losses[1] - losses[0]) / abs(losses[0]), tolerance: tolerance),
            CUDACheck(name: "training step LoRA A gradients",
                      error: CUDACheck.relativeError(gathered(models[1]) { $0.gradA }, gathered(models[0]) { $0.gradA }), tolerance: tolerance),
            CUDACheck(name: "training step LoRA B gradients",
                      error: CUDACheck.relativeError(gathered(models[1]) { $0.gradB }, gathered(models[0]) { $0.gradB }), tolerance: tolerance),
        ]
        for model in models {
            let optimizer = AdapterOptimizer(model: model, weightDecay: 0.01)
            norms.append(optimizer.update(lr: 1e-3, maxGradNorm: 1))
        }
        checks.append(CUDACheck(name: "training step gradient norm", error: abs(norms[1] - norms[0]) / norms[0], tolerance: tolerance))
        checks.append(CUDACheck(name: "training step LoRA A after AdamW",
                                error: CUDACheck.relativeError(gathered(models[1]) { $0.a }, gathered(models[0]) { $0.a }), tolerance: tolerance))
        checks.append(CUDACheck(name: "training step LoRA B after AdamW",
                                error: CUDACheck.relativeError(gathered(models[1]) { $0.b }, gathered(models[0]) { $0.b }), tolerance: tolerance))
        return checks
    }
}

/// Random weights for `config`, by Hugging Face name, held in memory.
final class RandomWeights: WeightSource {
    let path = "random weights"
    private var tensors: [String: Tensor] = [:]

    init(config c: ModelConfig, rng: inout TrainingRandom) {
        func add(_ name: String, _ shape: [Int], around center: Float = 0, scale: Float) {
            let values = (0 ..< shape.reduce(1, *)).map { _ in center + Float.random(in: -scale ..< scale, using: &rng) }
            tensors[name] = Tensor.cpu(values, shape: shape)
        }
        let (h, qDim, kvDim) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim)
        add("model.embed_tokens.weight", [c.vocabSize, h], scale: 1)
        for i in 0 ..< c.layers {
            let p = "model.layers.\(i)."
            add(p + "input_layernorm.weight", [h], around: 1, scale: 0.1)
            add(p + "post_attention_layernorm.weight", [h], around: 1, scale: 0.1)
            for (name, out, inp) in [("self_attn.q_proj", qDim, h), ("self_attn.k_proj", kvDim, h), ("self_attn.v_proj", kvDim, h),
                                     ("self_attn.o_proj", h, qDim), ("mlp.gate_proj", c.intermediateSize, h),
                                     ("mlp.up_proj", c.intermediateSize, h), ("mlp.down_proj", h, c.intermediateSize)] {
                add(p + name + ".weight", [out, inp], scale: 1 / Float(inp).squareRoot())
            }
        }
        add("model.norm.weight", [h], around: 1, scale: 0.1)
        add("lm_head.weight", [c.vocabSize, h], scale: 1 / Float(h).squareRoot())
    }

    func contains(_ name: String) -> Bool { tensors[name] != nil }
    func load(_ name: String) throws -> Tensor? { tensors[name] }
    var storageSummary: [String: Int] { ["F32": tensors.count] }
}
