import ArgumentParser
import Checking
import Common
import Configuration
import Evaluation
import Foundation
import GitKit
import ModelIO
import Regression
import Reports
import TensorEngine

/// Options shared by the commands that run the configured models.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file.")
    var config = "prunecheck.yml"

    @Option(help: "Run only these models (repeatable).")
    var only: [String] = []

    @Flag(help: "Let the configuration name files outside its repository (paths or symlinks that lead out). By default they are an error: on a pull request, the config is the author's, and the files outside are the runner's.")
    var allowOutsideRepository = false

    /// The config with `--only` applied; an unknown name is an input error.
    func apply(_ loaded: CheckConfig) throws -> CheckConfig {
        var config = loaded
        if !only.isEmpty {
            let names = Set(config.models.map(\.name))
            if let unknown = only.first(where: { !names.contains($0) }) {
                throw InputError("--only \(unknown): no such model in \(self.config) (models: \(config.models.map(\.name).joined(separator: ", ")))")
            }
            config.models = config.models.filter { only.contains($0.name) }
        }
        return config
    }

    func load() throws -> CheckConfig {
        try confine()
        return try apply(try CheckConfig.load(path: config))
    }

    /// Confines reads to the config's repository (see `confineReads`).
    func confine() throws { try confineReads(configPath: config, allowOutside: allowOutsideRepository) }
}

/// Report destinations shared by `check` and `merge`.
struct ReportOptions: ParsableArguments {
    @Option(help: "Write a JUnit XML report here.")
    var junit: String?

    @Option(help: "Write a JSON report (schema prunecheck-report/1) here.")
    var json: String?

    @Option(help: "Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set).")
    var markdown: String?

    @Option(help: "Write an HTML report here: one self-contained page with each model's verdicts, history charts of its gated metrics, per-class changes, confusion matrix and latency distributions.")
    var html: String?

    @Flag(name: .shortAndLong, help: "List every metric in the table (by default: gated metrics, and ungated ones that changed).")
    var verbose = false

    @Flag(name: .shortAndLong, help: "Print only the failures and the closing line, no table.")
    var quiet = false

    func validate() throws {
        if verbose && quiet { throw ValidationError("--verbose and --quiet cannot be combined") }
    }

    /// Prints the table and writes every requested report; returns the exit code.
    func emit(_ verdicts: [ModelVerdict], context: RunContext, tolerances: [String: Tolerances] = [:]) throws -> Int32 {
        let status = overallStatus(of: verdicts), code = status.rawValue
        let environment = ProcessInfo.processInfo.environment
        let color = CIGroups.useColor(environment, terminal: isatty(STDOUT_FILENO) == 1)
        if !quiet {
            // Names in the table are sanitized by the renderer; the CI section markers are its own.
            Console.trusted(TextTable.render(verdicts, color: color, detail: verbose ? .all : .short, group: CIGroups.from(environment)))
            for v in verdicts where v.baselineChange != nil {
                Console.out(describe(v.baselineChange!, model: v.model))
            }
        }
        // Report paths on standard output, after the table: on a CI runner both streams share
        // one pipe, and a line from the other stream must not land inside a row.
        var written: [String] = []
        if let junit {
            try writeFileAtomically(try JUnitReport.render(verdicts, context: context), to: junit)
            written.append("JUnit report: \(junit)")
        }
        if let json {
            try writeFileAtomically(JSONReport.render(verdicts, context: context, exitCode: code), to: json)
            written.append("JSON report: \(json)")
        }
        let markdownText = MarkdownReport.render(verdicts, context: context, exitCode: code)
        if let markdown {
            try writeFileAtomically(markdownText, to: markdown)
            written.append("Markdown summary: \(markdown)")
        }
        if let html {
            try writeFileAtomically(HTMLReport.render(verdicts, context: context, exitCode: code, history: baselineHistory(verdicts),
                                                      tolerances: tolerances), to: html)
            written.append("HTML report: \(html)")
        }
        if !quiet { written.forEach { Console.out($0) } }
        if let summary = environment["GITHUB_STEP_SUMMARY"], !summary.isEmpty {
            appendToFile(markdownText + "\n", path: summary)
        }
        if environment["GITHUB_ACTIONS"] == "true" {
            GitHubAnnotations.render(verdicts).forEach { Console.trusted($0 + "\n") }
        }
        let skipped = verdicts.filter { $0.skipReason != nil }.count
        let ran = verdicts.count - skipped
        // The failures last, where a CI log's final screen shows them.
        Console.out(TextTable.failures(verdicts, color: color), terminator: "")
        let failed = verdicts.flatMap { v in v.regressions.map { "\(v.model)::\($0.metric)" } }
        let models = Set(verdicts.filter { !$0.regressions.isEmpty }.map(\.model)).count
        switch status {
        case .ok: Console.out("prunecheck: no regression in \(ran) model(s)" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        case .regression: Console.out("prunecheck: \(failed.count) regression(s) in \(models) of \(ran) model(s): " + failed.joined(separator: ", "))
        case .inputError:
            let stop = verdicts.first { $0.runError != nil }!
            Console.out("prunecheck: the check stopped at '\(stop.model)': \(stop.runError!)")
            note("error: \(stop.runError!)")
        default: Console.out("prunecheck: baseline missing or incomplete; record it with `prunecheck baseline update`")
        }
        return code
    }
}

/// Each model's committed baselines, oldest first (at most 30), for the HTML report's charts;
/// empty outside git.
func baselineHistory(_ verdicts: [ModelVerdict]) -> [String: [HistoryPoint]] {
    guard let repository = try? Repository.discover(containing: FileManager.default.currentDirectoryPath) else { return [:] }
    var out: [String: [HistoryPoint]] = [:]
    for v in verdicts {
        let absolute = v.baselineFile.hasPrefix("/") ? v.baselineFile : FileManager.default.currentDirectoryPath + "/" + v.baselineFile
        guard let rel = repository.relativePath(absolute), let revisions = try? repository.history(of: rel, limit: 30) else { continue }
        out[v.model] = revisions.reversed().compactMap { r in
            guard let content = r.content, let b = try? Baseline(data: Data(content), file: rel) else { return nil }
            return HistoryPoint(label: String(r.commit.prefix(8)), time: r.time, metrics: b.metrics, machine: b.recorded.machine.cpu)
        }
    }
    return out
}

func appendToFile(_ text: String, path: String) {
    guard let handle = FileHandle(forWritingAtPath: path) ?? {
        // If it cannot be created, opening it fails too, and the warning below says so.
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        return FileHandle(forWritingAtPath: path)
    }() else {
        note("warning: cannot append to \(path)")
        return
    }
    handle.seekToEndOfFile()
    handle.write(Data(text.utf8))
    handle.closeFile()
}

/// The model a one-model command reads (`eval`, `prune`, `infer`): `--model` and, for
/// safetensors weights, `--architecture`.
struct ModelOptions: ParsableArguments {
    @Option(help: "The model file (.onnx, or .safetensors with --architecture).")
    var model: String

