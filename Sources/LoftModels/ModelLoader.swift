import Foundation
import LoftFormats
import LoftTensors

/// Opens a model from a Hugging Face directory (config.json + safetensors) or
/// a .gguf file: the same model, whichever form it comes in.
public enum ModelLoader {
    public struct Opened {
        public let config: ModelConfig
        public let weights: WeightSource
        /// The GGUF file, when the model came from one (its tokenizer lives there too).
        public let gguf: GGUFFile?
    }

    /// Reads the config and opens the weights without loading them.
    public static func open(_ path: String) throws -> Opened {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError(path, "not found; give a model directory (config.json + *.safetensors) or a .gguf file")
        }
        if isDir.boolValue {
            let dir = URL(fileURLWithPath: path)
            let config = try ModelConfig.fromHF(path: dir.appendingPathComponent("config.json").path)
            let weights = try SafetensorsWeights(directory: path)
            return Opened(config: config, weights: weights, gguf: nil)
        }
        let file = try GGUFFile(path: path)
        let config = try ModelConfig.fromGGUF(file)
        return Opened(config: config, weights: GGUFWeights(file: file, config: config), gguf: file)
    }

    /// Opens and loads the model onto `backend`.
    public static func load(_ path: String, backend: Backend = CPUBackend.shared,
                            baseWeights: BaseWeightFormat = .f32) throws -> (LlamaModel, Opened) {
        let opened = try open(path)
        return (try LlamaModel(config: opened.config, weights: opened.weights, backend: backend, baseWeights: baseWeights), opened)
    }

    /// The base storage generation loads `path` with: a .gguf model asked
    /// for as f32 keeps its own blocks on the CPU, for `QuantizedDecoding`'s
    /// kernels multiply them in place (the f32 load is only their
    /// dequantization, so an adapter trained on it runs on them unchanged).
    /// Anything else, or `LOFT_QDOT=off`, loads as requested.
    public static func decodingBase(_ path: String, requested: BaseWeightFormat, backend: Backend) -> BaseWeightFormat {
        guard requested.kind == .f32, backend is CPUBackend, QuantizedDecoding.mode != nil,
              path.lowercased().hasSuffix(".gguf") else { return requested }
        return BaseWeightFormat(kind: .gguf)
    }

    /// `path` with `adapter` (a PEFT or mlx-lm directory) attached, on the
    /// base the adapter was trained on: an adapter trained on a compact base
    /// (QLoRA's NF4, int8, bf16; recorded in its loft_base_weights.json) runs
    /// and merges on that base's dequantized weights (requantized the same
    /// deterministic way), the W it learned against, never on the original.
    /// `baseNote` says which base was used when it is not f32, for merge and
    /// export reports. `decoding` (generation) keeps a .gguf base's own blocks
    /// where the adapter was trained on its f32 values (`decodingBase`).
    public static func load(_ path: String, adapter: String?, backend: Backend = CPUBackend.shared, decoding: Bool = false)
        throws -> (model: LlamaModel, opened: Opened, baseNote: String?) {
        let base = try adapter.flatMap { try BaseWeightFormat.read(adapterDirectory: $0) } ?? .f32
        let (model, opened) = try load(path, backend: backend,
                                       baseWeights: decoding ? decodingBase(path, requested: base, backend: backend) : base)
        if let adapter { try PEFTAdapter.load(adapter, into: model) }
        // model.baseWeights, not the record: a pre-quantized bitsandbytes base keeps its own storage
        if model.baseWeights.kind == .f32 || (decoding && base.kind == .f32) { return (model, opened, nil) }
        let note = (opened.weights as? SafetensorsWeights)?.bnb != nil
            ? "the base is stored by bitsandbytes as \(model.baseWeights.summary): written as its dequantized weights"
            : "the adapter was trained on a \(base.summary) base: merged onto its dequantized weights"
        return (model, opened, note)
    }
}
