/// Which way a metric is better, and how its tolerance is read.
public struct MetricRule: Equatable, Sendable {
    public enum Direction: Sendable { case higherIsBetter, lowerIsBetter }
    public enum ToleranceKind: Sendable {
        /// A change of at most `tolerance` in the metric's own units.
        case absolute
        /// A rise of at most `tolerance` × baseline.
        case relative
    }
    public var direction: Direction
    public var tolerance: ToleranceKind

    /// The rule of a metric name. Quality scores (accuracy, precision, recall, F1, top-k,
    /// sparsity, R², token accuracy, agreement and cosine similarity with the dense model) are
    /// higher-is-better with absolute tolerances; error measures (log-loss, ECE, the train–eval
    /// gap, MAE, RMSE, KL divergence and RMSE to the dense model, spreads across folds)
    /// lower-is-better, absolute; costs (latency, parameters, MACs, bytes, energy, memory) and
    /// perplexity (a ratio scale: a rise of 10 % means the same at 5 as at 500)
    /// lower-is-better, relative.
    public static func of(_ name: String) -> MetricRule {
        let base = MetricNames.base(of: name)
        if MetricNames.costPrefixes.contains(where: { base.hasPrefix($0) }) || base == MetricNames.perplexity || MetricNames.cvInner(base) == MetricNames.perplexity {
            return MetricRule(direction: .lowerIsBetter, tolerance: .relative)
        }
        if MetricNames.errorNames.contains(base) || base.hasSuffix("_std") || MetricNames.errorNames.contains(MetricNames.cvInner(base) ?? "") {
            return MetricRule(direction: .lowerIsBetter, tolerance: .absolute)
        }
        return MetricRule(direction: .higherIsBetter, tolerance: .absolute)
    }
}

/// The metric names of the contract, shared by the config's tolerances, baselines and reports.
///
/// A name may carry an eval-set prefix (`edge_cases/accuracy`) and, for timings, a batch
/// suffix (`latency_p50@b64`).
public enum MetricNames {
    public static let accuracy = "accuracy"
    public static let precisionMacro = "precision_macro"
    public static let recallMacro = "recall_macro"
    public static let f1Macro = "f1_macro"
    public static let sparsity = "sparsity"
    public static let paramsNonzero = "params_nonzero"
    public static let perplexity = "perplexity"
    public static let tokenAccuracy = "token_accuracy"
    /// Fidelity to the unpruned model on the eval split.
    public static let agreement = "agreement"
    public static let klToDense = "kl_to_dense"
    public static let cosineToDense = "cosine_to_dense"
    public static let outputRMSEToDense = "output_rmse_to_dense"

    static let costPrefixes = ["latency_", "params_", "macs", "bytes_", "energy_", "peak_memory", "instructions"]
    static let errorNames: Set<String> = ["log_loss", "ece", "generalization_gap", "mae", "rmse", klToDense, outputRMSEToDense]

    /// Names a tolerance may use, without eval-set prefix or batch suffix.
    static let fixed: Set<String> = [
        accuracy, precisionMacro, recallMacro, f1Macro, "precision_weighted", "recall_weighted", "f1_weighted",
        "log_loss", "ece", "train_accuracy", "generalization_gap", sparsity, paramsNonzero, "params_total",
        "macs", "macs_nonzero", "bytes_dense", "bytes_sparse", "bytes_compressed", "energy_nj", "energy_measured_uj", "peak_memory_bytes",
        "latency_p50", "latency_p90", "latency_p99", "latency_mad", "instructions", "mae", "rmse", "r2",
        perplexity, tokenAccuracy, agreement, klToDense, cosineToDense, outputRMSEToDense,
    ]

