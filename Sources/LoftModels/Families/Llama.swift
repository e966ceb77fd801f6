import Foundation
import LoftFormats
import LoftTensors

/// The Llama-family decoder: SmolLM2, TinyLlama, Llama 2/3, Mistral, Qwen2/2.5,
/// Qwen3, Gemma 2 and Gemma 3 differ only in switches of `ModelConfig`
/// (attention bias, q/k norm, sliding window, tied embeddings, RoPE scaling;
/// Gemma's are listed in Gemma3.swift and Gemma2.swift).
///
/// Forward and backward are written out layer by layer (as llm.c does);
/// `LayerActivations` holds what a layer's backward needs, and gradient
/// checkpointing keeps only each layer's input and recomputes the rest.
public final class LlamaModel: @unchecked Sendable {
    public struct Layer {
        public var attentionNorm: Tensor
        /// The projections of the attention's input: q, k and v, or one fused
        /// qkv_proj whose output rows are q's, k's, then v's (Phi-3).
        public var qkv: [Linear]
        public var o: Linear
        public var qNorm: Tensor?, kNorm: Tensor?
        public var mlpNorm: Tensor
        /// The MLP's input projections: gate and up, or one fused gate_up_proj
        /// (gate's rows, then up's; Phi-3); none in a sparse layer.
        public var gateUp: [Linear]
        /// The MLP's output projection; nil in a sparse layer.
        public var down: Linear?
        /// The sparse MLP that replaces gate/up/down (Qwen3-MoE, Mixtral).
        public var moe: MixtureOfExperts? = nil
        /// Norms of the attention and MLP outputs (`ModelConfig.sandwichNorms`).
        public var postAttentionNorm: Tensor? = nil, postFeedforwardNorm: Tensor? = nil

        /// q_proj, or the fused qkv_proj.
        public var q: Linear { qkv[0] }
        /// Whether q/k/v and gate/up are fused projections (`ModelConfig.fusedProjections`).
        public var fused: Bool { qkv.count == 1 }

        /// The short names (`LoRAConfig.shortNames`) of `qkv` and `gateUp`.
        public var qkvNames: [String] { fused ? ["qkv"] : ["q", "k", "v"] }
        public var gateUpNames: [String] { fused ? ["gate_up"] : ["gate", "up"] }

        /// The projections LoRA adapts, by their Hugging Face module names
        /// (a sparse layer's experts are not among them: `allProjections`).
        public var projections: [(String, Linear)] {
            let attention = fused ? [("self_attn.qkv_proj", qkv[0])]
                : [("self_attn.q_proj", qkv[0]), ("self_attn.k_proj", qkv[1]), ("self_attn.v_proj", qkv[2])]
            guard let down else { return attention + [("self_attn.o_proj", o)] }
            let mlp = fused ? [("mlp.gate_up_proj", gateUp[0])] : [("mlp.gate_proj", gateUp[0]), ("mlp.up_proj", gateUp[1])]
            return attention + [("self_attn.o_proj", o)] + mlp + [("mlp.down_proj", down)]
        }

        /// Every projection, experts included (merging, export, weight storage).
        public var allProjections: [(String, Linear)] { projections + (moe?.projections ?? []) }
    }

    public let config: ModelConfig
    public let backend: Backend

    /// Replaces every compact frozen projection (bf16, NF4/FP4, int8, GGUF
    /// blocks) by its f32 dequantization, when all of them together stay
    /// under `limitBytes`. The values are those the tiled GEMMs already
    /// multiply by, so outputs keep their numbers; what changes is that
    /// decoding one token no longer dequantizes every weight of the model
    /// (5× slower on SmolLM2 with an NF4 base). For inference only: training
    /// keeps the compact base, which is the point of QLoRA. Returns the f32
    /// bytes added (0 when nothing was compact or the limit was reached).
    /// The default limit, a quarter of the machine's memory, is decoding's.
    ///
    /// GGUF blocks that `QuantizedDecoding`'s kernels multiply in place
    /// (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q5_K/Q6_K) stay compact: decoding reads
    /// their 4–8 bits a weight instead of 32, which is what makes it fast
    /// (docs/decoding.md). `LOFT_QDOT=off` dequantizes them too.
    @discardableResult
    public func dequantizeFrozenWeights(limitBytes: Int = Int(ProcessInfo.processInfo.physicalMemory / 4)) -> Int {
        let compact = layers.flatMap { $0.allProjections.map(\.1) }.filter { $0.frozen.dense == nil && !$0.frozen.decodesInPlace }
        let bytes = compact.reduce(0) { $0 + $1.frozen.rows * $1.frozen.cols * MemoryLayout<Float>.size }
        guard !compact.isEmpty, bytes <= limitBytes else { return 0 }
        for linear in compact { linear.frozen = FrozenWeight(dense: linear.frozen.dequantized()) }
        return bytes
    }

