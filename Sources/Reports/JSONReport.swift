import Common
import Foundation
import Regression

/// The machine-readable report (`--json`), schema `prunecheck-report/1` (docs/report-schema.md).
/// It holds everything the other reports are made from, so shards' reports can be merged.
public enum JSONReport {
    public static let schema = "prunecheck-report/1"

    public static func render(_ verdicts: [ModelVerdict], context: RunContext, exitCode: Int32) -> String {
        JSONValue.object([
            ("schema", .string(schema)),
            ("tool_version", .string(context.toolVersion)),
            ("timestamp", .string(context.timestamp)),
            ("hostname", .string(context.hostname)),
            ("git", .object([
                ("commit", optional(context.commit)),
                ("branch", optional(context.branch)),
                ("dirty", .bool(context.dirty)),
                ("base_revision", optional(context.baseRevision)),
                ("merge_base", optional(context.mergeBase)),
            ])),
            ("machine", .object([
                ("cpu", .string(context.machine.cpu)), ("arch", .string(context.machine.arch)),
                ("cores", .number(Double(context.machine.cores))), ("os", .string(context.machine.os)),
                ("isa", .string(context.machine.isa)),
                ("calibration_gflops", context.calibration.map { .number(($0 * 100).rounded() / 100) } ?? .null),
                ("energy_counters", .string(context.energyCounters ? "available" : "unavailable")),
                ("instruction_counter", .string(context.instructionCounter ? "available" : "unavailable")),
            ])),
            ("shard", optional(context.shard)),
            ("exit_code", .number(Double(exitCode))),
            ("models", .array(verdicts.map(model))),
        ]).rendered()
    }

    static func optional(_ s: String?) -> JSONValue { s.map(JSONValue.string) ?? .null }

    static func metricsObject(_ m: [String: Double]) -> JSONValue {
        .object(m.keys.sorted().map { ($0, .number(m[$0]!)) })
    }

    static func model(_ v: ModelVerdict) -> JSONValue {
        let confusion: [JSONValue] = v.confusion.map { row in .array(row.map { .number(Double($0)) }) }
        let folds: [JSONValue] = v.folds.map(metricsObject)
        let change: JSONValue = v.baselineChange.map { c in
            .object([("commit", optional(c.commit)), ("summary", optional(c.summary)),
                     ("old", metricsObject(c.old)), ("new", metricsObject(c.new))])
        } ?? .null
        let error: JSONValue = v.baselineProblem.map { .object([("file", .string($0.file)), ("problem", .string($0.problem))]) } ?? .null
        return .object([
            ("index", .number(Double(v.index))),
            ("name", .string(v.model)),
            ("baseline_file", .string(v.baselineFile)),
            ("status", .string(v.status)),
            ("seconds", .number((v.seconds * 1000).rounded() / 1000)),
            ("cached", .bool(v.cached)),
            ("recipe_changed", .bool(v.recipeChanged)),
            ("skip_reason", optional(v.skipReason)),
            ("run_error", optional(v.runError)),
            ("baseline_commit", optional(v.baselineCommit)),
            ("baseline_tool_version", optional(v.baselineToolVersion)),
            ("baseline_error", error),
            ("baseline_change", change),
            ("cv_folds", .array(folds)),
            ("confusion_matrix", .array(confusion)),
            ("dense", .object(v.dense.keys.sorted().map { ($0, .number(v.dense[$0]!)) })),
            ("metrics", .array(v.checks.map(check))),
        ])
    }

    static func check(_ c: MetricCheck) -> JSONValue {
                .object([
                    ("name", .string(c.metric)),
                    ("current", .number(c.current)),
                    ("baseline", c.baseline.map(JSONValue.number) ?? .null),
                    ("delta", c.delta.map(JSONValue.number) ?? .null),
                    ("tolerance", c.tolerance.map(JSONValue.number) ?? .null),
                    ("status", .string(c.status.rawValue)),
                    ("p_value", c.pValue.map(JSONValue.number) ?? .null),
                    ("interval", c.interval.map { .array([.number($0.lowerBound), .number($0.upperBound)]) } ?? .null),
                    ("note", optional(c.note)),
                    ("message", .string(c.message)),
                ])
    }

