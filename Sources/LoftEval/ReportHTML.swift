import Foundation

/// report.html: one self-contained page (inline CSS and SVG charts drawn
/// here, no scripts or external assets) that opens in any browser.
public enum ReportHTML {
    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
    static func f(_ x: Double?, _ digits: Int = 3) -> String { ReportMarkdown.f(x, digits) }
    static let palette = ["#8a94a6", "#2f6fde", "#e0762b", "#2a9d6f", "#b5479b", "#c9a227", "#4aa3c8"]

    /// Horizontal grouped bars: one group per metric, one bar per model, with ±1.96·SE whiskers.
    static func scoreChart(_ r: EvalReport, metrics: [Metric], title: String) -> String {
        guard !metrics.isEmpty else { return "" }
        let rowH = 16.0, gap = 14.0, left = 120.0, width = 640.0, plotW = width - left - 70
        let groupH = Double(r.models.count) * rowH + gap
        let height = Double(metrics.count) * groupH + 40
        // One axis per chart: rates are shown as points (×100), 0–100 scores as they are.
        func scaled(_ m: Metric, _ x: Double) -> Double { m.scale == .rate ? x * 100 : x }
        let maxValue = max(100, metrics.flatMap { m in r.models.map { scaled(m, ($0.metrics[m.name] ?? 0)) } }.filter(\.isFinite).max() ?? 100)
        func x(_ v: Double) -> Double { left + max(0, min(v, maxValue)) / maxValue * plotW }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(esc(title))\">"
        s += "<text x=\"\(left)\" y=\"14\" class=\"t\">\(esc(title))</text>"
        for tick in stride(from: 0.0, through: maxValue, by: maxValue / 4) {
            s += "<line x1=\"\(x(tick))\" y1=\"22\" x2=\"\(x(tick))\" y2=\"\(height - 14)\" class=\"grid\"/>"
            s += "<text x=\"\(x(tick))\" y=\"\(height - 2)\" class=\"ax\" text-anchor=\"middle\">\(Int(tick))</text>"
        }
        for (gi, m) in metrics.enumerated() {
            let y0 = 26 + Double(gi) * groupH
            s += "<text x=\"\(left - 8)\" y=\"\(y0 + groupH / 2 - 4)\" class=\"lab\" text-anchor=\"end\">\(esc(m.name))</text>"
            for (mi, model) in r.models.enumerated() {
                let v = scaled(m, model.metrics[m.name] ?? .nan)
                let y = y0 + Double(mi) * rowH
                guard v.isFinite else { continue }
                let color = palette[mi % palette.count]
                s += "<rect x=\"\(left)\" y=\"\(y)\" width=\"\(max(0.5, x(v) - left))\" height=\"\(rowH - 3)\" fill=\"\(color)\" rx=\"2\"><title>\(esc(model.name)) \(esc(m.name)) \(f(model.metrics[m.name], 4))</title></rect>"
                if let se = model.standardErrors[m.name], se.isFinite {
                    let lo = x(scaled(m, (model.metrics[m.name] ?? 0) - 1.96 * se)), hi = x(scaled(m, (model.metrics[m.name] ?? 0) + 1.96 * se))
                    s += "<line x1=\"\(lo)\" y1=\"\(y + (rowH - 3) / 2)\" x2=\"\(hi)\" y2=\"\(y + (rowH - 3) / 2)\" class=\"err\"/>"
                }
                s += "<text x=\"\(x(v) + 4)\" y=\"\(y + rowH - 5)\" class=\"val\">\(f(model.metrics[m.name], m.scale == .rate ? 3 : 1))</text>"
            }
        }
        return s + "</svg>"
    }

