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
        /// Worse than the merge-base's baseline, but within the baseline this branch recorded:
        /// an explicit, reviewable change of the accepted value.
        case accepted
    }

    public var metric: String
    public var current: Double
    public var baseline: Double?
    public var tolerance: Double?
    public var status: Status

    public init(metric: String, current: Double, baseline: Double?, tolerance: Double?, status: Status) {
        self.metric = metric
        self.current = current
        self.baseline = baseline
        self.tolerance = tolerance
        self.status = status
    }

    /// Change from the baseline in the metric's units (nil without a baseline).
    public var delta: Double? { baseline.map { current - $0 } }

    /// One line for humans, e.g. "accuracy 0.9210 < baseline 0.9460 - tolerance 0.0050".
    public var message: String {
        let rule = MetricRule.of(metric)
        let unit = MetricNames.unit(of: metric)
        let cur = MetricCheck.format(current, metric)
        if status == .accepted, let baseline {
            return "\(metric) \(cur)\(unit) is worse than the merge-base's baseline \(MetricCheck.format(baseline, metric))\(unit); accepted by this branch's new baseline"
        }
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

    /// Marks regressions against the merge-base's baseline that pass against the baseline the
    /// branch itself recorded as `accepted`.
    public static func accept(_ checks: [MetricCheck], branchBaseline: [String: Double], tolerances: Tolerances) -> [MetricCheck] {
        checks.map { c in
            guard c.status == .regressed, let own = branchBaseline[c.metric] else { return c }
            let again = check(current: [c.metric: c.current], baseline: [c.metric: own], tolerances: tolerances)[0]
            guard again.status != .regressed else { return c }
            var accepted = c
            accepted.status = .accepted
            return accepted
        }
    }
}

/// A change the checked branch made to a baseline file (against the merge-base).
public struct BaselineChange: Equatable, Sendable {
    /// Metrics at the merge-base (empty when the file is new on this branch).
    public var old: [String: Double]
    /// Metrics on this branch.
    public var new: [String: Double]
    /// The commit that last changed the file on this branch; nil for uncommitted changes.
    public var commit: String?
    /// That commit's summary line.
    public var summary: String?

    public init(old: [String: Double], new: [String: Double], commit: String?, summary: String?) {
        self.old = old
        self.new = new
        self.commit = commit
        self.summary = summary
    }

    /// Metrics whose value differs, sorted by name.
    public var changedMetrics: [String] {
        Set(old.keys).union(new.keys).filter { old[$0] != new[$0] }.sorted()
    }

    /// "abc123def456 'Accept lower accuracy'" or "uncommitted changes".
    public var origin: String {
        guard let commit else { return "uncommitted changes" }
        return "\(commit.prefix(12)) '\(summary ?? "")'"
    }
}

/// Everything known about one model after a check.
public struct ModelVerdict: Equatable, Sendable {
    /// Position of the model in the configuration (reports keep this order, also after merging shards).
    public var index: Int
    public var model: String
    public var baselineFile: String
    public var checks: [MetricCheck]
    /// Commit and tool version the baseline was recorded with.
    public var baselineCommit: String?
    public var baselineToolVersion: String?
    /// Why the baseline could not be used, if it could not.
    public var baselineProblem: BaselineError?
    /// Whether the recipe differs from the one the baseline was recorded with.
    public var recipeChanged: Bool
    /// The branch's change to the baseline, when checking against a merge-base.
    public var baselineChange: BaselineChange?
    /// Why the model was not run (e.g. its inputs are unchanged), if it was not.
    public var skipReason: String?
    /// Whether the results came from the result cache.
    public var cached: Bool
    /// Seconds spent pruning, fine-tuning and evaluating.
    public var seconds: Double

    public init(index: Int, model: String, baselineFile: String, checks: [MetricCheck] = [], baselineCommit: String? = nil,
                baselineToolVersion: String? = nil, baselineProblem: BaselineError? = nil, recipeChanged: Bool = false,
                baselineChange: BaselineChange? = nil, skipReason: String? = nil, cached: Bool = false, seconds: Double = 0) {
        self.index = index
        self.model = model
        self.baselineFile = baselineFile
        self.checks = checks
        self.baselineCommit = baselineCommit
        self.baselineToolVersion = baselineToolVersion
        self.baselineProblem = baselineProblem
        self.recipeChanged = recipeChanged
        self.baselineChange = baselineChange
        self.skipReason = skipReason
        self.cached = cached
        self.seconds = seconds
    }

    public var regressions: [MetricCheck] { checks.filter { $0.status == .regressed } }
    public var hasMissingBaseline: Bool {
        skipReason == nil && (baselineProblem != nil || checks.contains { $0.status == .missingBaseline })
    }

    /// "pass", "regressed", "baseline_missing" or "skipped".
    public var status: String {
        if skipReason != nil { return "skipped" }
        if hasMissingBaseline { return "baseline_missing" }
        return regressions.isEmpty ? "pass" : "regressed"
    }
}

/// The exit code a set of verdicts calls for: 3 when a baseline is missing or unreadable,
/// else 1 when any metric regressed, else 0.
public func verdictExitCode(for verdicts: [ModelVerdict]) -> Int32 {
    if verdicts.contains(where: \.hasMissingBaseline) { return 3 }
    if verdicts.contains(where: { !$0.regressions.isEmpty }) { return 1 }
    return 0
}
