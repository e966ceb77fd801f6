import Foundation
import LoftEngine
@testable import LoftEval
import LoftTemplates

/// A deterministic stand-in for the batched engine: tokens are Unicode
/// scalars, a chat renders as "role: content" lines, answers come from a
/// script per model, and log-probabilities are a fixed function of the
/// token, its position and the model. It records how requests were batched.
final class FakeEngine: GenerationEngine, @unchecked Sendable {
    let baseName = "fake-base"
    let contextLength = 4096
    var models: [ServedModel] { [ServedModel(name: baseName, parent: nil, directory: nil, rank: nil)] }
    let isReady = true
    /// (model, prompt text) → answer.
    let answer: (String?, String) -> String
    private(set) var batchSizes: [Int] = []

    init(answer: @escaping (String?, String) -> String) { self.answer = answer }

    func loadAdapter(name: String, directory: String) throws -> ServedModel { ServedModel(name: name, parent: baseName, directory: directory, rank: 8) }
    func unloadAdapter(name: String) throws {}

    func render(_ chat: ChatPrompt, model: String?) throws -> RenderedPrompt {
        guard case .array(let messages) = try JSONReader.parse(chat.messagesJSON) else { throw EngineError.invalidRequest(field: "messages", message: "not a list") }
        var text = messages.map { "\($0["role"]?.stringValue ?? ""): \($0["content"]?.stringValue ?? "")\n" }.joined()
        if chat.addGenerationPrompt { text += "assistant:" }
        return RenderedPrompt(text: text, tokens: tokenize(text, addSpecialTokens: false))
    }
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] { text.unicodeScalars.map { Int32($0.value) } }
    func detokenize(_ tokens: [Int32]) -> String { String(String.UnicodeScalarView(tokens.compactMap { Unicode.Scalar(UInt32($0)) })) }

    func submit(_ request: GenerationRequest) throws -> AsyncThrowingStream<GenerationEvent, Error> {
        let result = try generate([request])[0]
        return AsyncThrowingStream { c in
            c.yield(.delta(choice: 0, tokens: result.choices[0].tokens, text: result.choices[0].text, logprobs: []))
            c.yield(.finished(choice: 0, reason: .stop, usage: result.usage)); c.finish()
        }
    }

    static func logprob(token: Int32, position: Int, model: String?) -> Float {
        -Float((Int(token) &* 31 &+ position) % 7 + 1) / 4 + (model == nil ? 0 : 0.125)
    }

    func generate(_ requests: [GenerationRequest]) throws -> [GenerationResult] {
        batchSizes.append(requests.count)
        return requests.map { r in
            var text = answer(r.model, detokenize(r.prompt))
            for s in r.stopStrings where !s.isEmpty { if let range = text.range(of: s) { text = String(text[..<range.lowerBound]) } }
            let tokens = tokenize(text, addSpecialTokens: false)
            var prompt: [TokenLogprob?]? = nil
            if r.promptLogprobs {
                prompt = [nil] + r.prompt.enumerated().dropFirst().map { i, t in
                    let lp = Self.logprob(token: t, position: i, model: r.model)
                    // The top alternative is better than the token at every 5th position.
                    let top = i % 5 == 0 ? TopLogprob(token: t + 1, text: "", logprob: lp + 0.5) : TopLogprob(token: t, text: "", logprob: lp)
                    return TokenLogprob(token: t, text: "", logprob: lp, top: [top])
                }
            }
            return GenerationResult(id: r.id, choices: [GeneratedChoice(tokens: tokens, text: text, logprobs: [], finishReason: .stop)],
                                    promptLogprobs: prompt, usage: Usage(promptTokens: r.prompt.count, completionTokens: tokens.count))
        }
    }

    func metrics() -> EngineMetrics { EngineMetrics() }
}
