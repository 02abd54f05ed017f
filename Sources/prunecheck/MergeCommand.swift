import ArgumentParser
import Checking
import Common
import Foundation
import Regression
import Reports

/// `prunecheck merge`: combines the JSON reports of shards into one set of reports.
struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge the JSON reports of `check --shard i/n` runs into one JSON, JUnit and Markdown report.",
        discussion: "Exits like `check` would have for the whole suite: 0, 1 or 3 (2 for unreadable or overlapping reports).")

    @Argument(help: "The shards' JSON reports.")
    var inputs: [String]

    @OptionGroup var reports: ReportOptions

    func run() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one JSON report") }
        var context: RunContext?
        var verdicts: [ModelVerdict] = []
        var seen: [String: String] = [:]
        for file in inputs {
            guard let data = FileManager.default.contents(atPath: file) else { throw InputError("\(file): cannot read the file") }
            let parsed = try JSONReport.parse([UInt8](data), file: file)
            if let c = context, c.commit != parsed.context.commit {
                throw InputError("\(file): comes from commit \(parsed.context.commit ?? "none"), the others from \(c.commit ?? "none")")
            }
            for v in parsed.verdicts {
                if let other = seen[v.model] { throw InputError("\(file): model \(v.model) is also in \(other)") }
                seen[v.model] = file
            }
            context = context ?? parsed.context
            verdicts += parsed.verdicts
        }
        var merged = context!
        merged.shard = nil
        // The earliest start among the shards stands for the run.
        verdicts.sort { $0.index < $1.index }
        throw ExitCode(try reports.emit(verdicts, context: merged))
    }
}
