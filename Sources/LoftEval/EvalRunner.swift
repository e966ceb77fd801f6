import Foundation
import LoftTemplates

/// How an evaluation runs and what it decides.
public struct EvalOptions {
    /// Metric names; empty picks the defaults for the items' kinds.
    public var metrics: [String] = []
    /// The metric the PoC and regression verdicts are taken on (default: the first).
    public var primaryMetric: String? = nil
    public var maxTokens = 256
    /// Requests handed to the model per call. Scores never depend on it.
    public var batchSize = 8
    public var bootstrap = Bootstrap()
    /// PoC: an adapter passes when it beats the base by this many points.
    public var minGain = 5.0
    /// Regression: an adapter fails when it trails `--previous` by more than this many points.
    public var maxRegression = 0.0
    /// `contains` looks for this regex instead of the reference.
    public var pattern: NSRegularExpression? = nil
    /// β of the implicit reward for preference rows.
    public var beta = 0.1
    /// The adapter that is the previous one (compared against each other adapter).
    public var previous: String? = nil
    /// Stop strings for generation rows (lm-eval's `until`; tasks bring their own).
    public var stop: [String] = []
    public var safety: SafetyOptions? = nil
    public var judge: JudgeClient? = nil
    /// Progress lines (stderr in the CLI).
    public var log: (String) -> Void = { _ in }
    public init() {}
}

/// One model's scores.
public struct ModelResult {
    /// "base" or the adapter's name.
    public var name: String
    /// nil for the base.
    public var adapter: String?
    public var metrics: [String: Double] = [:]
    public var standardErrors: [String: Double] = [:]
    /// Per item: the answer (generation), or the chosen choice (multiple choice).
    public var answers: [String] = []
    public var outcomes: [ItemOutcome] = []
    /// Per metric, per item statistics.
    public var statistics: [String: [[Double]]] = [:]
    /// Per item, the raw log-likelihood results (multiple choice and loglikelihood items), for lm-eval samples.
    public var likelihoods: [[LikelihoodResult]] = []
    /// Per item, the prompt text as this model saw it (its own chat template).
    public var contexts: [String] = []
}

/// The difference `model − against` of one metric with its paired-bootstrap interval.
public struct Comparison {
    public var model: String
    public var against: String
    public var metric: String
    public var difference: Double
    public var low: Double
    public var high: Double
    /// In points (rates ×100), signed so that positive is better.
    public var gainPoints: Double
    public var gainLowPoints: Double
    public var gainHighPoints: Double
}

public struct AdapterVerdict {
    public var name: String
    /// "pass", "inconclusive" (the gain is there but its interval reaches 0) or "fail".
    public var poc: String
    public var gainPoints: Double
    public var gainInterval: (low: Double, high: Double)
    /// Answers and scores equal the base's on every item: probably not applied.
    public var notApplied: Bool
    /// Against `--previous`: "pass" or "regressed"; nil when there is no previous adapter.
    public var regression: String?
    public var regressionPoints: Double?
    /// Safety gate: "pass" or "fail"; nil when not run.
    public var safety: String?
}

public struct EvalReport {
    public var source: String
    public var items: [EvalItem]
    public var metrics: [Metric]
    public var primaryMetric: String
    public var models: [ModelResult]
    public var comparisons: [Comparison]
    public var verdicts: [AdapterVerdict]
    public var safety: SafetyReport?
    public var judge: [JudgeResult]
    public var options: EvalOptions
    public var date = Date()
    /// Gates that failed, in words; empty when every gate passed.
    public var failedGates: [String]
    public var passed: Bool { failedGates.isEmpty }
}

public enum EvalRunner {
    /// The metrics used when none are named, by item kind.
    public static func defaultMetrics(for items: [EvalItem]) -> [String] {
        var names: [String] = []
        let kinds = Set(items.map(\.kind))
        if kinds.contains(.generation) { names += ["contains", "rougeL", "rouge1", "squad_f1", "exact_match", "bleu", "chrf", "loss", "perplexity"] }
        if kinds.contains(.multipleChoice) { names += ["acc", "acc_norm"] }
        if kinds.contains(.loglikelihood) { names += ["loss", "perplexity"].filter { !names.contains($0) } }
        if kinds.contains(.preference) { names += ["logp_accuracy", "reward_accuracy", "reward_margin", "logp_margin"] }
        return names
    }

