import Common
import Foundation
import Testing
@testable import Checking
import Configuration
import Evaluation
import GitKit
import Regression

/// The paired latency gate: its statistics on synthetic samples (no timing enters a test), and
/// the base model rebuilt from git for exactness.
@Suite struct PairedLatencyStatisticsTests {
    /// Pairs of (base, current) µs: `n` pairs around `base` µs, the current side `factor` times
    /// slower, each side with its own ±`noise` jitter, and both sides of a pair slowed by the
    /// same factor (1 to `common`) when the machine is busy for a while.
    static func samples(_ n: Int, base: Double, factor: Double, noise: Double = 0.05, common: Double = 1, seed: UInt64 = 1) -> ([Double], [Double]) {
        var rng = Philox(seed: seed, stream: 4)
        var a: [Double] = [], b: [Double] = []
        for _ in 0..<n {
            let busy = 1 + Double(rng.nextUnitFloat()) * (common - 1)
            a.append(base * busy * (1 + noise * (Double(rng.nextUnitFloat()) * 2 - 1)))
            b.append(base * factor * busy * (1 + noise * (Double(rng.nextUnitFloat()) * 2 - 1)))
        }
        return (a, b)
    }

    static func verdict(_ s: ([Double], [Double]), tolerance: Double = 0.1, floor: Double = 1) -> MetricCheck {
        pairedCheck(metric: "latency_p50@b1", result: PairedLatency.result(batchSize: 1, base: s.0, current: s.1),
                    tolerance: tolerance, floor: floor, source: "test")
    }

    @Test func theSameModelPassesEvenWhenTheMachineIsBusy() {
        for seed in 0..<20 as Range<UInt64> {
            // Both sides of a pair slowed by up to 3× together: a 10 % gate holds.
            let s = Self.samples(40, base: 100, factor: 1, common: 3, seed: seed)
            let c = Self.verdict(s)
            #expect(c.status == .pass, "seed \(seed): \(c.note ?? "")")
            #expect(c.interval!.contains(1))
        }
    }

    @Test func aThreefoldSlowdownRegressesAtAnySize() {
        for base in [4.7, 110.0, 5000.0] {
            let c = Self.verdict(Self.samples(40, base: base, factor: 3, common: 2))
            #expect(c.status == .regressed, "\(base) us: \(c.note ?? "")")
            #expect(c.interval!.lowerBound > 2.5 && c.interval!.upperBound < 3.5)
            #expect(abs(c.current / c.baseline! - 3) < 0.5)
        }
    }

    @Test func slowdownsUnderTheFloorOrTheToleranceAndSpeedupsPass() {
        // 3× slower, but 0.4 µs: under the timer-resolution floor.
        #expect(Self.verdict(Self.samples(40, base: 0.2, factor: 3)).status == .pass)
        // 5 % slower against a 10 % tolerance.
        #expect(Self.verdict(Self.samples(60, base: 100, factor: 1.05, noise: 0.01)).status == .pass)
        // Twice as fast.
        #expect(Self.verdict(Self.samples(40, base: 100, factor: 0.5)).status == .improved)
    }

    @Test func theIntervalIsTheSignTestIntervalOfTheMedianRatio() {
        // Ratios 1…9 (one per pair): median 5; n = 9 → order statistics ⌊4.5 − 2.94⌋ = 1 and
        // ⌈4.5 + 2.94⌉ = 8 (0-based) of the sorted ratios: 2 and 9.
        let base = [Double](repeating: 10, count: 9), current = (1...9).reversed().map { Double($0) * 10 }
        let r = PairedLatency.interval(base: base, current: current)
        #expect(r.ratio == 5 && r.low == 2 && r.high == 9)
    }
}

