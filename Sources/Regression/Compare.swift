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
    /// Significance of the change: McNemar's exact test for accuracy, Mann–Whitney U for latency.
    public var pValue: Double?
    /// 95 % bootstrap interval of the change (accuracy).
    public var interval: ClosedRange<Double>?
    /// Extra context: normalization, why a change is not significant, why it is skipped.
    public var note: String?

    public init(metric: String, current: Double, baseline: Double?, tolerance: Double?, status: Status,
                pValue: Double? = nil, interval: ClosedRange<Double>? = nil, note: String? = nil) {
        self.metric = metric
        self.current = current
        self.baseline = baseline
        self.tolerance = tolerance
        self.status = status
        self.pValue = pValue
        self.interval = interval
        self.note = note
    }

    /// Change from the baseline in the metric's units (nil without a baseline).
    public var delta: Double? { baseline.map { current - $0 } }
}

public enum Comparison {
    /// Checks every current metric against the baseline. A metric with a tolerance is gated:
    /// higher-is-better metrics regress when they drop by more than the absolute tolerance,
    /// lower-is-better ones when they rise by more than tolerance × baseline. Values exactly at
    /// the edge pass. Metrics without a tolerance are reported as `info`.
    ///
    /// Timings follow `timing`, and a timing beyond its tolerance regresses only when the rank
    /// test on the latency samples says the slowdown is significant (p < `evidence.alpha`);
    /// without samples the tolerance alone decides. Accuracy changes carry McNemar's exact
    /// p-value and a bootstrap interval when both sides have per-example correctness; for
    /// accuracy-type metrics the tolerance decides.
    public static func check(
        current: [String: Double], baseline: [String: Double], tolerances: Tolerances,
        timing: TimingPolicy = .compare(factor: 1), evidence: Evidence = Evidence()
    ) -> [MetricCheck] {
        current.keys.sorted().map { name in
            var value = current[name]!
            let base = baseline[name]
            guard let tol = tolerances.tolerance(for: name) else {
                return MetricCheck(metric: name, current: value, baseline: base, tolerance: nil, status: .info)
            }
            var note: String?
            var factor = 1.0
            if MetricNames.isTiming(name) {
                switch timing {
                case .skip(let reason):
                    return MetricCheck(metric: name, current: value, baseline: base, tolerance: tol, status: .skipped, note: reason)
                case .report(let reason):
                    return MetricCheck(metric: name, current: value, baseline: base, tolerance: nil, status: .info, note: reason)
                case .compare(let f):
                    factor = f
                    if f != 1 {
                        value *= f
                        note = String(format: "normalized by the machines' calibration scores, ×%.3f", f)
                    }
                }
            }
            guard let base else {
                return MetricCheck(metric: name, current: value, baseline: nil, tolerance: tol, status: .missingBaseline)
            }
            var status = verdict(name, value: value, base: base, tolerance: tol)
            var check = MetricCheck(metric: name, current: value, baseline: base, tolerance: tol, status: status, note: note)
            if MetricNames.isTiming(name), status == .regressed, value - base <= evidence.latencyFloor {
                status = .pass
                check.status = .pass
                check.note = [note, String(format: "slower by less than the %.0f us noise floor", evidence.latencyFloor)].compactMap { $0 }.joined(separator: "; ")
            }
            if MetricNames.isTiming(name), status == .regressed, let batch = MetricNames.batch(of: name),
               let now = evidence.currentLatency[batch], let then = evidence.baselineLatency[batch], !now.isEmpty, !then.isEmpty {
                let p = Statistics.mannWhitneyGreater(now.map { $0 * factor }, then)
                check.pValue = p
                if p >= evidence.alpha {
                    status = .pass
                    check.status = .pass
                    check.note = [note, "slower, but not significantly (alpha \(evidence.alpha))"].compactMap { $0 }.joined(separator: "; ")
                }
            }
            if name == MetricNames.accuracy, value != base, let now = evidence.currentCorrect, let then = evidence.baselineCorrect,
               now.count == then.count, !now.isEmpty {
                let worse = zip(then, now).filter { $0 && !$1 }.count
                let better = zip(then, now).filter { !$0 && $1 }.count
                check.pValue = Statistics.mcNemarExact(worse: worse, better: better)
                check.interval = Statistics.bootstrapAccuracyChange(baseline: then, current: now)
            }
            return check
        }
    }

