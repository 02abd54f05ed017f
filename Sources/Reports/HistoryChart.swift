import Foundation
import Regression

/// A small-multiples line chart: one panel per metric, commits along x, oldest left.
public enum HistoryChart {
    public static func svg(model: String, metrics: [String], points: [(label: String, metrics: [String: Double])]) -> String {
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