/// The base model comes from git's objects at the baseline's commit: the same weights the
/// baseline measured (its SHA-256 is the one the baseline recorded).
@Suite(.serialized) struct PairedBaseRebuildTests {
    @Test func theBaseModelIsRebuiltExactlyFromTheBaselineCommit() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try CheckConfig.parse(try String(contentsOfFile: "\(dir)/prunecheck.yml", encoding: .utf8), file: "\(dir)/prunecheck.yml")
        let spec = config.models[0]
        let baseline = try Baseline.read(path: config.baselinePath(for: spec.name))
        let recorded = try #require(baseline.modelSHA256)
        let repository = try #require(try Repository.discover(containing: dir))

        // Unchanged: the model is the baseline's, known by its hash, nothing is rebuilt.
        let same = pairedBase(spec: spec, baseline: baseline, baselinePath: config.baselinePath(for: spec.name), currentSHA: recorded, mergeBase: nil, repository: repository,
                              configPath: config.file, cache: nil, machine: RunEnvironment.machineDescription(), progress: Progress(interactive: false))
        guard case .identical = same else { Issue.record("expected identical, got \(same)"); return }

        // A changed recipe in the working tree: the base is rebuilt from the recorded commit.
        try WorkflowTests.config(sparsityA: "0.2").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let rebuilt = pairedBase(spec: spec, baseline: baseline, baselinePath: config.baselinePath(for: spec.name), currentSHA: "other", mergeBase: nil, repository: repository,
                                 configPath: config.file, cache: nil, machine: RunEnvironment.machineDescription(), progress: Progress(interactive: false))
        guard case .model(let model, let source) = rebuilt else { Issue.record("expected a rebuilt model, got \(rebuilt)"); return }
        let head = try git(["rev-parse", "HEAD"], in: dir)
        #expect(source.hasPrefix("rebuilt from \(head.prefix(12))"), "\(source)")
        #expect(try modelFingerprint(model) == recorded)

        // The check says which gate judged the timings.
        let r = try WorkflowTests.prunecheck(["check", "--json", "r.json"], in: dir)
        let report = try String(contentsOfFile: "\(dir)/r.json", encoding: .utf8)
        #expect(report.contains("paired at 1 thread: ×") && report.contains("rebuilt from"), "\(r.stdout)\(r.stderr)")
        #expect(report.contains("paired: the model is the baseline's"), "digits-b is unchanged")
    }

    @Test func withoutTheCommitTheGateSaysWhyAndFallsBack() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try CheckConfig.parse(try String(contentsOfFile: "\(dir)/prunecheck.yml", encoding: .utf8), file: "\(dir)/prunecheck.yml")
        var baseline = try Baseline.read(path: config.baselinePath(for: config.models[0].name))
        baseline.recorded.commit = String(repeating: "ab", count: 20)
        let base = pairedBase(spec: config.models[0], baseline: baseline, baselinePath: "/nonexistent", currentSHA: "other", mergeBase: nil,
                              repository: try Repository.discover(containing: dir), configPath: config.file, cache: nil,
                              machine: RunEnvironment.machineDescription(), progress: Progress(interactive: false))
        guard case .unavailable(let why) = base else { Issue.record("expected unavailable, got \(base)"); return }
        #expect(why.contains("is not in this clone"))
    }
}

/// `instructions@bN`: counted where the kernel allows it, absent (and said to be) where not.
@Suite struct InstructionCountTests {
    @Test func countsAreExactOrAbsent() throws {
        var x: [Double] = (0..<4096).map { Double($0) }
        let work = { for i in x.indices { x[i] = x[i] * 1.0001 + 1 } }
        let first = InstructionCost.perInference(work), second = InstructionCost.perInference(work)
        if InstructionCost.isAvailable {
            let a = try #require(first), b = try #require(second)
            #expect(a == b && a > 4096, "\(a) vs \(b)")
        } else {
            #expect(first == nil && second == nil)
        }
    }
}

