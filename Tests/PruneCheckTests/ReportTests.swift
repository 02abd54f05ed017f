import Foundation
import Testing
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
            ModelVerdict(model: "lenet\u{1B}[31m-red\u{01}", baselineFile: "baselines/lenet.json", checks: checks,
                         baseline: .success(ComparisonTests.baseline), recipeChanged: true, seconds: 0.00001),
            ModelVerdict(model: "other", baselineFile: "baselines/other.json", checks: [],
                         baseline: .failure(BaselineError(file: "baselines/other.json", "baseline is missing")), recipeChanged: false, seconds: 2),
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
        #expect(xml.contains(#"<testsuites name="prunecheck" tests="4" failures="1" errors="1""#))
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
        let table = TextTable.render(Self.verdicts())
        #expect(table.contains("REGRESSED"))
        #expect(table.contains("BASELINE MISSING"))
    }
}
