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
}

/// The architectures Loft runs. All are Llama-family decoders that differ in
/// a few switches, so one model file serves them through this config.
public enum Architecture: String, Sendable, CaseIterable {
    case llama, mistral, qwen2, qwen3

    public static var supportedList: String { allCases.map(\.rawValue).joined(separator: ", ") }
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

    /// Parameters of the base model (embeddings counted once when tied).
    public var parameterCount: Int {
        let attention = hiddenSize * heads * headDim * 2 + hiddenSize * kvHeads * headDim * 2
            + (attentionBias ? (heads + 2 * kvHeads) * headDim : 0) + (qkNorm ? 2 * headDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let perLayer = attention + mlp + 2 * hiddenSize
        return vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + layers * perLayer + hiddenSize
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
    }
}