    /// A report file that cannot be read back.
    public struct ParseError: UserFacingError {
        public let file: String
        public let problem: String
        public var description: String { "\(file): \(problem)" }
    }

    /// Reads a report back: its run context and verdicts.
    public static func parse(_ bytes: [UInt8], file: String) throws -> (context: RunContext, verdicts: [ModelVerdict], exitCode: Int32) {
        let json: JSONValue
        do { json = try JSONValue.parse(bytes) } catch { throw ParseError(file: file, problem: "\(error)") }
        guard json["schema"]?.string == schema else { throw ParseError(file: file, problem: "not a \(schema) report") }
        func req<T>(_ v: T?, _ what: String) throws -> T {
            guard let v else { throw ParseError(file: file, problem: "field '\(what)' is missing or has the wrong type") }
            return v
        }
        let git = json["git"], machine = json["machine"]
        var context = RunContext(
            commit: git?["commit"]?.string, branch: git?["branch"]?.string, dirty: git?["dirty"]?.bool ?? false,
            toolVersion: try req(json["tool_version"]?.string, "tool_version"),
            timestamp: try req(json["timestamp"]?.string, "timestamp"), hostname: json["hostname"]?.string ?? "",
            machine: MachineDescription(cpu: machine?["cpu"]?.string ?? "unknown", arch: machine?["arch"]?.string ?? "unknown",
                                        cores: Int(machine?["cores"]?.double ?? 0), os: machine?["os"]?.string ?? "unknown",
                                        isa: machine?["isa"]?.string ?? "unknown"),
            baseRevision: git?["base_revision"]?.string, mergeBase: git?["merge_base"]?.string, shard: json["shard"]?.string)
        context.calibration = machine?["calibration_gflops"]?.double
        context.energyCounters = machine?["energy_counters"]?.string == "available"
        context.instructionCounter = machine?["instruction_counter"]?.string == "available"
        guard case .array(let models)? = json["models"] else { throw ParseError(file: file, problem: "field 'models' is missing") }
        func metrics(_ v: JSONValue?) -> [String: Double] {
            guard case .object(let pairs)? = v else { return [:] }
            var out: [String: Double] = [:]
            for (k, x) in pairs { if let d = x.double { out[k] = d } }
            return out
        }
        var verdicts = try models.enumerated().map { (i, m) -> ModelVerdict in
            guard case .array(let checks)? = m["metrics"] else { throw ParseError(file: file, problem: "models[\(i)].metrics is missing") }
            return ModelVerdict(
                index: Int(try req(m["index"]?.double, "models[\(i)].index")),
                model: try req(m["name"]?.string, "models[\(i)].name"),
                baselineFile: try req(m["baseline_file"]?.string, "models[\(i)].baseline_file"),
                checks: try checks.enumerated().map { (j, c) in
                    guard let status = c["status"]?.string.flatMap(MetricCheck.Status.init(rawValue:)) else {
                        throw ParseError(file: file, problem: "models[\(i)].metrics[\(j)].status is invalid")
                    }
                    var interval: ClosedRange<Double>?
                    if case .array(let ends)? = c["interval"], ends.count == 2, let lo = ends[0].double, let hi = ends[1].double, lo <= hi {
                        interval = lo...hi
                    }
                    return MetricCheck(metric: try req(c["name"]?.string, "models[\(i)].metrics[\(j)].name"),
                                       current: try req(c["current"]?.double, "models[\(i)].metrics[\(j)].current"),
                                       baseline: c["baseline"]?.double, tolerance: c["tolerance"]?.double, status: status,
                                       pValue: c["p_value"]?.double, interval: interval, note: c["note"]?.string)
                },
                baselineCommit: m["baseline_commit"]?.string, baselineToolVersion: m["baseline_tool_version"]?.string,
                baselineProblem: m["baseline_error"]?["file"]?.string.map { BaselineError(file: $0, m["baseline_error"]?["problem"]?.string ?? "") },
                recipeChanged: m["recipe_changed"]?.bool ?? false,
                baselineChange: m["baseline_change"].flatMap { c -> BaselineChange? in
                    guard case .object = c else { return nil }
                    return BaselineChange(old: metrics(c["old"]), new: metrics(c["new"]), commit: c["commit"]?.string, summary: c["summary"]?.string)
                },
                skipReason: m["skip_reason"]?.string, cached: m["cached"]?.bool ?? false,
                folds: { if case .array(let f)? = m["cv_folds"] { return f.map(metrics) } else { return [] } }(),
                confusion: {
                    guard case .array(let rows)? = m["confusion_matrix"] else { return [] }
                    return rows.map { row in if case .array(let cells) = row { return cells.map { Int($0.double ?? 0) } } else { return [] } }
                }(),
                seconds: m["seconds"]?.double ?? 0, runError: m["run_error"]?.string)
        }
        for (i, m) in models.enumerated() { verdicts[i].dense = metrics(m["dense"]) }
        return (context, verdicts, Int32(json["exit_code"]?.double ?? 0))
    }
}

