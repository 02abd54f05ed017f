import Common
import Dispatch
import Foundation
import Kernels
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
    /// A slowdown smaller than this many microseconds is never a regression: between two
    /// processes on a shared CI runner, a model of a few microseconds moves by about that much.
    public var noiseFloorMicroseconds: Double
    /// The same floor for paired timing, where both models share the machine's state: the
    /// interval of the ratio carries the noise, this only the timer's resolution.
    public var pairedFloorMicroseconds: Double
    /// Where latency is measured: this machine (empty), or devices over SSH. With one unnamed
    /// target its metrics keep their names; named targets (`targets:`) add `[name]`.
    public var targets: [LatencyTarget] = []
    /// How remote targets are reached.
    public var remote = RemoteSettings()

    public init(batchSizes: [Int] = [1], warmup: Int = 10, minRuns: Int = 30, maxSeconds: Double = 2, noiseFloorMicroseconds: Double = 10,
                pairedFloorMicroseconds: Double = 1) {
        self.noiseFloorMicroseconds = noiseFloorMicroseconds
        self.pairedFloorMicroseconds = pairedFloorMicroseconds
        self.batchSizes = batchSizes
        self.warmup = warmup
        self.minRuns = minRuns
        self.maxSeconds = maxSeconds
    }
}

/// A machine latency is measured on: `local`, or `ssh://user@host[:port]`.
public struct LatencyTarget: Equatable, Sendable, CustomStringConvertible {
    /// The name metrics carry (`latency_p50@b1[edge]`); nil for the one target of `target:`.
    public var name: String?
    public var user: String?
    /// nil for this machine.
    public var host: String?
    public var port: Int?

    public init(name: String? = nil, user: String? = nil, host: String? = nil, port: Int? = nil) {
        self.name = name
        self.user = user
        self.host = host
        self.port = port
    }

    public var isLocal: Bool { host == nil }

    /// `ssh://user@host:port` or `local`.
    public var description: String {
        guard let host else { return "local" }
        return "ssh://" + (user.map { "\($0)@" } ?? "") + host + (port.map { ":\($0)" } ?? "")
    }

    /// Parses `local` or `ssh://[user@]host[:port]`; nil otherwise.
    public static func parse(_ text: String, name: String? = nil) -> LatencyTarget? {
        if text == "local" { return LatencyTarget(name: name) }
        guard text.hasPrefix("ssh://") else { return nil }
        var rest = Substring(text.dropFirst(6))
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var user: String?
        if let at = rest.lastIndex(of: "@") {
            user = String(rest[..<at])
            rest = rest[rest.index(after: at)...]
            guard let u = user, !u.isEmpty, u.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }) else { return nil }
        }
        var port: Int?
        if let colon = rest.lastIndex(of: ":") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
            rest = rest[..<colon]
        }
        // A host name or address: nothing a shell or ssh would read as an option.
        guard !rest.isEmpty, !rest.hasPrefix("-"), rest.allSatisfy({ $0.isLetter || $0.isNumber || ".-_".contains($0) }) else { return nil }
        return LatencyTarget(name: name, user: user, host: String(rest), port: port)
    }
}

/// How PruneCheck reaches remote latency targets (the system's OpenSSH client).
public struct RemoteSettings: Equatable, Sendable {
    /// `ssh -i`; nil: the user's keys and agent.
    public var identityFile: String?
    /// The known_hosts file checked against (a file in the repository); nil: the user's.
    /// Host keys are always checked, never accepted silently.
    public var knownHosts: String?
    /// The device's PruneCheck.
    public var remoteCommand = "prunecheck"
    /// Seconds for the whole remote measurement of one model on one target.
    public var timeoutSeconds: Double = 300
    /// An unreachable target skips its timings (with the reason) instead of stopping the check.
    public var skipUnreachable = false

    public init() {}
}

/// Latency of one batch size, in microseconds.
public struct LatencyResult: Equatable, Sendable {
    public var batchSize: Int
    public var p50: Double
    public var p90: Double
    public var p99: Double
    /// Median absolute deviation from the median.
    public var mad: Double
    public var runs: Int
    /// Every timed run, in the order measured.
    public var samples: [Double]

    public init(batchSize: Int, p50: Double, p90: Double, p99: Double, mad: Double, runs: Int, samples: [Double]) {
        self.batchSize = batchSize
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.mad = mad
        self.runs = runs
        self.samples = samples
    }
}

public enum LatencyHarness {
    /// Times single forward passes of `model` on `input` `(B, …)`: `warmup` untimed runs, then
    /// timed runs until there are `minRuns` samples and the 95 % confidence interval of the
    /// median (order statistics n/2 ± 0.98·√n) is within ±1 % of it, or `maxSeconds` have
    /// passed, or there are 100 × `minRuns` samples. `maxSeconds` also stops a slow model early
    /// (after 5 runs).
    public static func measure(model: Graph, input: Tensor, settings: LatencySettings, threads: Int) -> LatencyResult {
        measure(batchSize: input.shape[0], settings: settings) { _ = model.predict(input, threads: threads) }
    }