    /// A forest plot of each adapter's gain over the base (points) with its paired-bootstrap 95% interval.
    static func gainChart(_ r: EvalReport, metrics: [Metric]) -> String {
        let rows = r.comparisons.filter { c in c.against == "base" && metrics.contains { $0.name == c.metric } }
        guard !rows.isEmpty else { return "" }
        let rowH = 20.0, left = 200.0, width = 640.0, plotW = width - left - 30
        let height = Double(rows.count) * rowH + 50
        let values = rows.flatMap { [$0.gainLowPoints, $0.gainHighPoints, $0.gainPoints] }.filter(\.isFinite) + [0, r.options.minGain]
        let lo = min(values.min() ?? 0, 0) - 2, hi = (values.max() ?? 10) + 2
        func x(_ v: Double) -> Double { left + (v - lo) / (hi - lo) * plotW }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"gain over the base\">"
        s += "<text x=\"\(left)\" y=\"14\" class=\"t\">Gain over the base (points, 95% paired bootstrap)</text>"
        s += "<line x1=\"\(x(0))\" y1=\"22\" x2=\"\(x(0))\" y2=\"\(height - 18)\" class=\"zero\"/>"
        s += "<line x1=\"\(x(r.options.minGain))\" y1=\"22\" x2=\"\(x(r.options.minGain))\" y2=\"\(height - 18)\" class=\"gate\"/>"
        s += "<text x=\"\(x(r.options.minGain) + 3)\" y=\"\(height - 6)\" class=\"ax\">PoC +\(f(r.options.minGain, 0))</text>"
        s += "<text x=\"\(x(0))\" y=\"\(height - 6)\" class=\"ax\" text-anchor=\"middle\">0</text>"
        for (i, c) in rows.enumerated() {
            let y = 30 + Double(i) * rowH
            let mi = r.models.firstIndex { $0.name == c.model } ?? 1
            let color = palette[mi % palette.count]
            s += "<text x=\"\(left - 8)\" y=\"\(y + 4)\" class=\"lab\" text-anchor=\"end\">\(esc(c.model)) · \(esc(c.metric))</text>"
            if c.gainLowPoints.isFinite && c.gainHighPoints.isFinite {
                s += "<line x1=\"\(x(c.gainLowPoints))\" y1=\"\(y)\" x2=\"\(x(c.gainHighPoints))\" y2=\"\(y)\" stroke=\"\(color)\" stroke-width=\"3\"/>"
            }
            if c.gainPoints.isFinite {
                s += "<circle cx=\"\(x(c.gainPoints))\" cy=\"\(y)\" r=\"5\" fill=\"\(color)\"><title>\(f(c.gainPoints, 2)) points (\(f(c.gainLowPoints, 2)) … \(f(c.gainHighPoints, 2)))</title></circle>"
            }
        }
        return s + "</svg>"
    }

