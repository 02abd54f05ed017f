import Common
import CLibXML2
import Regression

/// A failure of libxml2's writer.
public struct XMLWriterError: UserFacingError {
    public let operation: String
    public var description: String { "libxml2: \(operation) failed" }
}

/// JUnit XML through libxml2's text writer: one `testsuite` per model, one `testcase` per
/// gated metric (`classname` = `prunecheck.<model>`, `name` = metric), a `failure` with a
/// one-line `message` and the details as text for each regression, an `error` for a missing
/// or unreadable baseline. Suite properties carry the commit, baseline commit and tool
/// version. The output validates against Jenkins xunit-plugin's junit-10.xsd.
public enum JUnitReport {
    public static func render(_ verdicts: [ModelVerdict], context: RunContext) throws -> String {
        let writer = try XMLTextWriter()
        try writer.startDocument()
        let cases = verdicts.map(testcases)
        let tests = cases.reduce(0) { $0 + $1.count }
        let failures = cases.reduce(0) { $0 + $1.filter { $0.kind == .failure }.count }
        let errors = cases.reduce(0) { $0 + $1.filter { $0.kind == .error }.count }
        try writer.start("testsuites")
        try writer.attribute("name", "prunecheck")
        try writer.attribute("tests", String(tests))
        try writer.attribute("failures", String(failures))
        try writer.attribute("errors", String(errors))
        try writer.attribute("time", formatSeconds(verdicts.reduce(0) { $0 + $1.seconds }))
        for (verdict, cs) in zip(verdicts, cases) {
            try writer.start("testsuite")
            try writer.attribute("name", verdict.model)
            try writer.attribute("tests", String(cs.count))
            try writer.attribute("failures", String(cs.filter { $0.kind == .failure }.count))
            try writer.attribute("errors", String(cs.filter { $0.kind == .error }.count))
            try writer.attribute("skipped", String(cs.filter { $0.kind == .skipped }.count))
            try writer.attribute("time", formatSeconds(verdict.seconds))
            try writer.attribute("timestamp", context.timestamp)
            try writer.attribute("hostname", context.hostname)
            try writer.attribute("file", verdict.baselineFile)
            try writer.start("properties")
            var properties: [(String, String)] = [
                ("commit", context.commit ?? "none (not a git repository)"),
                ("branch", context.branch ?? "none"),
                ("dirty", context.dirty ? "true" : "false"),
                ("tool_version", context.toolVersion),
                ("machine", "\(context.machine.cpu), \(context.machine.cores) cores, \(context.machine.arch)"),
            ]
            if let base = context.baseRevision { properties.append(("base_revision", base)) }
            if let mergeBase = context.mergeBase { properties.append(("merge_base", mergeBase)) }
            if verdict.baselineProblem == nil && verdict.skipReason == nil {
                properties.append(("baseline_commit", verdict.baselineCommit ?? "none"))
                properties.append(("baseline_tool_version", verdict.baselineToolVersion ?? "unknown"))
            }
            if let change = verdict.baselineChange { properties.append(("baseline_changed_by", change.origin)) }
            properties.append(("recipe_changed", verdict.recipeChanged ? "true" : "false"))
            properties.append(("cached", verdict.cached ? "true" : "false"))
            for (name, value) in properties {
                try writer.start("property")
                try writer.attribute("name", name)
                try writer.attribute("value", value)
                try writer.end()
            }
            try writer.end()
            for c in cs {
                try writer.start("testcase")
                try writer.attribute("name", c.name)
                try writer.attribute("classname", "prunecheck.\(verdict.model)")
                try writer.attribute("time", "0.000")
                switch c.kind {
                case .pass: break
                case .skipped:
                    try writer.start("skipped")
                    try writer.attribute("message", c.message)
                    try writer.end()
                case .failure, .error:
                    try writer.start(c.kind == .failure ? "failure" : "error")
                    try writer.attribute("message", c.message)
                    try writer.attribute("type", c.kind == .failure ? "regression" : c.name == "run" ? "input" : "baseline")
                    try writer.text(c.details)
                    try writer.end()
                }
                if !c.output.isEmpty {
                    try writer.start("system-out")
                    try writer.text(c.output)
                    try writer.end()
                }
                try writer.end()
            }
            if let change = verdict.baselineChange {
                try writer.start("system-out")
                try writer.text(describe(change, model: verdict.model))
                try writer.end()
            }
            try writer.end()
        }
        try writer.end()
        return try writer.finish()
    }

