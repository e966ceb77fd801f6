import Foundation
import LoftInference
import LoftModels
import LoftTemplates

/// `loft eval` on one `LanguageModel` in this process: the base loaded once,
/// each adapter attached by name when its turn comes (the adapter-disabled
/// pass is the base). Log-likelihoods come straight from the model's forward
/// pass with a float64 log-softmax over each row, as exact as the forward.
public final class LocalEvalModel: EvalModel {
    public let languageModel: LanguageModel
    public let adapters: [(name: String, directory: String)]
    public var adapterNames: [String] { adapters.map(\.name) }
    private var attached: String?

    public init(languageModel: LanguageModel, adapters: [(name: String, directory: String)]) throws {
        self.languageModel = languageModel
        self.adapters = adapters
        attached = nil
        try languageModel.setAdapter(nil)
    }

    /// Attaches the adapter `model` names (nil detaches: the base).
    func use(_ model: String?) throws {
        if model == attached { return }
        if let model {
            guard let dir = adapters.first(where: { $0.name == model })?.directory else {
                throw EvalError.badArgument("--adapter", "no adapter is named `\(model)`")
            }
            try languageModel.setAdapter(dir)
        } else {
            try languageModel.setAdapter(nil)
        }
        attached = model
    }

    public func chatText(_ messages: [JinjaValue], model: String?, addGenerationPrompt: Bool) throws -> String {
        try use(model)
        guard let template = languageModel.template else {
            throw EvalError.badArgument("MODEL", "\(languageModel.path) has no chat template to render chat rows with; use prompt/completion rows or an lm-eval task with plain text")
        }
        return try template.render(messages: messages, addGenerationPrompt: addGenerationPrompt)
    }

    public func tokenize(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        languageModel.tokenizer.encode(text, addSpecialTokens: addSpecialTokens).map(Int32.init)
    }

    public func generate(_ prompts: [[Int32]], model: String?, maxTokens: Int, stop: [[String]]) throws -> [String] {
        try use(model)
        return prompts.enumerated().map { i, prompt in
            let text = languageModel.generate(prompt: prompt, maxNewTokens: maxTokens).text
            return Self.cut(text, at: stop[i])
        }
    }

    /// The text before the earliest stop string.
    static func cut(_ text: String, at stops: [String]) -> String {
        var end = text.endIndex
        for s in stops where !s.isEmpty {
            if let r = text.range(of: s), r.lowerBound < end { end = r.lowerBound }
        }
        return String(text[..<end])
    }

    public func logLikelihoods(_ requests: [LikelihoodRequest], model: String?) throws -> [LikelihoodResult] {
        try use(model)
        let lm = languageModel.model
        return requests.map { r in
            guard !r.continuation.isEmpty else { return LikelihoodResult(logLikelihood: 0, isGreedy: true) }
            // No context: score from the first continuation token on, after the
            // EOS as lm-eval does (its prefix token).
            var context = r.context
            if context.isEmpty { context = [Int32(languageModel.tokenizer.eosTokenID ?? 0)] }
            let input = context + r.continuation.dropLast()
            let rows = Array(context.count - 1 ..< input.count)
            let logits = lm.backend.download(lm.forward(ids: input, logitRows: rows))
            let vocab = lm.config.vocabSize
            var sum = 0.0, greedy = true
            for (k, target) in r.continuation.enumerated() {
                let row = logits[k * vocab ..< (k + 1) * vocab]
                var maxValue = -Double.infinity, argmax = 0
                for (j, v) in row.enumerated() where Double(v) > maxValue { maxValue = Double(v); argmax = j }
                var total = 0.0
                for v in row { total += exp(Double(v) - maxValue) }
                sum += Double(row[row.startIndex + Int(target)]) - maxValue - log(total)
                if argmax != Int(target) { greedy = false }
            }
            return LikelihoodResult(logLikelihood: sum, isGreedy: greedy)
        }
    }
}
