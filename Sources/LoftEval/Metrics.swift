import Foundation

/// What one metric needs from an item: the model's answer and the references
/// for generation metrics, or the scored log-likelihoods for the others.
public struct ItemOutcome: Sendable {
    public var prediction: String = ""
    public var references: [String] = []
    /// `contains` looks for this regex in the answer instead of a reference.
    public var pattern: NSRegularExpression? = nil
    /// Summed negative log-likelihood of the reference answer and its token count.
    public var referenceNLL: Double? = nil
    public var referenceTokens: Int? = nil
    /// Multiple choice: log-likelihood of each choice, its length in characters, the gold index.
    public var choiceLogLikelihoods: [Double]? = nil
    public var choiceCharacters: [Int]? = nil
    public var gold: Int? = nil
    /// Preference rows: implicit reward of chosen and rejected (β·(log π − log π_ref)).
    public var rewardChosen: Double? = nil
    public var rewardRejected: Double? = nil
    /// Preference rows: Σ log p of chosen and of rejected under the model itself.
    public var logpChosen: Double? = nil
    public var logpRejected: Double? = nil
    public init() {}
}

/// One metric: per-item statistics and how a set of items aggregates them.
/// Mean metrics keep one number per item; corpus metrics (BLEU, chrF, loss,
/// perplexity) keep sufficient statistics that are summed before scoring, so
/// a bootstrap resample is scored the way the whole set is.
public struct Metric: Sendable {
    public enum Scale: String, Sendable, Codable {
        /// A fraction in [0, 1]; one point is 0.01.
        case rate
        /// sacreBLEU's 0-100 scale; one point is 1.
        case score100
        /// Loss, perplexity, reward margin: its own units.
        case raw
    }
    public let name: String
    public let scale: Scale
    public let higherIsBetter: Bool
    public let isCorpus: Bool
    /// What it needs: generation, the reference's log-likelihood, choices, or preference pairs.
    public let needs: Needs
    let itemStatistics: @Sendable (ItemOutcome) -> [Double]
    let aggregateStatistics: @Sendable ([Double]) -> Double

    public enum Needs: String, Sendable { case generation, referenceLikelihood, choices, preference }

    /// Points per unit of the metric, for gains and gates ("5 points").
    public var pointsPerUnit: Double { scale == .rate ? 100 : 1 }

    public func statistics(_ outcome: ItemOutcome) -> [Double] { itemStatistics(outcome) }

    /// The metric over the items with these statistics (each item once per index).
    public func aggregate(_ stats: [[Double]], indices: [Int]? = nil) -> Double {
        let idx = indices ?? Array(stats.indices)
        guard let width = stats.first?.count, !idx.isEmpty else { return .nan }
        var sums = [Double](repeating: 0, count: width)
        for i in idx { for k in 0 ..< width { sums[k] += stats[i][k] } }
        if !isCorpus { return sums[0] / Double(idx.count) }
        return aggregateStatistics(sums)
    }

    static func mean(_ name: String, needs: Needs = .generation, scale: Scale = .rate, higherIsBetter: Bool = true,
                     _ f: @escaping @Sendable (ItemOutcome) -> Double) -> Metric {
        Metric(name: name, scale: scale, higherIsBetter: higherIsBetter, isCorpus: false, needs: needs,
               itemStatistics: { [f($0)] }, aggregateStatistics: { $0[0] })
    }

    static func bestOf(_ o: ItemOutcome, _ score: (String) -> Double) -> Double {
        o.references.map(score).max() ?? 0
    }