    struct Case {
        enum Kind { case pass, failure, error, skipped }
        var name: String
        var kind: Kind
        var message: String
        var details: String
        var output: String
    }

    static func testcases(_ v: ModelVerdict) -> [Case] {
        if let error = v.runError {
            return [Case(name: "run", kind: .error, message: error, details: "\(error)\nThe check stopped here; models after it did not run.", output: "")]
        }
        if let reason = v.skipReason {
            return [Case(name: "check", kind: .skipped, message: reason, details: "", output: "")]
        }
        if let problem = v.baselineProblem {
            return [Case(name: "baseline", kind: .error, message: problem.description,
                         details: "\(problem.description)\nRecord it with: prunecheck baseline update --only \(v.model)", output: "")]
        }
        return v.checks.filter { $0.status != .info }.map { c in
            let numbers = "metric: \(c.metric)\ncurrent: \(c.current)\nbaseline: \(c.baseline.map { "\($0)" } ?? "none")\n"
                + "tolerance: \(c.tolerance.map { "\($0)" } ?? "none")\nbaseline file: \(v.baselineFile)"
            switch c.status {
            case .regressed:
                return Case(name: c.metric, kind: .failure, message: c.message,
                            details: "\(c.message)\n\(numbers)\nIf the change is intended: prunecheck baseline update --only \(v.model)",
                            output: "")
            case .missingBaseline:
                return Case(name: c.metric, kind: .error, message: c.message,
                            details: "\(c.message)\n\(numbers)\nRecord it with: prunecheck baseline update --only \(v.model)", output: "")
            case .skipped:
                return Case(name: c.metric, kind: .skipped, message: c.message, details: "", output: "")
            default:
                return Case(name: c.metric, kind: .pass, message: c.message, details: "", output: c.message)
            }
        }
    }
}

/// One owning wrapper around libxml2's in-memory text writer.
final class XMLTextWriter {
    private let buffer: xmlBufferPtr
    private var writer: xmlTextWriterPtr?

    init() throws {
        guard let buffer = xmlBufferCreate() else { throw XMLWriterError(operation: "xmlBufferCreate") }
        self.buffer = buffer
        guard let writer = xmlNewTextWriterMemory(buffer, 0) else {
            xmlBufferFree(buffer)
            throw XMLWriterError(operation: "xmlNewTextWriterMemory")
        }
        self.writer = writer
        xmlTextWriterSetIndent(writer, 1)
        xmlTextWriterSetIndentString(writer, "  ")
    }

    deinit {
        if let writer { xmlFreeTextWriter(writer) }
        xmlBufferFree(buffer)
    }

    private func check(_ rc: Int32, _ operation: String) throws {
        guard rc >= 0 else { throw XMLWriterError(operation: operation) }
    }

    func startDocument() throws { try check(xmlTextWriterStartDocument(writer, "1.0", "UTF-8", nil), "start document") }
    func start(_ name: String) throws { try check(xmlTextWriterStartElement(writer, name), "start element \(name)") }
    func end() throws { try check(xmlTextWriterEndElement(writer), "end element") }
    func attribute(_ name: String, _ value: String) throws {
        try check(xmlTextWriterWriteAttribute(writer, name, xmlSafe(value)), "attribute \(name)")
    }
    func text(_ value: String) throws { try check(xmlTextWriterWriteString(writer, xmlSafe(value)), "text") }

    /// Ends the document and returns its text.
    func finish() throws -> String {
        try check(xmlTextWriterEndDocument(writer), "end document")
        xmlFreeTextWriter(writer)
        writer = nil
        return String(cString: xmlBufferContent(buffer))
    }
}

/// Lines describing a baseline change made by the checked branch.
public func describe(_ change: BaselineChange, model: String) -> String {
    var lines = ["Baseline of \(model) changed by this branch (\(change.origin)):"]
    for m in change.changedMetrics {
        let old = change.old[m].map { MetricCheck.format($0, m) } ?? "none"
        let new = change.new[m].map { MetricCheck.format($0, m) } ?? "none"
        lines.append("  \(m): \(old) -> \(new)")
    }
    return lines.joined(separator: "\n")
}
