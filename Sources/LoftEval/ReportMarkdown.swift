import Foundation

/// report.md: the decision first, then every metric and difference.
public enum ReportMarkdown {
    static func f(_ x: Double?, _ digits: Int = 4) -> String {
        guard let x, x.isFinite else { return "–" }
        return String(format: "%.\(digits)f", x)
    }

    public static func render(_ r: EvalReport) -> String {
        var s = "# loft eval report\n\n"
        s += "Data: `\(r.source)` (\(r.items.count) items) · primary metric: `\(r.primaryMetric)` · PoC needs ≥ \(f(r.options.minGain, 1)) points · "
        s += "paired bootstrap: \(r.options.bootstrap.resamples) resamples, seed \(r.options.bootstrap.seed)\n\n"
        s += r.passed ? "**Every gate passed.**\n\n" : "**Gates failed:**\n\n" + r.failedGates.map { "- \($0)\n" }.joined() + "\n"
        s += "## Verdicts\n\n| adapter | PoC | gain (points) | 95% CI | vs previous | safety | note |\n|---|---|---|---|---|---|---|\n"
        for v in r.verdicts {
            s += "| \(v.name) | \(v.poc) | \(f(v.gainPoints, 2)) | \(f(v.gainInterval.low, 2)) … \(f(v.gainInterval.high, 2)) | "
            s += "\(v.regression.map { "\($0) (\(f(v.regressionPoints, 2)))" } ?? "–") | \(v.safety ?? "–") | \(v.notApplied ? "probably not applied" : "") |\n"
        }
        s += "\n## Scores\n\n| metric | " + r.models.map(\.name).joined(separator: " | ") + " |\n|---|" + r.models.map { _ in "---|" }.joined() + "\n"
        for m in r.metrics {
            s += "| \(m.name) | " + r.models.map { "\(f($0.metrics[m.name])) ± \(f($0.standardErrors[m.name]))" }.joined(separator: " | ") + " |\n"
        }
        s += "\nRates are fractions in [0, 1]; BLEU and chrF are on sacreBLEU's 0–100 scale; ± is the standard error.\n"
        s += "\n## Paired differences\n\n| model | against | metric | difference | 95% CI |\n|---|---|---|---|---|\n"
        for c in r.comparisons {
            s += "| \(c.model) | \(c.against) | \(c.metric) | \(f(c.difference)) | \(f(c.low)) … \(f(c.high)) |\n"
        }
        if let safety = r.safety {
            s += "\n## Safety\n\n| model | refuses harmful | refuses benign | gate (±\(f(safety.marginPoints, 1)) points) |\n|---|---|---|---|\n"
            for m in safety.models {
                s += "| \(m.name) | \(f(m.harmfulRefusalRate, 3)) | \(f(m.benignRefusalRate, 3)) | \(m.name == "base" ? "–" : (m.gatePassed ? "pass" : "fail: " + m.gateReason)) |\n"
            }
        }
        if !r.judge.isEmpty {
            s += "\n## Judge\n\n| model | against | wins | ties | losses | win rate | 95% CI | calls | cached |\n|---|---|---|---|---|---|---|---|---|\n"
            for j in r.judge {
                s += "| \(j.model) | \(j.against) | \(j.wins) | \(j.ties) | \(j.losses) | \(f(j.winRate, 3)) | \(f(j.low, 3)) … \(f(j.high, 3)) | \(j.calls) | \(j.cacheHits) |\n"
            }
        }
        s += "\nEvery model's answer to every item is in samples.jsonl; samples_<model>.jsonl follow lm-eval's --log_samples shape.\n"
        return s
    }
}
