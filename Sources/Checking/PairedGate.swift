import Common
import Configuration
import Evaluation
import Foundation
import GitKit
import ModelIO
import Regression
import TensorEngine

/// The model the current one is timed against under `latency_gate: paired`.
public enum PairedBase {
    /// The current model is the one the baseline measured (same SHA-256): nothing to time.
    case identical(String)
    /// The base revision's pruned model, and where it came from.
    case model(Graph, String)
    /// Paired timing is not possible here, and why (the gate falls back to `normalized`).
    case unavailable(String)
}

/// Prunes and fine-tunes `spec`'s model as a check run does, without scoring it: the model a
/// run of `spec` measures (pruning and fine-tuning are deterministic).
public func rebuildPrunedModel(_ spec: ModelSpec, progress: Progress) throws -> Graph {
    let dense = try loadModel(path: spec.model, architecture: spec.architecture)
    let task = try TaskScoring.make(spec, model: dense)
    let (train, calibration) = task.prepare(dense, try task.load(spec.data.train))
    return try pruneAndFineTune(dense, spec: spec, train: train, calibration: calibration, progress: progress, label: "\(spec.name) (base)").graph
}

/// Finds the base revision's pruned model for `spec`: identical by hash to the baseline's, in
/// the result cache, or rebuilt from git's objects: at the merge-base with `--base`, else at
/// the commit that last wrote the baseline file (its recipe and inputs are the ones recorded),
/// else at the commit the baseline records (when it was recorded on a clean tree).
func pairedBase(spec: ModelSpec, baseline b: Baseline, baselinePath: String, currentSHA: String?, mergeBase: String?,
                repository: Repository?, configPath: String, cache: ResultCache?, machine: MachineDescription,
                progress: Progress) -> PairedBase {
    if let recorded = b.modelSHA256, recorded == currentSHA {
        return .identical("the model is the baseline's (SHA-256 \(recorded.prefix(12)))")
    }
    guard let repository else { return .unavailable("not in a git repository, and the model differs from the baseline's") }
    var candidates: [String] = []
    if let m = mergeBase { candidates.append(m) }
    if let rel = repository.relativePath(baselinePath), let head = try? repository.headCommit(),
       let committed = try? repository.file(rel, at: head), committed == FileManager.default.contents(atPath: baselinePath).map({ [UInt8]($0) }),
       let last = try? repository.history(of: rel, limit: 1).first {
        candidates.append(last.commit)
    }
    if let c = b.recorded.commit, !b.recorded.dirty { candidates.append(c) }
    guard !candidates.isEmpty else {
        return .unavailable("the baseline file is not committed, and the baseline records no clean commit; commit it or pass --base")
    }
    var why = ""
    for commit in candidates {
        guard (try? repository.resolveCommit(commit)) != nil else {
            why = "commit \(commit.prefix(12)) is not in this clone (a shallow clone? fetch its history)"
            continue
        }
        do {
            guard let config = try configurationAt(commit, path: configPath, repository: repository),
                  let old = config.models.first(where: { $0.name == spec.name }) else {
                why = "the model is not in the configuration at \(commit.prefix(12))"
                continue
            }
            let view = InputView(kind: .commit(commit), repository: repository)
            var local = try localized(old, view: view)
            local.threads = spec.threads
            let key = cache?.key(for: local, files: inputFiles(of: local), machine: machine)
            if let cache, let key, let path = cache.modelFile(key) {
                let model = try loadModel(path: path, architecture: nil)
                if try modelFingerprint(model) == currentSHA { return .identical("the model is the one at \(commit.prefix(12)) (result cache)") }
                return .model(model, "\(commit.prefix(12)) (result cache)")
            }
            progress.line("  \(spec.name): rebuilding the pruned model of \(commit.prefix(12)) for paired timing")
            let model = try rebuildPrunedModel(local, progress: progress)
            if let cache, let key { cache.storeModel(key, model) }
            if try modelFingerprint(model) == currentSHA { return .identical("the model is the one at \(commit.prefix(12))") }
            return .model(model, "rebuilt from \(commit.prefix(12))")
        } catch {
            why = "rebuilding the model of \(commit.prefix(12)) failed: \(error)"
        }
    }
    return .unavailable(why)
}

/// The paired verdict on one latency_p50 metric: a regression needs the ratio's interval above
/// 1 + tolerance and a slowdown of more than `floor` µs; an improvement the interval below
/// 1 − tolerance and a speed-up of more than `floor` µs.
public func pairedCheck(metric: String, result r: PairedLatencyResult, tolerance: Double, floor: Double, source: String) -> MetricCheck {
    let status: MetricCheck.Status
    if r.low > 1 + tolerance && r.currentP50 - r.baseP50 > floor {
        status = .regressed
    } else if r.high < 1 - tolerance && r.baseP50 - r.currentP50 > floor {
        status = .improved
    } else {
        status = .pass
    }
    let note = String(format: "paired at %d thread: ×%.3f [%.3f, %.3f] over %d pairs against the base model (%@)",
                      pairedTimingThreads, r.ratio, r.low, r.high, r.pairs, source)
    return MetricCheck(metric: metric, current: r.currentP50, baseline: r.baseP50, tolerance: tolerance, status: status,
                       interval: r.low...r.high, note: note)
}

