import LoftFormats

/// What `loft export gguf --quant` writes: a whole-file type as llama.cpp's
/// `llama_ftype`, and the tensor type each weight gets under it, chosen as
/// llama.cpp's llama_model_quantize does without an importance matrix
/// (src/llama-quant.cpp, llama_tensor_get_type), so a Loft Q4_K_M file has
/// the same tensor types as `llama-quantize model-f32.gguf Q4_K_M`.
public enum GGUFFileType: String, CaseIterable, Sendable, CustomStringConvertible {
    case f32, f16, bf16, q8_0, q4_0, q4_1
    case q4_K_M = "q4_k_m", q5_K_M = "q5_k_m", q6_K = "q6_k"

    /// The name llama.cpp prints, e.g. "Q4_K_M".
    public var description: String { rawValue.uppercased() }

    /// `general.file_type`: llama.cpp's enum llama_ftype.
    public var llamaFileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q4_K_M: return 15
        case .q5_K_M: return 17
        case .q6_K: return 18
        case .bf16: return 32
        }
    }

    /// The type most 2-D weights get (llama_ftype_get_default_type).
    public var defaultType: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q4_K_M: return .q4_K
        case .q5_K_M: return .q5_K
        case .q6_K: return .q6_K
        }
    }

    public var isQuantized: Bool { ![.f32, .f16, .bf16].contains(self) }

    /// llama.cpp's use_more_bits: the first and last eighth of the layers and
    /// every third one between keep more bits in the *_M mixes.
    static func useMoreBits(_ layer: Int, _ layers: Int) -> Bool {
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
    }

    /// The tensor type of the weight `name` (llama.cpp's GGUF name) whose rows
    /// have `rowLength` elements, in a model of `layers` layers;
    /// `tiedEmbeddings` when the file has no output.weight (token_embd then
    /// serves as the output and is treated like it). `fallback` says when the
    /// row length forced a smaller block type, as llama.cpp warns.
    public func tensorType(name: String, dimensions: Int, rowLength: Int, layers: Int,
                           tiedEmbeddings: Bool) -> (type: GGMLType, fallback: String?) {
        if dimensions < 2 || name.hasSuffix("_norm.weight") || !name.hasSuffix("weight") { return (.f32, nil) }
        // A router stays f32, as llama-quantize leaves it.
        if name.hasSuffix("ffn_gate_inp.weight") { return (.f32, nil) }
        let base = defaultType
        guard isQuantized else { return (base, nil) }
        var t = base
        let layer = Self.layerIndex(name)
        if name == "output.weight" || (tiedEmbeddings && name == "token_embd.weight") {
            if rowLength % base.blockLayout.elements != 0 { t = .q8_0 }
            else if t != .q8_0 { t = .q6_K }
        } else if name.contains("attn_v.weight") || name.contains("attn_qkv.weight") {
            if (self == .q4_K_M || self == .q5_K_M), let layer, Self.useMoreBits(layer, layers) { t = .q6_K }
        } else if name.contains("ffn_down") {
            if (self == .q4_K_M || self == .q5_K_M), let layer, Self.useMoreBits(layer, layers) { t = .q6_K }
        }
        // tensor_type_fallback: a 256-block type on rows that are not whole super-blocks.
        guard rowLength % t.blockLayout.elements != 0 else { return (t, nil) }
        var f: GGMLType
        switch t {
        case .q4_K: f = .q5_0
        case .q5_K: f = .q5_1
        case .q6_K: f = .q8_0
        default: f = t
        }
        if rowLength % f.blockLayout.elements != 0 { f = .f16 }
        return (f, "\(name): rows of \(rowLength) are not whole \(t) blocks of \(t.blockLayout.elements); written as \(f), as llama-quantize does")
    }

    /// N of "blk.N.…".
    static func layerIndex(_ name: String) -> Int? {
        guard name.hasPrefix("blk.") else { return nil }
        return Int(name.dropFirst(4).prefix { $0 != "." })
    }
}
