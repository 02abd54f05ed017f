/// Quantiles of a sample, the one implementation every module uses (latency percentiles, the
/// baselines' stored quantiles, the bench's medians).
public enum Quantile {
    /// The q-quantile of sorted values, with linear interpolation (NumPy's default).
    public static func of(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "quantile of no values")
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    /// The median absolute deviation from the median (unscaled) of sorted values.
    public static func mad(_ sorted: [Double]) -> Double {
        let median = of(sorted, 0.5)
        return of(sorted.map { abs($0 - median) }.sorted(), 0.5)
    }
}
