import Foundation
import Testing
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
                                     sameMachine: false)[0]
        #expect(other.status == .skipped)
    }

    @Test func exitCodes() {
        func verdict(_ checks: [MetricCheck], missing: Bool = false) -> ModelVerdict {
            ModelVerdict(index: 0, model: "m", baselineFile: "baselines/m.json", checks: checks,
                         baselineProblem: missing ? BaselineError(file: "f", "missing") : nil)
        }
        let pass = MetricCheck(metric: "accuracy", current: 1, baseline: 1, tolerance: 0, status: .pass)
        let bad = MetricCheck(metric: "accuracy", current: 0, baseline: 1, tolerance: 0, status: .regressed)
        #expect(verdictExitCode(for: [verdict([pass])]) == 0)
        #expect(verdictExitCode(for: [verdict([pass]), verdict([bad])]) == 1)
        #expect(verdictExitCode(for: [verdict([bad]), verdict([], missing: true)]) == 3)
        var skipped = verdict([], missing: true)
        skipped.skipReason = "inputs unchanged"
        #expect(verdictExitCode(for: [skipped]) == 0, "a skipped model needs no baseline")
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
