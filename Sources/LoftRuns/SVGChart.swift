import Foundation

/// One line of a chart.
public struct ChartSeries: Sendable {
    public enum Axis: Sendable { case left, right }
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var color: String
    public var axis: Axis
    public var dashed: Bool
    /// Draw a dot at every point (sparse series such as eval loss).
    public var markers: Bool
    public init(name: String, points: [(x: Double, y: Double)], color: String, axis: Axis = .left, dashed: Bool = false,
                markers: Bool = false) {
        self.name = name; self.points = points.filter { $0.x.isFinite && $0.y.isFinite }
        self.color = color; self.axis = axis; self.dashed = dashed; self.markers = markers
    }
}

/// A line chart as a standalone SVG: axes with round ticks, an optional
/// second y axis on the right, a legend. Loft draws every chart with it:
/// loss.svg, `loft runs compare`, and the UI's pages.
public struct SVGChart: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var y2Label: String?
    public var series: [ChartSeries]
    public var width = 640.0
    public var height = 280.0

    /// Colours that stay apart for the colour-blind (Okabe–Ito).
    public static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

    public init(title: String, xLabel: String = "step", yLabel: String, y2Label: String? = nil, series: [ChartSeries],
                width: Double = 640, height: Double = 280) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.y2Label = y2Label; self.series = series
        self.width = width; self.height = height
    }

    public func render() -> String {
        let left = 58.0, right = y2Label == nil ? 16.0 : 62.0, top = 34.0, bottom = 42.0
        let plotW = width - left - right, plotH = height - top - bottom
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 \(f(width)) \(f(height))\" "
            + "width=\"\(f(width))\" height=\"\(f(height))\" font-family=\"system-ui, sans-serif\" font-size=\"11\" role=\"img\" "
            + "aria-label=\"\(Self.escape(title))\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n"
        out += "<text x=\"\(f(left))\" y=\"18\" font-size=\"13\" font-weight=\"600\" fill=\"#222\">\(Self.escape(title))</text>\n"
        let all = series.flatMap(\.points)
        guard !all.isEmpty else {
            out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#ddd\"/>\n"
            out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" fill=\"#888\">no points yet</text>\n"
            return out + "</svg>\n"
        }
        let xs = Self.ticks(all.map(\.x).min()!, all.map(\.x).max()!, integer: true)
        let leftPts = series.filter { $0.axis == .left }.flatMap(\.points)
        let rightPts = series.filter { $0.axis == .right }.flatMap(\.points)
        let ys = Self.ticks(leftPts.map(\.y).min() ?? 0, leftPts.map(\.y).max() ?? 1)
        let y2s = Self.ticks(rightPts.map(\.y).min() ?? 0, rightPts.map(\.y).max() ?? 1)
        func px(_ x: Double) -> Double { left + (x - xs.lo) / (xs.hi - xs.lo) * plotW }
        func py(_ y: Double, _ t: (lo: Double, hi: Double, step: Double)) -> Double { top + plotH - (y - t.lo) / (t.hi - t.lo) * plotH }

        // Grid and ticks.
        out += "<g stroke=\"#eee\">\n"
        for v in Self.values(ys) { out += "<line x1=\"\(f(left))\" x2=\"\(f(left + plotW))\" y1=\"\(f(py(v, ys)))\" y2=\"\(f(py(v, ys)))\"/>\n" }
        out += "</g>\n<g fill=\"#555\">\n"
        for v in Self.values(ys) {
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(py(v, ys) + 4))\" text-anchor=\"end\">\(Self.label(v, step: ys.step))</text>\n"
        }
        for v in Self.values(xs) {
            out += "<text x=\"\(f(px(v)))\" y=\"\(f(top + plotH + 15))\" text-anchor=\"middle\">\(Self.label(v, step: xs.step))</text>\n"
        }
        if !rightPts.isEmpty {
            for v in Self.values(y2s) {
                out += "<text x=\"\(f(left + plotW + 6))\" y=\"\(f(py(v, y2s) + 4))\">\(Self.label(v, step: y2s.step))</text>\n"
            }
        }
        out += "</g>\n"
        out += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"#bbb\"/>\n"
        out += "<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\" fill=\"#333\">\(Self.escape(xLabel))</text>\n"
        out += "<text transform=\"translate(14 \(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">\(Self.escape(yLabel))</text>\n"
        if let y2Label, !rightPts.isEmpty {
            out += "<text transform=\"translate(\(f(width - 10)) \(f(top + plotH / 2))) rotate(90)\" text-anchor=\"middle\" fill=\"#333\">\(Self.escape(y2Label))</text>\n"
        }
        // Lines.
        for s in series where !s.points.isEmpty {
            let t = s.axis == .left ? ys : y2s
            let pts = s.points.map { "\(f(px($0.x))),\(f(py($0.y, t)))" }.joined(separator: " ")
            out += "<polyline class=\"series\" data-series=\"\(Self.escape(s.name))\" data-points=\"\(s.points.count)\" "
                + "fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\" stroke-linejoin=\"round\""
                + (s.dashed ? " stroke-dasharray=\"5 3\"" : "") + " points=\"\(pts)\"/>\n"
            if s.markers || s.points.count == 1 {
                for p in s.points {
                    out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y, t)))\" r=\"3\" fill=\"\(s.color)\"/>\n"
                }
            }
        }
        // Legend, right-aligned on the title line.
        var x = width - right
        for s in series.reversed() where !s.points.isEmpty {
            let w = Double(s.name.count) * 6.2 + 26
            x -= w
            out += "<line x1=\"\(f(x))\" x2=\"\(f(x + 16))\" y1=\"14\" y2=\"14\" stroke=\"\(s.color)\" stroke-width=\"2.5\""
                + (s.dashed ? " stroke-dasharray=\"5 3\"" : "") + "/>"
            out += "<text x=\"\(f(x + 20))\" y=\"18\" fill=\"#333\">\(Self.escape(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// Round ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them.
    public static func ticks(_ lo: Double, _ hi: Double, integer: Bool = false) -> (lo: Double, hi: Double, step: Double) {
        var lo = lo, hi = hi
        if hi - lo < 1e-12 * max(1, abs(hi)) {
            let pad = integer ? 1 : max(abs(lo) * 0.05, 1e-9)
            lo -= pad; hi += pad
        }
        let raw = (hi - lo) / 5
        let mag = pow(10, floor(log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        if integer { step = max(1, step.rounded()) }
        return (floor(lo / step) * step, ceil(hi / step) * step, step)
    }

    public static func values(_ t: (lo: Double, hi: Double, step: Double)) -> [Double] {
        var v: [Double] = [], x = t.lo
        while x <= t.hi + t.step * 1e-6 { v.append(x); x += t.step }
        return v
    }

    /// A tick label with as many decimals as the step needs (1e-4 style for small rates).
    static func label(_ v: Double, step: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) < 1e-3 || abs(v) >= 1e6 { return String(format: "%.1e", v) }
        let decimals = max(0, Int(-floor(log10(step))))
        return String(format: "%.\(min(decimals, 6))f", v)
    }

    func f(_ x: Double) -> String { String(format: "%.1f", x) }

    public static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// The charts of training runs, from their recorded points.
public enum RunCharts {
    /// Train loss and eval loss (left axis) with the learning rate (right axis): loss.svg.
    public static func lossSVG(_ points: [MetricPoint], title: String = "loss") -> String {
        SVGChart(title: title, yLabel: "loss", y2Label: "learning rate", series: [
            ChartSeries(name: "train loss", points: points.compactMap { p in p.loss.map { (Double(p.step), $0) } }, color: SVGChart.palette[0]),
            ChartSeries(name: "eval loss", points: points.compactMap { p in p.evalLoss.map { (Double(p.step), $0) } },
                        color: SVGChart.palette[1], markers: true),
            ChartSeries(name: "learning rate", points: points.compactMap { p in p.learningRate.map { (Double(p.step), $0) } },
                        color: "#999999", axis: .right, dashed: true),
        ]).render()
    }

    /// The metrics a run page and a comparison can show.
    public static let metrics: [(key: String, title: String)] = [
        ("loss", "train loss"), ("eval_loss", "eval loss"), ("lr", "learning rate"),
        ("grad_norm", "grad norm"), ("tokens_per_s", "tokens/s"),
    ]

    public static func value(_ p: MetricPoint, _ key: String) -> Double? {
        switch key {
        case "loss": return p.loss
        case "eval_loss": return p.evalLoss
        case "lr": return p.learningRate
        case "grad_norm": return p.gradNorm
        case "tokens_per_s": return p.tokensPerSecond
        default: return nil
        }
    }

    /// One metric of several runs overlaid (`loft runs compare`, the UI's compare page).
    public static func overlaySVG(_ runs: [(name: String, points: [MetricPoint])], metric: String, width: Double = 640,
                                  height: Double = 280) -> String {
        let title = metrics.first { $0.key == metric }?.title ?? metric
        return SVGChart(title: title, yLabel: title, series: runs.enumerated().map { i, r in
            ChartSeries(name: r.name, points: r.points.compactMap { p in value(p, metric).map { (Double(p.step), $0) } },
                        color: SVGChart.palette[i % SVGChart.palette.count], markers: metric == "eval_loss")
        }, width: width, height: height).render()
    }

    /// One metric of one run (a run page's smaller charts).
    public static func metricSVG(_ points: [MetricPoint], metric: String, color: String = SVGChart.palette[0],
                                 width: Double = 480, height: Double = 220) -> String {
        let title = metrics.first { $0.key == metric }?.title ?? metric
        return SVGChart(title: title, yLabel: title, series: [
            ChartSeries(name: title, points: points.compactMap { p in value(p, metric).map { (Double(p.step), $0) } },
                        color: color, markers: metric == "eval_loss"),
        ], width: width, height: height).render()
    }
}

/// A few characters or a small SVG that show where recent values went.
public enum Sparkline {
    static let bars: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// The last `width` values as block characters (lowest ▁, highest █).
    public static func text(_ values: [Double], width: Int = 16) -> String {
        let v = values.suffix(width).filter(\.isFinite)
        guard let lo = v.min(), let hi = v.max() else { return "" }
        return String(v.map { x in
            hi - lo < 1e-12 ? bars[3] : bars[min(7, Int((x - lo) / (hi - lo) * 7.999))]
        })
    }

    /// A tiny line (the runs list).
    public static func svg(_ values: [Double], width: Double = 120, height: Double = 26) -> String {
        let v = values.filter(\.isFinite)
        guard v.count > 1, let lo = v.min(), let hi = v.max() else {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\"></svg>"
        }
        let span = max(hi - lo, 1e-12)
        let pts = v.enumerated().map { i, x in
            String(format: "%.1f,%.1f", Double(i) / Double(v.count - 1) * (width - 2) + 1, (1 - (x - lo) / span) * (height - 4) + 2)
        }.joined(separator: " ")
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"spark\" width=\"\(Int(width))\" height=\"\(Int(height))\">"
            + "<polyline fill=\"none\" stroke=\"#0072B2\" stroke-width=\"1.5\" points=\"\(pts)\"/></svg>"
    }
}
