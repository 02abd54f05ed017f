import Common
import Foundation
import Testing
import Checking
import Evaluation
@testable import Regression
@testable import Reports

@Suite struct JUnitTests {
    static let context = RunContext(
        commit: String(repeating: "b", count: 40), branch: "main", dirty: false, toolVersion: "0.1.0",
        timestamp: "2026-11-27T12:00:00", hostname: "ci", machine: MachineDescription(cpu: "cpu", arch: "x86_64", cores: 2, os: "Linux"))

    static func verdicts() -> [ModelVerdict] {
        let checks = Comparison.check(
            current: ["accuracy": 0.921, "f1_macro": 0.93, "latency_p50@b1": 10, "latency_p90@b1": 12],
            baseline: ["accuracy": 0.946, "f1_macro": 0.93, "latency_p50@b1": 10],
            tolerances: Tolerances(["accuracy": 0.005, "f1_macro": 0.01, "latency_p50": 0.25]))
        return [
            ModelVerdict(index: 0, model: "lenet\u{1B}[31m-red\u{01}", baselineFile: "baselines/lenet.json", checks: checks,
                         baselineCommit: String(repeating: "a", count: 40), baselineToolVersion: "0.1.0", recipeChanged: true,
                         baselineChange: BaselineChange(old: ["accuracy": 0.95], new: ["accuracy": 0.93], commit: String(repeating: "c", count: 40),
                                                        summary: "Accept <lower> accuracy"),
                         seconds: 0.00001),
            ModelVerdict(index: 1, model: "other", baselineFile: "baselines/other.json",
                         baselineProblem: BaselineError(file: "baselines/other.json", "baseline is missing"), seconds: 2),
            ModelVerdict(index: 2, model: "same", baselineFile: "baselines/same.json", skipReason: "inputs unchanged since abc"),
        ]
    }

    @Test func validatesAgainstTheJenkinsSchemaAndCarriesTheFailure() throws {
        let xml = try JUnitReport.render(Self.verdicts(), context: Self.context)
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = (dir as NSString).appendingPathComponent("r.xml")
        try xml.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try xmllintValidate(file, schema: "\(Repo.fixtures)/junit/xunit-plugin-junit-10.xsd")
        #expect(result.status == 0, "xmllint: \(result.stderr)\n\(xml)")
        #expect(xml.contains(#"<failure message="accuracy 0.9210 &lt; baseline 0.9460 - tolerance 0.0050" type="regression">"#))
        #expect(xml.contains(#"classname="prunecheck.lenet-red#x1""#))
        #expect(xml.contains(#"<testsuites name="prunecheck" tests="5" failures="1" errors="1""#))
        #expect(xml.contains(#"<skipped message="inputs unchanged since abc"/>"#))
        #expect(xml.contains("accuracy: 0.9500 -&gt; 0.9300"))
        #expect(xml.contains(#"time="0.000""#) && !xml.contains("e-05"))
        #expect(xml.contains(#"<property name="baseline_commit" value="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"/>"#))
    }

    @Test func xmlSafeStripsEscapesAndForbiddenCharacters() {
        #expect(xmlSafe("a\u{1B}[1;31mred\u{1B}[0m b") == "ared b")
        #expect(xmlSafe("x\u{0}y\u{0B}z\tok\n") == "x#x0y#xBz\tok\n")
        #expect(xmlSafe("\u{FFFE}é😀") == "#xFFFEé😀")
        #expect(formatSeconds(0.00001) == "0.000")
        #expect(formatSeconds(12.3456) == "12.346")
    }

    @Test func jsonReportParsesAndTableShowsTheRegression() throws {
        let text = JSONReport.render(Self.verdicts(), context: Self.context, exitCode: 3)
        let json = try JSONValue.parse(Array(text.utf8))
        #expect(json["schema"]?.string == "prunecheck-report/1")
        #expect(json["exit_code"]?.double == 3)
        guard case .array(let models)? = json["models"] else { Issue.record("no models"); return }
        #expect(models[0]["status"]?.string == "regressed")
        #expect(models[1]["status"]?.string == "baseline_missing")
        #expect(models[2]["status"]?.string == "skipped")
        let table = TextTable.render(Self.verdicts())
        #expect(table.contains("REGRESSED"))
        #expect(table.contains("BASELINE MISSING"))
    }
}

