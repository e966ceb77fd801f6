import Foundation
import LoftFormats

/// How rotary frequencies are stretched for long contexts (config.json's
/// `rope_scaling`, GGUF's `rope.scaling.*`).
public enum RoPEScaling: Sendable, Equatable {
    case none
    case linear(factor: Double)
    /// Dynamic NTK: the base grows once the sequence passes the original length.
    case dynamic(factor: Double, originalContext: Int)
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalContext: Int)
    /// LongRoPE (Phi-3): each frequency divided by its own factor, the short
    /// list's while the sequence fits `originalContext`, the long list's past
    /// it; cos and sin multiplied by `attentionFactor`.
    case longRoPE(shortFactor: [Double], longFactor: [Double], originalContext: Int, attentionFactor: Double)

    /// Whether the frequencies depend on the sequence's length (each sequence
    /// of a batch, and each generation step, then computes its own).
    public var dependsOnLength: Bool {
        switch self {
        case .dynamic, .longRoPE: return true
        default: return false
        }
    }
}

/// The architectures Loft runs. All are pre-norm decoders that differ in a
/// few switches of this config (Families/Gemma3.swift says what Gemma 3 sets),
/// so one model file serves them.
public enum Architecture: String, Sendable, CaseIterable {
    case llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3, qwen3Moe = "qwen3_moe", mixtral

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// The architecture of a GGUF's general.architecture: llama.cpp's
    /// qwen3moe, and its llama with experts for Mixtral.
    public init?(ggufName: String, experts: Int) {
        if ggufName == "qwen3moe" { self = .qwen3Moe; return }
        if ggufName == "llama" && experts > 0 { self = .mixtral; return }
        if ggufName == "qwen3_moe" || ggufName == "mixtral" { return nil }
        self.init(rawValue: ggufName)
    }

    /// The architecture of a config.json's `model_type` (Gemma 3's text model is `gemma3_text`).
    public init?(modelType: String) {
        if modelType == "gemma3_text" { self = .gemma3; return }
        if modelType == "gemma3" { return nil }  // the multimodal checkpoint: its weights sit under language_model
        self.init(rawValue: modelType)
    }
}

/// The activation of the gated MLP: down(act(gate(x)) · up(x)).
public enum HiddenActivation: String, Sendable {
    /// SwiGLU (Llama, Mistral, Qwen).
    case silu
    /// GeGLU with PyTorch's tanh-approximated gelu (Gemma's `gelu_pytorch_tanh`).
    case geluTanh
}

/// Which attention a layer runs when layers differ (Gemma 3's local/global pattern).
public enum LayerAttention: String, Sendable {
    /// Full causal attention, RoPE with `ropeTheta` and `ropeScaling`.
    case full
    /// The last `slidingWindow` keys only, RoPE with `localRopeTheta` and no scaling.
    case sliding
}