    /// The values a metric can take: fractions in [0, 1], cosines and gaps in [-1, 1], R² up
    /// to 1, perplexity from 1, costs and error measures from 0; a value outside is corrupt.
    public static func validRange(of name: String) -> ClosedRange<Double> {
        let any = -Double.greatestFiniteMagnitude...Double.greatestFiniteMagnitude
        let b = base(of: name)
        let inner = cvInner(b) ?? b
        if b.hasSuffix("_std") { return 0...any.upperBound }
        if inner == cosineToDense || inner == "generalization_gap" { return -1...1 }
        if inner == "r2" { return any.lowerBound...1 }
        if inner == perplexity { return 1...any.upperBound }
        if [accuracy, precisionMacro, recallMacro, f1Macro, "precision_weighted", "recall_weighted", "f1_weighted",
            "train_accuracy", sparsity, tokenAccuracy, agreement, "ece"].contains(inner)
            || isPerClassName(inner) || isTopK(inner) || inner.hasPrefix("sparsity_layer_") {
            return 0...1
        }
        if costPrefixes.contains(where: { inner.hasPrefix($0) }) || errorNames.contains(inner) { return 0...any.upperBound }
        return any
    }

    /// "[0, 1]", "≥ 0" and the like.
    public static func describe(_ range: ClosedRange<Double>) -> String {
        let big = Double.greatestFiniteMagnitude
        func text(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)" }
        switch (range.lowerBound == -big, range.upperBound == big) {
        case (true, true): return "the finite numbers"
        case (true, false): return "≤ \(text(range.upperBound))"
        case (false, true): return "≥ \(text(range.lowerBound))"
        case (false, false): return "[\(text(range.lowerBound)), \(text(range.upperBound))]"
        }
    }

    /// `latency_p50@b64` and the like.
    public static func latency(_ statistic: String, batch: Int) -> String { "latency_\(statistic)@b\(batch)" }

    /// `instructions@b64`: instructions retired per inference at one thread.
    public static func instructions(batch: Int) -> String { "instructions@b\(batch)" }

    /// The name without its `@b…` qualifier (and latency target): the key a tolerance may be
    /// given under.
    public static func family(of name: String) -> String {
        let n = withoutTarget(name)
        return n.firstIndex(of: "@").map { String(n[..<$0]) } ?? n
    }

    /// `edge` for `latency_p50@b1[edge]` (a timing on a named latency target).
    public static func target(of name: String) -> String? {
        guard name.hasSuffix("]"), let open = name.lastIndex(of: "[") else { return nil }
        return String(name[name.index(after: open)..<name.index(before: name.endIndex)])
    }

    /// The name without its `[target]`.
    public static func withoutTarget(_ name: String) -> String {
        guard target(of: name) != nil, let open = name.lastIndex(of: "[") else { return name }
        return String(name[..<open])
    }

    /// `latency_p50@b1[edge]`.
    public static func onTarget(_ name: String, _ target: String?) -> String { target.map { "\(name)[\($0)]" } ?? name }

    /// The family without an eval-set prefix: `edge/latency_p50@b1` → `latency_p50`.
    public static func base(of name: String) -> String {
        let f = family(of: name)
        return f.firstIndex(of: "/").map { String(f[f.index(after: $0)...]) } ?? f
    }

    /// The eval-set prefix of a name, if any.
    public static func evalSet(of name: String) -> String? {
        name.firstIndex(of: "/").map { String(name[..<$0]) }
    }

    /// `accuracy` for `cv_accuracy_mean` / `cv_accuracy_std`.
    static func cvInner(_ base: String) -> String? {
        guard base.hasPrefix("cv_") else { return nil }
        for suffix in ["_mean", "_std"] where base.hasSuffix(suffix) {
            return String(base.dropFirst(3).dropLast(suffix.count))
        }
        return nil
    }

    /// The batch size of a `…@bN` metric.
    public static func batch(of name: String) -> Int? {
        let name = withoutTarget(name)
        guard let at = name.firstIndex(of: "@") else { return nil }
        let suffix = name[name.index(after: at)...]
        return suffix.hasPrefix("b") ? Int(suffix.dropFirst()) : nil
    }

    /// Whether the metric is a measured time (machine-dependent, unlike every other metric).
    public static func isTiming(_ name: String) -> Bool { base(of: name).hasPrefix("latency_") }

    /// Per-class metrics (`recall_class_3`): reported, shown in tables only when gated.
    public static func isPerClass(_ name: String) -> Bool { base(of: name).contains("_class_") }

