import Foundation
import LoftData
import LoftTemplates

/// report.json, the `--json` output, samples.jsonl (every model's answer per
/// item) and samples_<model>.jsonl in lm-eval's `--log_samples` shape.
public enum ReportJSON {
    /// JSON has no NaN or infinity: they become null.
    static func number(_ x: Double?) -> Any { guard let x, x.isFinite else { return NSNull() }; return x }
    static func opt<T>(_ x: T?) -> Any { x.map { $0 as Any } ?? NSNull() }

    public static func object(_ r: EvalReport) -> [String: Any] {
        let results: [[String: Any]] = r.models.map { m in
            ["model": m.name, "adapter": opt(m.adapter),
             "metrics": m.metrics.mapValues { number($0) }, "stderr": m.standardErrors.mapValues { number($0) }]
        }
        var adapters: [String: Any] = [:]
        for v in r.verdicts {
            adapters[v.name] = [
                "poc": v.poc, "gain_points": number(v.gainPoints),
                "gain_ci95_points": [number(v.gainInterval.low), number(v.gainInterval.high)],
                "probably_not_applied": v.notApplied,
                "regression": opt(v.regression), "regression_points": number(v.regressionPoints),
                "safety": opt(v.safety),
            ] as [String: Any]
        }
        let verdicts: [String: Any] = [
            "primary_metric": r.primaryMetric, "min_gain_points": r.options.minGain, "max_regression_points": r.options.maxRegression,
            "previous": opt(r.options.previous), "passed": r.passed, "failed_gates": r.failedGates, "adapters": adapters,
        ]
        let comparisons: [[String: Any]] = r.comparisons.map { c in
            ["model": c.model, "against": c.against, "metric": c.metric, "difference": number(c.difference),
             "ci95": [number(c.low), number(c.high)], "gain_points": number(c.gainPoints),
             "gain_ci95_points": [number(c.gainLowPoints), number(c.gainHighPoints)]]
        }
        var out: [String: Any] = [
            "results": results, "verdicts": verdicts, "comparisons": comparisons,
            "config": [
                "source": r.source, "items": r.items.count, "metrics": r.metrics.map(\.name), "batch_size": r.options.batchSize,
                "max_tokens": r.options.maxTokens, "bootstrap_resamples": r.options.bootstrap.resamples,
                "seed": r.options.bootstrap.seed, "beta": r.options.beta,
                "pattern": opt(r.options.pattern?.pattern),
                "date": ISO8601DateFormatter().string(from: r.date),
            ] as [String: Any],
        ]
        if let s = r.safety {
            out["safety"] = ["margin_points": s.marginPoints, "models": s.models.map { m in
                ["model": m.name, "harmful_refusal_rate": m.harmfulRefusalRate, "benign_refusal_rate": m.benignRefusalRate,
                 "gate": opt(m.name == "base" ? nil : (m.gatePassed ? "pass" : "fail")), "reason": m.gateReason] as [String: Any]
            }] as [String: Any]
        }
        if !r.judge.isEmpty {
            out["judge"] = r.judge.map { j in
                ["model": j.model, "against": j.against, "wins": j.wins, "losses": j.losses, "ties": j.ties,
                 "win_rate": j.winRate, "ci95": [j.low, j.high], "calls": j.calls, "cache_hits": j.cacheHits] as [String: Any]
            }
        }
        return out
    }

    public static func text(_ object: Any, pretty: Bool = true) -> String {
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { options.insert(.prettyPrinted) }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: options) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    static func foundation(_ v: JinjaValue) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(v.jsonText().utf8), options: [.fragmentsAllowed])) ?? NSNull()
    }

    /// One line per item with every model's answer and per-item scores.
    public static func samples(_ r: EvalReport) -> String {
        r.items.indices.map { i in
            let item = r.items[i]
            var answers: [String: Any] = [:], scores: [String: Any] = [:]
            for m in r.models {
                answers[m.name] = m.answers[i]
                var s: [String: Any] = [:]
                for metric in r.metrics { s[metric.name] = number(metric.aggregate([m.statistics[metric.name]![i]])) }
                scores[m.name] = s
            }
            let line: [String: Any] = ["doc_id": item.id, "kind": item.kind.rawValue, "prompt": item.promptText,
                                       "references": item.references, "answers": answers, "scores": scores, "doc": foundation(item.doc)]
            return text(line, pretty: false)
        }.joined(separator: "\n") + "\n"
    }

    static func sha256(_ s: String) -> String { var h = SHA256(); h.update(Array(s.utf8)); return SHA256.hex(h.finalize()) }

    /// lm-eval's logged samples for one model (`--log_samples`).
    public static func lmEvalSamples(_ r: EvalReport, model m: ModelResult) -> String {
        r.items.indices.map { i in
            let item = r.items[i]
            let context = m.contexts.indices.contains(i) ? m.contexts[i] : item.promptText
            var line: [String: Any] = ["doc_id": item.id, "doc": foundation(item.doc), "filter": "none",
                                       "metrics": r.metrics.map(\.name), "prompt_hash": sha256(context),
                                       "doc_hash": sha256(item.doc.jsonText(indent: 2))]
            switch item.kind {
            case .multipleChoice:
                line["target"] = opt(item.gold)
                line["target_hash"] = sha256(String(item.gold ?? 0))
                line["arguments"] = item.choices.map { [context, item.targetDelimiter + $0] }
                line["resps"] = m.likelihoods[i].map { [[$0.logLikelihood, $0.isGreedy]] }
                line["filtered_resps"] = m.likelihoods[i].map { [$0.logLikelihood, $0.isGreedy] }
            case .loglikelihood, .preference:
                line["target"] = item.references.first ?? ""
                line["target_hash"] = sha256(item.references.first ?? "")
                line["arguments"] = [[context, item.targetDelimiter + (item.references.first ?? "")]]
                line["resps"] = m.likelihoods[i].map { [[$0.logLikelihood, $0.isGreedy]] }
                line["filtered_resps"] = m.likelihoods[i].map { [$0.logLikelihood, $0.isGreedy] }
            case .generation:
                let target = item.references.first ?? ""
                line["target"] = target
                line["target_hash"] = sha256(target)
                line["arguments"] = [[context, ["until": item.until.isEmpty ? r.options.stop : item.until, "max_gen_toks": r.options.maxTokens, "do_sample": false] as [String: Any]]]
                line["resps"] = [[m.answers[i]]]
                line["filtered_resps"] = [m.answers[i]]
            }
            for metric in r.metrics { line[metric.name] = number(metric.aggregate([m.statistics[metric.name]![i]])) }
            return text(line, pretty: false)
        }.joined(separator: "\n") + "\n"
    }

    /// Writes report.json, samples.jsonl and samples_<model>.jsonl into `directory`.
    public static func write(_ r: EvalReport, to directory: URL) throws {
        try text(object(r)).appending("\n").write(to: directory.appendingPathComponent("report.json"), atomically: true, encoding: .utf8)
        try samples(r).write(to: directory.appendingPathComponent("samples.jsonl"), atomically: true, encoding: .utf8)
        for m in r.models {
            let safe = String(m.name.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" ? Character($0) : "_" })
            try lmEvalSamples(r, model: m).write(to: directory.appendingPathComponent("samples_\(safe).jsonl"), atomically: true, encoding: .utf8)
        }
    }
}
