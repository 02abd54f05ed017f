import Common
import Foundation

/// Significance tests behind the verdicts. Pure functions; all randomness is seeded.
public enum Statistics {
    /// One-sided Mann–Whitney U test that values in `a` tend to be larger than in `b`
    /// (e.g. current latencies slower than the baseline's). Normal approximation with mid-ranks
    /// for ties, tie-corrected variance and a continuity correction, as asv and SciPy
    /// (`alternative="greater"`, `method="asymptotic"`) do. Returns the p-value.
    public static func mannWhitneyGreater(_ a: [Double], _ b: [Double]) -> Double {
        let n1 = Double(a.count), n2 = Double(b.count)
        guard n1 > 0, n2 > 0 else { return 1 }
        let all = (a.map { ($0, 0) } + b.map { ($0, 1) }).sorted { $0.0 < $1.0 }
        var ranks = [Double](repeating: 0, count: all.count)
        var tieTerm = 0.0
        var i = 0
        while i < all.count {
            var j = i
            while j + 1 < all.count && all[j + 1].0 == all[i].0 { j += 1 }
            let mid = Double(i + j) / 2 + 1
            for k in i...j { ranks[k] = mid }
            let t = Double(j - i + 1)
            tieTerm += t * t * t - t
            i = j + 1
        }
        let r1 = zip(all, ranks).reduce(0.0) { $0 + ($1.0.1 == 0 ? $1.1 : 0) }
        let u1 = r1 - n1 * (n1 + 1) / 2
        let n = n1 + n2
        let variance = n1 * n2 / 12 * ((n + 1) - tieTerm / (n * (n - 1)))
        guard variance > 0 else { return u1 > n1 * n2 / 2 ? 0 : 1 }
        let z = (u1 - n1 * n2 / 2 - 0.5) / variance.squareRoot()
        return 0.5 * erfc(z / 2.0.squareRoot())
    }

    /// McNemar's exact test (two-sided) for paired correctness: `worse` examples the baseline
    /// got right and the current model wrong, `better` the reverse. p = min(1, 2·P(X ≤ min))
    /// with X ~ Binomial(worse + better, 1/2).
    public static func mcNemarExact(worse: Int, better: Int) -> Double {
        let n = worse + better
        guard n > 0 else { return 1 }
        let k = min(worse, better)
        // Σ_{i ≤ k} C(n, i) / 2ⁿ, in logs to stay finite for large n.
        var logTerm = -Double(n) * log(2)  // i = 0
        var cdf = exp(logTerm)
        if k > 0 {
            for i in 1...k {
                logTerm += log(Double(n - i + 1)) - log(Double(i))
                cdf += exp(logTerm)
            }
        }
        return min(1, 2 * cdf)
    }

    /// Percentile bootstrap interval of the change in accuracy (current − baseline) over
    /// paired examples: `resamples` resamples of the examples, seeded, so the interval is the
    /// same on every run.
    public static func bootstrapAccuracyChange(
        baseline: [Bool], current: [Bool], resamples: Int = 2000, level: Double = 0.95, seed: UInt64 = 0
    ) -> ClosedRange<Double> {
        precondition(baseline.count == current.count && !baseline.isEmpty, "paired samples needed")
        let n = baseline.count
        let diff = zip(current, baseline).map { Double(($0 ? 1 : 0) - ($1 ? 1 : 0)) }
        var rng = Philox(seed: seed)
        var changes: [Double] = []
        changes.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var sum = 0.0
            for _ in 0..<n { sum += diff[rng.nextInt(below: n)] }
            changes.append(sum / Double(n))
        }
        changes.sort()
        let lo = changes[Int((Double(resamples) * (1 - level) / 2).rounded(.down))]
        let hi = changes[min(resamples - 1, Int((Double(resamples) * (1 + level) / 2).rounded(.down)))]
        return lo...hi
    }

    /// `count` evenly spaced quantiles ((i + ½)/count) of sorted values: a compact, fixed-size
    /// stand-in for a sample, stored in baselines for the rank test.
    public static func quantiles(_ sorted: [Double], count: Int = 50) -> [Double] {
        guard !sorted.isEmpty else { return [] }
        return (0..<count).map { i in Quantile.of(sorted, (Double(i) + 0.5) / Double(count)) }
    }
}

/// Per-example correctness, stored compactly in baselines: bit i set when example i was right.
public enum CorrectnessBits {
    public static func encode(_ correct: [Bool]) -> String {
        var bytes = [UInt8](repeating: 0, count: (correct.count + 7) / 8)
        for (i, c) in correct.enumerated() where c { bytes[i / 8] |= 1 << UInt8(i % 8) }
        return Data(bytes).base64EncodedString()
    }

    public static func decode(_ text: String, count: Int) -> [Bool]? {
        guard let data = Data(base64Encoded: text), data.count == (count + 7) / 8 else { return nil }
        let bytes = [UInt8](data)
        return (0..<count).map { bytes[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
    }
}