    /// Keeps an f32 copy beside every projection's GGUF blocks for prompt
    /// rows (`FrozenWeight.keepPromptCopy`), when all of them together stay
    /// under `limitBytes`: a prompt then costs one GEMM per projection
    /// instead of dequantizing every tile again (on SmolLM2 Q4_1 a 46-token
    /// prompt took about twice as long on the tiles), while decoding still
    /// reads the blocks. Returns the bytes added (0 when over the limit or
    /// nothing is GGUF blocks).
    @discardableResult
    public func keepPromptCopies(limitBytes: Int) -> Int {
        let blocks = layers.flatMap { $0.allProjections.map(\.1.frozen) }.filter { $0.decodesInPlace && $0.promptCopy == nil }
        let bytes = blocks.reduce(0) { $0 + $1.rows * $1.cols * MemoryLayout<Float>.size }
        guard !blocks.isEmpty, bytes <= limitBytes else { return 0 }
        DispatchQueue.concurrentPerform(iterations: blocks.count) { blocks[$0].keepPromptCopy() }
        return bytes
    }

    /// Lays every attached plain LoRA's weights out for the CPU decoding
    /// kernels (`LoRA.keepPacked`; as IEEE half when `half`): for generation
    /// only, since the copy does not follow later changes to A or B (training
    /// never calls it).
    public func packAdaptersForDecoding(half: Bool = false) {
        for layer in layers {
            for (_, linear) in layer.projections where linear.lora?.magnitude == nil { linear.lora?.keepPacked(half: half) }
        }
    }

    /// The embedding in use: a fully trained copy when one is attached
    /// (PEFT's modules_to_save, ModulesToSave.swift), else the base model's.
    public var embedding: Tensor { trainedEmbedding?.value ?? baseEmbedding }
    public let baseEmbedding: Tensor
    public var trainedEmbedding: TrainedWeight?
    public let layers: [Layer]
    public let finalNorm: Tensor
    /// The output projection in use; the base one is the embedding itself when tied.
    public var lmHead: Tensor { trainedLMHead?.value ?? baseLMHead }
    public let baseLMHead: Tensor
    public var trainedLMHead: TrainedWeight?
    /// The base output head in its GGUF blocks (the embedding's when tied),
    /// kept when the projections are (`baseWeights` `.gguf`) and the decoding
    /// kernels multiply its type: `logits` of a few rows read it instead of
    /// the f32 copy, the largest single matrix of a small model.
    public let compactLMHead: FrozenWeight?

    /// How the projection weights are stored (embeddings, norms and the output
    /// head stay f32, as bitsandbytes leaves them).
    public let baseWeights: BaseWeightFormat

