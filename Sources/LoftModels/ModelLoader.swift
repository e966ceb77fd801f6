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
}
