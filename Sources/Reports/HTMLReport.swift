import Foundation
import Regression

/// `--html FILE`: one self-contained page (no script, no network): per model its verdicts, what
/// pruning bought, history charts of the gated metrics over the baseline's commits, per-class
/// changes, the confusion matrix, and the latency distributions of baseline and this run.
public enum HTMLReport {
    public static func render(_ verdicts: [ModelVerdict], context: RunContext, exitCode: Int32, history: [String: [HistoryPoint]],
                              tolerances: [String: Tolerances]) -> String {
        let failures = verdicts.reduce(0) { $0 + $1.regressions.count }
        let title: String
        switch exitCode {
        case 0: title = "PruneCheck: \(verdicts.count) model(s), no regression"
        case 1: title = "PruneCheck: \(failures) regression(s)"
        case 2: title = "PruneCheck: the check stopped"
        default: title = "PruneCheck: baseline missing or incomplete"
        }
        var out = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(h(title))</title>
            <style>
            body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}
            table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
            td:first-child,th:first-child{text-align:left}.regressed{background:#fdd}.accepted{background:#ffd}.improved{background:#dfd}
            .skipped{color:#888}section{border-top:2px solid #ddd;margin-top:24px}h1{font-size:22px}h2{font-size:18px}h3{font-size:15px}
            .bad{color:#b00}.good{color:#070}
            </style></head><body>
            <h1 class="\(exitCode == 0 ? "good" : "bad")">\(h(title))</h1>
            <p>Commit \(h(context.commit.map { String($0.prefix(12)) } ?? "none"))\(context.baseRevision.map { ", baselines at the merge-base with " + h($0) } ?? ""), \(h(context.timestamp)).</p>

            """
        for v in verdicts {
            out += "<section id=\"\(h(v.model))\"><h2>\(h(v.model)) <span class=\"\(v.status == "pass" ? "good" : "bad")\">\(h(v.status))</span></h2>\n"
            if let e = v.runError { out += "<p class=\"bad\">Error: \(h(e))</p>\n" }
            if let r = v.skipReason { out += "<p class=\"skipped\">Skipped: \(h(r))</p>\n" }
            if let p = v.baselineProblem { out += "<p class=\"bad\">\(h(p.description))</p>\n" }
            out += table(v)
            out += bought(v)
            let gated = v.checks.filter { $0.tolerance != nil }.map(\.metric).sorted()
            if let points = history[v.model], !points.isEmpty, !gated.isEmpty {
                var all = points
                all.append(HistoryPoint(label: "now", time: nil, metrics: Dictionary(v.checks.map { ($0.metric, $0.current) }, uniquingKeysWith: { a, _ in a }),
                                        machine: points.last?.machine ?? ""))
                out += "<h3>History of the gated metrics</h3>\n"
                out += HistoryChart.svg(model: v.model, metrics: gated, points: all, tolerances: tolerances[v.model] ?? Tolerances())
            }
            out += perClass(v)
            out += confusion(v)
            out += latency(v)
            out += "</section>\n"
        }
        return out + "</body></html>\n"
    }

    static func h(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out += c.value < 0x20 && c != "\n" && c != "\t" ? "\\x\(String(format: "%02X", c.value))" : String(c)
            }
        }
        return out
    }

    static func table(_ v: ModelVerdict) -> String {
        let rows = v.checks.filter { $0.status != .info || (!MetricNames.isDetail($0.metric) && $0.baseline != nil && $0.baseline != $0.current && !MetricNames.isTiming($0.metric)) }
        guard !rows.isEmpty else { return "" }
        var out = "<table><tr><th>metric</th><th>baseline</th><th>now</th><th>change</th><th>tolerance</th><th>p</th><th>95 % interval</th><th>verdict</th></tr>\n"
        for c in rows {
            let unit = MetricNames.unit(of: c.metric)
            let interval = c.interval.map { MetricNames.isTiming(c.metric) ? String(format: "×%.3f–%.3f", $0.lowerBound, $0.upperBound) : String(format: "%+.4f to %+.4f", $0.lowerBound, $0.upperBound) } ?? ""
            out += "<tr class=\"\(c.status.rawValue)\"><td>\(h(c.metric))</td><td>\(c.baseline.map { h(MetricCheck.format($0, c.metric) + unit) } ?? "-")</td>"
                + "<td>\(h(MetricCheck.format(c.current, c.metric) + unit))</td><td>\(c.delta.map { h(formatChange($0, c.baseline ?? 0, c.metric)) } ?? "")</td>"
                + "<td>\(c.tolerance.map { h(formatTolerance($0, c.metric)) } ?? "")</td><td>\(c.pValue.map { String(format: "%.3g", $0) } ?? "")</td>"
                + "<td>\(interval)</td><td title=\"\(h(c.note ?? c.message))\">\(h(c.status == .regressed ? "REGRESSED" : c.status.rawValue))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static func bought(_ v: ModelVerdict) -> String {
        guard let cells = MarkdownReport.gains(v) else { return "" }
        let names = ["parameters", "bytes (deflated)", "MACs", "latency p50"]
        return "<h3>What pruning bought (dense → pruned)</h3><table><tr>" + names.map { "<th>\($0)</th>" }.joined() + "</tr><tr>"
            + cells.map { "<td>\(h($0))</td>" }.joined() + "</tr></table>\n"
    }

    static func perClass(_ v: ModelVerdict) -> String {
        let changed = v.checks.filter { MetricNames.isPerClass($0.metric) && $0.baseline != nil && $0.baseline != $0.current }
        guard !changed.isEmpty else { return "" }
        var out = "<h3>Per-class changes</h3><table><tr><th>metric</th><th>baseline</th><th>now</th><th>change</th></tr>\n"
        for c in changed.sorted(by: { abs($0.delta ?? 0) > abs($1.delta ?? 0) }) {
            out += "<tr class=\"\((c.delta ?? 0) < 0 ? "regressed" : "improved")\"><td>\(h(c.metric))</td><td>\(MetricCheck.format(c.baseline!, c.metric))</td>"
                + "<td>\(MetricCheck.format(c.current, c.metric))</td><td>\(String(format: "%+.4f", c.delta ?? 0))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    static func confusion(_ v: ModelVerdict) -> String {
        guard !v.confusion.isEmpty else { return "" }
        let peak = max(v.confusion.flatMap { $0 }.max() ?? 1, 1)
        var out = "<h3>Confusion matrix (rows: true class, columns: predicted)</h3><table><tr><th></th>"
            + v.confusion.indices.map { "<th>\($0)</th>" }.joined() + "</tr>\n"
        for (i, row) in v.confusion.enumerated() {
            out += "<tr><th>\(i)</th>" + row.enumerated().map { j, n in
                let shade = Int(255 - 155 * Double(n) / Double(peak))
                let color = i == j ? "rgb(\(shade),255,\(shade))" : (n > 0 ? "rgb(255,\(shade),\(shade))" : "#fff")
                return "<td style=\"background:\(color)\">\(n)</td>"
            }.joined() + "</tr>\n"
        }
        return out + "</table>\n"
    }

    /// Each batch size's distribution of baseline and this run as two quantile curves.
    static func latency(_ v: ModelVerdict) -> String {
        let batches = Set(v.latencyQuantiles.keys).union(v.baselineLatencyQuantiles.keys).sorted()
        guard !batches.isEmpty else { return "" }
        var out = "<h3>Latency distributions (µs; quantiles, baseline grey, this run blue)</h3>\n"
        for b in batches {
            let base = v.baselineLatencyQuantiles[b] ?? [], now = v.latencyQuantiles[b] ?? []
            let all = base + now
            guard let lo = all.min(), let hi = all.max() else { continue }
            let w = 420.0, ht = 120.0, left = 60.0, top = 20.0
            let span = hi > lo ? hi - lo : max(hi, 1) * 0.1
            func x(_ q: Double) -> Double { left + q * w }
            func y(_ t: Double) -> Double { top + ht - (t - (lo - span * 0.05)) / (span * 1.1) * ht }
            func line(_ qs: [Double], _ color: String) -> String {
                guard qs.count > 1 else { return "" }
                let pts = qs.enumerated().map { String(format: "%.1f,%.1f", x(Double($0) / Double(qs.count - 1)), y($1)) }.joined(separator: " ")
                return "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            }
            out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(left + w + 20))\" height=\"\(Int(top + ht + 30))\" font-family=\"sans-serif\" font-size=\"11\">"
                + "<text x=\"\(left)\" y=\"12\">batch \(b)</text>"
                + "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(w)\" height=\"\(ht)\" fill=\"none\" stroke=\"#ccc\"/>"
                + String(format: "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f</text><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.1f</text>", left - 4, top + 10, hi, left - 4, top + ht, lo)
                + "<text x=\"\(left)\" y=\"\(Int(top + ht + 14))\">0 %</text><text x=\"\(left + w)\" y=\"\(Int(top + ht + 14))\" text-anchor=\"end\">100 % (quantile)</text>"
                + line(base, "#999") + line(now, "#1f77b4") + "</svg>\n"
        }
        return out
    }
}
