import Foundation
import LoftEngine

/// A GenerationEngine with scripted answers, for testing the HTTP layer alone.
/// Tokens are Unicode scalars (token id = scalar value), so every count and
/// offset a test checks can be worked out by hand. The answer depends on the
/// model and on words in the prompt:
///   SLOW  one token every 50 ms (for disconnect tests)
///   TOOL  a Hermes `<tool_call>` for get_weather
///   FULL  the queue refuses it (429)
///   otherwise "<model> says hello world." (the base is "base")
final class FakeEngine: GenerationEngine, @unchecked Sendable {
    let baseName = "fake-base"
    let contextLength = 200
    private let lock = NSLock()
    private var adapters: [String: ServedModel] = [:]
    private(set) var cancelledIDs: [String] = []
    private(set) var submitted: [GenerationRequest] = []
    private var counters = EngineMetrics()

    var models: [ServedModel] {
        lock.withLock { [ServedModel(name: baseName, parent: nil, directory: "/models/fake", rank: nil)] + adapters.values.sorted { $0.name < $1.name } }
    }
    var isReady: Bool { true }

    func loadAdapter(name: String, directory: String) throws -> ServedModel {
        guard FileManager.default.fileExists(atPath: directory + "/adapter_config.json") else {
            throw EngineError.adapterRejected(name: name, reason: "\(directory)/adapter_config.json is missing")
        }
        let m = ServedModel(name: name, parent: baseName, directory: directory, rank: 8)
        lock.withLock { adapters[name] = m }
        return m
    }

    func unloadAdapter(name: String) throws {
        try lock.withLock {
            guard adapters.removeValue(forKey: name) != nil else { throw EngineError.unknownModel(name) }
        }
    }

    func render(_ chat: ChatPrompt, model: String?) throws -> RenderedPrompt {
        guard let messages = try JSONSerialization.jsonObject(with: Data(chat.messagesJSON.utf8)) as? [[String: Any]] else {
            throw EngineError.invalidRequest(field: "messages", message: "not a list")
        }
        var text = chat.toolsJSON.map { "<tools>\($0.prefix(40))</tools>\n" } ?? ""   // a prefix: the fake's context is small
        for m in messages { text += "<\(m["role"] as? String ?? "?")>\(m["content"] as? String ?? "")\n" }
        if chat.addGenerationPrompt { text += "<assistant>" }
        return RenderedPrompt(text: text, tokens: tokenize(text, addSpecialTokens: false))
    }

    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] { text.unicodeScalars.map { Int32($0.value) } }
    func detokenize(_ tokens: [Int32]) -> String {
        String(String.UnicodeScalarView(tokens.compactMap { Unicode.Scalar(UInt32($0)) }))
    }

    func answer(for r: GenerationRequest) -> String {
        let prompt = detokenize(r.prompt)
        if prompt.contains("TOOL") { return "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>" }
        if r.constraint != .none { return "{\"answer\": 42}" }
        return "\(r.model ?? "base") says hello world."
    }

    func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        if let m = request.model, !models.contains(where: { $0.name == m }) { throw EngineError.unknownModel(m) }
        if request.prompt.count + request.maxTokens > contextLength {
            throw EngineError.promptTooLong(tokens: request.prompt.count, limit: contextLength)
        }
        let prompt = detokenize(request.prompt)
        if prompt.contains("FULL") { throw EngineError.queueFull(retryAfterSeconds: 3) }
        lock.withLock {
            submitted.append(request)
            counters.requests[request.model ?? baseName, default: 0] += 1
            counters.steps += 1
            counters.maxAdaptersInOneStep = max(counters.maxAdaptersInOneStep, 2)
        }
        let slow = prompt.contains("SLOW")
        var text = answer(for: request)
        var reason = FinishReason.stop
        for s in request.stopStrings { if let r = text.range(of: s) { text = String(text[..<r.lowerBound]) } }
        var tokens = tokenize(text, addSpecialTokens: false)
        if tokens.count > request.maxTokens { tokens = Array(tokens.prefix(request.maxTokens)); reason = .length }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        let finished = Flag()
        continuation.onTermination = { [weak self] t in
            if case .cancelled = t, !finished.value { self?.lock.withLock { self?.cancelledIDs.append(request.id) } }
        }
        let logprob = { (t: Int32) in TokenLogprob(token: t, text: self.detokenize([t]), logprob: -0.5,
                                                   top: Array([TopLogprob(token: t, text: self.detokenize([t]), logprob: -0.5),
                                                               TopLogprob(token: 120, text: "x", logprob: -2)].prefix(request.topLogprobs))) }
        Task {
            if request.promptLogprobs {
                continuation.yield(.promptLogprobs(request.prompt.enumerated().map { i, t in
                    i == 0 ? nil : TokenLogprob(token: t, text: self.detokenize([t]), logprob: -1,
                                                top: request.topLogprobs > 0 ? [TopLogprob(token: t, text: self.detokenize([t]), logprob: -1)] : [])
                }))
            }
            for choice in 0..<request.n {
                for t in tokens {
                    if slow { try? await Task.sleep(nanoseconds: 50_000_000) }
                    if Task.isCancelled { return }
                    continuation.yield(.delta(choice: choice, tokens: [t], text: self.detokenize([t]),
                                              logprobs: request.logprobs ? [logprob(t)] : []))
                }
                let last = choice == request.n - 1
                continuation.yield(.finished(choice: choice, reason: reason,
                                             usage: last ? Usage(promptTokens: request.prompt.count, completionTokens: tokens.count * request.n) : nil))
            }
            finished.value = true
            continuation.finish()
        }
        return stream
    }

    func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult] {
        requests.map { r in
            let t = tokenize(answer(for: r), addSpecialTokens: false)
            return GenerationResult(id: r.id, choices: [GeneratedChoice(tokens: t, text: detokenize(t), logprobs: [], finishReason: .stop)],
                                    promptLogprobs: nil, usage: Usage(promptTokens: r.prompt.count, completionTokens: t.count))
        }
    }

    func metrics() -> EngineMetrics { lock.withLock { counters } }

    var cancelled: [String] { lock.withLock { cancelledIDs } }
    var lastRequest: GenerationRequest? { lock.withLock { submitted.last } }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var v = false
        var value: Bool { get { lock.withLock { v } } set { lock.withLock { v = newValue } } }
    }
}