/// The plain-text table printed by `check`.
public enum TextTable {
    /// How much of each model the terminal table lists.
    public enum Detail: Sendable {
        /// Gated metrics, and ungated ones whose value changed (timing statistics aside).
        case short
        /// Every metric but per-class and per-layer details.
        case all
    }

    /// Whether a row belongs in the table at `detail`.
    static func shows(_ c: MetricCheck, _ detail: Detail) -> Bool {
        if c.status == .info && MetricNames.isDetail(c.metric) { return false }
        if detail == .all || c.status != .info { return true }
        guard let base = c.baseline, !MetricNames.isTiming(c.metric) else { return false }
        return MetricCheck.format(base, c.metric) != MetricCheck.format(c.current, c.metric)
    }

    /// `color` wraps verdicts in ANSI colors. `group` wraps each model's rows in the CI's
    /// collapsible sections (GitHub Actions' `::group::`, GitLab's section markers).
    public static func render(_ verdicts: [ModelVerdict], color: Bool = false, detail: Detail = .all, group: CIGroups = .none) -> String {
        guard group == .none else {
            return verdicts.map { v in group.wrap(Console.inline(v.model), render([v], color: color, detail: detail)) }.joined()
        }
        var rows: [[String]] = [["model", "metric", "baseline", "now", "change", "tolerance", "verdict"]]
        for v in verdicts {
            if let error = v.runError {
                rows.append([v.model, "-", "-", "-", "-", "-", "ERROR: \(error)"])
                continue
            }
            if let reason = v.skipReason {
                rows.append([v.model, "-", "-", "-", "-", "-", "skipped: \(reason)"])
                continue
            }
            if let problem = v.baselineProblem {
                rows.append([v.model, "-", "-", "-", "-", "-", "BASELINE MISSING: \(problem.problem)"])
                continue
            }
            for c in v.checks where shows(c, detail) {
                let unit = MetricNames.unit(of: c.metric)
                rows.append([
                    v.model, c.metric,
                    c.baseline.map { MetricCheck.format($0, c.metric) + unit } ?? "-",
                    MetricCheck.format(c.current, c.metric) + unit,
                    c.delta.map { formatChange($0, c.baseline ?? 0, c.metric) } ?? "-",
                    c.tolerance.map { formatTolerance($0, c.metric) } ?? "-",
                    c.status == .regressed ? "REGRESSED" : c.status.rawValue,
                ])
            }
        }
        // Cells hold names from files: one line each, nothing a terminal or a runner executes.
        rows = rows.map { $0.map(Console.inline) }
        let last = rows[0].count - 1
        return TextColumns.render(rows) { _, column, cell in color && column == last ? colorize(cell) : cell }
            .joined(separator: "\n") + "\n"
    }

