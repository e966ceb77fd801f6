import Foundation
import LoftEngine
import LoftTemplates

/// A log-likelihood request as lm-evaluation-harness forms it: the summed
/// log-probability of `continuation` after `context`, and whether greedy
/// decoding would have produced exactly the continuation.
public struct LikelihoodRequest: Sendable, Equatable {
    public var context: [Int32]
    public var continuation: [Int32]
    public init(context: [Int32], continuation: [Int32]) { self.context = context; self.continuation = continuation }
}

public struct LikelihoodResult: Sendable, Equatable {
    public var logLikelihood: Double
    public var isGreedy: Bool
    public init(logLikelihood: Double, isGreedy: Bool) { self.logLikelihood = logLikelihood; self.isGreedy = isGreedy }
}

/// What `loft eval` needs from the models under test: one base with adapters
/// addressed by name (nil is the base, the adapter-disabled pass).
public protocol EvalModel: AnyObject {
    /// The adapters that can be named, in the order given.
    var adapterNames: [String] { get }
    /// Chat text rendered with the template of `model` (each adapter's own saved template).
    func chatText(_ messages: [JinjaValue], model: String?, addGenerationPrompt: Bool) throws -> String
    /// Token ids of text; special tokens (e.g. BOS) only when asked.
    func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32]
    /// Greedy answers to `prompts` (ids), cut before the first stop string of each.
    /// The whole call is one batch: results never depend on how callers chunk it.
    func generate(_ prompts: [[Int32]], model: String?, maxTokens: Int, stop: [[String]]) throws -> [String]
    /// Log-likelihoods under `model`.
    func logLikelihoods(_ requests: [LikelihoodRequest], model: String?) throws -> [LikelihoodResult]
}

extension EvalModel {
    /// lm-evaluation-harness's `_encode_pair`: trailing spaces of the context
    /// move to the continuation, the pair is encoded whole, and the
    /// continuation is what follows the context's own tokens.
    public func encodePair(context: String, continuation: String) -> LikelihoodRequest {
        var context = Array(context.unicodeScalars), continuation = Array(continuation.unicodeScalars)
        var moved = 0
        while let last = context.last, last == " " { context.removeLast(); moved += 1 }
        continuation = [Unicode.Scalar](repeating: " ", count: moved) + continuation
        let whole = tokenize((context + continuation).string, addSpecialTokens: false)
        let ctx = tokenize(context.string, addSpecialTokens: false)
        return LikelihoodRequest(context: ctx, continuation: Array(whole[min(ctx.count, whole.count)...]))
    }

    /// The prompt and reply of a chat as tokens: the prompt rendered for the
    /// reply, and the reply as the tokens the whole rendered conversation adds
    /// after it (when the prompt is not a token prefix of the whole, the reply
    /// alone is tokenized).
    public func chatPair(_ messages: [JinjaValue], reply: String, model: String?) throws -> LikelihoodRequest {
        let promptText = try chatText(messages, model: model, addGenerationPrompt: true)
        let whole = try chatText(messages + [["role": "assistant", "content": .string(reply)]], model: model, addGenerationPrompt: false)
        let prompt = tokenize(promptText, addSpecialTokens: false)
        let all = tokenize(whole, addSpecialTokens: false)
        if all.count > prompt.count && Array(all[..<prompt.count]) == prompt {
            return LikelihoodRequest(context: prompt, continuation: Array(all[prompt.count...]))
        }
        return LikelihoodRequest(context: prompt, continuation: tokenize(reply, addSpecialTokens: false))
    }
}

/// `loft eval` over the shared batched generation engine (`GenerationEngine`):
/// one base in memory, adapters by name, generation batched by the engine,
/// log-likelihoods from its prompt log-probabilities.
public final class EngineEvalModel: EvalModel {
    public let engine: GenerationEngine
    public let adapterNames: [String]
    /// What a continuation with no context is scored after (lm-eval's prefix
    /// token: the EOS id).
    public let emptyContextToken: Int32

    public init(engine: GenerationEngine, adapters: [String], emptyContextToken: Int32 = 0) {
        self.engine = engine; adapterNames = adapters; self.emptyContextToken = emptyContextToken
    }

    public func chatText(_ messages: [JinjaValue], model: String?, addGenerationPrompt: Bool) throws -> String {
        let json = JinjaValue.array(messages).jsonText()
        return try engine.render(ChatPrompt(messagesJSON: json, addGenerationPrompt: addGenerationPrompt), model: model).text
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        engine.tokenize(text, addSpecialTokens: addSpecialTokens)
    }

    public func generate(_ prompts: [[Int32]], model: String?, maxTokens: Int, stop: [[String]]) throws -> [String] {
        let requests = prompts.enumerated().map { i, p in
            GenerationRequest(id: "eval-\(i)", model: model, prompt: p, maxTokens: maxTokens, sampling: .greedy, stopStrings: stop[i])
        }
        return try engine.generate(requests).map { $0.choices.first?.text ?? "" }
    }

    public func logLikelihoods(_ requests: [LikelihoodRequest], model: String?) throws -> [LikelihoodResult] {
        let requests = requests.map { r in
            r.context.isEmpty ? LikelihoodRequest(context: [emptyContextToken], continuation: r.continuation) : r
        }
        let generation = requests.enumerated().map { i, r in
            GenerationRequest(id: "ll-\(i)", model: model, prompt: r.context + r.continuation, maxTokens: 0,
                              sampling: .greedy, ignoreEOS: true, topLogprobs: 1, promptLogprobs: true,
                              promptLogprobsFrom: r.context.count)
        }
        let results = try engine.generate(generation)
        return zip(requests, results).map { r, result in
            let logprobs = result.promptLogprobs ?? []
            var sum = 0.0, greedy = true
            for k in 0 ..< r.continuation.count {
                let position = r.context.count + k
                guard position < logprobs.count, let lp = logprobs[position] else { return LikelihoodResult(logLikelihood: .nan, isGreedy: false) }
                sum += Double(lp.logprob)
                if let best = lp.top.first, best.token != lp.token, best.logprob > lp.logprob { greedy = false }
            }
            return LikelihoodResult(logLikelihood: sum, isGreedy: greedy)
        }
    }
}
