import Foundation
import LoftEngine
import LoftInference
import LoftModels

extension LanguageModel {
    /// The models `loft eval` scores: the batched serving engine (every
    /// adapter beside one base, answers batched as `loft serve` batches
    /// them, prompts scored from its prompt log-probabilities) unless an
    /// adapter is DoRA, which the engine cannot apply per row: then each
    /// adapter is attached to this model in turn (`LocalEvalModel`).
    /// Shut the engine down when done.
    public func evalModel(adapters: [(name: String, directory: String)], batchSize: Int,
                          log: (String) -> Void = { _ in }) throws -> (EvalModel, BatchEngine?) {
        if let dora = try adapters.first(where: { try PEFTAdapter.readConfig($0.directory).useDoRA }) {
            log("note: \(dora.name) is a DoRA adapter; the batched engine applies plain LoRA per row, so each adapter is attached in turn")
            return (try LocalEvalModel(languageModel: self, adapters: adapters), nil)
        }
        try setAdapter(nil)
        let engine = try BatchEngine(model: model, tokenizer: tokenizer, name: URL(fileURLWithPath: path).lastPathComponent,
                                     modelPath: path, configuration: EngineConfiguration(maxBatch: max(1, batchSize)))
        do {
            for a in adapters { _ = try engine.loadAdapter(name: a.name, directory: a.directory) }
        } catch {
            engine.shutdown()
            throw error
        }
        return (EngineEvalModel(engine: engine, adapters: adapters.map(\.name),
                                emptyContextToken: Int32(tokenizer.eosTokenID ?? 0)), engine)
    }
}