/// Everything the model code needs to know about a checkpoint's shape.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RoPEScaling
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    /// Bias on the q, k and v projections (Qwen2).
    public var attentionBias: Bool
    /// RMSNorm on each head of q and k before RoPE (Qwen3).
    public var qkNorm: Bool
    /// Mistral-style sliding-window attention, when set.
    public var slidingWindow: Int?
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    // Switches beyond Llama's (Gemma 3 sets them all; Families/Gemma3.swift).
    /// The gated MLP's activation.
    public var hiddenActivation: HiddenActivation = .silu
    /// RMSNorm weights are stored as w − 1 and applied as (1 + w): 1 for Gemma, else 0.
    public var normWeightOffset: Float = 0
    /// Token embeddings are multiplied by this (Gemma: √hidden_size, rounded to float).
    public var embeddingScale: Float?
    /// An RMSNorm on the attention output and on the MLP output before each
    /// joins the residual stream, beside the usual pre-norms (Gemma 2/3).
    public var sandwichNorms = false
    /// The scale of q·k when it is not 1/√head_dim (Gemma's query_pre_attn_scalar^-½).
    public var attentionScale: Float?
    /// Per layer, full or sliding-window attention; empty when every layer is
    /// alike (then `slidingWindow`, when set, applies to all, as in Mistral).
    public var layerTypes: [LayerAttention] = []
    /// The RoPE base of sliding layers (Gemma 3's rope_local_base_freq).
    public var localRopeTheta: Double?
    /// Attention scores become cap·tanh(score/cap) before the softmax (Gemma 2's attn_logit_softcapping).
    public var attentionSoftcap: Float?
    /// Output logits become cap·tanh(logit/cap) (Gemma 2's final_logit_softcapping).
    public var finalLogitSoftcap: Float?
    /// q, k and v are one projection (qkv_proj, output rows q's then k's then
    /// v's) and gate and up another (gate_up_proj, gate's rows then up's), as
    /// Phi-3 stores and adapts them (Families/Phi3.swift).
    public var fusedProjections = false
    /// How many of each head's dimensions RoPE turns when not all of them
    /// (partial_rotary_factor · head_dim; Phi-4-mini: 3/4); nil: all.
    public var rotaryDims: Int?

    /// The dimensions of each head that RoPE turns.
    public var rotaryDimensions: Int { rotaryDims ?? headDim }

    // Mixture of experts (Qwen3-MoE, Mixtral; MixtureOfExperts.swift).
    /// Experts of each sparse layer (0: a dense model).
    public var experts = 0
    /// Experts each token is routed to (top-k).
    public var expertsPerToken = 0
    /// The hidden size of one expert's gated MLP.
    public var expertIntermediateSize = 0
    /// Whether the top-k routing probabilities are renormalised to sum to 1
    /// (Mixtral always; Qwen3-MoE's norm_topk_prob).
    public var normalizeTopK = true
    /// Layers that keep a dense MLP in a sparse model (Qwen3-MoE's
    /// mlp_only_layers, and those decoder_sparse_step skips).
    public var denseLayers: Set<Int> = []

    /// Whether layer `layer` routes its MLP through experts.
    public func isSparse(layer: Int) -> Bool { experts > 0 && !denseLayers.contains(layer) }

    public init(architecture: Architecture, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, layers: Int,
                heads: Int, kvHeads: Int, headDim: Int? = nil, rmsNormEps: Double = 1e-5, ropeTheta: Double = 10000,
                ropeScaling: RoPEScaling = .none, maxPositionEmbeddings: Int = 2048, tieWordEmbeddings: Bool = false,
                attentionBias: Bool = false, qkNorm: Bool = false, slidingWindow: Int? = nil,
                bosTokenID: Int? = nil, eosTokenIDs: [Int] = []) {
        self.architecture = architecture
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim ?? hiddenSize / heads
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.qkNorm = qkNorm
        self.slidingWindow = slidingWindow
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
    }

    /// The attention window of layer `layer` (nil: full causal attention).
    public func window(layer: Int) -> Int? {
        guard !layerTypes.isEmpty else { return slidingWindow }
        return layerTypes[layer] == .sliding ? slidingWindow : nil
    }

    /// Whether layer `layer` rotates with the local RoPE base.
    public func usesLocalRoPE(layer: Int) -> Bool {
        localRopeTheta != nil && !layerTypes.isEmpty && layerTypes[layer] == .sliding
    }

    /// Parameters of the base model (embeddings counted once when tied).
    public var parameterCount: Int {
        let attention = hiddenSize * heads * headDim * 2 + hiddenSize * kvHeads * headDim * 2
            + (attentionBias ? (heads + 2 * kvHeads) * headDim : 0) + (qkNorm ? 2 * headDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let sparse = experts * (3 * hiddenSize * expertIntermediateSize + hiddenSize)  // experts and router
        let perLayer = attention + (sandwichNorms ? 4 : 2) * hiddenSize
        let mlps = (0 ..< layers).reduce(0) { $0 + (isSparse(layer: $1) ? sparse : mlp) }
        return vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + layers * perLayer + mlps + hiddenSize
    }

    /// Checks that the numbers fit together, so a bad config fails at load
    /// with a message instead of deep inside a kernel.
    public func validate(source: String) throws {
        func bad(_ m: String) -> FormatError { FormatError(source, m) }
        for (name, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", layers), ("num_attention_heads", heads), ("num_key_value_heads", kvHeads),
                          ("head_dim", headDim)] where v <= 0 {
            throw bad("\(name) is \(v); it must be positive")
        }
        if heads % kvHeads != 0 { throw bad("num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)") }
        if headDim % 2 != 0 { throw bad("head_dim \(headDim) is odd; rotary embeddings need an even head size") }
        if let r = rotaryDims, r <= 0 || r > headDim || r % 2 != 0 {
            throw bad("partial_rotary_factor turns \(r) of head_dim \(headDim) dimensions; it must be an even number from 2 to head_dim")
        }
        if !layerTypes.isEmpty && layerTypes.count != layers {
            throw bad("layer_types lists \(layerTypes.count) layers but num_hidden_layers is \(layers)")
        }
        if case .longRoPE(let short, let long, let original, _) = ropeScaling {
            if short.count != rotaryDimensions / 2 || long.count != rotaryDimensions / 2 {
                throw bad("rope_scaling has \(short.count) short and \(long.count) long factors; LongRoPE needs one for each of the \(rotaryDimensions / 2) rotary frequencies")
            }
            if original <= 0 { throw bad("original_max_position_embeddings is \(original); LongRoPE needs the pretraining length") }
        }
        if experts > 0 && (expertsPerToken < 1 || expertsPerToken > experts || expertIntermediateSize <= 0) {
            throw bad("\(experts) experts with \(expertsPerToken) per token and an expert size of \(expertIntermediateSize); a token takes 1 to \(experts) experts of positive size")
        }
        if layerTypes.contains(.sliding) && (slidingWindow ?? 0) <= 0 {
            throw bad("layer_types has sliding_attention layers but sliding_window is not set")
        }
    }
}
