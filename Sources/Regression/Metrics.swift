/// Which way a metric is better, and how its tolerance is read.
public struct MetricRule: Equatable, Sendable {
    public enum Direction: Sendable { case higherIsBetter, lowerIsBetter }
    public enum ToleranceKind: Sendable {
        /// A drop of at most `tolerance` in the metric's own units.
        case absolute
        /// A rise of at most `tolerance` × baseline.
        case relative
    }
    public var direction: Direction
    public var tolerance: ToleranceKind

    /// The rule of a metric name (`accuracy`, `latency_p50@b64`, …). Quality metrics are
    /// higher-is-better with absolute tolerances; cost metrics (latency, nonzero parameters)
    /// are lower-is-better with relative tolerances.
    public static func of(_ name: String) -> MetricRule {
        let family = MetricNames.family(of: name)
        if family.hasPrefix("latency_") || family == MetricNames.paramsNonzero {
            return MetricRule(direction: .lowerIsBetter, tolerance: .relative)
        }
        return MetricRule(direction: .higherIsBetter, tolerance: .absolute)
    }
}

/// The metric names of the contract, shared by the config's tolerances, baselines and reports.
public enum MetricNames {
    public static let accuracy = "accuracy"
    public static let precisionMacro = "precision_macro"
    public static let recallMacro = "recall_macro"
    public static let f1Macro = "f1_macro"
    public static let sparsity = "sparsity"
    public static let paramsNonzero = "params_nonzero"

    /// `latency_p50@b64` and the like.
    public static func latency(_ percentile: Int, batch: Int) -> String { "latency_p\(percentile)@b\(batch)" }

    /// The name without its `@b…` qualifier: the key a tolerance may be given under.
    public static func family(of name: String) -> String {
        name.firstIndex(of: "@").map { String(name[..<$0]) } ?? name
    }

    /// Every name a tolerance may use: fixed names and the latency families.
    public static let tolerable: Set<String> = [
        accuracy, precisionMacro, recallMacro, f1Macro, sparsity, paramsNonzero, "latency_p50", "latency_p90",
    ]

    /// Whether `name` is a metric a tolerance may refer to (a family, or a family@bN).
    public static func isKnown(_ name: String) -> Bool {
        guard tolerable.contains(family(of: name)) else { return false }
        guard let at = name.firstIndex(of: "@") else { return true }
        let suffix = name[name.index(after: at)...]
        return family(of: name).hasPrefix("latency_") && suffix.hasPrefix("b") && Int(suffix.dropFirst()).map { $0 > 0 } == true
    }

    /// Whether the metric is a measured time (machine-dependent, unlike every other metric).
    public static func isTiming(_ name: String) -> Bool { family(of: name).hasPrefix("latency_") }

    /// The unit printed after a value.
    public static func unit(of name: String) -> String {
        family(of: name).hasPrefix("latency_") ? " us" : ""
    }
}

/// Tolerances by metric name; a family name (`latency_p50`) covers every batch size.
public struct Tolerances: Equatable, Sendable {
    public var values: [String: Double]
    public init(_ values: [String: Double] = [:]) { self.values = values }

    /// The tolerance for `metric`: its exact name first, then its family.
    public func tolerance(for metric: String) -> Double? {
        values[metric] ?? values[MetricNames.family(of: metric)]
    }

    /// These tolerances overridden by `other`'s.
    public func merging(_ other: Tolerances) -> Tolerances {
        Tolerances(values.merging(other.values) { _, new in new })
    }
}
