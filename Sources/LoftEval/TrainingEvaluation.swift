import Foundation
import LoftData
import LoftInference
import LoftModels
import LoftTokenizers

/// Generation metrics on the validation split during training (config
/// `eval_metrics: [rougeL, contains]`): each validation example's prompt is
/// its tokens before the first trained one, its reference the trained span
/// that follows; the model being trained answers greedily.
public enum TrainingEvaluation {
    public static func generationMetrics(names: [String], validation: [TokenizedExample], tokenizer: Tokenizer,
                                         maxNewTokens: Int, limit: Int = 64) throws -> (LlamaModel) -> [String: Double] {
        let metrics = try Metric.named(names)
        if let bad = metrics.first(where: { $0.needs != .generation }) {
            throw EvalError.badArgument("eval_metrics", "`\(bad.name)` is not a generation metric; during training use \(Metric.all.values.filter { $0.needs == .generation }.map(\.name).sorted().joined(separator: ", ")) (the eval loss is always logged)")
        }
        // (prompt, reference) pairs from the first trained span of each example.
        let pairs: [(prompt: [Int32], reference: String)] = validation.prefix(limit).compactMap { ex in
            guard let start = ex.labels.firstIndex(where: { $0 >= 0 }), start > 0 else { return nil }
            var end = start
            while end < ex.labels.count && ex.labels[end] >= 0 { end += 1 }
            let reference = tokenizer.decode(ex.ids[start ..< end].map(Int.init), skipSpecialTokens: true)
            return (Array(ex.ids[..<start]), reference)
        }
        var stops = Set<Int32>()
        if let e = tokenizer.eosTokenID { stops.insert(Int32(e)) }
        for name in ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>"] {
            if let id = tokenizer.tokenToID(name), tokenizer.isSpecial(id) { stops.insert(Int32(id)) }
        }
        return { model in
            guard !pairs.isEmpty else { return [:] }
            var stopTokens = stops
            for id in model.config.eosTokenIDs { stopTokens.insert(Int32(id)) }
            let generator = Generator(model: model)
            let outcomes: [ItemOutcome] = pairs.map { pair in
                let ids = generator.generate(prompt: pair.prompt, maxNewTokens: maxNewTokens, stopTokens: stopTokens).tokens
                var o = ItemOutcome()
                o.prediction = tokenizer.decode(ids.filter { !stopTokens.contains($0) }.map(Int.init), skipSpecialTokens: true)
                o.references = [pair.reference.trimmingCharacters(in: .whitespacesAndNewlines)]
                return o
            }
            var out: [String: Double] = [:]
            for m in metrics { out[m.name] = m.aggregate(outcomes.map { m.statistics($0) }) }
            return out
        }
    }
}
