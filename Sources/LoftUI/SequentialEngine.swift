import Foundation
import LoftEngine
import LoftInference

/// A `GenerationEngine` that runs one request at a time on `LanguageModel`
/// (the decoder `loft generate` and `loft chat` use), switching adapters
/// between requests. The UI's chat uses it where the batched engine is not
/// built in; both answer the same tokens for the same prompt and seed.
public final class SequentialEngine: GenerationEngine, @unchecked Sendable {
    let lm: LanguageModel
    let lock = NSLock()
    private var adapters: [String: ServedModel] = [:]
    public let baseName: String
    public let contextLength: Int
    public var isReady: Bool { true }
    private var counters = EngineMetrics()

    public init(baseModel: String) throws {
        lm = try LanguageModel(path: baseModel)
        baseName = URL(fileURLWithPath: baseModel).lastPathComponent
        contextLength = lm.model.config.maxPositionEmbeddings
    }

    public var models: [ServedModel] {
        lock.withLock { [ServedModel(name: baseName, parent: nil, directory: lm.path, rank: nil)] + adapters.values.sorted { $0.name < $1.name } }
    }

    public func loadAdapter(name: String, directory: String) throws -> ServedModel {
        guard FileManager.default.fileExists(atPath: directory + "/adapter_config.json") else {
            throw EngineError.adapterRejected(name: name, reason: "\(directory) holds no adapter_config.json")
        }
        let m = ServedModel(name: name, parent: baseName, directory: directory, rank: nil)
        lock.withLock { adapters[name] = m }
        return m
    }

    public func unloadAdapter(name: String) throws {
        guard lock.withLock({ adapters.removeValue(forKey: name) }) != nil else { throw EngineError.unknownModel(name) }
    }

    /// Puts the model's adapter in place (call with the lock held).
    private func select(_ model: String?) throws {
        guard let model, model != baseName else {
            if lm.adapter != nil { try lm.setAdapter(nil) }
            return
        }
        guard let dir = adapters[model]?.directory else { throw EngineError.unknownModel(model) }
        if lm.adapter != dir { try lm.setAdapter(dir) }
    }

    public func render(_ chat: ChatPrompt, model: String?) throws -> RenderedPrompt {
        guard let list = try JSONSerialization.jsonObject(with: Data(chat.messagesJSON.utf8)) as? [[String: Any]] else {
            throw EngineError.invalidRequest(field: "messages", message: "expected a list of {role, content} objects")
        }
        let messages = list.map { (role: $0["role"] as? String ?? "user", content: $0["content"] as? String ?? "") }
        return try lock.withLock {
            try select(model)
            return RenderedPrompt(text: "", tokens: try lm.promptIDs(messages: messages))
        }
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        lm.tokenizer.encode(text, addSpecialTokens: addSpecialTokens).map(Int32.init)
    }

    public func detokenize(_ tokens: [Int32]) -> String { lm.tokenizer.decode(tokens.map(Int.init)) }

    public func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        if request.prompt.count + request.maxTokens > contextLength {
            throw EngineError.promptTooLong(tokens: request.prompt.count, limit: contextLength)
        }
        return AsyncThrowingStream { continuation in
            let thread = Thread { [self] in
                do {
                    let result = try run(request) { text in
                        continuation.yield(.delta(choice: 0, tokens: [], text: text, logprobs: []))
                    }
                    continuation.yield(.finished(choice: 0, reason: result.finishReason,
                                                 usage: Usage(promptTokens: request.prompt.count, completionTokens: result.tokens.count)))
                    continuation.finish()
                } catch { continuation.finish(throwing: error) }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    func run(_ request: GenerationRequest, onText: @escaping (String) -> Void) throws -> GeneratedChoice {
        try lock.withLock {
            try select(request.model)
            let s = request.sampling
            let sampling = SamplingOptions(temperature: s.temperature, topK: s.topK, topP: s.topP,
                                           repetitionPenalty: s.repetitionPenalty, seed: s.seed ?? 0)
            let out = lm.generate(prompt: request.prompt, maxNewTokens: request.maxTokens, sampling: sampling, onText: onText)
            counters.steps += out.ids.count
            let stopped = out.ids.last.map { lm.stopTokens.contains($0) } ?? false
            return GeneratedChoice(tokens: out.ids, text: out.text, logprobs: [], finishReason: stopped ? .stop : .length)
        }
    }

    public func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult] {
        try requests.map { r in
            let c = try run(r) { _ in }
            return GenerationResult(id: r.id, choices: [c], promptLogprobs: nil,
                                    usage: Usage(promptTokens: r.prompt.count, completionTokens: c.tokens.count))
        }
    }

    public func metrics() -> EngineMetrics { lock.withLock { counters } }
}