    public init(config: ModelConfig, weights: WeightSource, backend: Backend = CPUBackend.shared,
                baseWeights: BaseWeightFormat = .f32) throws {
        self.config = config
        if config.attentionSoftcap != nil && backend.device != .cpu {
            throw FormatError(weights.path, "\(config.architecture.rawValue) soft-caps its attention scores, which Loft computes on the CPU backend only so far; run with --device cpu")
        }
        let baseWeights = try weights.baseFormat(requested: baseWeights)
        self.baseWeights = baseWeights
        self.backend = backend
        let c = config
        let (h, qDim, kvDim) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim)
        func load(_ name: String, _ shape: [Int]) throws -> Tensor {
            backend.place(try weights.require(name, shape: shape))
        }
        func optional(_ name: String, _ shape: [Int], if present: Bool) throws -> Tensor? {
            present ? try load(name, shape) : nil
        }
        func linear(_ name: String, _ out: Int, _ inp: Int, bias: Bool = false) throws -> Linear {
            let b = try optional(name + ".bias", [out], if: bias)
            if baseWeights.kind == .f32 { return Linear(weight: try load(name + ".weight", [out, inp]), bias: b) }
            return Linear(frozen: try weights.frozenWeight(name + ".weight", shape: [out, inp], format: baseWeights), bias: b)
        }
        baseEmbedding = try load("model.embed_tokens.weight", [c.vocabSize, h])
        var layers: [Layer] = []
        for i in 0 ..< c.layers {
            let p = "model.layers.\(i)."
            // With sandwich norms (Gemma) post_attention_layernorm normalises the
            // attention output and pre_feedforward_layernorm is the MLP's input norm.
            let mlpNormName = c.sandwichNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"
            let qkv = c.fusedProjections
                ? [try linear(p + "self_attn.qkv_proj", qDim + 2 * kvDim, h, bias: c.attentionBias)]
                : [try linear(p + "self_attn.q_proj", qDim, h, bias: c.attentionBias),
                   try linear(p + "self_attn.k_proj", kvDim, h, bias: c.attentionBias),
                   try linear(p + "self_attn.v_proj", kvDim, h, bias: c.attentionBias)]
            let sparse = c.isSparse(layer: i)
            let gateUp = sparse ? [] : c.fusedProjections
                ? [try linear(p + "mlp.gate_up_proj", 2 * c.intermediateSize, h)]
                : [try linear(p + "mlp.gate_proj", c.intermediateSize, h), try linear(p + "mlp.up_proj", c.intermediateSize, h)]
            var moe: MixtureOfExperts?
            if sparse {
                let block = c.architecture == .mixtral ? "block_sparse_moe" : "mlp"
                let names = c.architecture == .mixtral ? ("w1", "w3", "w2") : ("gate_proj", "up_proj", "down_proj")
                let ff = c.expertIntermediateSize
                let experts = try (0 ..< c.experts).map { e in
                    let q = p + "\(block).experts.\(e)."
                    return MixtureOfExperts.Expert(gate: try linear(q + names.0, ff, h), up: try linear(q + names.1, ff, h),
                                                   down: try linear(q + names.2, h, ff))
                }
                moe = MixtureOfExperts(router: try load(p + "\(block).gate.weight", [c.experts, h]), experts: experts,
                                       topK: c.expertsPerToken, normalize: c.normalizeTopK, block: block, expertNames: names)
            }
            layers.append(Layer(
                attentionNorm: try load(p + "input_layernorm.weight", [h]),
                qkv: qkv,
                o: try linear(p + "self_attn.o_proj", h, qDim),
                qNorm: try optional(p + "self_attn.q_norm.weight", [c.headDim], if: c.qkNorm),
                kNorm: try optional(p + "self_attn.k_norm.weight", [c.headDim], if: c.qkNorm),
                mlpNorm: try load(p + mlpNormName, [h]),
                gateUp: gateUp,
                down: sparse ? nil : try linear(p + "mlp.down_proj", h, c.intermediateSize),
                moe: moe,
                postAttentionNorm: try optional(p + "post_attention_layernorm.weight", [h], if: c.sandwichNorms),
                postFeedforwardNorm: try optional(p + "post_feedforward_layernorm.weight", [h], if: c.sandwichNorms)))
        }
        self.layers = layers
        finalNorm = try load("model.norm.weight", [h])
        let tied = c.tieWordEmbeddings || !weights.contains("lm_head.weight")
        if tied {
            baseLMHead = baseEmbedding
        } else {
            baseLMHead = try load("lm_head.weight", [c.vocabSize, h])
        }
        compactLMHead = baseWeights.kind == .gguf
            ? (weights as? GGUFWeights)?.decodableBlocks(tied ? "model.embed_tokens.weight" : "lm_head.weight",
                                                        shape: [c.vocabSize, h])
            : nil
    }

    /// What is fixed for one forward call: token positions, packing and RoPE.
    public struct Batch {
        public let ids: [Int32]
        public let positions: [Int32]
        public let segments: [Int]
        public let invFreq: [Float]
        public let attentionScale: Float
        /// The frequencies of sliding layers with a RoPE base of their own (Gemma 3).
        public var localInvFreq: [Float]? = nil
        public var count: Int { ids.count }

        /// The frequencies layer `layer` rotates with.
        public func invFreq(layer: Int, _ c: ModelConfig) -> [Float] {
            c.usesLocalRoPE(layer: layer) ? localInvFreq ?? invFreq : invFreq
        }
    }

    public func batch(ids: [Int32], positions: [Int32]? = nil, segments: [Int] = [0], start: Int = 0) -> Batch {
        let positions = positions ?? (0 ..< ids.count).map { Int32(start + $0) }
        let length = Int(positions.max() ?? 0) + 1
        let rope = RoPEFrequencies.compute(config, sequenceLength: length)
        return Batch(ids: ids, positions: positions, segments: segments, invFreq: rope.invFreq,
                     attentionScale: rope.attentionScale,
                     localInvFreq: config.localRopeTheta == nil ? nil
                        : RoPEFrequencies.compute(config, sequenceLength: length, local: true).invFreq)
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
        let batch = self.batch(ids: ids, positions: positions, segments: segments, start: cache?.length ?? 0)
        let x = embed(batch)
        let scratch = LayerActivations(config: config, tokens: batch.count, backend: backend)
        for i in layers.indices {
            forwardLayer(i, x: x, batch: batch, saved: scratch, cache: cache)
        }
        cache?.advance(by: batch.count)
        return logits(finalHidden(x, rows: logitRows))
    }

    public func embed(_ batch: Batch) -> Tensor {
        let x = backend.zeros([batch.count, config.hiddenSize], dtype: .f32)
        backend.embedding(ids: batch.ids, table: embedding, into: x)
        if let scale = config.embeddingScale { backend.scale(x, by: scale) }
        return x
    }

    /// The final RMSNorm of the given rows of the residual stream.
    public func finalHidden(_ x: Tensor, rows: [Int]? = nil, rstd: Tensor? = nil) -> Tensor {
        let b = backend
        let picked: Tensor
        if let rows, rows.count != x.rows || rows != Array(0 ..< x.rows) {
            picked = b.zeros([rows.count, config.hiddenSize], dtype: .f32)
            for (j, r) in rows.enumerated() { b.copy(x.rows(r ..< r + 1), into: picked.rows(j ..< j + 1)) }
        } else {
            picked = x
        }
        let out = b.zeros([picked.rows, config.hiddenSize], dtype: .f32)
        b.rmsNorm(picked, weight: finalNorm, eps: Float(config.rmsNormEps), weightOffset: config.normWeightOffset,
                  into: out, rstd: rstd)
        return out
    }

    public func logits(_ hidden: Tensor) -> Tensor {
        let out = backend.zeros([hidden.rows, config.vocabSize], dtype: .f32)
        if trainedLMHead == nil, let head = compactLMHead, QuantizedDecoding.usesKernels(rows: hidden.rows) {
            backend.linear(hidden, frozen: head, bias: nil, into: out, accumulate: false)
        } else {
            backend.linear(hidden, lmHead, bias: nil, into: out, accumulate: false)
        }
        softcapLogits(out)
        return out
    }

    /// Gemma 2's final soft-cap of raw logits, in place (nothing for other
    /// models); with `capped`, keeps a copy of the result for
    /// `softcapLogitsBackward` (a loss head's cross-entropy overwrites the
    /// logits with their gradient).
    public func softcapLogits(_ logits: Tensor, saving capped: Tensor? = nil) {
        guard let cap = config.finalLogitSoftcap else { return }
        backend.softcap(logits, cap: cap)
        if let capped { backend.copy(logits, into: capped) }
    }

    /// ∂L/∂(capped logits) → ∂L/∂(raw logits), in place, given the capped values.
    public func softcapLogitsBackward(_ dLogits: Tensor, capped: Tensor) {
        guard let cap = config.finalLogitSoftcap else { return }
        backend.softcapBackward(dLogits, capped: capped, cap: cap)
    }

    /// One decoder layer, updating the residual stream x[N, hidden] in place.
    /// `saved` receives the activations (its buffers are reused when it is
    /// scratch for inference).
    public func forwardLayer(_ i: Int, x: Tensor, batch: Batch, saved s: LayerActivations, cache: KVCache? = nil) {
        let c = config, b = backend, layer = layers[i]
        let eps = Float(c.rmsNormEps), offset = c.normWeightOffset
        let n = batch.count
        let invFreq = batch.invFreq(layer: i, c)
        if s.keepsInput { b.copy(x, into: s.input) }
        b.rmsNorm(x, weight: layer.attentionNorm, eps: eps, weightOffset: offset, into: s.normed1, rstd: s.rstd1)
        projectAttentionInput(layer, s.normed1, s, saved: layer.qkvNames.map { s.lora[$0] })
        normalizeQK(layer, s, tokens: n)
        b.rope(s.q, heads: c.heads, headDim: c.headDim, positions: batch.positions, invFreq: invFreq,
               attentionScale: batch.attentionScale, inverse: false)
        b.rope(s.k, heads: c.kvHeads, headDim: c.headDim, positions: batch.positions, invFreq: invFreq,
               attentionScale: batch.attentionScale, inverse: false)
        if let cache {
            let (keys, values) = cache.append(layer: i, k: s.k, v: s.v, backend: b)
            b.attention(q: s.q, k: keys, v: values, out: s.attended, lse: nil,
                        spec: AttentionSpec(heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, scale: c.attentionScale,
                                            queryOffset: cache.length, window: c.window(layer: i), softcap: c.attentionSoftcap))
        } else {
            b.attention(q: s.q, k: s.k, v: s.v, out: s.attended, lse: s.lse, spec: attentionSpec(batch, layer: i))
        }
        addSublayer(x, s, norm: layer.postAttentionNorm, output: s.attentionOutput, rstd: s.attentionOutputRstd) { out, accumulate in
            layer.o.forward(s.attended, into: out, backend: b, accumulate: accumulate, saved: s.lora["o"])
        }
        if s.keepsInput { b.copy(x, into: s.middle) }

        b.rmsNorm(x, weight: layer.mlpNorm, eps: eps, weightOffset: offset, into: s.normed2, rstd: s.rstd2)
        if let moe = layer.moe {
            if s.keepsInput { s.moe = MixtureOfExperts.Saved() }
            addSublayer(x, s, norm: layer.postFeedforwardNorm, output: s.mlpOutput, rstd: s.mlpOutputRstd) { out, accumulate in
                if !accumulate { b.scale(out, by: 0) }
                moe.forward(s.normed2, into: out, backend: b, saved: s.moe)
            }
            return
        }
        projectMLPInput(layer, s.normed2, s, saved: layer.gateUpNames.map { s.lora[$0] })
        activate(gate: s.gate, up: s.up, into: s.activated)
        addSublayer(x, s, norm: layer.postFeedforwardNorm, output: s.mlpOutput, rstd: s.mlpOutputRstd) { out, accumulate in
            layer.down!.forward(s.activated, into: out, backend: b, accumulate: accumulate, saved: s.lora["down"])
        }
    }

    /// s.q, s.k, s.v = the attention's input projections of x: three products
    /// of one x, or one fused product whose columns are copied apart (Phi-3).
    func projectAttentionInput(_ layer: Layer, _ x: Tensor, _ s: LayerActivations, saved: [LoRA.Saved?]) {
        guard layer.fused, let qkv = s.qkv else {
            Linear.forwardShared(layer.qkv, x, into: [s.q, s.k, s.v], backend: backend, saved: saved)
            return
        }
        layer.qkv[0].forward(x, into: qkv, backend: backend, saved: saved[0])
        splitColumns(qkv, into: [s.q, s.k, s.v])
    }

    /// s.gate, s.up = the MLP's input projections of x (two, or one fused).
    func projectMLPInput(_ layer: Layer, _ x: Tensor, _ s: LayerActivations, saved: [LoRA.Saved?]) {
        guard layer.fused, let gateUp = s.gateUp else {
            Linear.forwardShared(layer.gateUp, x, into: [s.gate, s.up], backend: backend, saved: saved)
            return
        }
        layer.gateUp[0].forward(x, into: gateUp, backend: backend, saved: saved[0])
        splitColumns(gateUp, into: [s.gate, s.up])
    }

    /// Copies consecutive column ranges of `fused` [n, Σ widths] into `parts`.
    func splitColumns(_ fused: Tensor, into parts: [Tensor]) {
        var column = 0
        for part in parts {
            backend.copyColumns(fused, from: column, into: part, at: 0, count: part.rowSize)
            column += part.rowSize
        }
    }

    /// The reverse of `splitColumns`: `parts` side by side into `fused`.
    func joinColumns(_ parts: [Tensor], into fused: Tensor) {
        var column = 0
        for part in parts {
            backend.copyColumns(part, from: 0, into: fused, at: column, count: part.rowSize)
            column += part.rowSize
        }
    }

    /// x += sublayer, or x += norm(sublayer) with sandwich norms (Gemma): then
    /// the sublayer's output and its 1/rms are kept in `output` and `rstd` for
    /// the backward. `compute(into, accumulate)` writes the sublayer's output.
    func addSublayer(_ x: Tensor, _ s: LayerActivations, norm: Tensor?, output: Tensor?, rstd: Tensor?,
                     _ compute: (Tensor, Bool) -> Void) {
        guard let norm, let output, let rstd, let normed = s.sublayerNormed else {
            compute(x, true)
            return
        }
        compute(output, false)
        backend.rmsNorm(output, weight: norm, eps: Float(config.rmsNormEps), weightOffset: config.normWeightOffset,
                        into: normed, rstd: rstd)
        backend.add(x, normed, into: x)
    }

    /// The gated MLP's activation: silu (SwiGLU) or tanh-gelu (GeGLU).
    func activate(gate: Tensor, up: Tensor, into out: Tensor) {
        switch config.hiddenActivation {
        case .silu: backend.swiglu(gate: gate, up: up, into: out)
        case .geluTanh: backend.geglu(gate: gate, up: up, into: out)
        }
    }

    /// Qwen3's per-head RMSNorm of q and k (keeping their raw values and
    /// 1/rms for the backward); nothing for models without it.
    func normalizeQK(_ layer: Layer, _ s: LayerActivations, tokens n: Int) {
        let c = config, b = backend, eps = Float(c.rmsNormEps), offset = c.normWeightOffset
        guard let qn = layer.qNorm, let kn = layer.kNorm, let qRaw = s.qRaw, let kRaw = s.kRaw else { return }
        b.copy(s.q, into: qRaw)
        b.copy(s.k, into: kRaw)
        b.rmsNorm(qRaw.reshaped([n * c.heads, c.headDim]), weight: qn, eps: eps, weightOffset: offset,
                  into: s.q.reshaped([n * c.heads, c.headDim]), rstd: s.qRstd)
        b.rmsNorm(kRaw.reshaped([n * c.kvHeads, c.headDim]), weight: kn, eps: eps, weightOffset: offset,
                  into: s.k.reshaped([n * c.kvHeads, c.headDim]), rstd: s.kRstd)
    }

    func attentionSpec(_ batch: Batch, layer: Int) -> AttentionSpec {
        AttentionSpec(heads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim, scale: config.attentionScale,
                      segments: batch.segments, window: config.window(layer: layer), softcap: config.attentionSoftcap)
    }

    /// The backward of one layer: dx holds ∂L/∂(layer output) and becomes
    /// ∂L/∂(layer input). Adapter gradients accumulate in their LoRA objects;
    /// frozen weights get none.
    public func backwardLayer(_ i: Int, dx: Tensor, batch: Batch, saved s: LayerActivations, scratch g: LayerGradients) {
        let c = config, b = backend, layer = layers[i]
        let n = batch.count, offset = c.normWeightOffset
        let invFreq = batch.invFreq(layer: i, c)
        // MLP: x_out = middle + [postNorm](down(act(gate(n2)) · up(n2)))
        let dMLP = sublayerGradient(dx, norm: layer.postFeedforwardNorm, output: s.mlpOutput, rstd: s.mlpOutputRstd, g)
        if let moe = layer.moe, let saved = s.moe {
            moe.backward(dMLP, x: s.normed2, saved: saved, dx: g.normed, backend: b)
        } else {
            layer.down!.backward(dMLP, saved: s.lora["down"], dx: g.activated, accumulate: false, backend: b)
            switch c.hiddenActivation {
            case .silu: b.swigluBackward(g.activated, gate: s.gate, up: s.up, dGate: g.gate, dUp: g.up)
            case .geluTanh: b.gegluBackward(g.activated, gate: s.gate, up: s.up, dGate: g.gate, dUp: g.up)
            }
            inputProjectionsBackward(layer.gateUp, names: layer.gateUpNames, [g.gate, g.up], fused: g.gateUp, s, dx: g.normed)
        }
        b.rmsNormBackward(g.normed, x: s.middle, weight: layer.mlpNorm, weightOffset: offset, rstd: s.rstd2,
                          dx: dx, accumulate: true, dweight: nil)
        // Attention: middle = input + [postNorm](o(attention(rope(q(n1)), rope(k(n1)), v(n1))))
        let dAttention = sublayerGradient(dx, norm: layer.postAttentionNorm, output: s.attentionOutput,
                                          rstd: s.attentionOutputRstd, g)
        layer.o.backward(dAttention, saved: s.lora["o"], dx: g.attended, accumulate: false, backend: b)
        b.attentionBackward(dOut: g.attended, q: s.q, k: s.k, v: s.v, out: s.attended, lse: s.lse,
                            dq: g.q, dk: g.k, dv: g.v, spec: attentionSpec(batch, layer: i))
        b.rope(g.q, heads: c.heads, headDim: c.headDim, positions: batch.positions, invFreq: invFreq,
               attentionScale: batch.attentionScale, inverse: true)
        b.rope(g.k, heads: c.kvHeads, headDim: c.headDim, positions: batch.positions, invFreq: invFreq,
               attentionScale: batch.attentionScale, inverse: true)
        if let qn = layer.qNorm, let kn = layer.kNorm, let qRaw = s.qRaw, let kRaw = s.kRaw,
           let qRstd = s.qRstd, let kRstd = s.kRstd {
            let dq = g.q.reshaped([n * c.heads, c.headDim]), dk = g.k.reshaped([n * c.kvHeads, c.headDim])
            b.rmsNormBackward(dq, x: qRaw.reshaped([n * c.heads, c.headDim]), weight: qn, weightOffset: offset,
                              rstd: qRstd, dx: dq, accumulate: false, dweight: nil)
            b.rmsNormBackward(dk, x: kRaw.reshaped([n * c.kvHeads, c.headDim]), weight: kn, weightOffset: offset,
                              rstd: kRstd, dx: dk, accumulate: false, dweight: nil)
        }
        inputProjectionsBackward(layer.qkv, names: layer.qkvNames, [g.q, g.k, g.v], fused: g.qkv, s, dx: g.normed)
        b.rmsNormBackward(g.normed, x: s.input, weight: layer.attentionNorm, weightOffset: offset, rstd: s.rstd1,
                          dx: dx, accumulate: true, dweight: nil)
    }

    /// dx = the input gradient of projections of one x given their output
    /// gradients `dys` (joined into `fused` first when the model fuses them).
    func inputProjectionsBackward(_ linears: [Linear], names: [String], _ dys: [Tensor], fused: Tensor?,
                                  _ s: LayerActivations, dx: Tensor) {
        if linears.count == 1, let fused {
            joinColumns(dys, into: fused)
            linears[0].backward(fused, saved: s.lora[names[0]], dx: dx, accumulate: false, backend: backend)
            return
        }
        for (i, linear) in linears.enumerated() {
            linear.backward(dys[i], saved: s.lora[names[i]], dx: dx, accumulate: i > 0, backend: backend)
        }
    }

    /// ∂L/∂(sublayer output) from ∂L/∂x: dx itself, or through the sublayer's
    /// post-norm (written to `g.sublayer`) with sandwich norms.
    func sublayerGradient(_ dx: Tensor, norm: Tensor?, output: Tensor?, rstd: Tensor?, _ g: LayerGradients) -> Tensor {
        guard let norm, let output, let rstd, let d = g.sublayer else { return dx }
        backend.rmsNormBackward(dx, x: output, weight: norm, weightOffset: config.normWeightOffset, rstd: rstd,
                                dx: d, accumulate: false, dweight: nil)
        return d
    }
}

extension Backend {
    /// A CPU tensor moved onto this backend (a no-op for the CPU backend).
    func place(_ t: Tensor) -> Tensor {
        if t.device == device { return t }
        return upload(t.toArray(), shape: t.shape)
    }
}
