import Common
import Foundation
import Testing
import Checking
import Reports
@testable import Regression

@Suite struct ComparisonTests {
    let tolerances = Tolerances(["accuracy": 0.005, "latency_p50": 0.25])

    func status(_ metric: String, now: Double, base: Double) -> MetricCheck.Status {
        Comparison.check(current: [metric: now], baseline: [metric: base], tolerances: tolerances)[0].status
    }

    @Test func accuracyDropBeyondToleranceRegresses() {
        #expect(status("accuracy", now: 0.921, base: 0.946) == .regressed)
        #expect(status("accuracy", now: 0.941, base: 0.946) == .pass)  // exactly at the edge
        #expect(status("accuracy", now: 0.9409, base: 0.946) == .regressed)
        #expect(status("accuracy", now: 0.96, base: 0.946) == .improved)
        let c = Comparison.check(current: ["accuracy": 0.921], baseline: ["accuracy": 0.946], tolerances: tolerances)[0]
        #expect(c.message == "accuracy 0.9210 < baseline 0.9460 - tolerance 0.0050")
    }

    @Test func latencyToleranceIsRelativeAndCoversEveryBatchSize() {
        #expect(status("latency_p50@b1", now: 124, base: 100) == .pass)
        #expect(status("latency_p50@b64", now: 126, base: 100) == .regressed)
        #expect(status("latency_p50@b64", now: 70, base: 100) == .improved)
        #expect(status("latency_p90@b1", now: 1000, base: 100) == .info)  // no tolerance: not gated
    }

    @Test func missingValuesAndOtherMachines() {
        let missing = Comparison.check(current: ["accuracy": 0.9], baseline: [:], tolerances: tolerances)[0]
        #expect(missing.status == .missingBaseline)
        let other = Comparison.check(current: ["latency_p50@b1": 500], baseline: ["latency_p50@b1": 100], tolerances: tolerances,
                                     timing: .skip("another machine"))[0]
        #expect(other.status == .skipped)
        #expect(other.message.contains("another machine"))
        let off = Comparison.check(current: ["latency_p50@b1": 500], baseline: ["latency_p50@b1": 100], tolerances: tolerances,
                                   timing: .report("latency_gate: off"))[0]
        #expect(off.status == .info)
        // Normalized: a machine twice as fast measures half the time; ×2 makes it comparable.
        let normalized = Comparison.check(current: ["latency_p50@b1": 60], baseline: ["latency_p50@b1": 100], tolerances: tolerances,
                                          timing: .compare(factor: 2))[0]
        #expect(normalized.current == 120 && normalized.status == .pass)
    }

    @Test func exitCodes() {
        func verdict(_ checks: [MetricCheck], missing: Bool = false) -> ModelVerdict {
            ModelVerdict(index: 0, model: "m", baselineFile: "baselines/m.json", checks: checks,
                         baselineProblem: missing ? BaselineError(file: "f", "missing") : nil)
        }
        let pass = MetricCheck(metric: "accuracy", current: 1, baseline: 1, tolerance: 0, status: .pass)
        let bad = MetricCheck(metric: "accuracy", current: 0, baseline: 1, tolerance: 0, status: .regressed)
        #expect(overallStatus(of: [verdict([pass])]) == .ok)
        #expect(overallStatus(of: [verdict([pass]), verdict([bad])]) == .regression)
        #expect(overallStatus(of: [verdict([bad]), verdict([], missing: true)]) == .baselineError)
        var skipped = verdict([], missing: true)
        skipped.skipReason = "inputs unchanged"
        #expect(overallStatus(of: [skipped]) == .ok, "a skipped model needs no baseline")
    }

    @Test func branchBaselineAcceptsAnExplicitChangeOnly() {
        let checks = Comparison.check(current: ["accuracy": 0.90, "f1_macro": 0.80], baseline: ["accuracy": 0.95, "f1_macro": 0.95],
                                      tolerances: Tolerances(["accuracy": 0.005, "f1_macro": 0.01]))
        let accepted = Comparison.accept(checks, branchBaseline: ["accuracy": 0.90, "f1_macro": 0.95],
                                         tolerances: Tolerances(["accuracy": 0.005, "f1_macro": 0.01]))
        #expect(accepted.map(\.status) == [.accepted, .regressed])
        #expect(accepted[0].message.contains("accepted by this branch's new baseline"))
    }

