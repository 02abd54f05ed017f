import Common
import Regression

/// The Markdown summary (`--markdown`, and GitHub's step summary): one table of metric,
/// baseline, now, change and verdict, worst first, then baseline changes and skipped models.
public enum MarkdownReport {
    public static func render(_ verdicts: [ModelVerdict], context: RunContext, exitCode: Int32) -> String {
        let headline: String
        switch exitCode {
        case 0: headline = "✅ PruneCheck: no regression in \(verdicts.count) model(s)"
        case 1: headline = "❌ PruneCheck: \(verdicts.flatMap(\.regressions).count) regression(s)"
        default: headline = "⚠️ PruneCheck: baseline missing or incomplete"
        }
        var out = "## \(headline)\n\n"
        var where_ = "Commit `\(context.commit.map { String($0.prefix(12)) } ?? "none")`"
        if let base = context.baseRevision {
            where_ += ", baselines at the merge-base `\(context.mergeBase.map { String($0.prefix(12)) } ?? "?")` with `\(code(base))`"
        }
        if let shard = context.shard { where_ += ", shard \(shard)" }
        out += where_ + ".\n\n"
        let rows = worstFirst(verdicts.flatMap { v in v.checks.filter { $0.status != .info }.map { (v.model, $0) } })
        if !rows.isEmpty {
            out += "| model | metric | baseline | now | change | verdict |\n|---|---|---|---|---|---|\n"
            for (model, c) in rows {
                let unit = MetricNames.unit(of: c.metric)
                let verdict: String
                switch c.status {
                case .regressed: verdict = "❌ regressed (tolerance \(c.tolerance.map { formatTolerance($0, c.metric) } ?? "-"))"
                case .missingBaseline: verdict = "⚠️ no baseline"
                case .accepted: verdict = "⚠️ accepted by this branch's baseline"
                case .skipped: verdict = "⏭️ skipped (other machine)"
                case .improved: verdict = "✅ improved"
                default: verdict = "✅ pass"
                }
                // A paired timing says so, with the ratio's interval (or that nothing was timed).
                var detail = ""
                if MetricNames.isTiming(c.metric), let note = c.note, note.contains("paired") {
                    if let i = c.interval, i.lowerBound != i.upperBound {
                        detail = String(format: " (paired: ratio in [%.3f, %.3f])", i.lowerBound, i.upperBound)
                    } else {
                        detail = " (paired: same model)"
                    }
                }
                // Where a remote target measured it ("on pi@edge-7 (Cortex-A76, 4 cores)").
                if MetricNames.isTiming(c.metric), let note = c.note, let on = note.range(of: "measured on ") {
                    let device = note[on.upperBound...].prefix { $0 != ";" }
                    detail += " on \(cell(String(device)))"
                }
                let verdictText = verdict + detail
                out += "| \(cell(model)) | \(cell(c.metric)) | \(c.baseline.map { MetricCheck.format($0, c.metric) + unit } ?? "-") | "
                    + "\(MetricCheck.format(c.current, c.metric) + unit) | \(c.delta.map { formatChange($0, c.baseline ?? 0, c.metric) } ?? "-") | \(verdictText) |\n"
            }
            out += "\n"
        }
        let changed = verdicts.filter { $0.baselineChange != nil }
        if !changed.isEmpty {
            out += "### Baselines changed by this branch\n\n"
            for v in changed {
                let c = v.baselineChange!
                out += "- **\(cell(v.model))** (\(cell(c.origin))): "
                    + c.changedMetrics.map { m in "\(cell(m)) \(c.old[m].map { MetricCheck.format($0, m) } ?? "none") → \(c.new[m].map { MetricCheck.format($0, m) } ?? "none")" }.joined(separator: ", ") + "\n"
            }
            out += "\n"
        }
        for v in verdicts {
            if let reason = v.skipReason { out += "- ⏭️ \(cell(v.model)): \(cell(reason))\n" }
            if let problem = v.baselineProblem { out += "- ⚠️ \(cell(v.model)): \(cell(problem.description)); record it with `prunecheck baseline update --only \(code(v.model))`\n" }
        }
        return out
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