    /// The closing block: each failure on one line with its evidence, and how to accept it.
    public static func failures(_ verdicts: [ModelVerdict], color: Bool = false) -> String {
        var lines: [String] = []
        for v in verdicts {
            if let error = v.runError {
                lines.append("ERROR \(v.model): \(error)")
                continue
            }
            if let problem = v.baselineProblem, v.skipReason == nil {
                // The file, so that a corrupt one is found without the JSON report.
                let what = problem.problem.contains("missing") ? " MISSING" : " UNREADABLE"
                lines.append("\(color ? colorize("BASELINE") : "BASELINE")\(what) \(v.model): \(problem.file): \(problem.problem)")
                lines.append("  record it: prunecheck baseline update --only \(v.model)")
                continue
            }
            let regressed = v.regressions
            guard !regressed.isEmpty else { continue }
            for c in regressed {
                let unit = MetricNames.unit(of: c.metric)
                var evidence: [String] = []
                if let t = c.tolerance { evidence.append("tolerance \(formatTolerance(t, c.metric))") }
                if let p = c.pValue { evidence.append(String(format: "p %.3g", p)) }
                if let i = c.interval {
                    evidence.append(MetricNames.isTiming(c.metric)
                        ? String(format: "ratio 95%% interval [%.3f, %.3f]", i.lowerBound, i.upperBound)
                        : String(format: "change 95%% interval [%+.4f, %+.4f]", i.lowerBound, i.upperBound))
                }
                let head = color ? colorize("REGRESSED").replacingOccurrences(of: "REGRESSED", with: "FAILED") : "FAILED"
                lines.append("\(head) \(v.model)::\(c.metric)  \(c.baseline.map { MetricCheck.format($0, c.metric) + unit } ?? "-") → "
                             + "\(MetricCheck.format(c.current, c.metric) + unit) (\(evidence.joined(separator: ", ")))")
            }
            lines.append("  intended? accept it: prunecheck baseline update --only \(v.model)")
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    static func colorize(_ verdict: String) -> String {
        let code: String
        switch verdict.split(separator: " ").first.map(String.init) ?? "" {
        case "REGRESSED", "BASELINE": code = "31"
        case "improved", "pass": code = "32"
        case "accepted", "missing_baseline", "skipped:", "skipped": code = "33"
        default: return verdict
        }
        return "\u{1B}[\(code)m\(verdict)\u{1B}[0m"
    }
}

/// "+1.2%" for relative metrics, "+0.0123" for absolute ones.
func formatChange(_ d: Double, _ base: Double, _ metric: String) -> String {
    if MetricRule.of(metric).tolerance == .relative {
        guard base != 0 else { return "-" }
        return String(format: "%+.1f%%", d / base * 100)
    }
    return String(format: "%+.4f", d)
}

func formatTolerance(_ t: Double, _ metric: String) -> String {
    MetricRule.of(metric).tolerance == .relative ? String(format: "%.0f%%", t * 100) : String(format: "%.4f", t)
}

/// Collapsible sections per model in a CI log.
public enum CIGroups: Equatable, Sendable {
    case none
    /// `::group::name` … `::endgroup::`.
    case github
    /// GitLab's `section_start` / `section_end` markers (collapsed).
    case gitlab

    /// Colours on a terminal and with FORCE_COLOR, never with NO_COLOR (no-color.org).
    public static func useColor(_ environment: [String: String], terminal: Bool) -> Bool {
        if let v = environment["NO_COLOR"], !v.isEmpty { return false }
        if let v = environment["FORCE_COLOR"], !v.isEmpty, v != "0" { return true }
        return terminal
    }

    /// From the CI's environment variables.
    public static func from(_ environment: [String: String]) -> CIGroups {
        if environment["GITHUB_ACTIONS"] == "true" { return .github }
        if environment["GITLAB_CI"] == "true" { return .gitlab }
        return .none
    }

    func wrap(_ name: String, _ text: String) -> String {
        switch self {
        case .none: return text
        case .github: return "::group::\(GitHubAnnotations.escapeData(name))\n\(text)::endgroup::\n"
        case .gitlab:
            let id = String(name.map { $0.isLetter || $0.isNumber ? $0 : "_" })
            return "\u{1B}[0Ksection_start:0:\(id)[collapsed=true]\r\u{1B}[0K\(name)\n\(text)\u{1B}[0Ksection_end:0:\(id)\r\u{1B}[0K\n"
        }
    }
}
