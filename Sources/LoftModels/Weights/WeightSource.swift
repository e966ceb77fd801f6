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
