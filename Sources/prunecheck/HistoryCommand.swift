import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import GitKit
import Regression
import Reports

/// `prunecheck history NAME`: a baseline's metrics over the commits that changed it.
struct History: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show how a model's baseline changed over the commits that changed it.")

    @Argument(help: "The model name (its baseline is baselines/NAME.json).")
    var name: String

    @Option(name: .shortAndLong, help: "The configuration file (for the baselines folder).")
    var config = "prunecheck.yml"

    @Option(help: "Metrics to show (repeatable); default: every metric with a value.")
    var metric: [String] = []

    @Option(help: "Also draw the history as an SVG chart here: the gated metrics (or those of --metric), commits and dates along x, the tolerance band and machine changes marked.")
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
        var points: [(revision: FileRevision, metrics: [String: Double], machine: String)] = []
        for r in revisions.reversed() {
            guard let content = r.content else { points.append((r, [:], "")); continue }
            let baseline = try? Baseline(data: Data(content), file: "\(rel)@\(r.commit.prefix(12))")
            points.append((r, baseline?.metrics ?? [:], baseline?.recorded.machine.cpu ?? ""))
        }
        let recorded = Set(points.flatMap { $0.metrics.keys })
        if let unknown = metric.first(where: { !recorded.contains($0) }) {
            let close = recorded.sorted().filter { $0.hasPrefix(unknown) || unknown.hasPrefix($0) || $0.contains(unknown) }.prefix(5)
            throw InputError("--metric \(unknown): no baseline of '\(name)' records it"
                             + (close.isEmpty ? " (metrics: \(recorded.filter { !MetricNames.isDetail($0) }.sorted().joined(separator: ", ")))" : "; did you mean \(close.joined(separator: ", "))?"))
        }
        let names = metric.isEmpty ? recorded.sorted() : metric
        // The chart shows the gated metrics unless --metric names others: 66 panels help nobody.
        let spec = cfg.models.first { $0.name == name }
        let gated = recorded.filter { spec?.tolerances.tolerance(for: $0) != nil }.sorted()
        let charted = metric.isEmpty ? (gated.isEmpty ? names.filter { !MetricNames.isDetail($0) } : gated) : metric
        let dates = DateFormatter()
        dates.dateFormat = "yyyy-MM-dd"
        dates.timeZone = TimeZone(identifier: "UTC")
        var rows = [["commit", "date"] + names + ["summary"]]
        for p in points {
            rows.append([String(p.revision.commit.prefix(12)), dates.string(from: Date(timeIntervalSince1970: TimeInterval(p.revision.time)))]
                        + names.map { n in p.metrics[n].map { MetricCheck.format($0, n) } ?? (p.revision.content == nil ? "deleted" : "-") }
                        + [p.revision.summary])
        }
        TextColumns.render(rows).forEach { Console.out($0) }
        if let svg {
            let chartPoints = points.map { HistoryPoint(label: String($0.revision.commit.prefix(8)), time: $0.revision.time, metrics: $0.metrics, machine: $0.machine) }
            try writeFileAtomically(HistoryChart.svg(model: name, metrics: charted, points: chartPoints, tolerances: spec?.tolerances ?? Tolerances()), to: svg)
            note("SVG chart: \(svg)")
        }
    }
}