    @Option(help: "The architecture file (layer-list JSON) for a .safetensors model.")
    var architecture: String?
}

/// Worker threads of a one-model command.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads.")
    var threads = 1

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }
}

/// `--input NAME=ARRAY` (repeatable): which array of the data feeds which graph input, for the
/// commands that run a model on arrays (`infer`, `latency`). Unmapped inputs read the array of
/// their own name.
struct InputMappingOptions: ParsableArguments {
    @Option(name: .customLong("input"), help: ArgumentHelp("Feed graph input NAME from array ARRAY (repeatable).", valueName: "NAME=ARRAY"))
    var pairs: [String] = []

    func validate() throws {
        for pair in pairs where pair.split(separator: "=", omittingEmptySubsequences: false).count != 2 {
            throw ValidationError("--input \(pair): expected NAME=ARRAY")
        }
    }

    /// Graph input name → array name.
    var mapping: [String: String] {
        Dictionary(pairs.map { pair -> (String, String) in
            let parts = pair.split(separator: "=", omittingEmptySubsequences: false)
            return (String(parts[0]), String(parts[1]))
        }, uniquingKeysWith: { _, last in last })
    }

    /// The graph's inputs bound to the arrays of `data` (an .npz or a folder): an input whose
    /// array is missing or does not fit is an error naming the file, the input and the array.
    func feeds(for graph: Graph, data: String) throws -> [Value] {
        let mapping = self.mapping
        var wanted = graph.inputs.map { mapping[$0.name] ?? $0.name }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: data, isDirectory: &isFolder), !isFolder.boolValue {
            // Read what the archive has; `bind` names an input whose array is missing.
            let present = Set(try NPZ.keys(path: data))
            wanted = wanted.filter { present.contains($0) }
        }
        return try GraphFeeds.bind(graph, arrays: try ArrayFiles.read(path: data, names: wanted), mapping: mapping, file: data)
    }
}

/// What the data of `eval` and `prune` is for: the task, and arrays read by graph input name.
struct TaskDataOptions: ParsableArguments {
    @Option(help: "What the model predicts: \(Task.allCases.map(\.rawValue).joined(separator: ", ")).")
    var task: Task = .classification

    @OptionGroup var inputs: InputMappingOptions

    @Option(help: "The labels array when inputs are read by graph input name (default: 'labels', when the archive has it).")
    var labels: String?

    /// The split that reads every graph input from the array of its name (or its `--input`
    /// mapping) and the labels from `--labels` or `labels`: when `--input` or `--labels` is
    /// given, when the model is not a single float input, or when the archive has an array
    /// named like each graph input. nil: the list form (`--split`) applies.
    func namedSplit(for graph: Graph, data: String) throws -> SplitSource? {
        var keys: Set<String> = []
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: data, isDirectory: &isFolder), !isFolder.boolValue { keys = Set(try NPZ.keys(path: data)) }
        let mapping = inputs.mapping
        let byName = graph.inputs.allSatisfy { keys.contains(mapping[$0.name] ?? $0.name) }
        let singleFloat = graph.inputs.count == 1 && graph.inputs[0].dtype == .float32
        guard !mapping.isEmpty || labels != nil || !singleFloat || byName else { return nil }
        let labelArray = labels ?? (keys.contains("labels") ? "labels" : nil)
        return SplitSource(arrays: mapping, labels: task == .embedding ? labels : labelArray)
    }
}

extension Task: ExpressibleByArgument {}