    public static func render(_ r: EvalReport) -> String {
        let shown = r.metrics.filter { $0.scale != .raw }, raw = r.metrics.filter { $0.scale == .raw }
        var s = """
        <!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>loft eval report</title>
        <style>
        body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:980px;color:#1d2330;padding:0 16px}
        h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e6ec;padding-bottom:4px}
        .meta{color:#5b6475}.pass{background:#dff3e8;color:#14653e}.fail{background:#fbe2e0;color:#9b1c12}.warn{background:#fdf0d5;color:#7a5200}
        .badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
        table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{border-bottom:1px solid #eceef2;padding:4px 10px;text-align:left}
        th{background:#f6f7f9}td.n{text-align:right;font-variant-numeric:tabular-nums}
        .banner{padding:10px 14px;border-radius:6px;margin:14px 0}.legend span{display:inline-block;margin-right:14px}
        .legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
        svg{display:block;margin:10px 0}svg .t{font-weight:600;font-size:12px}svg .lab{font-size:12px;fill:#1d2330}svg .ax{font-size:10px;fill:#5b6475}
        svg .val{font-size:10px;fill:#1d2330}svg .grid{stroke:#eceef2}svg .err{stroke:#1d2330;stroke-width:1}svg .zero{stroke:#5b6475}
        svg .gate{stroke:#14653e;stroke-dasharray:4 3}pre{white-space:pre-wrap;margin:0;font:12px/1.4 ui-monospace,Menlo,monospace}
        details{margin:6px 0;border:1px solid #eceef2;border-radius:6px;padding:6px 10px}summary{cursor:pointer}
        </style></head><body>
        <h1>loft eval report</h1>
        <div class="meta">\(esc(r.source)) · \(r.items.count) items · primary metric <b>\(esc(r.primaryMetric))</b> · PoC needs ≥ \(f(r.options.minGain, 1)) points · \(r.options.bootstrap.resamples) paired-bootstrap resamples (seed \(r.options.bootstrap.seed)) · \(esc(ISO8601DateFormatter().string(from: r.date)))</div>
        """
        s += r.passed ? "<div class=\"banner pass\"><b>Every gate passed.</b></div>"
            : "<div class=\"banner fail\"><b>Gates failed:</b><ul>" + r.failedGates.map { "<li>\(esc($0))</li>" }.joined() + "</ul></div>"
        s += "<h2>Verdicts</h2><table><tr><th>adapter</th><th>PoC</th><th>gain (points)</th><th>95% CI</th><th>vs previous</th><th>safety</th><th></th></tr>"
        func badge(_ v: String?) -> String {
            guard let v else { return "–" }
            let cls = v == "pass" ? "pass" : (v == "fail" || v == "regressed" ? "fail" : "warn")
            return "<span class=\"badge \(cls)\">\(esc(v))</span>"
        }
        for v in r.verdicts {
            s += "<tr><td>\(esc(v.name))</td><td>\(badge(v.poc))</td><td class=\"n\">\(f(v.gainPoints, 2))</td><td class=\"n\">\(f(v.gainInterval.low, 2)) … \(f(v.gainInterval.high, 2))</td>"
            s += "<td>\(v.regression.map { badge($0) + " " + f(v.regressionPoints, 2) } ?? "–")</td><td>\(badge(v.safety))</td><td>\(v.notApplied ? "<span class=\"badge warn\">probably not applied</span>" : "")</td></tr>"
        }
        s += "</table>"
        s += "<h2>Scores</h2><div class=\"legend\">" + r.models.enumerated().map { i, m in "<span><i style=\"background:\(palette[i % palette.count])\"></i>\(esc(m.name))</span>" }.joined() + "</div>"
        s += scoreChart(r, metrics: shown, title: "Scores (rates ×100; BLEU and chrF 0–100; whiskers ±1.96 SE)")
        s += gainChart(r, metrics: shown)
        s += "<table><tr><th>metric</th>" + r.models.map { "<th>\(esc($0.name))</th>" }.joined() + "</tr>"
        for m in r.metrics {
            s += "<tr><td>\(esc(m.name))\(m.higherIsBetter ? "" : " ↓")</td>" + r.models.map { "<td class=\"n\">\(f($0.metrics[m.name], 4)) ± \(f($0.standardErrors[m.name], 4))</td>" }.joined() + "</tr>"
        }
        s += "</table>"
        if !raw.isEmpty {
            s += "<p class=\"meta\">↓ lower is better. " + raw.map { m in "\(esc(m.name)): " + r.models.map { "\(esc($0.name)) \(f($0.metrics[m.name], 4))" }.joined(separator: ", ") }.joined(separator: " · ") + "</p>"
        }
        s += "<h2>Paired differences</h2><table><tr><th>model</th><th>against</th><th>metric</th><th>difference</th><th>95% CI</th></tr>"
        for c in r.comparisons {
            s += "<tr><td>\(esc(c.model))</td><td>\(esc(c.against))</td><td>\(esc(c.metric))</td><td class=\"n\">\(f(c.difference, 4))</td><td class=\"n\">\(f(c.low, 4)) … \(f(c.high, 4))</td></tr>"
        }
        s += "</table>"
        if let safety = r.safety {
            s += "<h2>Safety</h2><table><tr><th>model</th><th>refuses harmful</th><th>refuses benign</th><th>gate (±\(f(safety.marginPoints, 1)) points)</th></tr>"
            for m in safety.models {
                s += "<tr><td>\(esc(m.name))</td><td class=\"n\">\(f(m.harmfulRefusalRate))</td><td class=\"n\">\(f(m.benignRefusalRate))</td><td>\(m.name == "base" ? "–" : badge(m.gatePassed ? "pass" : "fail") + " " + esc(m.gateReason))</td></tr>"
            }
            s += "</table>"
        }
        if !r.judge.isEmpty {
            s += "<h2>Judge</h2><table><tr><th>model</th><th>against</th><th>wins</th><th>ties</th><th>losses</th><th>win rate</th><th>95% CI</th><th>calls</th><th>cached</th></tr>"
            for j in r.judge {
                s += "<tr><td>\(esc(j.model))</td><td>\(esc(j.against))</td><td class=\"n\">\(j.wins)</td><td class=\"n\">\(j.ties)</td><td class=\"n\">\(j.losses)</td><td class=\"n\">\(f(j.winRate))</td><td class=\"n\">\(f(j.low)) … \(f(j.high))</td><td class=\"n\">\(j.calls)</td><td class=\"n\">\(j.cacheHits)</td></tr>"
            }
            s += "</table>"
        }
        s += examples(r)
        return s + "<p class=\"meta\">Every answer is in samples.jsonl. Written by loft eval.</p></body></html>\n"
    }

    /// Items where an adapter and the base differ most on the primary metric: its wins, then its losses.
    static func examples(_ r: EvalReport) -> String {
        guard r.models.count > 1, let metric = r.metrics.first(where: { $0.name == r.primaryMetric }) else { return "" }
        let base = r.models[0], tuned = r.models[1]
        let sign = metric.higherIsBetter ? 1.0 : -1.0
        let deltas = r.items.indices.map { i in
            sign * (metric.aggregate([tuned.statistics[metric.name]![i]]) - metric.aggregate([base.statistics[metric.name]![i]]))
        }
        let order = r.items.indices.sorted { deltas[$0] > deltas[$1] }
        let wins = order.filter { deltas[$0] > 0 }.prefix(5), losses = order.reversed().filter { deltas[$0] < 0 }.prefix(5)
        var s = "<h2>Answers: \(esc(tuned.name)) against the base on \(esc(metric.name))</h2>"
        for (label, set) in [("wins", Array(wins)), ("losses", Array(losses))] {
            s += "<p><b>\(set.count) largest \(label)</b>\(set.isEmpty ? " – none" : "")</p>"
            for i in set {
                s += "<details><summary>#\(r.items[i].id): \(esc(String(r.items[i].promptText.prefix(110))))</summary><table>"
                s += "<tr><th>reference</th><td><pre>\(esc(r.items[i].references.first ?? ""))</pre></td></tr>"
                for m in r.models {
                    s += "<tr><th>\(esc(m.name))</th><td><pre>\(esc(m.answers[i]))</pre></td></tr>"
                }
                s += "</table></details>"
            }
        }
        return s
    }
}
