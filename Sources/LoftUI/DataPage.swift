import Foundation
import LoftData
import LoftHub
import LoftRuns
import LoftTokenizers
import LoftTraining

/// The data page: a row as the model sees it (template applied, trained
/// tokens highlighted: the loss mask), the token lengths with the share
/// that `sequence_len` cuts, and the rows that could not be read.
struct DataPage {
    let pages: Pages
    /// Rows read for the histogram (a sample of big datasets).
    static let sampleRows = 5000

    func render(config cfg: TrainConfig?, source: String, runs: [RunRecord], row: Int, selectedRun: String?) -> String {
        let picker = "<form method=\"get\" action=\"/data\" class=\"inline\"><label>Run <select name=\"run\">"
            + runs.map { "<option value=\"\(h($0.id))\"\($0.id == selectedRun ? " selected" : "")>\(h($0.name)) (\(h($0.id)))</option>" }.joined()
            + "</select></label><label>Row <input type=\"text\" name=\"row\" value=\"\(row)\" size=\"5\"></label><button class=\"button\">Show</button></form>"
        guard let cfg else {
            return pages.layout("Data", active: "/data", "<h1>Data</h1>\(picker)<p class=\"empty\">Pick a run to see its data as the model sees it.</p>")
        }
        var body = "<h1>Data</h1>\(picker)<p class=\"muted\">From \(h(source)): \(cfg.datasets.map { "<code>\(h($0.path))</code>" }.joined(separator: ", ")), sequence_len \(cfg.sequenceLen).</p>"
        do {
            let modelPath = try HubModel.localPath(cfg.baseModel)
            let tokenizer = try Tokenizer.load(source: modelPath)
            var options = DataOptions(sequenceLen: 1 << 20)
            options.trainOnInputs = cfg.trainOnInputs
            options.chatTemplate = cfg.chatTemplate
            options.trainOnEOS = cfg.trainOnEOS
            options.rolesToTrain = cfg.rolesToTrain
            options.skipBadRows = true
            options.refuseOnProblems = false
            options.maxRows = Self.sampleRows
            let builder = try DatasetBuilder(tokenizer: tokenizer, options: options)
            guard let spec = cfg.datasets.first else { throw RegistryError("the config names no dataset") }
            // The row asked for, rendered.
            let preview = try builder.preview(spec, rows: row + 1)
            if let (origin, ex) = preview.last {
                body += "<section><h2>Row \(origin.row) of <code>\(h(URL(fileURLWithPath: origin.file).lastPathComponent))</code></h2>"
                    + "<p class=\"muted\">\(ex.ids.count) tokens, \(ex.trainedTokenCount) trained (highlighted: the loss mask)"
                    + (ex.ids.count > cfg.sequenceLen ? ", <b>\(ex.ids.count - cfg.sequenceLen) cut by sequence_len</b>" : "") + "</p>"
                    + "<pre class=\"row-text\" id=\"row-text\">" + Self.masked(ex, tokenizer: tokenizer, sequenceLen: cfg.sequenceLen) + "</pre></section>"
            }
            // Lengths of every example (up to the sample), before truncation.
            let prepared = try builder.build(cfg.datasets)
            let lengths = (prepared.train + prepared.validation).map(\.ids.count)
            let cut = lengths.filter { $0 > cfg.sequenceLen }.count
            let share = lengths.isEmpty ? 0 : Double(cut) / Double(lengths.count)
            body += "<section><h2>Token lengths</h2><p class=\"muted\">\(lengths.count) examples\(lengths.count >= Self.sampleRows ? " (the first \(Self.sampleRows) rows)" : ""); "
                + String(format: "<b id=\"truncated-share\">%.1f%%</b> are longer than sequence_len %d and lose their end.", share * 100, cfg.sequenceLen)
                + "</p><div class=\"chart wide\">\(Self.histogram(lengths, sequenceLen: cfg.sequenceLen))</div></section>"
            let bad = prepared.stats.flatMap(\.badRowErrors)
            body += "<section><h2>Bad rows</h2>" + (bad.isEmpty ? "<p class=\"muted\">None: every row read.</p>"
                : "<ul class=\"bad-rows\">" + bad.prefix(100).map { "<li>\(h($0))</li>" }.joined() + "</ul>") + "</section>"
            if !prepared.warnings.isEmpty {
                body += "<section><h2>Warnings</h2><ul>" + prepared.warnings.map { "<li>\(h($0))</li>" }.joined() + "</ul></section>"
            }
        } catch {
            body += "<div class=\"error-box\">\(h("\(error)"))</div>"
        }
        return pages.layout("Data", active: "/data", body)
    }