    static func verdict(_ name: String, value: Double, base: Double, tolerance tol: Double) -> MetricCheck.Status {
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
        return gain < -allowed - 1e-12 ? .regressed : gain > allowed + 1e-12 ? .improved : .pass
    }

    /// Marks regressions against the merge-base's baseline that pass against the baseline the
    /// branch itself recorded as `accepted`.
    public static func accept(_ checks: [MetricCheck], branchBaseline: [String: Double], tolerances: Tolerances) -> [MetricCheck] {
        checks.map { c in
            guard c.status == .regressed, let own = branchBaseline[c.metric] else { return c }
            guard verdict(c.metric, value: c.current, base: own, tolerance: c.tolerance ?? 0) != .regressed else { return c }
            var accepted = c
            accepted.status = .accepted
            return accepted
        }
    }
}

/// How timings are compared (`latency_gate` and the machines involved).
public enum TimingPolicy: Equatable, Sendable {
    /// Gate timings; current values are multiplied by `factor` first (1 on the same machine,
    /// the calibration ratio when normalizing across machines).
    case compare(factor: Double)
    /// Report timings as skipped, with the reason (another machine, `same-machine` gate).
    case skip(String)
    /// Report timings without gating them (`latency_gate: off`).
    case report(String)
}

/// Per-sample evidence behind the significance tests.
public struct Evidence: Equatable, Sendable {
    /// Latency samples (µs) by batch size, of this run and of the baseline (its stored quantiles).
    public var currentLatency: [Int: [Double]]
    public var baselineLatency: [Int: [Double]]
    /// Per-example correctness on the eval set, of this run and of the baseline.
    public var currentCorrect: [Bool]?
    public var baselineCorrect: [Bool]?
    /// Significance level of the latency rank test.
    public var alpha: Double
    /// Slowdowns of at most this many microseconds are not regressions.
    public var latencyFloor: Double

    public init(currentLatency: [Int: [Double]] = [:], baselineLatency: [Int: [Double]] = [:],
                currentCorrect: [Bool]? = nil, baselineCorrect: [Bool]? = nil, alpha: Double = 0.01, latencyFloor: Double = 0) {
        self.latencyFloor = latencyFloor
        self.currentLatency = currentLatency
        self.baselineLatency = baselineLatency
        self.currentCorrect = currentCorrect
        self.baselineCorrect = baselineCorrect
        self.alpha = alpha
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
    /// Cross-validation: each fold's metrics (empty without `cv`).
    public var folds: [[String: Double]]
    /// Confusion matrix on the eval set (row = true class, column = predicted), empty for regression.
    public var confusion: [[Int]]
    /// Seconds spent pruning, fine-tuning and evaluating.
    public var seconds: Double
    /// What stopped the run at this model (a missing file, bad data), if something did.
    public var runError: String?
    /// The unpruned model's size and speed, for "what pruning bought": `params`, `macs`,
    /// `bytes_compressed`, `latency_p50@bN` (empty when unknown).
    public var dense: [String: Double] = [:]
    /// 50 quantiles of each batch size's latency samples (µs): this run's and the baseline's,
    /// for the HTML report's distributions (not in the JSON report).
    public var latencyQuantiles: [Int: [Double]] = [:]
    public var baselineLatencyQuantiles: [Int: [Double]] = [:]

    public init(index: Int, model: String, baselineFile: String, checks: [MetricCheck] = [], baselineCommit: String? = nil,
                baselineToolVersion: String? = nil, baselineProblem: BaselineError? = nil, recipeChanged: Bool = false,
                baselineChange: BaselineChange? = nil, skipReason: String? = nil, cached: Bool = false,
                folds: [[String: Double]] = [], confusion: [[Int]] = [], seconds: Double = 0, runError: String? = nil) {
        self.runError = runError
        self.folds = folds
        self.confusion = confusion
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
        skipReason == nil && runError == nil && (baselineProblem != nil || checks.contains { $0.status == .missingBaseline })
    }

    /// "pass", "regressed", "baseline_missing", "error" or "skipped".
    public var status: String {
        if runError != nil { return "error" }
        if skipReason != nil { return "skipped" }
        if hasMissingBaseline { return "baseline_missing" }
        return regressions.isEmpty ? "pass" : "regressed"
    }
}
