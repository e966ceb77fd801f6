/// The operations a decoder-only transformer needs, forward and backward.
///
/// Model code calls only these, so the same model runs on any backend (the CPU
/// one here, CUDA behind the same protocol). Every operation writes into
/// tensors the caller allocated: activations are laid out on purpose, as in
/// llm.c, and a training step allocates nothing in its inner loop.
///
/// Shapes use N for tokens (batch × sequence flattened: packed batches are one
/// long row of tokens with segment boundaries), K for input and M for output
/// features, H/KV for attention and key/value heads, D for the head size.
public protocol Backend: AnyObject, Sendable, BackendDropout, BackendOptimizer8bit, BackendColumns {
    var name: String { get }
    var device: Device { get }

    // MARK: memory
    func zeros(_ shape: [Int], dtype: DType) -> Tensor
    func upload(_ values: [Float], shape: [Int]) -> Tensor
    func download(_ tensor: Tensor) -> [Float]
    func copy(_ source: Tensor, into destination: Tensor)
    /// destination[r, at ..< at + count] = source[r, from ..< from + count] for
    /// every row r of two f32 tensors with the same number of rows (a fused
    /// projection's output split into its parts, or joined back).
    func copyColumns(_ source: Tensor, from: Int, into destination: Tensor, at: Int, count: Int)
    /// destination[i] = scales[i] · source[rows[i]] (scale 1 without `scales`):
    /// the tokens routed to one expert, gathered into rows of their own.
    func gatherRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor)
    /// destination[rows[i]] += scales[i] · source[i]; `rows` holds no index
    /// twice (an expert's outputs added back to the tokens routed to it).
    func scatterAddRows(_ source: Tensor, rows: [Int32], scales: [Float]?, into destination: Tensor)

    // MARK: linear layers
    /// y[N, M] (+)= x[N, K] · w[M, K]ᵀ (+ bias[M]).
    func linear(_ x: Tensor, _ w: Tensor, bias: Tensor?, into y: Tensor, accumulate: Bool)
    /// dx[N, K] (+)= dy[N, M] · w[M, K].
    func linearBackwardInput(_ dy: Tensor, _ w: Tensor, into dx: Tensor, accumulate: Bool)
    /// dw[M, K] (+)= dy[N, M]ᵀ · x[N, K].
    func linearBackwardWeight(_ dy: Tensor, _ x: Tensor, into dw: Tensor, accumulate: Bool)
    /// `linear` for a weight kept compact (quantized, bf16): dequantized a
    /// tile of rows at a time, never whole.
    func linear(_ x: Tensor, frozen w: FrozenMatrix, bias: Tensor?, into y: Tensor, accumulate: Bool)
    /// `linearBackwardInput` for a compact weight, tile by tile.
    func linearBackwardInput(_ dy: Tensor, frozen w: FrozenMatrix, into dx: Tensor, accumulate: Bool)

    // MARK: normalisation
    /// y = x / sqrt(mean(x²) + eps) · (weight + weightOffset), row by row over the
    /// last dimension; rstd[N] keeps 1/rms for the backward. (Gemma stores
    /// weight − 1, hence the offset.)
    func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float, into y: Tensor, rstd: Tensor?)
    /// dx (+)= ∂y/∂x · dy; dweight (+)= Σ_rows dy · x · rstd, when given.
    func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                         dx: Tensor, accumulate: Bool, dweight: Tensor?)

    // MARK: rotary position embedding
    /// Rotates, in place, each head of x[N, heads·D] by the angle
    /// position·invFreq[i] (the "rotate half" layout of Hugging Face models).
    /// invFreq has D/2 entries, or fewer with partial rotary: then only each
    /// head's first 2·invFreq.count dimensions turn.
    /// `inverse` applies the transpose rotation, which is the backward.
    func rope(_ x: Tensor, heads: Int, headDim: Int, positions: [Int32], invFreq: [Float],
              attentionScale: Float, inverse: Bool)

    // MARK: attention
    /// Causal scaled-dot-product attention with grouped KV heads.
    /// q[Nq, H·D], k,v[Nk, KV·D], out[Nq, H·D], lse[H, Nq] (log-sum-exp per
    /// query, for the backward). Query i sits at key position queryOffset + i.
    /// `segments` are the starts of packed sequences in key positions, in
    /// increasing order, beginning with 0: no query sees a key of another
    /// segment. `window`, when set, limits each query to the last `window` keys.
    func attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?,
                   spec: AttentionSpec)
    /// dq, dk, dv (+)= the gradients of attention, given its output and lse.
    func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                           dq: Tensor, dk: Tensor, dv: Tensor, spec: AttentionSpec)

    // MARK: elementwise
    /// out = silu(gate) · up.
    func swiglu(gate: Tensor, up: Tensor, into out: Tensor)
    /// dgate, dup = the gradients of swiglu.
    func swigluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor)
    /// out = gelu_tanh(gate) · up (Gemma's GeGLU: PyTorch's `gelu(approximate="tanh")`).
    func geglu(gate: Tensor, up: Tensor, into out: Tensor)
    /// dgate, dup = the gradients of geglu.
    func gegluBackward(_ dOut: Tensor, gate: Tensor, up: Tensor, dGate: Tensor, dUp: Tensor)
    /// x = cap · tanh(x / cap), in place (Gemma 2's logit soft-capping).
    func softcap(_ x: Tensor, cap: Float)
    /// dy ·= 1 − (capped / cap)², in place: the gradient through `softcap`, given its output.
    func softcapBackward(_ dy: Tensor, capped: Tensor, cap: Float)
    /// y = a + b (y may alias a or b).
    func add(_ a: Tensor, _ b: Tensor, into y: Tensor)
    /// y = y + alpha · x.
    func axpy(_ alpha: Float, _ x: Tensor, _ y: Tensor)
    func scale(_ x: Tensor, by alpha: Float)

    // MARK: embedding
    /// out[i] = table[ids[i]].
    func embedding(ids: [Int32], table: Tensor, into out: Tensor)
    /// dtable[ids[i]] += dOut[i].
    func embeddingBackward(ids: [Int32], dOut: Tensor, dTable: Tensor)

    // MARK: loss
    /// Softmax cross-entropy of logits[N, V] against labels (−100 = ignored).
    /// Returns the summed loss over labelled rows; when dLogits is given, writes
    /// (softmax − onehot)·gradScale there (zero for ignored rows). dLogits may
    /// alias logits.
    func crossEntropy(logits: Tensor, labels: [Int32], dLogits: Tensor?, gradScale: Float) -> Double

    // MARK: optimiser
    /// One decoupled-weight-decay Adam step on param, with moments m and v.
    func adamW(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, hyper: AdamWHyper)
    /// Σ grad² (for clipping by global norm).
    func sumOfSquares(_ x: Tensor) -> Double
}

/// What `attention` needs to know beyond its tensors.
public struct AttentionSpec: Sendable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var scale: Float
    public var queryOffset: Int
    public var segments: [Int]
    public var window: Int?
    /// Scores become softcap·tanh(score/softcap) before the softmax (Gemma 2).
    public var softcap: Float?

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil, queryOffset: Int = 0,
                segments: [Int] = [0], window: Int? = nil, softcap: Float? = nil) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale ?? 1 / Float(headDim).squareRoot()
        self.queryOffset = queryOffset
        self.segments = segments
        self.window = window
        self.softcap = softcap
    }
}

/// AdamW's hyperparameters for one step. `step` counts from 1.
public struct AdamWHyper: Sendable {
    public var lr: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    public var weightDecay: Float = 0
    public var step: Int

    public init(lr: Float, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0, step: Int) {
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.step = step
    }
}

/// Elementwise helpers that LoRA's dropout needs.
public protocol BackendDropout {
    /// Fills mask with 0 (probability p) or 1/(1−p), from a seeded stream.
    func dropoutMask(_ mask: Tensor, probability: Float, seed: UInt64)
    /// y = a ⊙ b (y may alias a or b).
    func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor)
}