    /// Every metric `loft eval` knows, by name.
    public static let all: [String: Metric] = {
        var m: [String: Metric] = [:]
        func add(_ metric: Metric) { m[metric.name] = metric }
        add(.mean("exact_match") { o in
            o.references.contains { $0.unicodeScalars.elementsEqual(o.prediction.unicodeScalars) } ? 1 : 0
        })
        add(.mean("squad_em") { Squad.exactMatch(prediction: $0.prediction, references: $0.references) })
        add(.mean("squad_f1") { Squad.f1(prediction: $0.prediction, references: $0.references) })
        add(.mean("contains") { o in TextMatch.contains(o.prediction, references: o.references, pattern: o.pattern) ? 1 : 0 })
        // rouge-score's score_multi keeps, per type, the reference with the best F-measure.
        add(.mean("rouge1") { o in Metric.bestOf(o) { Rouge.n(1, target: $0, prediction: o.prediction).fmeasure } })
        add(.mean("rouge2") { o in Metric.bestOf(o) { Rouge.n(2, target: $0, prediction: o.prediction).fmeasure } })
        add(.mean("rougeL") { o in Metric.bestOf(o) { Rouge.l(target: $0, prediction: o.prediction).fmeasure } })
        add(.mean("rougeLsum") { o in Metric.bestOf(o) { Rouge.lsum(target: $0, prediction: o.prediction).fmeasure } })
        add(Metric(name: "bleu", scale: .score100, higherIsBetter: true, isCorpus: true, needs: .generation,
                   itemStatistics: { SacreBLEU.bleuStatistics(hypothesis: $0.prediction, references: $0.references) },
                   aggregateStatistics: { SacreBLEU.bleu(statistics: $0) }))
        add(Metric(name: "chrf", scale: .score100, higherIsBetter: true, isCorpus: true, needs: .generation,
                   itemStatistics: { SacreBLEU.chrfStatistics(hypothesis: $0.prediction, references: $0.references) },
                   aggregateStatistics: { SacreBLEU.chrf(statistics: $0) }))
        // Token-weighted over the whole set, as a validation loss is.
        add(Metric(name: "loss", scale: .raw, higherIsBetter: false, isCorpus: true, needs: .referenceLikelihood,
                   itemStatistics: { [$0.referenceNLL ?? .nan, Double($0.referenceTokens ?? 0)] },
                   aggregateStatistics: { $0[1] > 0 ? $0[0] / $0[1] : .nan }))
        add(Metric(name: "perplexity", scale: .raw, higherIsBetter: false, isCorpus: true, needs: .referenceLikelihood,
                   itemStatistics: { [$0.referenceNLL ?? .nan, Double($0.referenceTokens ?? 0)] },
                   aggregateStatistics: { $0[1] > 0 ? exp($0[0] / $0[1]) : .nan }))
        // lm-evaluation-harness: argmax of the summed log-likelihoods; acc_norm
        // divides each by the choice's length in characters.
        add(.mean("acc", needs: .choices) { o in
            guard let ll = o.choiceLogLikelihoods, let gold = o.gold else { return .nan }
            return Metric.argmax(ll) == gold ? 1 : 0
        })
        add(.mean("acc_norm", needs: .choices) { o in
            guard let ll = o.choiceLogLikelihoods, let chars = o.choiceCharacters, let gold = o.gold else { return .nan }
            return Metric.argmax(zip(ll, chars).map { $0 / Double($1) }) == gold ? 1 : 0
        })
        // The model's own preference, no reference: does it give the chosen
        // completion more log-probability than the rejected one (TRL's
        // logps/chosen against logps/rejected)? Defined for the base too,
        // where the implicit reward (the base against itself) is 0 for both.
        add(.mean("logp_accuracy", needs: .preference) { o in
            guard let c = o.logpChosen, let r = o.logpRejected else { return .nan }
            return c > r ? 1 : 0
        })
        add(.mean("logp_margin", needs: .preference, scale: .raw) { o in
            guard let c = o.logpChosen, let r = o.logpRejected else { return .nan }
            return c - r
        })
        add(.mean("reward_accuracy", needs: .preference) { o in
            guard let c = o.rewardChosen, let r = o.rewardRejected else { return .nan }
            return c > r ? 1 : 0
        })
        add(.mean("reward_margin", needs: .preference, scale: .raw) { o in
            guard let c = o.rewardChosen, let r = o.rewardRejected else { return .nan }
            return c - r
        })
        return m
    }()

    /// Looks up names given on the command line or in a config; the error lists the known ones.
    public static func named(_ names: [String]) throws -> [Metric] {
        try names.map { name in
            guard let metric = all[name] else {
                throw EvalError.badArgument("--metrics", "unknown metric `\(name)`; known: \(all.keys.sorted().joined(separator: ", "))")
            }
            return metric
        }
    }

    /// numpy's argmax: the first of equal maxima.
    static func argmax(_ values: [Double]) -> Int {
        var best = 0
        for i in values.indices where values[i] > values[best] { best = i }
        return best
    }
}

enum TextMatch {
    /// Whether a reference (code-point substring, as Python's `in`) or the
    /// pattern (a regex search) occurs in the answer.
    static func contains(_ answer: String, references: [String], pattern: NSRegularExpression?) -> Bool {
        if let pattern {
            return pattern.firstMatch(in: answer, range: NSRange(answer.startIndex..., in: answer)) != nil
        }
        let a = Array(answer.unicodeScalars)
        return references.contains { ref in
            let r = Array(ref.unicodeScalars)
            if r.isEmpty { return true }
            if r.count > a.count { return false }
            for i in 0 ... a.count - r.count where a[i] == r[0] && Array(a[i ..< i + r.count]) == r { return true }
            return false
        }
    }
}

/// Errors of `loft eval`, each naming what to fix.
public enum EvalError: Error, CustomStringConvertible {
    case badArgument(String, String)
    case badData(file: String, row: Int?, field: String?, message: String)
    case judge(String)

    public var description: String {
        switch self {
        case .badArgument(let flag, let message): return "\(flag): \(message)"
        case .badData(let file, let row, let field, let message):
            var s = file
            if let row { s += ", row \(row + 1)" }
            if let field { s += ", field `\(field)`" }
            return "\(s): \(message)"
        case .judge(let message): return "judge: \(message)"
        }
    }
}
