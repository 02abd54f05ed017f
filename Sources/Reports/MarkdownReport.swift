import Foundation
import Common
import Regression

/// The Markdown summary (`--markdown`, GitHub's step summary, the pull request comment): a
/// headline with counts, the failures first with their evidence, what pruning bought per model,
/// the baselines this branch changed, and the passing checks folded away; short enough to read
/// in a comment (about 30 lines for six models).
public enum MarkdownReport {
    /// The first line of every summary: CI templates find their earlier comment by it.
    public static let marker = "<!-- prunecheck-summary -->"

    public static func render(_ verdicts: [ModelVerdict], context: RunContext, exitCode: Int32) -> String {
        let ran = verdicts.filter { $0.skipReason == nil && $0.runError == nil }
        let failures = worstFirst(verdicts.flatMap { v in v.checks.filter { $0.status == .regressed }.map { (v.model, $0) } })
        let accepted = verdicts.flatMap { v in v.checks.filter { $0.status == .accepted }.map { (v.model, $0) } }
        let failedModels = Set(failures.map(\.0)).count
        var headline: String
        switch exitCode {
        case 0: headline = "✅ PruneCheck: \(ran.count) model(s) pass"
        case 1: headline = "❌ PruneCheck: \(failures.count) regression(s) in \(failedModels) of \(ran.count) model(s)"
        case 2: headline = "⛔ PruneCheck: the check stopped (input error)"
        default: headline = "⚠️ PruneCheck: baseline missing or incomplete"
        }
        if !accepted.isEmpty { headline += " · ⚠️ \(accepted.count) accepted regression(s)" }
        let skipped = verdicts.count - ran.count - verdicts.filter { $0.runError != nil }.count
        if skipped > 0 { headline += " · \(skipped) skipped" }
        var out = "\(marker)\n## \(headline)\n\n"
        var where_ = "Commit `\(context.commit.map { String($0.prefix(12)) } ?? "none")`"
        if let base = context.baseRevision {
            where_ += ", baselines at the merge-base `\(context.mergeBase.map { String($0.prefix(12)) } ?? "?")` with `\(code(base))`"
        }
        if let shard = context.shard { where_ += ", shard \(shard)" }
        out += where_ + ".\n\n"

        for v in verdicts {
            if let error = v.runError { out += "- ⛔ **\(cell(v.model))**: \(cell(error))\n" }
            if let problem = v.baselineProblem, v.skipReason == nil {
                out += "- ⚠️ **\(cell(v.model))**: \(cell(problem.description)); record it with `prunecheck baseline update --only \(code(v.model))`\n"
            }
        }
        if verdicts.contains(where: { $0.runError != nil || ($0.baselineProblem != nil && $0.skipReason == nil) }) { out += "\n" }

        if !failures.isEmpty || !accepted.isEmpty {
            out += "### Failures\n\n| model | metric | baseline → now | change | tolerance | p | 95 % interval |\n|---|---|---|---|---|---|---|\n"
            for (model, c) in failures + accepted {
                let mark = c.status == .accepted ? "⚠️ " : "❌ "
                out += "| \(mark)\(cell(model)) | \(cell(c.metric)) | \(value(c.baseline, c.metric)) → \(value(c.current, c.metric)) | "
                    + "\(c.delta.map { formatChange($0, c.baseline ?? 0, c.metric) } ?? "-") | \(c.tolerance.map { formatTolerance($0, c.metric) } ?? "-") | "
                    + "\(c.pValue.map { String(format: "%.3g", $0) } ?? "-") | \(interval(c)) |\n"
            }
            let models = Set(failures.map(\.0)).sorted()
            if !models.isEmpty {
                out += "\nIntended? Accept it and commit the baseline: `prunecheck baseline update "
                    + models.map { "--only \(code($0))" }.joined(separator: " ") + "`\n"
            }
            if !accepted.isEmpty { out += "\n⚠️ accepted: regressed against the merge-base, within this branch's own new baseline.\n" }
            out += "\n"
        }

        let gains = ran.compactMap { v -> String? in Self.bought(v) }
        if !gains.isEmpty {
            out += "### What pruning bought\n\n| model | parameters | bytes (deflated) | MACs | latency p50 |\n|---|---|---|---|---|\n"
            out += gains.joined()
            out += "\n"
        }

        let changed = verdicts.filter { $0.baselineChange != nil }
        if !changed.isEmpty {
            out += "### Baselines changed by this branch\n\n| model | metric | merge-base → branch | changed by |\n|---|---|---|---|\n"
            for v in changed {
                let c = v.baselineChange!
                for m in c.changedMetrics where !MetricNames.isDetail(m) {
                    out += "| \(cell(v.model)) | \(cell(m)) | \(c.old[m].map { MetricCheck.format($0, m) } ?? "none") → "
                        + "\(c.new[m].map { MetricCheck.format($0, m) } ?? "none") | \(cell(c.origin)) |\n"
                }
            }
            out += "\n"
        }

        // Everything that passed, one line per model, folded.
        let passing = ran.filter { v in v.checks.contains { $0.status == .pass || $0.status == .improved } }
        if !passing.isEmpty {
            let count = passing.reduce(0) { $0 + $1.checks.filter { $0.status == .pass || $0.status == .improved }.count }
            out += "<details><summary>✅ \(count) passing check(s) in \(passing.count) model(s)</summary>\n\n| model | passing checks (now) |\n|---|---|\n"
            for v in passing {
                let items = v.checks.filter { $0.status == .pass || $0.status == .improved }.map { c -> String in
                    var text = "\(cell(c.metric)) \(value(c.current, c.metric))"
                    if c.status == .improved { text += " ↑" }
                    if MetricNames.isTiming(c.metric), let note = c.note {
                        if note.contains("paired"), let i = c.interval { text += i.lowerBound == i.upperBound ? " (same model)" : String(format: " (×%.2f–%.2f)", i.lowerBound, i.upperBound) }
                        if let on = note.range(of: "measured on ") { text += " on \(cell(String(note[on.upperBound...].prefix { $0 != ";" })))" }
                    }
                    return text
                }
                out += "| \(cell(v.model)) | \(items.joined(separator: " · ")) |\n"
            }
            out += "\n</details>\n"
        }
        for v in verdicts {
            if let reason = v.skipReason { out += "- ⏭️ \(cell(v.model)): \(cell(reason))\n" }
        }
        return out
    }