    static let baseline = Baseline(
        model: "m", recipeSHA256: "abc", metrics: ["accuracy": 0.9, "latency_p50@b1": 12.5, "params_nonzero": 27030],
        recorded: RecordingContext(commit: String(repeating: "a", count: 40), branch: "main", dirty: false, toolVersion: "0.1.0",
                                   machine: MachineDescription(cpu: "cpu \"x\"", arch: "x86_64", cores: 2, os: "Linux"), threads: 2))
}

@Suite struct BaselineFileTests {
    @Test func roundTripsWithStableText() throws {
        let b = ComparisonTests.baseline
        let text = b.json.rendered()
        let back = try Baseline(data: Data(text.utf8), file: "b.json")
        #expect(back == b)
        #expect(back.json.rendered() == text)
        #expect(text.contains("\"params_nonzero\": 27030\n"))
        #expect(text.contains("\"latency_p50@b1\": 12.5,"))
    }

    @Test func corruptAndMissingFilesAreBaselineErrors() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = (dir as NSString).appendingPathComponent("m.json")
        let missing = #expect(throws: BaselineError.self) { try Baseline.read(path: path) }
        #expect(missing?.problem.contains("prunecheck baseline update") == true)
        try "{\"schema\": \"prunecheck-baseline/1\", \"model\": ".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: BaselineError.self) { try Baseline.read(path: path) }
    }

    @Test func atomicWriteReplacesWholeFilesOnly() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = (dir as NSString).appendingPathComponent("x.json")
        try writeFileAtomically("one\n", to: path)
        try writeFileAtomically("two\n", to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["x.json"])
        // A target that cannot be written leaves no temporary file behind.
        let blocked = (dir as NSString).appendingPathComponent("sub")
        try FileManager.default.createDirectory(atPath: (blocked as NSString).appendingPathComponent("x.json"), withIntermediateDirectories: true)
        #expect(throws: (any Error).self) { try writeFileAtomically("three\n", to: (blocked as NSString).appendingPathComponent("x.json")) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: blocked) == ["x.json"])
    }
}