    /// The sparsity of one pruned layer: `sparsity_layer_fc1`.
    public static func layerSparsity(_ layer: String) -> String { "sparsity_layer_\(layer)" }

    /// Per-class and per-layer metrics: reported and stored, shown in tables only when gated.
    public static func isDetail(_ name: String) -> Bool {
        isPerClass(name) || base(of: name).hasPrefix("sparsity_layer_")
    }

    /// Whether `name` is a metric a tolerance may refer to.
    public static func isKnown(_ name: String) -> Bool {
        if let target = target(of: name) {
            guard !target.isEmpty, target.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }),
                  base(of: name).hasPrefix("latency_") else { return false }
            return isKnown(withoutTarget(name))
        }
        if let set = evalSet(of: name), set.isEmpty || !set.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
            return false
        }
        let b = base(of: name)
        if name.contains("@") {
            guard b.hasPrefix("latency_") || b == "energy_measured_uj" || b == "instructions", (batch(of: name) ?? 0) > 0 else { return false }
        }
        if fixed.contains(b) { return true }
        if let inner = cvInner(b) { return fixed.contains(inner) || isPerClassName(inner) }
        return isPerClassName(b) || isTopK(b) || (b.hasPrefix("sparsity_layer_") && b.count > "sparsity_layer_".count)
    }

    static func isPerClassName(_ b: String) -> Bool {
        for prefix in ["precision_class_", "recall_class_", "f1_class_"] where b.hasPrefix(prefix) {
            return Int(b.dropFirst(prefix.count)).map { $0 >= 0 } ?? false
        }
        return false
    }

    static func isTopK(_ b: String) -> Bool {
        b.hasPrefix("top") && b.hasSuffix("_accuracy") && Int(b.dropFirst(3).dropLast("_accuracy".count)).map { $0 > 1 } == true
    }

    /// A short description of what tolerances may name, for error messages.
    public static let knownDescription =
        "accuracy, precision/recall/f1 _macro, _weighted or _class_N, topK_accuracy, log_loss, ece, train_accuracy, "
        + "generalization_gap, sparsity, params_nonzero, params_total, macs, macs_nonzero, bytes_dense, bytes_sparse, "
        + "bytes_compressed, energy_nj, peak_memory_bytes, latency_p50/p90/p99/mad (also @bN), instructions (also @bN), mae, rmse, r2, "
        + "perplexity, token_accuracy, agreement, kl_to_dense, cosine_to_dense, output_rmse_to_dense, "
        + "sparsity_layer_<layer>, cv_<metric>_mean/_std, and <eval set>/<metric>"

    /// The unit printed after a value.
    public static func unit(of name: String) -> String {
        let b = base(of: name)
        if b.hasPrefix("latency_") { return " us" }
        if b == "energy_nj" { return " nJ" }
        if b == "energy_measured_uj" { return " uJ" }
        if b.hasPrefix("bytes_") || b == "peak_memory_bytes" { return " B" }
        return ""
    }
}

/// Tolerances by metric name. Lookup order: the exact name, its family (`latency_p50` covers
/// every batch size), then for an eval-set metric the same without the set (`edge/accuracy`
/// falls back to `accuracy`).
public struct Tolerances: Equatable, Sendable {
    public var values: [String: Double]
    public init(_ values: [String: Double] = [:]) { self.values = values }

    public func tolerance(for metric: String) -> Double? {
        // `latency_p50@b1[edge]`: the target's own tolerance (`latency_p50[edge]`) first.
        if let target = MetricNames.target(of: metric), let t = values[MetricNames.family(of: metric) + "[\(target)]"] { return t }
        if let t = values[metric] ?? values[MetricNames.family(of: metric)] { return t }
        guard let slash = metric.firstIndex(of: "/") else { return nil }
        return tolerance(for: String(metric[metric.index(after: slash)...]))
    }

    /// These tolerances overridden by `other`'s.
    public func merging(_ other: Tolerances) -> Tolerances {
        Tolerances(values.merging(other.values) { _, new in new })
    }
}