/// The check's log with one injected regression: the failure is in the last lines with the
/// model, metric, values and the accept command, and report paths come after the table.
@Suite(.serialized) struct CheckLogTests {
    @Test func theFailureClosesTheLog() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try WorkflowTests.config(sparsityA: "0.98").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let r = try WorkflowTests.prunecheck(["check", "--junit", "r.xml", "--json", "r.json"], in: dir)
        #expect(r.status == 1)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let tail = lines.suffix(15)
        #expect(tail.contains { $0.hasPrefix("FAILED digits-a::accuracy  ") && $0.contains(" → ") && $0.contains("tolerance 0.0050") }, "\(r.stdout)")
        #expect(tail.contains("  intended? accept it: prunecheck baseline update --only digits-a"))
        #expect(lines.last?.hasPrefix("prunecheck: ") == true && lines.last!.contains("digits-a::accuracy"))
        let table = lines.prefix { !$0.hasPrefix("JUnit report:") && !$0.hasPrefix("FAILED") }
        #expect(table.allSatisfy { !$0.contains("report:") })
        #expect(lines.contains("JUnit report: r.xml") && lines.contains("JSON report: r.json"))
        let quiet = try WorkflowTests.prunecheck(["check", "-q"], in: dir)
        #expect(!quiet.stdout.contains("metric") && quiet.stdout.contains("FAILED digits-a::accuracy"))
    }
}

/// `baseline update` leaves a baseline alone when its model is the same and nothing gated
/// moved: the file keeps its bytes (no timing churn in the diff).
@Suite(.serialized) struct BaselineUpdateTests {
    @Test func anUnchangedModelKeepsItsBaselineFile() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = "\(dir)/baselines/digits-a.json"
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        let again = try WorkflowTests.prunecheck(["baseline", "update", "--no-cache"], in: dir)
        #expect(again.status == 0 && again.stdout.contains("kept baselines/digits-a.json"), "\(again.stdout)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
        let forced = try WorkflowTests.prunecheck(["baseline", "update", "--force", "--only", "digits-a"], in: dir)
        #expect(forced.status == 0 && forced.stdout.contains("wrote baselines/digits-a.json"), "\(forced.stdout)")
        try WorkflowTests.config(sparsityA: "0.7").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let changed = try WorkflowTests.prunecheck(["baseline", "update"], in: dir)
        #expect(changed.stdout.contains("wrote baselines/digits-a.json") && changed.stdout.contains("kept baselines/digits-b.json"), "\(changed.stdout)")
    }
}

/// `--base auto` on a GitHub push compares with the previous commit, so `--changed-only`
/// checks what the push changed instead of nothing.
@Suite(.serialized) struct PushBaseTests {
    @Test func aPushIsCheckedAgainstThePreviousCommit() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try git(["rev-parse", "HEAD"], in: dir)
        try WorkflowTests.config(sparsityA: "0.55").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        try git(["commit", "-qam", "Prune digits-a a little harder"], in: dir)
        let r = try WorkflowTests.prunecheck(["check", "--base", "auto", "--changed-only", "--json", "r.json"], in: dir,
                                             environment: ["GITHUB_EVENT_NAME": "push"])
        #expect(r.stderr.contains("a push; comparing with the previous commit \(first.prefix(12))"), "\(r.stderr)")
        #expect(r.stderr.contains("] digits-a (") && !r.stderr.contains("] digits-b ("), "\(r.stderr)")
        let report = try String(contentsOfFile: "\(dir)/r.json", encoding: .utf8)
        #expect(report.contains("\"merge_base\": \"\(first)\""))
    }
}

/// Fine-tuning that diverges stops the check with the likely causes named.
@Suite struct FineTuningDivergenceTests {
    @Test func aLossThatIsNotFiniteIsAnErrorNamingTheCauses() throws {
        let config = try CheckConfig.parse(WorkflowTests.config(), file: "prunecheck.yml")
        let spec = config.models[0]
        #expect(throws: Never.self) { try checkFineTuning([0.9, 0.5, 0.3], spec: spec, label: "x", progress: nil) }
        #expect {
            try checkFineTuning([0.9, .nan], spec: spec, label: "x", progress: nil)
        } throws: { e in
            "\(e)".contains("fine-tuning of 'digits-a' diverged: the loss is nan in epoch 2") && "\(e)".contains("data.scale") && "\(e)".contains("prune.finetune.lr")
        }
    }
}
