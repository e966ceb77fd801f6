import Foundation
import LoftRuns

/// The pages, rendered here as HTML (the script only refreshes parts of them).
struct Pages {
    let registry: RunRegistry
    let csrf: String?

    static let nav: [(path: String, title: String)] = [
        ("/", "Runs"), ("/new", "New run"), ("/compare", "Compare"), ("/data", "Data"), ("/chat", "Chat"), ("/system", "System"),
    ]

    func layout(_ title: String, active: String, _ body: String) -> String {
        let links = Self.nav.map { n in
            "<a href=\"\(n.path)\"\(n.path == active ? " class=\"active\"" : "")>\(n.title)</a>"
        }.joined()
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(h(title)) · Loft</title><link rel="stylesheet" href="/static/loft.css"><link rel="icon" href="data:,">
            </head><body>
            <header><a class="brand" href="/">Loft</a><nav>\(links)</nav></header>
            <main>
            \(body)
            </main>
            <script src="/static/loft.js"></script>
            </body></html>
            """
    }

    /// A hidden CSRF field for every form that posts.
    var csrfField: String { "<input type=\"hidden\" name=\"csrf\" value=\"\(h(csrf))\">" }

    static func badge(_ status: RunStatus) -> String {
        "<span class=\"badge \(status.rawValue)\" data-status>\(status.rawValue)</span>"
    }

    // MARK: Runs

    func runsList() throws -> String {
        let runs = try registry.runs()
        var rows = ""
        for r in runs {
            let losses = try r.kind == "train" ? registry.metrics(r.id).suffix(200).compactMap(\.loss) : []
            let end = r.endedAt ?? (r.status == .running ? Date() : nil)
            let duration = r.startedAt.flatMap { s in end.map { durationText($0.timeIntervalSince(s)) } } ?? "–"
            rows += """
                <tr data-run="\(h(r.id))"><td><input type="checkbox" name="runs" value="\(h(r.id))" aria-label="compare \(h(r.name))"></td>
                <td><a href="/runs/\(h(r.id))">\(h(r.name))</a><div class="sub">\(h(r.id))</div></td><td>\(h(r.kind))</td>
                <td>\(Self.badge(r.status))</td><td data-step>\(r.lastStep.map(String.init) ?? "–")\(r.totalSteps.map { " / \($0)" } ?? "")</td>
                <td data-loss>\(num(r.lastLoss))</td><td>\(r.kind == "train" ? Sparkline.svg(losses) : "")</td>
                <td>\(dateText(r.startedAt ?? r.createdAt))</td><td>\(duration)</td></tr>
                """
        }
        let queued = runs.filter { $0.status == .queued }.count
        let body = """
            <div class="title-row"><h1>Runs</h1><a class="button primary" href="/new">New run</a></div>
            <p class="muted">Every <code>loft train</code>, <code>loft eval</code> and export on this machine, from the registry at <code>\(h(registry.path))</code>.
            \(queued > 0 ? "\(queued) queued: they start one after another." : "")</p>
            \(runs.isEmpty ? "<p class=\"empty\">No runs yet. Start one with <a href=\"/new\">New run</a> or <code>loft train CONFIG</code>.</p>" : """
            <form method="get" action="/compare" id="runs-form">
            <table class="runs" id="runs-table"><thead><tr><th></th><th>Run</th><th>Kind</th><th>Status</th><th>Step</th><th>Loss</th>
            <th>Loss curve</th><th>Started</th><th>Duration</th></tr></thead><tbody>\(rows)</tbody></table>
            <button type="submit" class="button">Compare selected</button></form>
            """)
            """
        return layout("Runs", active: "/", body)
    }

    func runPage(_ r: RunRecord, log: String) throws -> String {
        let points = try registry.metrics(r.id)
        let last = points.last(where: { $0.loss != nil })
        let bestEval = points.compactMap(\.evalLoss).min()
        let artifacts = try registry.artifacts(r.id)
        let evals = try registry.evalResults(r.id)
        let children = try registry.runs(parentID: r.id)
        let progress = r.totalSteps.map { t in t > 0 ? Double(last?.step ?? 0) / Double(t) : 0 } ?? 0
        var actions = ""
        if r.status.isActive {
            actions += "<form method=\"post\" action=\"/runs/\(h(r.id))/stop\">\(csrfField)<button class=\"button danger\" id=\"stop\">"
                + (r.status == .running ? "Stop (writes a checkpoint)" : "Remove from queue") + "</button></form>"
        } else if r.kind == "train" && r.command != nil && r.status != .done {
            actions += "<form method=\"post\" action=\"/runs/\(h(r.id))/resume\">\(csrfField)<button class=\"button primary\" id=\"resume\">Resume</button></form>"
        }
        if r.kind == "train" {
            actions += "<a class=\"button\" href=\"/chat?run=\(h(r.id))\">Chat</a><a class=\"button\" href=\"/data?run=\(h(r.id))\">Data</a>"
        }
        let charts = r.kind != "train" ? "" : """
            <section class="charts">
            <div class="chart wide" data-chart="/runs/\(h(r.id))/chart/loss.svg">\(RunCharts.lossSVG(points, title: "loss"))</div>
            \(["grad_norm", "tokens_per_s", "lr", "eval_loss"].map { m in
                "<div class=\"chart\" data-chart=\"/runs/\(h(r.id))/chart/\(m).svg\">\(RunCharts.metricSVG(points, metric: m, color: Self.color(m)))</div>"
            }.joined())
            </section>
            """
        let stats = """
            <div class="stats">
            <div><span>step</span><b data-live="step">\(last.map { String($0.step) } ?? "–")\(r.totalSteps.map { " / \($0)" } ?? "")</b></div>
            <div><span>loss</span><b data-live="loss">\(num(last?.loss))</b></div>
            <div><span>best eval loss</span><b data-live="eval_loss">\(num(bestEval))</b></div>
            <div><span>tokens/s</span><b data-live="tokens_per_s">\(num(last?.tokensPerSecond))</b></div>
            <div><span>learning rate</span><b data-live="lr">\(num(last?.learningRate))</b></div>
            <div><span>peak memory</span><b>\(bytesText(r.peakRSSBytes))</b></div>
            <div><span>started</span><b>\(dateText(r.startedAt))</b></div>
            <div><span>host · pid</span><b>\(h(r.host ?? "–")) · \(r.pid.map(String.init) ?? "–")</b></div>
            </div>
            <div class="progress"><div style="width: \(String(format: "%.1f", progress * 100))%" data-live="progress"></div></div>
            """
        var artifactRows = artifacts.map { a in
            "<tr><td>\(h(a.kind))</td><td><code>\(h(a.path))</code></td><td>\(a.step.map(String.init) ?? "")</td><td>\(bytesText(a.bytes))</td></tr>"
        }.joined()
        if artifactRows.isEmpty { artifactRows = "<tr><td colspan=\"4\" class=\"muted\">none yet</td></tr>" }
        var evalRows = evals.map { e in
            "<tr><td>\(h(e.name))</td><td>" + e.metrics.sorted { $0.key < $1.key }.map { "\(h($0.key)) <b>\(num($0.value))</b>" }.joined(separator: ", ")
                + "</td><td>\(e.reportPath.map { "<code>\(h($0))</code>" } ?? "")</td><td>\(dateText(e.createdAt))</td></tr>"
        }.joined()
        for c in children where c.kind == "eval" {
            for e in try registry.evalResults(c.id) {
                evalRows += "<tr><td><a href=\"/runs/\(h(c.id))\">\(h(e.name))</a></td><td>" + e.metrics.sorted { $0.key < $1.key }
                    .map { "\(h($0.key)) <b>\(num($0.value))</b>" }.joined(separator: ", ")
                    + "</td><td>\(e.reportPath.map { "<code>\(h($0))</code>" } ?? "")</td><td>\(dateText(e.createdAt))</td></tr>"
            }
        }
        let jobs = children.filter { $0.kind != "eval" }.map { c in
            "<tr data-run=\"\(h(c.id))\"><td><a href=\"/runs/\(h(c.id))\">\(h(c.name))</a></td><td>\(h(c.kind))</td><td>\(Self.badge(c.status))</td><td>\(dateText(c.startedAt))</td></tr>"
        }.joined()
        let exportForm = r.kind != "train" || r.outputDir == nil ? "" : """
            <section><h2>Export</h2>
            <form method="post" action="/runs/\(h(r.id))/export" class="inline">\(csrfField)
            <label>What <select name="what"><option value="gguf">GGUF (llama.cpp)</option><option value="merge">Merged model (Hugging Face)</option>
            <option value="ollama">Ollama (Modelfile + GGUF)</option></select></label>
            <label>Quantization <select name="quant">\(["q8_0", "q4_k_m", "q5_k_m", "q6_k", "q4_0", "f16", "bf16", "f32"].map { "<option>\($0)</option>" }.joined())</select></label>
            <button class="button">Export</button></form>
            \(jobs.isEmpty ? "" : "<table><thead><tr><th>Job</th><th>Kind</th><th>Status</th><th>Started</th></tr></thead><tbody>\(jobs)</tbody></table>")
            </section>
            """
        let config = r.configJSON.flatMap { text -> String? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(text.utf8)),
                  let d = try? JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys]) else { return nil }
            return String(decoding: d, as: UTF8.self)
        } ?? r.configPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "(not recorded yet)"
        let body = """
            <div class="title-row"><h1>\(h(r.name)) \(Self.badge(r.status))</h1><div class="actions">\(actions)</div></div>
            <p class="muted">\(h(r.kind)) run <code>\(h(r.id))</code>\(r.outputDir.map { " · output <code>\(h($0))</code>" } ?? "")\(r.parentID.map { " · of <a href=\"/runs/\(h($0))\">\(h($0))</a>" } ?? "")</p>
            <div id="run" data-run="\(h(r.id))" data-after="\(points.last?.step ?? -1)" data-status="\(r.status.rawValue)"></div>
            \(r.error.map { "<div class=\"error-box\" data-live=\"error\">\(h($0))</div>" } ?? "<div class=\"error-box hidden\" data-live=\"error\"></div>")
            \(r.kind == "train" ? stats : "")
            \(charts)
            <section><h2>Log</h2><pre class="log" id="log" data-src="/runs/\(h(r.id))/log">\(h(log))</pre></section>
            <section><h2>Artifacts</h2><table><thead><tr><th>Kind</th><th>Path</th><th>Step</th><th>Size</th></tr></thead><tbody>\(artifactRows)</tbody></table></section>
            \(evalRows.isEmpty ? "" : "<section><h2>Evaluations</h2><table><thead><tr><th>Eval</th><th>Results</th><th>Report</th><th>When</th></tr></thead><tbody>\(evalRows)</tbody></table></section>")
            \(exportForm)
            <section><h2>Resolved config</h2><pre class="config">\(h(config))</pre></section>
            """
        return layout(r.name, active: "/", body)
    }

    static func color(_ metric: String) -> String {
        switch metric {
        case "eval_loss": return SVGChart.palette[1]
        case "grad_norm": return SVGChart.palette[2]
        case "tokens_per_s": return SVGChart.palette[3]
        case "lr": return "#777777"
        default: return SVGChart.palette[0]
        }
    }

    // MARK: Compare

    func compare(_ ids: [String]) throws -> String {
        let all = try registry.runs(kind: "train")
        let chosen = try ids.map { try registry.find($0) }
        let picker = all.map { r in
            "<label class=\"check\"><input type=\"checkbox\" name=\"runs\" value=\"\(h(r.id))\"\(chosen.contains { $0.id == r.id } ? " checked" : "")> \(h(r.name)) <span class=\"sub\">\(h(r.id))</span> \(Self.badge(r.status))</label>"
        }.joined()
        var body = """
            <h1>Compare runs</h1>
            <form method="get" action="/compare" class="picker">\(picker.isEmpty ? "<p class=\"empty\">No training runs yet.</p>" : picker)
            <button class="button primary">Compare</button></form>
            """
        if chosen.count >= 1 {
            let series = try chosen.map { (name: "\($0.name) (\($0.id.suffix(4)))", points: try registry.metrics($0.id)) }
            body += "<section class=\"charts\" id=\"compare-charts\">"
                + "<div class=\"chart wide\">\(RunCharts.overlaySVG(series, metric: "loss", width: 960, height: 320))</div>"
                + ["eval_loss", "lr", "grad_norm", "tokens_per_s"].map { "<div class=\"chart\">\(RunCharts.overlaySVG(series, metric: $0, width: 480, height: 240))</div>" }.joined()
                + "</section>"
            let diff = ConfigDiff.differing(chosen.map { $0.configJSON ?? "{}" })
            let head = chosen.map { "<th>\(h($0.name))<div class=\"sub\">\(h($0.id))</div></th>" }.joined()
            let rows = diff.map { d in "<tr><td><code>\(h(d.key))</code></td>" + d.values.map { "<td><code>\(h($0))</code></td>" }.joined() + "</tr>" }.joined()
            body += "<section><h2>Config keys that differ</h2>"
                + (diff.isEmpty ? "<p class=\"muted\">The configs are the same.</p>"
                    : "<table class=\"diff\" id=\"config-diff\"><thead><tr><th>Key</th>\(head)</tr></thead><tbody>\(rows)</tbody></table>")
                + "</section>"
        }
        return layout("Compare", active: "/compare", body)
    }

    func message(_ title: String, _ text: String, status: String = "") -> String {
        layout(title, active: "", "<h1>\(h(title))</h1><div class=\"error-box\">\(h(text))</div><p><a href=\"/\">Back to the runs</a></p>")
    }
}

/// The last lines of a log file (at most `bytes` from its end).
func logTail(_ path: String?, bytes: Int = 24_000) -> String {
    guard let path, let handle = FileHandle(forReadingAtPath: path) else { return "" }
    defer { try? handle.close() }
    let size = (try? handle.seekToEnd()) ?? 0
    let start = size > UInt64(bytes) ? size - UInt64(bytes) : 0
    try? handle.seek(toOffset: start)
    let data = (try? handle.readToEnd()) ?? Data()
    var text = String(decoding: data, as: UTF8.self)
    // A progress bar redraws with \r: keep what the terminal would show.
    text = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
        String(line.split(separator: "\r").last ?? "")
    }.joined(separator: "\n")
    if start > 0, let nl = text.firstIndex(of: "\n") { text = String(text[text.index(after: nl)...]) }
    return text
}