/// The terminal table and closing block (issue 26): the failure last, with its evidence and
/// the command that accepts it; a short table by default; colours and CI sections by environment.
@Suite struct TerminalLogTests {
    @Test func theClosingBlockNamesEachFailureWithItsEvidence() {
        var verdicts = JUnitTests.verdicts()
        verdicts[0].model = "lenet"
        let text = TextTable.failures(verdicts)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains("FAILED lenet::accuracy  0.9460 → 0.9210 (tolerance 0.0050)"), "\(text)")
        #expect(lines.contains("  intended? accept it: prunecheck baseline update --only lenet"))
        #expect(lines.contains("BASELINE MISSING other: baselines/other.json: baseline is missing"))
        #expect(!text.contains("same"), "a skipped model is not a failure")
        #expect(TextTable.failures([verdicts[2]]).isEmpty)
    }

    @Test func theDefaultTableListsGatedAndChangedMetricsOnly() {
        let checks = Comparison.check(
            current: ["accuracy": 0.95, "log_loss": 0.30, "ece": 0.05, "latency_p90@b1": 12, "latency_p50@b1": 10],
            baseline: ["accuracy": 0.95, "log_loss": 0.20, "ece": 0.05, "latency_p90@b1": 11, "latency_p50@b1": 10],
            tolerances: Tolerances(["accuracy": 0.005, "latency_p50": 0.1]))
        let v = [ModelVerdict(index: 0, model: "m", baselineFile: "b.json", checks: checks)]
        let short = TextTable.render(v, detail: .short), all = TextTable.render(v, detail: .all)
        #expect(short.contains("accuracy") && short.contains("latency_p50@b1") && short.contains("log_loss"))
        #expect(!short.contains("ece") && !short.contains("latency_p90"))
        #expect(all.contains("ece") && all.contains("latency_p90"))
    }

    @Test func theMarkdownSummarySaysWhichTimingsWerePaired() {
        let timed = pairedCheck(metric: "latency_p50@b1", result: PairedLatencyResult(batchSize: 1, baseP50: 10, currentP50: 30, ratio: 3, low: 2.8, high: 3.2, pairs: 20),
                                tolerance: 0.1, floor: 1, source: "rebuilt from abc")
        let same = MetricCheck(metric: "latency_p50@b64", current: 5, baseline: 5, tolerance: 0.1, status: .pass, interval: 1...1,
                               note: "paired: the model is the baseline's (SHA-256 abc): ratio 1, nothing to time")
        let text = MarkdownReport.render([ModelVerdict(index: 0, model: "m", baselineFile: "b.json", checks: [timed, same])],
                                         context: JUnitTests.context, exitCode: 1)
        // The failure with its interval; the passing timing folded, as the same model.
        #expect(text.contains("| ❌ m | latency\\_p50@b1 | 10.0 us → 30.0 us | +200.0% | 10% |") && text.contains("ratio 2.800–3.200"), "\(text)")
        #expect(text.contains("latency\\_p50@b64 5.0 us (same model)"), "\(text)")
    }

    @Test func coloursAndSectionsFollowTheEnvironment() {
        #expect(CIGroups.useColor([:], terminal: true) && !CIGroups.useColor([:], terminal: false))
        #expect(!CIGroups.useColor(["NO_COLOR": "1", "FORCE_COLOR": "1"], terminal: true))
        #expect(CIGroups.useColor(["FORCE_COLOR": "1"], terminal: false))
        #expect(!CIGroups.useColor(["FORCE_COLOR": "0"], terminal: false))
        let v = JUnitTests.verdicts()
        let github = TextTable.render(v, group: CIGroups.from(["GITHUB_ACTIONS": "true"]))
        #expect(github.components(separatedBy: "::group::").count == 4 && github.components(separatedBy: "::endgroup::").count == 4)
        let gitlab = TextTable.render(v, group: CIGroups.from(["GITLAB_CI": "true"]))
        #expect(gitlab.contains("section_start:0:other[collapsed=true]") && gitlab.contains("section_end:0:other"))
        #expect(TextTable.render(v, color: true).contains("\u{1B}[31mREGRESSED"))
    }
}

@Suite struct ReportRoundTripTests {
    @Test func jsonReportReadsBackToTheSameVerdicts() throws {
        let verdicts = JUnitTests.verdicts()
        var context = JUnitTests.context
        context.baseRevision = "main"
        context.mergeBase = String(repeating: "d", count: 40)
        let text = JSONReport.render(verdicts, context: context, exitCode: 3)
        let back = try JSONReport.parse(Array(text.utf8), file: "r.json")
        // Seconds are stored to the millisecond.
        let rounded = verdicts.map { v -> ModelVerdict in
            var r = v
            r.seconds = (v.seconds * 1000).rounded() / 1000
            return r
        }
        #expect(back.verdicts == rounded)
        #expect(back.context.mergeBase == context.mergeBase)
        #expect(back.exitCode == 3)
        #expect(JSONReport.render(back.verdicts, context: back.context, exitCode: back.exitCode) == text)
        #expect(throws: JSONReport.ParseError.self) { try JSONReport.parse(Array("{}".utf8), file: "x.json") }
    }

    @Test func markdownListsWorstFirstAndAnnotationsAreEscaped() {
        let md = MarkdownReport.render(JUnitTests.verdicts(), context: JUnitTests.context, exitCode: 1)
        let lines = md.split(separator: "\n").filter { $0.hasPrefix("| ❌ lenet") }
        #expect(lines.first?.contains("| accuracy |") == true, "\(md)")
        #expect(md.hasPrefix(MarkdownReport.marker + "\n## ❌ PruneCheck: "))
        #expect(md.contains("prunecheck baseline update --only lenet"))
        #expect(md.contains("### Baselines changed by this branch"))
        #expect(md.contains("| accuracy | 0.9500 → 0.9300 |"), "\(md)")
        #expect(md.contains("same: inputs unchanged since abc"))
        let annotations = GitHubAnnotations.render(JUnitTests.verdicts())
        #expect(annotations.count == 2)
        #expect(annotations.allSatisfy { $0.hasPrefix("::error file=baselines/") })
        #expect(annotations.contains { $0.contains("title=prunecheck lenet") && $0.contains("::accuracy 0.9210 < baseline 0.9460") })
        #expect(GitHubAnnotations.escapeProperty("a:b,c%") == "a%3Ab%2Cc%25")
        let many = (0..<15).map { i in
            ModelVerdict(index: i, model: "m\(i)", baselineFile: "b/m\(i).json",
                         checks: [MetricCheck(metric: "accuracy", current: 0.5, baseline: 0.9, tolerance: 0.01, status: .regressed)])
        }
        #expect(GitHubAnnotations.render(many).count == 10)
    }
}
