import Foundation
@testable import LoftTraining

extension TrainConfig {
    /// A config loaded from `yaml` after a minimal head (the base model and one
    /// alpaca dataset, neither read by `load`), through a temporary file.
    static func fromYAML(_ yaml: String, baseModel: String = "m.gguf") throws -> TrainConfig {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("loft-config-\(UUID().uuidString).yaml").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ("base_model: \(baseModel)\ndatasets: [{path: d.jsonl, type: alpaca}]\n" + yaml).write(toFile: path, atomically: true, encoding: .utf8)
        return try TrainConfig.load(path: path)
    }
}
