import Common
import Kernels
import Dispatch
import TensorEngine

/// The base revision's model and the current one timed against each other.
public struct PairedLatencyResult: Equatable, Sendable {
    public var batchSize: Int
    /// Medians of each side's runs (µs).
    public var baseP50: Double
    public var currentP50: Double
    /// The median of the per-pair ratios current / base, and its 95 % interval.
    public var ratio: Double
    public var low: Double
    public var high: Double
    public var pairs: Int

    public init(batchSize: Int, baseP50: Double, currentP50: Double, ratio: Double, low: Double, high: Double, pairs: Int) {
        self.batchSize = batchSize
        self.baseP50 = baseP50
        self.currentP50 = currentP50
        self.ratio = ratio
        self.low = low
        self.high = high
        self.pairs = pairs
    }
}

/// Paired timing: two models run alternately in one process (ABBA…: same thread pool, same
/// warm caches, same inputs), so that whatever slows the machine down for a while slows both.
/// The verdict is on the ratio of their times, pair by pair.
public enum PairedLatency {
    /// Times `base` and `current` alternately: max(2, `warmup` / 2) untimed runs of each (the
    /// current model comes warm from its own timing), then pairs (the order flips every pair)
    /// until there are max(10, `minRuns` / 3) pairs and the 95 % interval
    /// of the median ratio is within ±2 % of it (a fifth of a 10 % tolerance), or 2 × `maxSeconds`
    /// have passed (with 5 pairs at the least), or there are 100 × `minRuns` pairs.
    /// `decided` (given the interval so far) stops it as soon as the verdict cannot change.
    public static func measure(batchSize: Int, settings: LatencySettings, decided: (Double, Double) -> Bool = { _, _ in false },
                               base: () -> Void, current: () -> Void) -> PairedLatencyResult {
        for _ in 0..<max(2, settings.warmup / 2) { base(); current() }
        var a: [Double] = [], b: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        let cap = UInt64(2 * settings.maxSeconds * 1e9)
        func time(_ f: () -> Void) -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            f()
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000
        }
        while true {
            if a.count % 2 == 0 {
                a.append(time(base))
                b.append(time(current))
            } else {
                b.append(time(current))
                a.append(time(base))
            }
            let n = a.count
            if DispatchTime.now().uptimeNanoseconds - start >= cap && n >= 5 { break }
            if n >= 100 * settings.minRuns { break }
            if n >= max(10, settings.minRuns / 3) && n % 5 == 0 {
                let r = interval(base: a, current: b)
                if (r.high - r.low) / 2 <= 0.02 * r.ratio || decided(r.low, r.high) { break }
            }
        }
        return result(batchSize: batchSize, base: a, current: b)
    }

    /// The result of paired samples (`base[i]` and `current[i]` timed one after the other).
    public static func result(batchSize: Int, base: [Double], current: [Double]) -> PairedLatencyResult {
        let r = interval(base: base, current: current)
        return PairedLatencyResult(batchSize: batchSize, baseP50: Quantile.of(base.sorted(), 0.5), currentP50: Quantile.of(current.sorted(), 0.5),
                                   ratio: r.ratio, low: r.low, high: r.high, pairs: base.count)
    }

    /// The median of the ratios current[i] / base[i] and its distribution-free 95 % interval:
    /// the order statistics n/2 ∓ 0.98·√n of the sorted ratios (the sign-test interval of a
    /// median; for n < 6 the smallest and largest ratio).
    public static func interval(base: [Double], current: [Double]) -> (ratio: Double, low: Double, high: Double) {
        precondition(base.count == current.count && !base.isEmpty, "paired samples needed")
        let ratios = zip(current, base).map { $0 / max($1, 1e-9) }.sorted()
        let n = Double(ratios.count)
        let lo = max(Int((n / 2 - 0.98 * n.squareRoot()).rounded(.down)), 0)
        let hi = min(Int((n / 2 + 0.98 * n.squareRoot()).rounded(.up)), ratios.count - 1)
        return (Quantile.of(ratios, 0.5), ratios[lo], ratios[hi])
    }
}

/// Instructions retired per inference at one thread (`instructions@bN`): after two warm-up
/// calls, the fewest of five single calls (a call can only gain instructions: a page fault's
/// user-space part, a first-touch path). Nil where the kernel denies the counter.
public enum InstructionCost {
    /// Whether the kernel lets this process count instructions.
    public static var isAvailable: Bool { InstructionCounter.isAvailable }

    public static func perInference(_ run: () -> Void) -> Double? {
        guard InstructionCounter.isAvailable else { return nil }
        run()
        run()
        var fewest = Int.max
        for _ in 0..<5 {
            guard let n = InstructionCounter.count(run) else { return nil }
            fewest = min(fewest, n)
        }
        return Double(fewest)
    }
}
