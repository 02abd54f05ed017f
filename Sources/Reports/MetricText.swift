import Foundation
import Regression

// How a verdict reads: every report, the terminal table and the progress lines print metrics
// through these, so Regression decides and Reports words it.

extension MetricCheck {
    /// One line for humans, e.g. "accuracy 0.9210 < baseline 0.9460 - tolerance 0.0050
    /// (McNemar p=0.0021, 95% CI of change [-0.0390, -0.0110])".
    public var message: String {
        var extra: [String] = []
        if let pValue {
            extra.append((MetricNames.isTiming(metric) ? "Mann-Whitney p=" : "McNemar p=") + MetricCheck.formatP(pValue))
        }
        if let interval {
            extra.append(String(format: "95%% CI of change [%+.4f, %+.4f]", interval.lowerBound, interval.upperBound))
        }
        if let note { extra.append(note) }
        return extra.isEmpty ? baseMessage : "\(baseMessage) (\(extra.joined(separator: "; ")))"
    }

    public static func formatP(_ p: Double) -> String {
        p < 0.0001 ? String(format: "%.1e", p) : String(format: "%.4f", p)
    }

    public var baseMessage: String {
        let rule = MetricRule.of(metric)
        let unit = MetricNames.unit(of: metric)
        let cur = MetricCheck.format(current, metric)
        if status == .accepted, let baseline {
            return "\(metric) \(cur)\(unit) is worse than the merge-base's baseline \(MetricCheck.format(baseline, metric))\(unit); accepted by this branch's new baseline"
        }
        if status == .skipped { return "\(metric) \(cur)\(unit): not gated" }
        guard let baseline else {
            return status == .missingBaseline
                ? "\(metric) \(cur)\(unit): the baseline has no value for it"
                : "\(metric) \(cur)\(unit) (not gated: no tolerance)"
        }
        let base = MetricCheck.format(baseline, metric)
        guard let tolerance else { return "\(metric) \(cur)\(unit), baseline \(base)\(unit) (not gated: no tolerance)" }
        switch (rule.direction, rule.tolerance) {
        case (.higherIsBetter, _):
            let tol = String(format: "%.4f", tolerance)
            switch status {
            case .regressed: return "\(metric) \(cur) < baseline \(base) - tolerance \(tol)"
            case .improved: return "\(metric) \(cur) > baseline \(base) + tolerance \(tol) (improved)"
            default: return "\(metric) \(cur) within tolerance \(tol) of baseline \(base)"
            }
        case (.lowerIsBetter, _):
            let pct = String(format: "%.0f%%", tolerance * 100)
            switch status {
            case .regressed: return "\(metric) \(cur)\(unit) > baseline \(base)\(unit) + \(pct)"
            case .improved: return "\(metric) \(cur)\(unit) < baseline \(base)\(unit) - \(pct) (improved)"
            default: return "\(metric) \(cur)\(unit) within \(pct) of baseline \(base)\(unit)"
            }
        }
    }

    /// A value as reports print it: 4 decimals, latency 1, counts none.
    public static func format(_ v: Double, _ metric: String) -> String {
        let base = MetricNames.base(of: metric)
        if ["params_", "macs", "bytes_", "peak_memory"].contains(where: { base.hasPrefix($0) }) { return String(Int64(v.rounded())) }
        if base.hasPrefix("latency_") || base == "energy_nj" { return String(format: "%.1f", v) }
        return String(format: "%.4f", v)
    }
}
