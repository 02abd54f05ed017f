/// The outcome of one metric against its baseline.
public struct MetricCheck: Equatable, Sendable {
    public enum Status: String, Sendable {
        /// Within tolerance.
        case pass
        /// Better than the baseline by more than the tolerance: passes, worth a baseline update.
        case improved
        /// Worse than the baseline by more than the tolerance.
        case regressed
        /// Gated, but the baseline has no value for it.
        case missingBaseline = "missing_baseline"
        /// No tolerance configured: reported, not gated.
        case info
        /// Not comparable: a timing whose baseline was measured on another machine.
        case skipped
    }

    public var metric: String
    public var current: Double
    public var baseline: Double?
    public var tolerance: Double?
    public var status: Status

    /// Change from the baseline in the metric's units (nil without a baseline).
    public var delta: Double? { baseline.map { current - $0 } }

    /// One line for humans, e.g. "accuracy 0.9210 < baseline 0.9460 - tolerance 0.0050".
    public var message: String {
        let rule = MetricRule.of(metric)
        let unit = MetricNames.unit(of: metric)
        let cur = MetricCheck.format(current, metric)
        if status == .skipped {
            return "\(metric) \(cur)\(unit): not gated, the baseline was measured on another machine"
        }
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
        let family = MetricNames.family(of: metric)
        if family == MetricNames.paramsNonzero { return String(Int64(v.rounded())) }
        if family.hasPrefix("latency_") { return String(format: "%.1f", v) }
        return String(format: "%.4f", v)
    }
}

public enum Comparison {
    /// Checks every current metric against the baseline. A metric with a tolerance is gated:
    /// higher-is-better metrics regress when they drop by more than the absolute tolerance,
    /// lower-is-better ones when they rise by more than tolerance × baseline. Values exactly at
    /// the edge pass. Metrics without a tolerance are reported as `info`. Timings are only
    /// comparable on the machine the baseline was measured on: with `sameMachine` false they
    /// are `skipped`.
    public static func check(
        current: [String: Double], baseline: [String: Double], tolerances: Tolerances, sameMachine: Bool = true
    ) -> [MetricCheck] {
        current.keys.sorted().map { name in
            let value = current[name]!
            let base = baseline[name]
            guard let tol = tolerances.tolerance(for: name) else {
                return MetricCheck(metric: name, current: value, baseline: base, tolerance: nil, status: .info)
            }
            if !sameMachine && MetricNames.isTiming(name) {
                return MetricCheck(metric: name, current: value, baseline: base, tolerance: tol, status: .skipped)
            }
            guard let base else {
                return MetricCheck(metric: name, current: value, baseline: nil, tolerance: tol, status: .missingBaseline)
            }
            let rule = MetricRule.of(name)
            // Improvement in the metric's good direction, in tolerance units.
            let gain: Double, allowed: Double
            switch (rule.direction, rule.tolerance) {
            case (.higherIsBetter, .absolute): (gain, allowed) = (value - base, tol)
            case (.higherIsBetter, .relative): (gain, allowed) = (value - base, tol * abs(base))
            case (.lowerIsBetter, .absolute): (gain, allowed) = (base - value, tol)
            case (.lowerIsBetter, .relative): (gain, allowed) = (base - value, tol * abs(base))
            }
            // A 1e-12 slack keeps decimal tolerances like 0.005 exact at the edge.
            let status: MetricCheck.Status = gain < -allowed - 1e-12 ? .regressed : gain > allowed + 1e-12 ? .improved : .pass
            return MetricCheck(metric: name, current: value, baseline: base, tolerance: tol, status: status)
        }
    }
}

/// Everything known about one model after a check.
public struct ModelVerdict: Sendable {
    public var model: String
    public var baselineFile: String
    public var checks: [MetricCheck]
    /// The baseline, or the reason it could not be used.
    public var baseline: Result<Baseline, BaselineError>
    /// Whether the recipe differs from the one the baseline was recorded with.
    public var recipeChanged: Bool
    /// Seconds spent pruning, fine-tuning and evaluating.
    public var seconds: Double

    public init(model: String, baselineFile: String, checks: [MetricCheck], baseline: Result<Baseline, BaselineError>,
                recipeChanged: Bool, seconds: Double) {
        self.model = model
        self.baselineFile = baselineFile
        self.checks = checks
        self.baseline = baseline
        self.recipeChanged = recipeChanged
        self.seconds = seconds
    }

    public var regressions: [MetricCheck] { checks.filter { $0.status == .regressed } }
    public var baselineProblem: BaselineError? {
        if case .failure(let e) = baseline { return e }
        return nil
    }
    public var hasMissingBaseline: Bool { baselineProblem != nil || checks.contains { $0.status == .missingBaseline } }
}

/// The exit code a set of verdicts calls for: 3 when a baseline is missing or unreadable,
/// else 1 when any metric regressed, else 0.
public func verdictExitCode(for verdicts: [ModelVerdict]) -> Int32 {
    if verdicts.contains(where: \.hasMissingBaseline) { return 3 }
    if verdicts.contains(where: { !$0.regressions.isEmpty }) { return 1 }
    return 0
}
