import Foundation
import LoftFormats

extension ModelConfig {
    /// Reads the model shape from a GGUF file's `{arch}.*` metadata.
    public static func fromGGUF(_ file: GGUFFile) throws -> ModelConfig {
        let source = file.path
        let archName = file.architecture ?? ""
        let expertCount = file.metadata["\(archName).expert_count"]?.int ?? 0
        guard let arch = Architecture(ggufName: archName, experts: expertCount) else {
            throw FormatError(source, "general.architecture '\(archName)' is not supported; Loft supports \(Architecture.supportedList)")
        }
        let m = file.metadata
        func int(_ key: String) throws -> Int {
            guard let v = m["\(archName).\(key)"]?.int else {
                throw FormatError(source, "missing metadata \(archName).\(key)")
            }
            return v
        }
        func optionalInt(_ key: String) -> Int? { m["\(archName).\(key)"]?.int }
        func double(_ key: String) -> Double? { m["\(archName).\(key)"]?.double }
        let hidden = try int("embedding_length"), heads = try int("attention.head_count")
        let context = optionalInt("context_length") ?? 2048
        let vocab = optionalInt("vocab_size") ?? m["tokenizer.ggml.tokens"]?.array?.count
            ?? file.tensor(named: "token_embd.weight")?.shape.first ?? 0
        var scaling = RoPEScaling.none
        if let type = m["\(archName).rope.scaling.type"]?.string, type != "none" {
            let factor = double("rope.scaling.factor") ?? 1
            switch type {
            case "linear": scaling = .linear(factor: factor)
            case "yarn", "dynamic":
                throw FormatError(source, "rope scaling '\(type)' in GGUF is not supported; Loft supports linear")
            default:
                throw FormatError(source, "rope scaling '\(type)' is not supported; Loft supports linear")
            }
        }
        // llama.cpp keeps Llama 3's frequency factors as a tensor, computed from these settings.
        var config = ModelConfig(
            architecture: arch,
            vocabSize: vocab,
            hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"),
            layers: try int("block_count"),
            heads: heads,
            kvHeads: optionalInt("attention.head_count_kv") ?? heads,
            // Phi-3's rope.dimension_count is the rotary part of a head (Phi-4-mini: 3/4 of it).
            headDim: optionalInt("attention.key_length")
                ?? (arch == .phi3 ? nil : optionalInt("rope.dimension_count")) ?? hidden / heads,
            rmsNormEps: double("attention.layer_norm_rms_epsilon") ?? 1e-5,
            ropeTheta: double("rope.freq_base") ?? 10000,
            ropeScaling: scaling,
            maxPositionEmbeddings: context,
            tieWordEmbeddings: file.tensor(named: "output.weight") == nil,
            attentionBias: file.tensor(named: "blk.0.attn_q.bias") != nil,
            qkNorm: file.tensor(named: "blk.0.attn_q_norm.weight") != nil,
            slidingWindow: arch == .mistral || arch == .mixtral ? optionalInt("attention.sliding_window") : nil,
            bosTokenID: m["tokenizer.ggml.bos_token_id"]?.int,
            eosTokenIDs: m["tokenizer.ggml.eos_token_id"]?.int.map { [$0] } ?? [])
        if arch == .gemma3 { config.applyGemma3(gguf: file) }
        if arch == .gemma2 { config.applyGemma2(gguf: file) }
        if arch == .phi3 { try config.applyPhi3(gguf: file) }
        if expertCount > 0 {
            // llama.cpp: the router is ffn_gate_inp, the experts ffn_{gate,up,down}_exps;
            // a layer without a router keeps a dense MLP.
            config.experts = expertCount
            config.expertsPerToken = optionalInt("expert_used_count") ?? 2
            config.expertIntermediateSize = optionalInt("expert_feed_forward_length") ?? config.intermediateSize
            config.normalizeTopK = m["\(archName).expert_weights_norm"]?.bool ?? true
            config.denseLayers = Set((0 ..< config.layers).filter { file.tensor(named: "blk.\($0).ffn_gate_inp.weight") == nil })
        }
        try config.validate(source: source)
        return config
    }
}
