import Foundation
import Regression

/// One recorded baseline in a model's history.
public struct HistoryPoint: Sendable {
    /// The commit (short SHA) or "now".
    public var label: String
    /// Seconds since 1970 (the commit's time); nil for the current run.
    public var time: Int64?
    public var metrics: [String: Double]
    /// The CPU the baseline was recorded on: a change is marked on the chart.
    public var machine: String

    public init(label: String, time: Int64?, metrics: [String: Double], machine: String) {
        self.label = label
        self.time = time
        self.metrics = metrics
        self.machine = machine
    }
}

/// A small-multiples line chart: one panel per metric, commits along x (oldest left, labelled
/// with their short SHA and date), the tolerance band around the latest value, and a dashed line
/// where the recording machine changed. The y-range stays within what the metric can take.
public enum HistoryChart {
    public static func svg(model: String, metrics: [String], points: [HistoryPoint], tolerances: Tolerances = Tolerances()) -> String {
        let panelW = 560.0, panelH = 140.0, left = 80.0, top = 40.0, gap = 70.0
        let height = top + Double(metrics.count) * (panelH + gap)
        var out = #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(left + panelW + 30))" height="\#(Int(height))" font-family="sans-serif" font-size="11">"#
        out += "\n<title>\(xml(model)) baseline history</title>\n"
        out += #"<text x="10" y="20" font-size="14">\#(xml(model)): baseline history</text>"# + "\n"
        let dates = DateFormatter()
        dates.dateFormat = "MM-dd"
        dates.timeZone = TimeZone(identifier: "UTC")
        func x(_ j: Int) -> Double { left + (points.count > 1 ? Double(j) / Double(points.count - 1) * panelW : panelW / 2) }
        for (i, m) in metrics.enumerated() {
            let y0 = top + Double(i) * (panelH + gap)
            let values = points.enumerated().compactMap { j, p in p.metrics[m].map { (j, $0) } }
            out += #"<text x="\#(left)" y="\#(y0 - 6)">\#(xml(m))</text>"# + "\n"
            out += #"<rect x="\#(left)" y="\#(y0)" width="\#(panelW)" height="\#(panelH)" fill="none" stroke="rgb(204,204,204)"/>"# + "\n"
            guard let last = values.last?.1, var lo = values.map(\.1).min(), var hi = values.map(\.1).max() else { continue }
            // The tolerance band around the latest value: what the next run may reach and pass.
            var band: (Double, Double)?
            if let t = tolerances.tolerance(for: m) {
                let rule = MetricRule.of(m)
                let width = rule.tolerance == .relative ? abs(last) * t : t
                band = rule.direction == .higherIsBetter ? (last - width, last) : (last, last + width)
                lo = min(lo, band!.0)
                hi = max(hi, band!.1)
            }
            let span = hi > lo ? hi - lo : max(abs(hi), 1e-9) * 0.1
            let valid = MetricNames.validRange(of: m)
            let ymin = max(lo - span * 0.1, valid.lowerBound), ymax = min(hi + span * 0.1, valid.upperBound)
            let range = ymax > ymin ? ymax - ymin : 1
            func y(_ v: Double) -> Double { y0 + panelH - (min(max(v, ymin), ymax) - ymin) / range * panelH }
            if let band {
                out += String(format: #"<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="rgb(44,160,44)" fill-opacity="0.15"><title>tolerance band</title></rect>"#,
                              left, y(band.1), panelW, max(y(band.0) - y(band.1), 1)) + "\n"
            }
            // Machine changes: a dashed line before the first point on another CPU.
            for j in points.indices.dropFirst() where points[j].machine != points[j - 1].machine && !points[j].machine.isEmpty {
                out += String(format: #"<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="rgb(214,39,40)" stroke-dasharray="4,3"><title>machine changed: %@</title></line>"#,
                              (x(j - 1) + x(j)) / 2, y0, (x(j - 1) + x(j)) / 2, y0 + panelH, xml(points[j].machine)) + "\n"
            }
            out += #"<text x="\#(left - 6)" y="\#(y0 + 10)" text-anchor="end">\#(MetricCheck.format(ymax, m))</text>"# + "\n"
            out += #"<text x="\#(left - 6)" y="\#(y0 + panelH)" text-anchor="end">\#(MetricCheck.format(ymin, m))</text>"# + "\n"
            let polyline = values.map { String(format: "%.1f,%.1f", x($0.0), y($0.1)) }.joined(separator: " ")
            out += #"<polyline points="\#(polyline)" fill="none" stroke="rgb(31,119,180)" stroke-width="2"/>"# + "\n"
            for (j, v) in values {
                out += String(format: #"<circle cx="%.1f" cy="%.1f" r="3" fill="rgb(31,119,180)">"#, x(j), y(v))
                    + "<title>\(xml(points[j].label)) \(MetricCheck.format(v, m))</title></circle>\n"
            }
            // The commit axis: every point's SHA and date, thinned to fit.
            let every = max(1, (points.count + 5) / 6)
            for j in points.indices where j % every == 0 || j == points.count - 1 {
                let date = points[j].time.map { dates.string(from: Date(timeIntervalSince1970: TimeInterval($0))) } ?? ""
                out += String(format: #"<text x="%.1f" y="%.1f" text-anchor="middle" fill="rgb(85,85,85)">%@</text>"#, x(j), y0 + panelH + 14, xml(points[j].label))
                out += String(format: #"<text x="%.1f" y="%.1f" text-anchor="middle" fill="rgb(136,136,136)">%@</text>"#, x(j), y0 + panelH + 27, date) + "\n"
            }
        }
        return out + "</svg>\n"
    }

    static func xml(_ s: String) -> String { HTMLReport.h(s) }
}
