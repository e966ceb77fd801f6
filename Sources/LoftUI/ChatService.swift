import Foundation
import LoftEngine
import LoftRuns

/// The chat page's side: one engine per base model (made on first use and
/// kept), adapters loaded into it by run id, answers streamed as they come.
public final class ChatService: @unchecked Sendable {
    /// Makes the engine that serves a base model (the CLI passes the batched engine).
    public typealias EngineFactory = @Sendable (_ baseModel: String) throws -> any GenerationEngine
    let factory: EngineFactory
    private var engines: [String: any GenerationEngine] = [:]
    private let lock = NSLock()

    public init(factory: @escaping EngineFactory) { self.factory = factory }

    public func engine(baseModel: String) throws -> any GenerationEngine {
        try lock.withLock {
            if let e = engines[baseModel] { return e }
            let e = try factory(baseModel)
            engines[baseModel] = e
            return e
        }
    }

    /// The served name of a run's adapter, loaded on first use.
    func adapterName(_ run: RunRecord, engine: any GenerationEngine) throws -> String {
        let name = "run-" + run.id
        if engine.models.contains(where: { $0.name == name }) { return name }
        guard let dir = run.outputDir, FileManager.default.fileExists(atPath: dir + "/adapter_config.json") else {
            throw RegistryError("run \(run.id) has no adapter yet (its output_dir holds no adapter_config.json); chat with it once it has finished or been stopped")
        }
        _ = try lock.withLock { try engine.loadAdapter(name: name, directory: dir) }
        return name
    }

    /// Streams one answer as SSE text pieces: `event: delta` with {"text"}, then `event: done` (or `event: error`).
    func stream(baseModel: String, adapterRun: RunRecord?, prompt: String, seed: UInt64, maxTokens: Int, temperature: Float,
                write: (String) async throws -> Void) async throws {
        do {
            let engine = try self.engine(baseModel: baseModel)
            let model = try adapterRun.map { try adapterName($0, engine: engine) }
            let messages = jsonText([["role": "user", "content": prompt]])
            let rendered = try engine.render(ChatPrompt(messagesJSON: messages), model: model)
            let request = GenerationRequest(model: model, prompt: rendered.tokens, maxTokens: maxTokens,
                                            sampling: SamplingParameters(temperature: temperature, seed: seed))
            var tokens = 0
            let started = Date()
            for try await event in try engine.submit(request) {
                switch event {
                case .delta(_, let t, let text, _):
                    tokens += t.count
                    if !text.isEmpty { try await write("event: delta\ndata: \(jsonText(["text": text]))\n\n") }
                case .finished(_, let reason, let usage):
                    if let usage { tokens = usage.completionTokens }
                    let seconds = Date().timeIntervalSince(started)
                    try await write("event: done\ndata: \(jsonText(["reason": reason.rawValue, "tokens": tokens, "seconds": seconds]))\n\n")
                case .promptLogprobs: break
                }
            }
        } catch {
            try await write("event: failure\ndata: \(jsonText(["error": "\(error)"]))\n\n")
        }
    }
}