    /// The example's text with trained runs in <mark>, tokens past sequence_len struck through.
    static func masked(_ ex: TokenizedExample, tokenizer: Tokenizer, sequenceLen: Int) -> String {
        var out = ""
        var k = 0
        while k < ex.ids.count {
            let trained = ex.labels[k] >= 0
            let beyond = k >= sequenceLen
            var j = k
            while j < ex.ids.count && (ex.labels[j] >= 0) == trained && (j >= sequenceLen) == beyond { j += 1 }
            let piece = h(tokenizer.decode(ex.ids[k ..< j].map(Int.init)))
            var html = trained ? "<mark>\(piece)</mark>" : piece
            if beyond { html = "<del title=\"cut by sequence_len\">\(html)</del>" }
            out += html
            k = j
        }
        return out
    }

    /// Bars of example counts per length bucket, with sequence_len marked.
    static func histogram(_ lengths: [Int], sequenceLen: Int, width: Double = 960, height: Double = 260) -> String {
        guard let maxLen = lengths.max(), !lengths.isEmpty else { return SVGChart(title: "token lengths", yLabel: "examples", series: []).render() }
        let top = Double(max(maxLen, sequenceLen))
        let buckets = 40
        let size = max(1.0, (top / Double(buckets)).rounded(.up))
        var counts = [Int](repeating: 0, count: buckets + 1)
        for l in lengths { counts[min(buckets, Int(Double(l) / size))] += 1 }
        let left = 58.0, right = 16.0, topPad = 34.0, bottom = 42.0
        let plotW = width - left - right, plotH = height - topPad - bottom
        let maxCount = Double(counts.max() ?? 1)
        let barW = plotW / Double(buckets + 1)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"system-ui, sans-serif\" font-size=\"11\">"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><text x=\"\(left)\" y=\"18\" font-size=\"13\" font-weight=\"600\">token length (examples per bucket of \(Int(size)))</text>"
        for (i, c) in counts.enumerated() where c > 0 {
            let x = left + Double(i) * barW
            let hgt = Double(c) / maxCount * plotH
            let over = Double(i) * size >= Double(sequenceLen)
            svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"><title>%d–%d tokens: %d</title></rect>",
                          x + 1, topPad + plotH - hgt, max(1, barW - 2), hgt, over ? "#D55E00" : "#0072B2",
                          Int(Double(i) * size), Int(Double(i + 1) * size) - 1, c)
        }
        let sx = left + Double(sequenceLen) / size * barW
        svg += String(format: "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#D55E00\" stroke-dasharray=\"4 3\"/>", sx, sx, topPad, topPad + plotH)
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" fill=\"#D55E00\">sequence_len %d</text>", sx + 4, topPad + 12, sequenceLen)
        svg += "<rect x=\"\(left)\" y=\"\(topPad)\" width=\"\(plotW)\" height=\"\(plotH)\" fill=\"none\" stroke=\"#bbb\"/>"
        for t in SVGChart.values(SVGChart.ticks(0, top, integer: true)) where t <= top {
            svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#555\">%d</text>", left + t / size * barW, topPad + plotH + 15, Int(t))
        }
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\">%d</text>", left - 6, topPad + 4, Int(maxCount))
        svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#333\">tokens</text>", left + plotW / 2, height - 6)
        return svg + "</svg>"
    }
}