    /// Times single forward passes on `feeds` (one per graph input, batch first).
    public static func measure(model: Graph, feeds: [Value], settings: LatencySettings, threads: Int) -> LatencyResult {
        measure(batchSize: feeds.first?.shape.first ?? 1, settings: settings) { _ = model.predict(feeds, threads: threads) }
    }

    /// The same loop around any call (`run`): a multi-input model, a training step.
    public static func measure(batchSize batch: Int, settings: LatencySettings, _ run: () -> Void) -> LatencyResult {
        for _ in 0..<settings.warmup { run() }
        var samples: [Double] = []
        let start = DispatchTime.now().uptimeNanoseconds
        let cap = UInt64(settings.maxSeconds * 1e9)
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            run()
            let t1 = DispatchTime.now().uptimeNanoseconds
            samples.append(Double(t1 - t0) / 1000)
            let elapsed = t1 - start
            if elapsed >= cap && samples.count >= 5 { break }
            if samples.count >= 100 * settings.minRuns { break }
            if samples.count >= settings.minRuns && samples.count % 10 == 0 && medianIsTight(samples.sorted()) { break }
        }
        return summarize(samples, batchSize: batch)
    }

    /// One training step of a classifier, timed like inference: forward with the tape,
    /// cross-entropy on `labels`, backward, and an SGD update (momentum 0.9) of every parameter.
    /// It changes the model's weights: time a copy.
    public static func measureTrainingStep(model: Graph, input: Tensor, labels: [Int32], settings: LatencySettings, threads: Int) -> LatencyResult {
        let optimizer = Optimizer(.sgd(momentum: 0.9, nesterov: false, weightDecay: 0), learningRate: 1e-3)
        let parameters = model.parameters.map(\.variable)
        let loss = CrossEntropyLoss()
        let x = Variable(input)
        model.training = true
        model.keepsTrainingSteps = true
        defer {
            model.training = false
            model.keepsTrainingSteps = false
        }
        let tape = Tape()
        return measure(batchSize: input.shape[0], settings: settings) {
            let y = model.forward(x, tape: tape, threads: threads)
            tape.backward(from: loss(y, labels: labels, tape: tape))
            optimizer.step(parameters)
        }
    }

    /// p50, p90, p99 and MAD of raw samples.
    public static func summarize(_ samples: [Double], batchSize: Int) -> LatencyResult {
        let sorted = samples.sorted()
        return LatencyResult(batchSize: batchSize, p50: Quantile.of(sorted, 0.5), p90: Quantile.of(sorted, 0.9),
                             p99: Quantile.of(sorted, 0.99), mad: Quantile.mad(sorted), runs: samples.count, samples: samples)
    }

    /// Whether the distribution-free 95 % interval of the median is within ±1 % of it.
    static func medianIsTight(_ sorted: [Double]) -> Bool {
        let n = Double(sorted.count)
        let lo = Int((n / 2 - 0.98 * n.squareRoot()).rounded(.down)), hi = Int((n / 2 + 0.98 * n.squareRoot()).rounded(.up))
        guard lo >= 0, hi < sorted.count else { return false }
        let median = Quantile.of(sorted, 0.5)
        return (sorted[hi] - sorted[lo]) / 2 <= 0.01 * median
    }

    /// The timing a latency budget allocates by (`auto`): p50 of single calls on `input` after a
    /// warm-up, the lowest of three medians: a shared machine slows some stretches of time down,
    /// and the allocation should follow the model, not them.
    public static func budgetProbe(input: Tensor, threads: Int) -> (Graph) -> Double {
        let settings = LatencySettings(batchSizes: [input.shape[0]], warmup: 5, minRuns: 31, maxSeconds: 0.1)
        return { model in (0..<3).map { _ in measure(model: model, input: input, settings: settings, threads: threads).p50 }.min()! }
    }
}

/// A fixed reference workload whose speed describes the machine, measured in the process that
/// also measures latency: a single-threaded 256×256×256 GEMM, best of 7, in GFLOP/s. Latencies
/// from two machines are compared after scaling by the ratio of their scores.
public enum Calibration {
    public static func score() -> Double {
        let n = 256
        let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
        var c = [Float](repeating: 0, count: n * n)
        var best = UInt64.max
        for _ in 0..<7 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            c.withUnsafeMutableBufferPointer { cp in
                gemm(m: n, n: n, k: n, a: a, lda: n, transposeA: false, b: b, ldb: n, transposeB: false,
                     c: cp.baseAddress!, ldc: n, accumulate: false, threads: 1)
            }
            best = min(best, DispatchTime.now().uptimeNanoseconds - t0)
        }
        return 2 * Double(n * n * n) / Double(max(best, 1))
    }
}

/// The CPU latency is measured on, for machine fingerprints and reports: its model name and the
/// widest vector instruction set the kernels use on it (the kernels' own detection, so the
/// fingerprint and the code that runs cannot disagree).
public enum CPUInfo {
    /// /proc/cpuinfo's "model name", or "unknown".
    public static let modelName: String = {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
              let colon = line.firstIndex(of: ":") else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }()

    /// "avx512", "avx2" (x86-64) or "generic": the kernels in use.
    public static var isa: String { KernelISA.detected.rawValue }
}
