import Foundation
import Testing
import Checking
import Common
import Configuration
import Regression

/// The check as a library (`CheckRequest.run`), without the binary: verdicts, not exit codes or
/// printed tables. The repository comes from `WorkflowTests.makeRepository` (real git, baselines
/// recorded by `prunecheck baseline update`).
@Suite(.serialized) struct CheckingTests {
    func request(_ dir: String) -> CheckRequest {
        var r = CheckRequest(configPath: "\(dir)/prunecheck.yml", environment: [:])
        r.useCache = false
        return r
    }

    func verdicts(_ outcome: CheckOutcome) -> [ModelVerdict] {
        guard case .checked(let verdicts, _) = outcome else { return [] }
        return verdicts
    }

    /// An unchanged repository passes; a worse recipe regresses its own model's accuracy and
    /// nothing else, and the run's status says so.
    @Test func verdictsFollowTheRecipe() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unchanged = verdicts(try request(dir).run(progress: Progress(interactive: false)))
        #expect(unchanged.map(\.model) == ["digits-a", "digits-b"])
        #expect(unchanged.allSatisfy { $0.regressions.isEmpty && !$0.hasMissingBaseline })
        #expect(overallStatus(of: unchanged) == .ok)
        let baseline = try Baseline.read(path: "\(dir)/baselines/digits-a.json")
        let accuracy = unchanged[0].checks.first { $0.metric == MetricNames.accuracy }
        #expect(accuracy?.current == baseline.metrics[MetricNames.accuracy], "same commit, same accuracy")

        try WorkflowTests.config(sparsityA: "0.97").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        var narrowed = request(dir)
        narrowed.select = { config in
            var c = config
            c.models = c.models.filter { $0.name == "digits-a" }
            return c
        }
        let worse = verdicts(try narrowed.run(progress: Progress(interactive: false)))
        #expect(worse.map(\.model) == ["digits-a"])
        #expect(worse[0].regressions.contains { $0.metric == MetricNames.accuracy })
        #expect(worse[0].recipeChanged)
        #expect(overallStatus(of: worse) == .regression)
    }

    /// Nothing staged: nothing runs. A missing configuration is an input error naming the file.
    @Test func stagedWithoutChangesAndAMissingConfig() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var staged = request(dir)
        staged.staged = true
        guard case .nothingStaged = try staged.run(progress: Progress(interactive: false)) else {
            Issue.record("a clean index must run nothing")
            return
        }
        do {
            _ = try CheckRequest(configPath: "\(dir)/missing.yml", environment: [:]).run(progress: Progress(interactive: false))
            Issue.record("a missing configuration must throw")
        } catch let e as ConfigError {
            #expect(e.description.contains("missing.yml") && e.exitStatus == .inputError)
        }
    }
}
