import Dispatch
import TensorEngine

/// How latency is measured (`latency:` in `prunecheck.yml`).
public struct LatencySettings: Equatable, Sendable {
    public var batchSizes: [Int]
    /// Untimed runs before measuring.
    public var warmup: Int
    /// Timed runs at least (unless `maxSeconds` runs out first, with 5 runs at the least).
    public var minRuns: Int
    /// Cap on the time spent measuring one batch size.
    public var maxSeconds: Double

    public init(batchSizes: [Int] = [1], warmup: Int = 10, minRuns: Int = 30, maxSeconds: Double = 2) {
        self.batchSizes = batchSizes
        self.warmup = warmup
        self.minRuns = minRuns
        self.maxSeconds = maxSeconds
    }
}

/// Latency of one batch size, in microseconds.
public struct LatencyResult: Equatable, Sendable {
    public var batchSize: Int
    public var p50: Double
    public var p90: Double
    public var runs: Int
}

public enum LatencyHarness {
    /// Times single forward passes of `model` on `input` `(B, …)`: `warmup` untimed runs, then
    /// timed runs until there are `minRuns` samples and either `maxSeconds` have passed or there
    /// are 20 × `minRuns` samples; `maxSeconds` also stops a slow model early (after 5 runs).
    public static func measure(model: Sequential, input: Tensor, settings: LatencySettings, threads: Int) -> LatencyResult {
        let batch = input.shape[0]
        for _ in 0..<settings.warmup { _ = model.predict(input, threads: threads) }
        var samples: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        let cap = UInt64(settings.maxSeconds * 1e9)
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = model.predict(input, threads: threads)
            let t1 = DispatchTime.now().uptimeNanoseconds
            samples.append(Double(t1 - t0) / 1000)
            let elapsed = t1 - start
            if samples.count >= settings.minRuns && (elapsed >= cap || samples.count >= 20 * settings.minRuns) { break }
            if elapsed >= cap && samples.count >= 5 { break }
        }
        samples.sort()
        return LatencyResult(batchSize: batch, p50: percentile(samples, 0.5), p90: percentile(samples, 0.9), runs: samples.count)
    }

    /// The q-quantile of sorted values, with linear interpolation (NumPy's default).
    public static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        precondition(!sorted.isEmpty, "percentile of no values")
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }
}
