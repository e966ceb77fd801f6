import Foundation
import LoftFormats
import LoftTensors

/// Weights from a GGUF file, dequantized to f32 on load, with llama.cpp's
/// names mapped to Hugging Face's and its q/k row permutation undone, so the
/// model sees exactly what transformers' GGUF loader produces.
public final class GGUFWeights: WeightSource {
    public let file: GGUFFile
    public let config: ModelConfig
    public var path: String { file.path }

    public init(file: GGUFFile, config: ModelConfig) {
        self.file = file
        self.config = config
    }

    /// Hugging Face name → llama.cpp name. Gemma's post_attention_layernorm is
    /// a norm of its own (post_attention_norm); Llama's is the MLP's pre-norm.
    static func ggufName(_ hf: String, architecture: Architecture = .llama) -> String? {
        let fixed: [String: String] = [
            "model.embed_tokens.weight": "token_embd.weight",
            "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight",
        ]
        if let n = fixed[hf] { return n }
        let parts = hf.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        if architecture == .gemma3 || architecture == .gemma2 {
            let gemma = ["post_attention_layernorm.weight": "post_attention_norm.weight",
                         "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                         "post_feedforward_layernorm.weight": "post_ffw_norm.weight"]
            if let n = gemma[rest] { return "blk.\(layer).\(n)" }
        }
        // Phi-3's fused gate_up_proj is llama.cpp's ffn_up (2·intermediate rows).
        if architecture == .phi3 && rest == "mlp.gate_up_proj.weight" { return "blk.\(layer).ffn_up.weight" }
        let map: [String: String] = [
            "input_layernorm.weight": "attn_norm.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
            "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
            "self_attn.o_proj.weight": "attn_output.weight", "self_attn.qkv_proj.weight": "attn_qkv.weight",
            "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
            // the router of a sparse layer (Qwen3-MoE; Mixtral's block_sparse_moe)
            "mlp.gate.weight": "ffn_gate_inp.weight", "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",
        ]
        return map[rest].map { "blk.\(layer).\($0)" }
    }

    /// An expert's projection → llama.cpp's stacked tensor of every expert
    /// ([experts, out, in]) and the expert's index in it.
    static func expertSlice(_ hf: String) -> (name: String, expert: Int)? {
        let parts = hf.split(separator: ".").map(String.init)
        guard parts.count == 8, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
              parts[3] == "mlp" || parts[3] == "block_sparse_moe", parts[4] == "experts", let expert = Int(parts[5]),
              parts[7] == "weight" else { return nil }
        let kinds = ["gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"]
        guard let kind = kinds[parts[6]] else { return nil }
        return ("blk.\(layer).ffn_\(kind)_exps.weight", expert)
    }

    /// The 2-D tensor (or the rows of one expert in a stacked 3-D one) a weight is stored in.
    func stored(_ name: String) -> (info: GGUFTensorInfo, rows: Range<Int>)? {
        if let slice = Self.expertSlice(name), let info = file.tensor(named: slice.name), info.dimensions.count == 3 {
            let rows = info.dimensions[1]
            return (info, slice.expert * rows ..< (slice.expert + 1) * rows)
        }
        guard let g = Self.ggufName(name, architecture: config.architecture), let info = file.tensor(named: g) else { return nil }
        return (info, 0 ..< file.rowCount(info))
    }

    public func contains(_ name: String) -> Bool { stored(name) != nil }

    /// Whether the file permutes q/k rows for llama.cpp's RoPE (its llama architecture).
    var permutesQK: Bool { [.llama, .mistral, .mixtral].contains(config.architecture) }

    public func load(_ name: String) throws -> Tensor? {
        guard let (info, rows) = stored(name) else { return nil }
        let t = Tensor.uninitialized(info.dimensions.count == 3 ? [rows.count, info.dimensions[0]] : info.shape)
        try file.dequantizeRows(info, rows: rows, into: t.floats)
        // llama.cpp stores Gemma's norms as 1 + w; the model applies (1 + w) itself.
        if config.normWeightOffset != 0 && name.hasSuffix("norm.weight") {
            for i in 0 ..< t.count { t.floats[i] -= config.normWeightOffset }
        }
        // llama.cpp permutes q/k rows for its RoPE layout in Llama-architecture files only.
        if permutesQK {
            if name.hasSuffix("q_proj.weight") {
                try unpermuteLlamaQK(t.floats, rows: info.shape[0], cols: info.shape.count > 1 ? info.shape[1] : 1, heads: config.heads)
            } else if name.hasSuffix("k_proj.weight") {
                try unpermuteLlamaQK(t.floats, rows: info.shape[0], cols: info.shape.count > 1 ? info.shape[1] : 1, heads: config.kvHeads)
            }
        }
        return t
    }

    /// A weight as the file's own blocks, read in place (the q/k permutation
    /// becomes a row map instead of a copy).
    func blocks(_ name: String, shape: [Int]) throws -> FrozenWeight {
        if let slice = Self.expertSlice(name), let info = file.tensor(named: slice.name) {
            // One expert's rows of the stacked tensor, read in place.
            guard info.shape == [config.experts] + shape else {
                throw FormatError(path, "\(slice.name) has shape \(info.shape), the config expects \([config.experts] + shape)")
            }
            guard let rowBytes = info.type.byteCount(elements: shape[1]) else {
                throw FormatError(path, "\(slice.name) is \(info.type), which Loft cannot keep quantized; set keep_gguf_quantization: false")
            }
            let data = file.data(for: info).baseAddress! + slice.expert * shape[0] * rowBytes
            return try FrozenWeight.ggml(type: info.type, data: data, rows: shape[0], cols: shape[1], permuteHeads: nil,
                                         owner: file, source: file.path + ": " + slice.name)
        }
        guard let g = Self.ggufName(name, architecture: config.architecture), let info = file.tensor(named: g) else {
            throw FormatError(path, "weight \(name) is missing; the checkpoint does not match its config")
        }
        guard info.shape == shape else {
            throw FormatError(path, "weight \(name) has shape \(info.shape), the config expects \(shape)")
        }
        var heads: Int?
        if permutesQK {
            if name.hasSuffix("q_proj.weight") { heads = config.heads }
            if name.hasSuffix("k_proj.weight") { heads = config.kvHeads }
        }
        return try FrozenWeight.ggml(info, in: file, permuteHeads: heads)
    }

    /// The weight's blocks when the decoding kernels multiply its type, else nil.
    func decodableBlocks(_ name: String, shape: [Int]) -> FrozenWeight? {
        guard let w = try? blocks(name, shape: shape), w.decodesInPlace else { return nil }
        return w
    }

    public var storageSummary: [String: Int] {
        Dictionary(grouping: file.tensors, by: { $0.type.description }).mapValues(\.count)
    }
}
