import Foundation
import LoftFormats
import LoftTensors

/// Where a model's weights come from. Names are always Hugging Face's
/// (`model.layers.0.self_attn.q_proj.weight`), whatever the file calls them,
/// and values are f32 in PyTorch's row-major layout.
public protocol WeightSource: AnyObject {
    var path: String { get }
    func contains(_ name: String) -> Bool
    /// The weight as a CPU f32 tensor, or nil when the file does not have it.
    func load(_ name: String) throws -> Tensor?
    /// What each weight is stored as, for `loft info` (e.g. "Q4_1": 210).
    var storageSummary: [String: Int] { get }
}

extension WeightSource {
    func require(_ name: String, shape: [Int]) throws -> Tensor {
        guard let t = try load(name) else {
            throw FormatError(path, "weight \(name) is missing; the checkpoint does not match its config")
        }
        guard t.shape == shape else {
            throw FormatError(path, "weight \(name) has shape \(t.shape), the config expects \(shape)")
        }
        return t
    }
}

extension WeightSource {
    /// A projection weight stored as `format`: quantized from its f32 values
    /// (for a GGUF source, from the dequantized blocks, in Hugging Face row
    /// order), or, for `.gguf`, the file's own blocks read in place.
    func frozenWeight(_ name: String, shape: [Int], format: BaseWeightFormat) throws -> FrozenWeight {
        if format.kind == .gguf {
            guard let gguf = self as? GGUFWeights else {
                throw FormatError(path, "keep_gguf_quantization needs a .gguf base model; this one is a Hugging Face directory")
            }
            return try gguf.blocks(name, shape: shape)
        }
        if let st = self as? SafetensorsWeights, st.bnb != nil {
            return try st.bnbFrozenWeight(name, shape: shape)
        }
        return FrozenWeight.converting(try require(name, shape: shape), to: format)
    }
}

extension WeightSource {
    /// The storage projections loaded with `requested` get: a bitsandbytes
    /// checkpoint's own (BnBCheckpointFormat.resolve), else `requested`.
    public func baseFormat(requested: BaseWeightFormat) throws -> BaseWeightFormat {
        guard let bnb = (self as? SafetensorsWeights)?.bnb else { return requested }
        return try bnb.resolve(requested, source: path)
    }
}