    public static func run(model: EvalModel, items: [EvalItem], source: String, options: EvalOptions) throws -> EvalReport {
        guard !items.isEmpty else { throw EvalError.badData(file: source, row: nil, field: nil, message: "holds no items") }
        let names = options.metrics.isEmpty ? defaultMetrics(for: items) : options.metrics
        let metrics = try Metric.named(names)
        try check(metrics, against: items, source: source)
        let primary = options.primaryMetric ?? names[0]
        guard let primaryMetric = metrics.first(where: { $0.name == primary }) else {
            throw EvalError.badArgument("--primary", "`\(primary)` is not among the metrics evaluated (\(names.joined(separator: ", ")))")
        }
        if options.batchSize < 1 { throw EvalError.badArgument("--batch-size", "must be at least 1") }

        let modelNames: [String?] = [nil] + model.adapterNames
        var results: [ModelResult] = []
        var baseLikelihoods: [ItemPairLikelihood] = []
        for name in modelNames {
            options.log("evaluating \(name ?? "the base") on \(items.count) items")
            var result = ModelResult(name: name ?? "base", adapter: name)
            let scored = try score(model: model, name: name, items: items, metrics: metrics, options: options,
                                   baseLikelihoods: name == nil ? nil : baseLikelihoods)
            if name == nil { baseLikelihoods = scored.pairLikelihoods }
            result.outcomes = scored.outcomes
            result.answers = scored.answers
            result.likelihoods = scored.likelihoods
            result.contexts = scored.contexts
            results.append(result)
        }

        let indexSets = options.bootstrap.indexSets(count: items.count)
        for i in results.indices {
            for metric in metrics {
                let stats = results[i].outcomes.map { metric.statistics($0) }
                results[i].statistics[metric.name] = stats
                results[i].metrics[metric.name] = metric.aggregate(stats)
                results[i].standardErrors[metric.name] = options.bootstrap.standardError(metric, stats, indexSets: indexSets)
            }
        }

        // Paired differences: each adapter against the base, and against the previous adapter.
        var comparisons: [Comparison] = []
        func compare(_ b: ModelResult, _ a: ModelResult) {
            for metric in metrics {
                let sa = a.statistics[metric.name]!, sb = b.statistics[metric.name]!
                let diff = metric.aggregate(sb) - metric.aggregate(sa)
                let ci = options.bootstrap.pairedInterval(metric, a: sa, b: sb, indexSets: indexSets)
                let sign = metric.higherIsBetter ? 1.0 : -1.0
                let p = metric.pointsPerUnit * sign
                let (lo, hi) = sign > 0 ? (ci.low * p, ci.high * p) : (ci.high * p, ci.low * p)
                comparisons.append(Comparison(model: b.name, against: a.name, metric: metric.name, difference: diff,
                                              low: ci.low, high: ci.high, gainPoints: diff * p, gainLowPoints: lo, gainHighPoints: hi))
            }
        }
        let previousName = options.previous
        for r in results.dropFirst() {
            compare(r, results[0])
            if let previousName, r.name != previousName, let prev = results.first(where: { $0.name == previousName }) { compare(r, prev) }
        }

        var safety: SafetyReport?
        if let s = options.safety {
            safety = try SafetyEvaluator.run(model: model, modelNames: modelNames, options: s, batchSize: options.batchSize, log: options.log)
        }
        var judged: [JudgeResult] = []
        if let judge = options.judge {
            let generationItems = items.indices.filter { items[$0].kind == .generation }
            if !generationItems.isEmpty {
                for r in results.dropFirst() {
                    var against = [results[0]]
                    if let previousName, r.name != previousName, let prev = results.first(where: { $0.name == previousName }) { against.append(prev) }
                    for a in against {
                        options.log("judging \(r.name) against \(a.name) on \(generationItems.count) items (both orders)")
                        judged.append(try judge.compare(model: r.name, answers: generationItems.map { r.answers[$0] },
                                                         against: a.name, baseline: generationItems.map { a.answers[$0] },
                                                         questions: generationItems.map { items[$0].promptText },
                                                         bootstrap: options.bootstrap))
                    }
                }
            }
        }

        var verdicts: [AdapterVerdict] = []
        var failed: [String] = []
        for r in results.dropFirst() {
            let vsBase = comparisons.first { $0.model == r.name && $0.against == "base" && $0.metric == primary }!
            let poc: String
            if vsBase.gainPoints >= options.minGain { poc = vsBase.gainLowPoints > 0 ? "pass" : "inconclusive" } else { poc = "fail" }
            // Same answers, same log-likelihoods and same scores on every item.
            let notApplied = r.answers == results[0].answers && r.likelihoods == results[0].likelihoods && metrics.allSatisfy { m in
                zip(r.statistics[m.name]!, results[0].statistics[m.name]!).allSatisfy { pair in
                    zip(pair.0, pair.1).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
                }
            }
            var verdict = AdapterVerdict(name: r.name, poc: poc, gainPoints: vsBase.gainPoints,
                                         gainInterval: (vsBase.gainLowPoints, vsBase.gainHighPoints), notApplied: notApplied)
            if r.name == previousName { verdict.poc = "n/a (previous)" }
            if let previousName, r.name != previousName,
               let vsPrev = comparisons.first(where: { $0.model == r.name && $0.against == previousName && $0.metric == primary }) {
                verdict.regressionPoints = vsPrev.gainPoints
                verdict.regression = (vsPrev.gainPoints < -options.maxRegression && vsPrev.gainHighPoints < 0) ? "regressed" : "pass"
                if verdict.regression == "regressed" {
                    failed.append("\(r.name) regressed against \(previousName) on \(primary) by \(fmt(-vsPrev.gainPoints)) points")
                }
            }
            if let safety, let s = safety.models.first(where: { $0.name == r.name }) {
                verdict.safety = s.gatePassed ? "pass" : "fail"
                if !s.gatePassed { failed.append("\(r.name) failed the safety gate: \(s.gateReason)") }
            }
            if r.name != previousName {
                if notApplied { failed.append("\(r.name) answers and scores exactly as the base on every item: the adapter was probably not applied") }
                else if poc != "pass" {
                    failed.append("\(r.name) PoC \(poc): \(primary) gain \(fmt(vsBase.gainPoints)) points (95% CI \(fmt(vsBase.gainLowPoints))..\(fmt(vsBase.gainHighPoints))), needs ≥ \(fmt(options.minGain))")
                }
            }
            verdicts.append(verdict)
        }
        _ = primaryMetric
        return EvalReport(source: source, items: items, metrics: metrics, primaryMetric: primary, models: results,
                          comparisons: comparisons, verdicts: verdicts, safety: safety, judge: judged, options: options,
                          failedGates: failed)
    }

