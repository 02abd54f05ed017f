import Foundation
import Regression

/// The machine-readable report (`--json`), schema `prunecheck-report/1`.
public enum JSONReport {
    public static func render(_ verdicts: [ModelVerdict], context: RunContext, exitCode: Int32) -> String {
        JSONValue.object([
            ("schema", .string("prunecheck-report/1")),
            ("tool_version", .string(context.toolVersion)),
            ("timestamp", .string(context.timestamp)),
            ("git", .object([
                ("commit", context.commit.map(JSONValue.string) ?? .null),
                ("branch", context.branch.map(JSONValue.string) ?? .null),
                ("dirty", .bool(context.dirty)),
            ])),
            ("machine", .object([
                ("cpu", .string(context.machine.cpu)), ("arch", .string(context.machine.arch)),
                ("cores", .number(Double(context.machine.cores))), ("os", .string(context.machine.os)),
            ])),
            ("exit_code", .number(Double(exitCode))),
            ("models", .array(verdicts.map(model))),
        ]).rendered()
    }

    static func model(_ v: ModelVerdict) -> JSONValue {
        var pairs: [(String, JSONValue)] = [
            ("name", .string(v.model)),
            ("baseline_file", .string(v.baselineFile)),
            ("status", .string(v.hasMissingBaseline ? "baseline_missing" : v.regressions.isEmpty ? "pass" : "regressed")),
            ("seconds", .number((v.seconds * 1000).rounded() / 1000)),
            ("recipe_changed", .bool(v.recipeChanged)),
        ]
        switch v.baseline {
        case .success(let b):
            pairs.append(("baseline_commit", b.recorded.commit.map(JSONValue.string) ?? .null))
        case .failure(let e):
            pairs.append(("baseline_error", .string(e.description)))
        }
        pairs.append(("metrics", .array(v.checks.map { c in
            .object([
                ("name", .string(c.metric)),
                ("current", .number(c.current)),
                ("baseline", c.baseline.map(JSONValue.number) ?? .null),
                ("delta", c.delta.map(JSONValue.number) ?? .null),
                ("tolerance", c.tolerance.map(JSONValue.number) ?? .null),
                ("status", .string(c.status.rawValue)),
                ("message", .string(c.message)),
            ])
        })))
        return .object(pairs)
    }
}

/// The plain-text table printed by `check`.
public enum TextTable {
    public static func render(_ verdicts: [ModelVerdict]) -> String {
        var rows: [[String]] = [["model", "metric", "baseline", "now", "change", "tolerance", "verdict"]]
        for v in verdicts {
            if let problem = v.baselineProblem {
                rows.append([v.model, "-", "-", "-", "-", "-", "BASELINE MISSING: \(problem.problem)"])
                continue
            }
            for c in v.checks {
                let unit = MetricNames.unit(of: c.metric)
                let rule = MetricRule.of(c.metric)
                let tol: String = c.tolerance.map { t in
                    rule.tolerance == .relative ? String(format: "%.0f%%", t * 100) : String(format: "%.4f", t)
                } ?? "-"
                rows.append([
                    v.model, c.metric,
                    c.baseline.map { MetricCheckFormat.value($0, c.metric) + unit } ?? "-",
                    MetricCheckFormat.value(c.current, c.metric) + unit,
                    c.delta.map { MetricCheckFormat.change($0, c.baseline ?? 0, c.metric) } ?? "-",
                    tol,
                    c.status == .regressed ? "REGRESSED" : c.status.rawValue,
                ])
            }
        }
        let widths = (0..<rows[0].count).map { col in rows.map { $0[col].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: "  ")
                .trimmingTrailingSpaces()
        }.joined(separator: "\n") + "\n"
    }
}

enum MetricCheckFormat {
    static func value(_ v: Double, _ metric: String) -> String { MetricCheck.format(v, metric) }

    static func change(_ d: Double, _ base: Double, _ metric: String) -> String {
        if MetricRule.of(metric).tolerance == .relative {
            guard base != 0 else { return "-" }
            return String(format: "%+.1f%%", d / base * 100)
        }
        return String(format: "%+.4f", d)
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