@Suite struct JSONTests {
    @Test func parserKeepsOrderAndRejectsJunk() throws {
        let v = try JSONValue.parse(Array(#"{"b": [1, 2.5, -3e2], "a": {"s": "x\u00e9\n", "t": true, "n": null}}"#.utf8))
        guard case .object(let pairs) = v else { Issue.record("not an object"); return }
        #expect(pairs.map(\.0) == ["b", "a"])
        #expect(v["a"]?["s"]?.string == "x\u{e9}\n")
        #expect(v["b"] == .array([.number(1), .number(2.5), .number(-300)]))
        for junk in ["{", "[1,]", "{\"a\" 1}", "01x", "\"\u{01}\"", "[1] 2"] {
            #expect(throws: JSONParseError.self, "\(junk)") { try JSONValue.parse(Array(junk.utf8)) }
        }
    }

    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}

@Suite struct StatisticsTests {
    /// Oracles from SciPy 1.17: mannwhitneyu(a, b, alternative="greater", method="asymptotic")
    /// and binomtest(k, n, 0.5).pvalue.
    @Test func matchSciPy() {
        let a: [Double] = [1, 2, 3, 4, 5, 5, 6, 9], b: [Double] = [0.5, 1, 1, 2, 2, 3, 3.5]
        #expect(abs(Statistics.mannWhitneyGreater(a, b) - 0.017778952849960478) < 1e-12)
        #expect(abs(Statistics.mcNemarExact(worse: 3, better: 12) - 0.03515625) < 1e-12)
        #expect(abs(Statistics.mcNemarExact(worse: 0, better: 4) - 0.125) < 1e-12)
        #expect(Statistics.mcNemarExact(worse: 0, better: 0) == 1)
        #expect(Statistics.mcNemarExact(worse: 600, better: 400) < 1e-9)
    }

    @Test func bootstrapIntervalIsSeededAndCoversTheChange() {
        let base = (0..<400).map { $0 % 10 != 0 }          // 90 % right
        let now = (0..<400).map { $0 % 10 != 0 && $0 % 7 != 0 }  // a little worse
        let ci = Statistics.bootstrapAccuracyChange(baseline: base, current: now)
        let change = Double(now.filter { $0 }.count - base.filter { $0 }.count) / 400
        #expect(ci.contains(change) && ci.upperBound < 0)
        #expect(ci == Statistics.bootstrapAccuracyChange(baseline: base, current: now))
    }

    @Test func correctnessBitsRoundTrip() {
        let bits = (0..<1001).map { $0 % 3 == 0 || $0 == 1000 }
        #expect(CorrectnessBits.decode(CorrectnessBits.encode(bits), count: 1001) == bits)
        #expect(CorrectnessBits.decode(CorrectnessBits.encode(bits), count: 2000) == nil)
    }

    @Test func latencyNeedsToleranceFloorAndSignificance() {
        let tol = Tolerances(["latency_p50": 0.25])
        let steady = (0..<200).map { 100 + Double($0 % 7) }
        // 30 % slower and clearly so: regressed, with its p-value.
        var evidence = Evidence(currentLatency: [1: steady.map { $0 * 1.3 }], baselineLatency: [1: Statistics.quantiles(steady.sorted())])
        var c = Comparison.check(current: ["latency_p50@b1": 130], baseline: ["latency_p50@b1": 100], tolerances: tol, evidence: evidence)[0]
        #expect(c.status == .regressed)
        #expect((c.pValue ?? 1) < 1e-6)
        #expect(c.message.contains("Mann-Whitney p="))
        // A p50 beyond the tolerance whose samples do not differ from the baseline's: not significant.
        evidence.currentLatency[1] = steady
        c = Comparison.check(current: ["latency_p50@b1": 130], baseline: ["latency_p50@b1": 100], tolerances: tol, evidence: evidence)[0]
        #expect(c.status == .pass, "\(c.message)")
        // A large relative change of a tiny time stays under the noise floor.
        evidence = Evidence(latencyFloor: 10)
        c = Comparison.check(current: ["latency_p50@b1": 5], baseline: ["latency_p50@b1": 2.5], tolerances: tol, evidence: evidence)[0]
        #expect(c.status == .pass && c.message.contains("noise floor"))
    }

    @Test func accuracyChangesCarryMcNemarAndAnInterval() {
        let base = (0..<100).map { $0 >= 5 }, now = (0..<100).map { $0 >= 12 }
        let c = Comparison.check(current: ["accuracy": 0.88], baseline: ["accuracy": 0.95], tolerances: Tolerances(["accuracy": 0.005]),
                                 evidence: Evidence(currentCorrect: now, baselineCorrect: base))[0]
        #expect(c.status == .regressed)
        #expect(abs((c.pValue ?? 0) - Statistics.mcNemarExact(worse: 7, better: 0)) < 1e-15)
        #expect(c.interval.map { $0.upperBound < 0 } == true)
        #expect(c.message.contains("McNemar p=0.0156"))
    }

    @Test func metricNamesAndRules() {
        for name in ["recall_class_3", "top5_accuracy", "edge/accuracy", "cv_accuracy_std", "latency_p99@b64", "energy_nj", "f1_weighted"] {
            #expect(MetricNames.isKnown(name), "\(name)")
        }
        for name in ["recall_class_x", "top1_accuracy", "accuracy@b1", "bogus", "/accuracy", "cv_bogus_mean"] {
            #expect(!MetricNames.isKnown(name), "\(name)")
        }
        #expect(MetricRule.of("log_loss").direction == .lowerIsBetter)
        #expect(MetricRule.of("cv_accuracy_std").direction == .lowerIsBetter)
        #expect(MetricRule.of("cv_accuracy_mean").direction == .higherIsBetter)
        #expect(MetricRule.of("edge/bytes_sparse") == MetricRule(direction: .lowerIsBetter, tolerance: .relative))
        let t = Tolerances(["accuracy": 0.01, "edge/f1_macro": 0.05, "recall_class_3": 0.02])
        #expect(t.tolerance(for: "edge/accuracy") == 0.01)
        #expect(t.tolerance(for: "edge/f1_macro") == 0.05)
        #expect(t.tolerance(for: "recall_class_3") == 0.02)
        #expect(t.tolerance(for: "recall_class_2") == nil)
    }
}