    static func fmt(_ x: Double) -> String { String(format: "%.2f", x) }

    /// Each metric must fit the items: generation metrics need generation rows, and so on.
    static func check(_ metrics: [Metric], against items: [EvalItem], source: String) throws {
        let kinds = Set(items.map(\.kind))
        for m in metrics {
            let ok: Bool
            switch m.needs {
            case .generation: ok = kinds.contains(.generation)
            case .referenceLikelihood: ok = kinds.contains(.generation) || kinds.contains(.loglikelihood)
            case .choices: ok = kinds.contains(.multipleChoice)
            case .preference: ok = kinds.contains(.preference)
            }
            if !ok {
                throw EvalError.badArgument("--metrics", "`\(m.name)` needs \(m.needs.rawValue) items but \(source) holds \(kinds.map(\.rawValue).sorted().joined(separator: ", ")) items; the defaults for them are \(defaultMetrics(for: items).joined(separator: ", "))")
            }
        }
    }

    struct ItemPairLikelihood { var chosen: Double; var rejected: Double }

    struct Scored {
        var outcomes: [ItemOutcome]
        var answers: [String]
        var likelihoods: [[LikelihoodResult]]
        var pairLikelihoods: [ItemPairLikelihood]
        var contexts: [String]
    }

    /// Scores every item under one model. Generation is chunked by the batch
    /// size; everything else is per item, so nothing depends on the chunking.
    static func score(model: EvalModel, name: String?, items: [EvalItem], metrics: [Metric], options: EvalOptions,
                      baseLikelihoods: [ItemPairLikelihood]?) throws -> Scored {
        var outcomes = [ItemOutcome](repeating: ItemOutcome(), count: items.count)
        var answers = [String](repeating: "", count: items.count)
        var likelihoods = [[LikelihoodResult]](repeating: [], count: items.count)
        var pairs = [ItemPairLikelihood](repeating: ItemPairLikelihood(chosen: 0, rejected: 0), count: items.count)
        let needsGeneration = metrics.contains { $0.needs == .generation }
        let needsReference = metrics.contains { $0.needs == .referenceLikelihood }

        let contexts = try items.map { item -> String in
            switch item.prompt {
            case .chat(let m): return try model.chatText(m, model: name, addGenerationPrompt: true)
            case .text(let t): return t
            }
        }
        // Rendered chats carry their own special tokens; plain text is encoded
        // without added ones, as lm-eval's `hf` model does for causal LMs.
        func promptIDs(_ i: Int) -> [Int32] { model.tokenize(contexts[i], addSpecialTokens: false) }
        func referencePair(_ item: EvalItem, _ reply: String) throws -> LikelihoodRequest {
            switch item.prompt {
            case .chat(let m): return try model.chatPair(m, reply: reply, model: name)
            case .text(let t): return model.encodePair(context: t, continuation: reply)
            }
        }

        let generation = items.indices.filter { items[$0].kind == .generation }
        if needsGeneration && !generation.isEmpty {
            var done = 0
            for chunk in stride(from: 0, to: generation.count, by: options.batchSize) {
                let idx = Array(generation[chunk ..< min(chunk + options.batchSize, generation.count)])
                let prompts = idx.map { promptIDs($0) }
                let stops = idx.map { items[$0].until.isEmpty ? options.stop : items[$0].until }
                let texts = try model.generate(prompts, model: name, maxTokens: options.maxTokens, stop: stops)
                for (k, i) in idx.enumerated() { answers[i] = texts[k] }
                done += idx.count
                options.log("  \(name ?? "base"): generated \(done)/\(generation.count)")
            }
        }
        for i in items.indices {
            let item = items[i]
            var o = ItemOutcome()
            o.references = item.references
            o.prediction = answers[i]
            o.pattern = options.pattern
            switch item.kind {
            case .generation:
                if needsReference, let ref = item.references.first {
                    let req = try referencePair(item, ref)
                    o.referenceNLL = -(try model.logLikelihoods([req], model: name)[0].logLikelihood)
                    o.referenceTokens = req.continuation.count
                }
            case .loglikelihood:
                let req = try referencePair(item, item.targetDelimiter + (item.references.first ?? ""))
                let r = try model.logLikelihoods([req], model: name)
                likelihoods[i] = r
                o.referenceNLL = -r[0].logLikelihood
                o.referenceTokens = req.continuation.count
            case .multipleChoice:
                guard case .text(let context) = item.prompt else { break }
                let reqs = item.choices.map { model.encodePair(context: context, continuation: item.targetDelimiter + $0) }
                let r = try model.logLikelihoods(reqs, model: name)
                likelihoods[i] = r
                o.choiceLogLikelihoods = r.map(\.logLikelihood)
                o.choiceCharacters = item.choices.map { $0.unicodeScalars.count }   // Python's len()
                o.gold = item.gold
                let best = Metric.argmax(r.map(\.logLikelihood))
                answers[i] = item.choices[best]
            case .preference:
                let reqs = [try referencePair(item, item.chosen ?? ""), try referencePair(item, item.rejected ?? "")]
                let r = try model.logLikelihoods(reqs, model: name)
                likelihoods[i] = r
                pairs[i] = ItemPairLikelihood(chosen: r[0].logLikelihood, rejected: r[1].logLikelihood)
                let ref = baseLikelihoods?[i] ?? pairs[i]
                o.logpChosen = r[0].logLikelihood
                o.logpRejected = r[1].logLikelihood
                o.rewardChosen = options.beta * (r[0].logLikelihood - ref.chosen)
                o.rewardRejected = options.beta * (r[1].logLikelihood - ref.rejected)
                answers[i] = String(format: "reward chosen %.4f, rejected %.4f", o.rewardChosen!, o.rewardRejected!)
            }
            outcomes[i] = o
        }
        return Scored(outcomes: outcomes, answers: answers, likelihoods: likelihoods, pairLikelihoods: pairs, contexts: contexts)
    }
}