    static func value(_ v: Double?, _ metric: String) -> String {
        v.map { MetricCheck.format($0, metric) + MetricNames.unit(of: metric) } ?? "-"
    }

    static func interval(_ c: MetricCheck) -> String {
        guard let i = c.interval else { return "-" }
        return MetricNames.isTiming(c.metric) ? String(format: "ratio %.3f–%.3f", i.lowerBound, i.upperBound)
            : String(format: "%+.4f to %+.4f", i.lowerBound, i.upperBound)
    }

    /// One row of what pruning bought (see `gains`).
    static func bought(_ v: ModelVerdict) -> String? {
        gains(v).map { "| \(cell(v.model)) | " + $0.map(cell).joined(separator: " | ") + " |\n" }
    }

    /// What pruning bought, as plain text for a table's cells: nonzero parameters, deflated
    /// bytes, MACs on nonzero weights and the p50 at the first batch size, against the unpruned
    /// model's; nil when the run measured no dense model.
    static func gains(_ v: ModelVerdict) -> [String]? {
        let now = Dictionary(v.checks.map { ($0.metric, $0.current) }, uniquingKeysWith: { a, _ in a })
        guard let nonzero = now["params_nonzero"], !v.dense.isEmpty else { return nil }
        func pair(_ a: Double?, _ b: Double?, bytes: Bool = false, unit: String = "") -> String {
            guard let a, let b, a > 0 else { return "-" }
            let f = { (x: Double) in unit.isEmpty ? short(x, bytes: bytes) : String(format: "%.1f", x) + unit }
            return "\(f(a)) → \(f(b)) (\(String(format: b / a < 0.1 ? "%.1f" : "%.0f", 100 * b / a)) %)"
        }
        let latency = v.dense.keys.filter { $0.hasPrefix("latency_p50@b") }.sorted().first
        let latencyText = latency.map { "\(pair(v.dense[$0], now[$0], unit: " us")) at b\(MetricNames.batch(of: $0) ?? 1)" } ?? "-"
        return [pair(v.dense["params"], nonzero), pair(v.dense["bytes_compressed"], now["bytes_compressed"], bytes: true),
                pair(v.dense["macs"], now["macs_nonzero"]), latencyText]
    }

    /// 1.2 k, 3.4 M; bytes as kB and MB.
    static func short(_ x: Double, bytes: Bool) -> String {
        let units = bytes ? [(1e9, " GB"), (1e6, " MB"), (1e3, " kB")] : [(1e9, " G"), (1e6, " M"), (1e3, " k")]
        for (scale, unit) in units where x >= scale { return String(format: "%.3g", x / scale) + unit }
        return String(format: "%.0f", x) + (bytes ? " B" : "")
    }

    /// Text from files (names, commit messages, problems) as inert Markdown in one table cell:
    /// control characters shown escaped, HTML as entities (GitHub renders inline HTML), and the
    /// characters that break a cell or start formatting or links backslash-escaped.
    static func cell(_ s: String) -> String {
        var out = ""
        for c in Console.inline(s).replacingOccurrences(of: "\\n", with: " ") {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "|", "`", "*", "_", "[", "]", "\\", "#", "~", "!": out += "\\\(c)"
            default: out.append(c)
            }
        }
        return out
    }

    /// Text from files inside a code span: control characters escaped, no backtick to end it.
    static func code(_ s: String) -> String {
        Console.inline(s).replacingOccurrences(of: "`", with: "'")
    }
}

/// GitHub Actions workflow commands for failing metrics: `::error file=…,title=…::message`,
/// worst first, at most `limit` (GitHub shows ten per step).
public enum GitHubAnnotations {
    public static func render(_ verdicts: [ModelVerdict], limit: Int = 10) -> [String] {
        var items: [(file: String, title: String, message: String)] = []
        for v in verdicts {
            if let problem = v.baselineProblem {
                items.append((v.baselineFile, "prunecheck \(v.model): baseline", problem.problem))
            }
        }
        let byFile = Dictionary(verdicts.map { ($0.model, $0.baselineFile) }, uniquingKeysWith: { a, _ in a })
        for (model, c) in worstFirst(verdicts.flatMap { v in v.checks.map { (v.model, $0) } })
        where c.status == .regressed || c.status == .missingBaseline {
            items.append((byFile[model]!, "prunecheck \(model): \(c.metric)", c.message))
        }
        return items.prefix(limit).map { "::error file=\(escapeProperty(Console.inline($0.file))),title=\(escapeProperty(Console.inline($0.title)))::\(escapeData(Console.sanitize($0.message)))" }
    }

    /// Escaping of the workflow-command format (as in @actions/core).
    static func escapeData(_ s: String) -> String {
        s.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "\r", with: "%0D").replacingOccurrences(of: "\n", with: "%0A")
    }

    static func escapeProperty(_ s: String) -> String {
        escapeData(s).replacingOccurrences(of: ":", with: "%3A").replacingOccurrences(of: ",", with: "%2C")
    }
}
