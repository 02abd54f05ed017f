import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import GitKit
import Regression

/// `prunecheck history NAME`: a baseline's metrics over the commits that changed it.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show how a model's baseline changed over the commits that changed it.")

    @Argument(help: "The model name (its baseline is baselines/NAME.json).")
    var name: String

    @Option(name: .shortAndLong, help: "The configuration file (for the baselines folder).")
    var config = "prunecheck.yml"

    @Option(help: "Metrics to show (repeatable); default: every metric with a value.")
    var metric: [String] = []

    @Option(help: "Also draw the history as an SVG chart here.")
    var svg: String?

    @Option(help: "At most this many commits, newest first.")
    var limit = 50

    func run() throws {
        let cfg = try CheckConfig.load(path: config)
        guard let repository = try Repository.discover(containing: folder(of: config)) else {
            throw InputError("history needs a git repository")
        }
        let path = cfg.baselinePath(for: name)
        guard let rel = repository.relativePath(path) else { throw InputError("\(path) is outside the repository") }
        let revisions = try repository.history(of: rel, limit: limit)
        guard !revisions.isEmpty else { throw InputError("\(rel) has no history in this repository (never committed?)") }
        var points: [(revision: FileRevision, metrics: [String: Double])] = []
        for r in revisions.reversed() {
            guard let content = r.content else { points.append((r, [:])); continue }
            let metrics = (try? Baseline(data: Data(content), file: "\(rel)@\(r.commit.prefix(12))"))?.metrics ?? [:]
            points.append((r, metrics))
        }
        let names = metric.isEmpty ? Set(points.flatMap { $0.metrics.keys }).sorted() : metric
        let dates = DateFormatter()
        dates.dateFormat = "yyyy-MM-dd"
        dates.timeZone = TimeZone(identifier: "UTC")
        var rows = [["commit", "date"] + names + ["summary"]]
        for p in points {
            rows.append([String(p.revision.commit.prefix(12)), dates.string(from: Date(timeIntervalSince1970: TimeInterval(p.revision.time)))]
                        + names.map { n in p.metrics[n].map { MetricCheck.format($0, n) } ?? (p.revision.content == nil ? "deleted" : "-") }
                        + [p.revision.summary])
        }
        TextColumns.render(rows).forEach { print($0) }
        if let svg {
            try writeFileAtomically(HistoryChart.svg(model: name, metrics: names, points: points.map { (String($0.revision.commit.prefix(8)), $0.metrics) }), to: svg)
            note("SVG chart: \(svg)")
        }
    }
}

/// A small-multiples line chart: one panel per metric, commits along x, oldest left.
enum HistoryChart {
    static func svg(model: String, metrics: [String], points: [(label: String, metrics: [String: Double])]) -> String {
        let panelW = 420.0, panelH = 140.0, left = 70.0, top = 40.0, gap = 50.0
        let height = top + Double(metrics.count) * (panelH + gap)
        var out = #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(left + panelW + 30))" height="\#(Int(height))" font-family="sans-serif" font-size="11">"#
        out += "\n<title>\(xml(model)) baseline history</title>\n"
        out += #"<text x="10" y="20" font-size="14">\#(xml(model)): baseline history</text>"# + "\n"
        for (i, m) in metrics.enumerated() {
            let y0 = top + Double(i) * (panelH + gap)
            let values = points.enumerated().compactMap { j, p in p.metrics[m].map { (j, $0) } }
            out += #"<text x="\#(left)" y="\#(y0 - 6)">\#(xml(m))</text>"# + "\n"
            out += #"<rect x="\#(left)" y="\#(y0)" width="\#(panelW)" height="\#(panelH)" fill="none" stroke="rgb(204,204,204)"/>"# + "\n"
            guard let lo = values.map(\.1).min(), let hi = values.map(\.1).max() else { continue }
            let span = hi > lo ? hi - lo : max(abs(hi), 1) * 0.1
            let (ymin, ymax) = hi > lo ? (lo - span * 0.1, hi + span * 0.1) : (lo - span, hi + span)
            func x(_ j: Int) -> Double { left + (points.count > 1 ? Double(j) / Double(points.count - 1) * panelW : panelW / 2) }
            func y(_ v: Double) -> Double { y0 + panelH - (v - ymin) / (ymax - ymin) * panelH }
            out += #"<text x="\#(left - 6)" y="\#(y0 + 10)" text-anchor="end">\#(MetricCheck.format(ymax, m))</text>"# + "\n"
            out += #"<text x="\#(left - 6)" y="\#(y0 + panelH)" text-anchor="end">\#(MetricCheck.format(ymin, m))</text>"# + "\n"
            let polyline = values.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ")
            out += #"<polyline points="\#(polyline)" fill="none" stroke="rgb(31,119,180)" stroke-width="2"/>"# + "\n"
            for (j, v) in values {
                out += String(format: #"<circle cx="%.1f" cy="%.1f" r="3" fill="rgb(31,119,180)">"#, x(j), y(v))
                    + "<title>\(xml(points[j].label)) \(MetricCheck.format(v, m))</title></circle>\n"
            }
        }
        return out + "</svg>\n"
    }

    static func xml(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
