import Foundation
import LoftTensors

/// The Llama-family decoder: SmolLM2, TinyLlama, Llama 2/3, Mistral, Qwen2/2.5
/// and Qwen3 differ only in switches of `ModelConfig` (attention bias, q/k
/// norm, sliding window, tied embeddings, RoPE scaling).
public final class LlamaModel: @unchecked Sendable {
    public struct Layer {
        public var attentionNorm: Tensor
        public var q: Tensor, k: Tensor, v: Tensor, o: Tensor
        public var qBias: Tensor?, kBias: Tensor?, vBias: Tensor?
        public var qNorm: Tensor?, kNorm: Tensor?
        public var mlpNorm: Tensor
        public var gate: Tensor, up: Tensor, down: Tensor
    }

    public let config: ModelConfig
    public let backend: Backend
    public let embedding: Tensor
    public let layers: [Layer]
    public let finalNorm: Tensor
    /// The output projection; the embedding itself when tied.
    public let lmHead: Tensor

    public init(config: ModelConfig, weights: WeightSource, backend: Backend = CPUBackend.shared) throws {
        self.config = config
        self.backend = backend
        let c = config
        let (h, qDim, kvDim) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim)
        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            try backend.place(try weights.require(name, shape: shape))
        }
        func optional(_ name: String, _ shape: [Int], if present: Bool) throws -> Tensor? {
            present ? try load(name, shape) : nil
        }
        embedding = try load("model.embed_tokens.weight", [c.vocabSize, h])
        var layers: [Layer] = []
        for i in 0 ..< c.layers {
            let p = "model.layers.\(i)."
            layers.append(Layer(
                attentionNorm: try load(p + "input_layernorm.weight", [h]),
                q: try load(p + "self_attn.q_proj.weight", [qDim, h]),
                k: try load(p + "self_attn.k_proj.weight", [kvDim, h]),
                v: try load(p + "self_attn.v_proj.weight", [kvDim, h]),
                o: try load(p + "self_attn.o_proj.weight", [h, qDim]),
                qBias: try optional(p + "self_attn.q_proj.bias", [qDim], if: c.attentionBias),
                kBias: try optional(p + "self_attn.k_proj.bias", [kvDim], if: c.attentionBias),
                vBias: try optional(p + "self_attn.v_proj.bias", [kvDim], if: c.attentionBias),
                qNorm: try optional(p + "self_attn.q_norm.weight", [c.headDim], if: c.qkNorm),
                kNorm: try optional(p + "self_attn.k_norm.weight", [c.headDim], if: c.qkNorm),
                mlpNorm: try load(p + "post_attention_layernorm.weight", [h]),
                gate: try load(p + "mlp.gate_proj.weight", [c.intermediateSize, h]),
                up: try load(p + "mlp.up_proj.weight", [c.intermediateSize, h]),
                down: try load(p + "mlp.down_proj.weight", [h, c.intermediateSize])))
        }
        self.layers = layers
        finalNorm = try load("model.norm.weight", [h])
        if c.tieWordEmbeddings || !weights.contains("lm_head.weight") {
            lmHead = embedding
        } else {
            lmHead = try load("lm_head.weight", [c.vocabSize, h])
        }
    }

    /// Runs the decoder over `ids` and returns logits for the rows in
    /// `logitRows` (all positions when nil) as [rows, vocab].
    ///
    /// - positions: RoPE position of each token (restarting at 0 for each
    ///   packed sequence); defaults to cache.length + index.
    /// - segments: starts of packed sequences (no attention across them).
    /// - cache: when given, keys and values are appended to it and queries
    ///   attend to everything cached so far (generation).
    public func forward(ids: [Int32], positions: [Int32]? = nil, segments: [Int] = [0],
                        cache: KVCache? = nil, logitRows: [Int]? = nil) -> Tensor {
        let c = config, b = backend
        let n = ids.count
        let start = cache?.length ?? 0
        let positions = positions ?? (0 ..< n).map { Int32(start + $0) }
        let (qDim, kvDim) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        let maxPosition = Int(positions.max() ?? 0) + 1
        let rope = RoPEFrequencies.compute(c, sequenceLength: maxPosition)
        let eps = Float(c.rmsNormEps)

        let x = b.zeros([n, c.hiddenSize], dtype: .f32)
        b.embedding(ids: ids, table: embedding, into: x)
        let normed = b.zeros([n, c.hiddenSize], dtype: .f32)
        let q = b.zeros([n, qDim], dtype: .f32), k = b.zeros([n, kvDim], dtype: .f32), v = b.zeros([n, kvDim], dtype: .f32)
        let attended = b.zeros([n, qDim], dtype: .f32)
        let gate = b.zeros([n, c.intermediateSize], dtype: .f32), up = b.zeros([n, c.intermediateSize], dtype: .f32)

        for (i, layer) in layers.enumerated() {
            b.rmsNorm(x, weight: layer.attentionNorm, eps: eps, weightOffset: 0, into: normed, rstd: nil)
            b.linear(normed, layer.q, bias: layer.qBias, into: q, accumulate: false)
            b.linear(normed, layer.k, bias: layer.kBias, into: k, accumulate: false)
            b.linear(normed, layer.v, bias: layer.vBias, into: v, accumulate: false)
            if let qn = layer.qNorm, let kn = layer.kNorm {
                let qh = q.reshaped([n * c.heads, c.headDim]), kh = k.reshaped([n * c.kvHeads, c.headDim])
                b.rmsNorm(qh, weight: qn, eps: eps, weightOffset: 0, into: qh, rstd: nil)
                b.rmsNorm(kh, weight: kn, eps: eps, weightOffset: 0, into: kh, rstd: nil)
            }
            b.rope(q, heads: c.heads, headDim: c.headDim, positions: positions, invFreq: rope.invFreq,
                   attentionScale: rope.attentionScale, inverse: false)
            b.rope(k, heads: c.kvHeads, headDim: c.headDim, positions: positions, invFreq: rope.invFreq,
                   attentionScale: rope.attentionScale, inverse: false)
            if let cache {
                let (keys, values) = cache.append(layer: i, k: k, v: v, backend: b)
                b.attention(q: q, k: keys, v: values, out: attended, lse: nil,
                            spec: AttentionSpec(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                                queryOffset: start, window: c.slidingWindow))
            } else {
                b.attention(q: q, k: k, v: v, out: attended, lse: nil,
                            spec: AttentionSpec(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                                segments: segments, window: c.slidingWindow))
            }
            b.linear(attended, layer.o, bias: nil, into: x, accumulate: true)

            b.rmsNorm(x, weight: layer.mlpNorm, eps: eps, weightOffset: 0, into: normed, rstd: nil)
            b.linear(normed, layer.gate, bias: nil, into: gate, accumulate: false)
            b.linear(normed, layer.up, bias: nil, into: up, accumulate: false)
            b.swiglu(gate: gate, up: up, into: gate)
            b.linear(gate, layer.down, bias: nil, into: x, accumulate: true)
        }
        cache?.advance(by: n)

        let rows = logitRows ?? Array(0 ..< n)
        let picked: Tensor
        if rows.count == n {
            picked = x
        } else {
            picked = b.zeros([rows.count, c.hiddenSize], dtype: .f32)
            for (j, r) in rows.enumerated() { b.copy(x.rows(r ..< r + 1), into: picked.rows(j ..< j + 1)) }
        }
        let finalHidden = b.zeros([rows.count, c.hiddenSize], dtype: .f32)
        b.rmsNorm(picked, weight: finalNorm, eps: eps, weightOffset: 0, into: finalHidden, rstd: nil)
        let logits = b.zeros([rows.count, c.vocabSize], dtype: .f32)
        b.linear(finalHidden, lmHead, bias: nil, into: logits, accumulate: false)
        return logits
    }
}

extension Backend {
    /// A CPU tensor moved onto this backend (a no-op for the CPU backend).
    func place(_ t: Tensor) -> Tensor {
        if t.device == device { return t }
        return upload(t.toArray(), shape: t.shape)
    }
}