/// The thread count paired timing runs at. On a shared 2-core runner two threads swing by up
/// to 2× between stretches of time for every engine (the second core is shared), and a pair
/// does not always share the swing; one thread holds the ratio to ±3 % (docs/performance.md).
/// The engine's results are the same for any thread count, so one thread measures what the
/// recipe changed.
public let pairedTimingThreads = 1

/// `checks` with their timings judged by the paired gate: latency_p50 by the ratio to the base
/// model, the other latency statistics reported (the p50 is gated).
func pairedTimingChecks(_ checks: [MetricCheck], base: PairedBase, run: ModelRunResult, spec: ModelSpec, progress: Progress) throws -> [MetricCheck] {
    // The paired result of each latency_p50 metric, by its name (with its target).
    var paired: [String: PairedLatencyResult] = [:]
    if case .model(let model, _) = base, let current = run.model, let feeds = run.latencyFeeds {
        let started = Date()
        defer { progress.line(String(format: "  %@: paired timing took %.1f ms", spec.name, 1000 * Date().timeIntervalSince(started))) }
        let targets = spec.latency.targets.isEmpty ? [LatencyTarget()] : spec.latency.targets
        for target in targets {
            if target.isLocal {
                for b in spec.latency.batchSizes {
                    let inputs = feeds(b)
                    let name = MetricNames.onTarget(MetricNames.latency("p50", batch: b), target.name)
                    // Stop once the interval decides the verdict: wholly beyond 1 ± tolerance,
                    // or wholly within it.
                    let tol = spec.tolerances.tolerance(for: name) ?? .infinity
                    let decided = { (lo: Double, hi: Double) in lo > 1 + tol || hi < 1 - tol || (hi < 1 + tol && lo > 1 - tol) }
                    paired[name] = PairedLatency.measure(batchSize: b, settings: spec.latency, decided: decided,
                                                         base: { _ = model.predict(inputs, threads: pairedTimingThreads) },
                                                         current: { _ = current.predict(inputs, threads: pairedTimingThreads) })
                }
            } else if run.devices[target.name ?? ""]?.hasPrefix("skipped") != true {
                // Both models go to the device and are timed there, alternately.
                let m = try RemoteLatency.measure(model: current, base: model, feeds: feeds(spec.latency.batchSizes.max()!), target: target,
                                                  settings: spec.latency, threads: pairedTimingThreads)
                for r in m.paired { paired[MetricNames.onTarget(MetricNames.latency("p50", batch: r.batchSize), target.name)] = r }
            }
        }
    }
    return checks.map { c in
        guard MetricNames.isTiming(c.metric), let batch = MetricNames.batch(of: c.metric) else { return c }
        let target = MetricNames.target(of: c.metric)
        let value = run.metrics[c.metric] ?? c.current
        switch base {
        case .identical(let why):
            return MetricCheck(metric: c.metric, current: value, baseline: value, tolerance: c.tolerance, status: c.tolerance == nil ? .info : .pass,
                               interval: 1...1, note: "paired: \(why): ratio 1, nothing to time")
        case .model(_, let source):
            let p50 = MetricNames.onTarget(MetricNames.latency("p50", batch: batch), target)
            guard c.metric == p50, let r = paired[p50], let tol = c.tolerance else {
                return MetricCheck(metric: c.metric, current: value, baseline: c.baseline, tolerance: nil, status: .info,
                                   note: "paired: the gate judges latency_p50")
            }
            let check = pairedCheck(metric: c.metric, result: r, tolerance: tol, floor: spec.latency.pairedFloorMicroseconds, source: source)
            progress.line("  \(spec.name): \(c.metric) \(check.note ?? "") → \(check.status.rawValue)")
            return check
        case .unavailable:
            return c
        }
    }
}

/// Timing checks with the device each remote target was measured on in their notes; a skipped
/// target's timings are skipped with its reason.
func deviceChecks(_ checks: [MetricCheck], run: ModelRunResult, spec: ModelSpec, baseline: [String: Double]) -> [MetricCheck] {
    guard spec.latency.targets.contains(where: { !$0.isLocal }) else { return checks }
    var out = checks.map { c -> MetricCheck in
        guard MetricNames.isTiming(c.metric), let device = run.devices[MetricNames.target(of: c.metric) ?? ""] else { return c }
        var c = c
        if device.hasPrefix("skipped: ") {
            c.status = .skipped
            c.note = String(device.dropFirst(9))
        } else {
            c.note = ["measured on \(device)", c.note].compactMap { $0 }.joined(separator: "; ")
        }
        return c
    }
    // A skipped target measured nothing: its baseline's timings are listed as skipped.
    let present = Set(out.map(\.metric))
    for (target, device) in run.devices where device.hasPrefix("skipped: ") {
        for (name, value) in baseline.sorted(by: { $0.key < $1.key })
        where MetricNames.isTiming(name) && (MetricNames.target(of: name) ?? "") == target && !present.contains(name) {
            out.append(MetricCheck(metric: name, current: value, baseline: value, tolerance: nil, status: .skipped, note: String(device.dropFirst(9))))
        }
    }
    return out
}
