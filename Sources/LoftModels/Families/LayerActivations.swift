import LoftTensors

/// What one decoder layer computes on its way forward and its backward reads.
/// For inference one instance is scratch shared by every layer; for training
/// each layer has its own (or, with gradient checkpointing, one that is
/// refilled by recomputing the layer just before its backward).
public final class LayerActivations: @unchecked Sendable {
    /// Whether the layer's input and middle residual are copied (training only).
    public let keepsInput: Bool
    public let input: Tensor, middle: Tensor
    public let normed1: Tensor, rstd1: Tensor, normed2: Tensor, rstd2: Tensor
    public let q: Tensor, k: Tensor, v: Tensor
    /// q and k before the Qwen3 per-head norm, and its 1/rms.
    public let qRaw: Tensor?, kRaw: Tensor?, qRstd: Tensor?, kRstd: Tensor?
    public let attended: Tensor, lse: Tensor
    public let gate: Tensor, up: Tensor, activated: Tensor
    /// With sandwich norms (Gemma): the attention and MLP outputs before their
    /// post-norms, their 1/rms, and scratch for the normed output.
    public let attentionOutput: Tensor?, attentionOutputRstd: Tensor?
    public let mlpOutput: Tensor?, mlpOutputRstd: Tensor?, sublayerNormed: Tensor?
    /// With fused projections (Phi-3): the qkv_proj and gate_up_proj outputs
    /// before their columns are copied into q, k, v and gate, up.
    public let qkv: Tensor?, gateUp: Tensor?
    /// A sparse layer's routing and expert activations (training only).
    public var moe: MixtureOfExperts.Saved?
    /// Per-projection adapter state ("q", "k", "v", "o", "gate", "up", "down";
    /// "qkv" and "gate_up" when fused).
    public var lora: [String: LoRA.Saved] = [:]

    public init(config c: ModelConfig, tokens n: Int, backend b: Backend, training: Bool = false,
                adapted: Set<String> = []) {
        keepsInput = training
        let (h, qDim, kvDim, ff) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim, c.intermediateSize)
        func t(_ shape: [Int]) -> Tensor { b.zeros(shape, dtype: .f32) }
        input = training ? t([n, h]) : t([1])
        middle = training ? t([n, h]) : t([1])
        normed1 = t([n, h]); rstd1 = t([n]); normed2 = t([n, h]); rstd2 = t([n])
        q = t([n, qDim]); k = t([n, kvDim]); v = t([n, kvDim])
        if c.qkNorm {
            qRaw = t([n, qDim]); kRaw = t([n, kvDim]); qRstd = t([n * c.heads]); kRstd = t([n * c.kvHeads])
        } else {
            qRaw = nil; kRaw = nil; qRstd = nil; kRstd = nil
        }
        attended = t([n, qDim]); lse = t([c.heads, n])
        gate = t([n, ff]); up = t([n, ff]); activated = t([n, ff])
        if c.sandwichNorms {
            attentionOutput = t([n, h]); attentionOutputRstd = t([n])
            mlpOutput = t([n, h]); mlpOutputRstd = t([n]); sublayerNormed = t([n, h])
        } else {
            attentionOutput = nil; attentionOutputRstd = nil; mlpOutput = nil; mlpOutputRstd = nil; sublayerNormed = nil
        }
        (qkv, gateUp) = c.fusedProjections ? (t([n, qDim + 2 * kvDim]), t([n, 2 * ff])) : (nil, nil)
        for name in adapted { lora[name] = LoRA.Saved() }
    }
}

/// Gradient buffers for one layer's backward, shared by all layers.
public final class LayerGradients: @unchecked Sendable {
    public let normed: Tensor, q: Tensor, k: Tensor, v: Tensor, attended: Tensor
    public let gate: Tensor, up: Tensor, activated: Tensor
    /// ∂L/∂(sublayer output) before a post-norm (sandwich norms only).
    public let sublayer: Tensor?
    /// ∂L/∂ of the fused projections' outputs (Phi-3 only).
    public let qkv: Tensor?, gateUp: Tensor?

    public init(config c: ModelConfig, tokens n: Int, backend b: Backend) {
        let (h, qDim, kvDim, ff) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim, c.intermediateSize)
        func t(_ shape: [Int]) -> Tensor { b.zeros(shape, dtype: .f32) }
        normed = t([n, h]); q = t([n, qDim]); k = t([n, kvDim]); v = t([n, kvDim]); attended = t([n, qDim])
        gate = t([n, ff]); up = t([n, ff]); activated = t([n, ff])
        sublayer = c.sandwichNorms ? t([n, h]) : nil
        (qkv, gateUp) = c.fusedProjections ? (t([n, qDim + 2 * kvDim]), t([n, 2 * ff])) : (nil, nil)
    }
}
