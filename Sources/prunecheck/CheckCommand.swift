import ArgumentParser
import Checking
import Common
import Configuration
import Evaluation
import Foundation
import GitKit
import Regression
import Reports

/// Options shared by the commands that run the configured models.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file.")
    var config = "prunecheck.yml"

    @Option(help: "Run only these models (repeatable).")
    var only: [String] = []

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

    func load() throws -> CheckConfig { try apply(try CheckConfig.load(path: config)) }
}

/// Report destinations shared by `check` and `merge`.
struct ReportOptions: ParsableArguments {
    @Option(help: "Write a JUnit XML report here.")
    var junit: String?

    @Option(help: "Write a JSON report (schema prunecheck-report/1) here.")
    var json: String?

    @Option(help: "Write a Markdown summary here (also appended to $GITHUB_STEP_SUMMARY when set).")
    var markdown: String?

    /// Prints the table and writes every requested report; returns the exit code.
    func emit(_ verdicts: [ModelVerdict], context: RunContext) throws -> Int32 {
        let status = overallStatus(of: verdicts), code = status.rawValue
        print(TextTable.render(verdicts, color: isatty(STDOUT_FILENO) == 1), terminator: "")
        for v in verdicts where v.baselineChange != nil {
            print(describe(v.baselineChange!, model: v.model))
        }
        if let junit {
            try writeFileAtomically(try JUnitReport.render(verdicts, context: context), to: junit)
            note("JUnit report: \(junit)")
        }
        if let json {
            try writeFileAtomically(JSONReport.render(verdicts, context: context, exitCode: code), to: json)
            note("JSON report: \(json)")
        }
        let environment = ProcessInfo.processInfo.environment
        let markdownText = MarkdownReport.render(verdicts, context: context, exitCode: code)
        if let markdown {
            try writeFileAtomically(markdownText, to: markdown)
            note("Markdown summary: \(markdown)")
        }
        if let summary = environment["GITHUB_STEP_SUMMARY"], !summary.isEmpty {
            appendToFile(markdownText + "\n", path: summary)
        }
        if environment["GITHUB_ACTIONS"] == "true" {
            GitHubAnnotations.render(verdicts).forEach { print($0) }
        }
        let regressed = verdicts.flatMap(\.regressions)
        let skipped = verdicts.filter { $0.skipReason != nil }.count
        let ran = verdicts.count - skipped
        switch status {
        case .ok: print("prunecheck: no regression in \(ran) model(s)" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        case .regression: print("prunecheck: \(regressed.count) regression(s): " + regressed.map(\.metric).joined(separator: ", "))
        default: print("prunecheck: baseline missing or incomplete; record it with `prunecheck baseline update`")
        }
        return code
    }
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

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune, fine-tune and evaluate every configured model and compare it with its baseline.",
        discussion: "Exit codes: 0 no regression, 1 regression, 2 usage/config/input error, 3 baseline missing or unreadable (or a shallow clone that does not reach the merge-base).")

    @OptionGroup var options: ConfigOptions
    @OptionGroup var reports: ReportOptions

    @Option(help: ArgumentHelp(
        "Compare with the baselines at the merge-base of HEAD and this revision, read from git.",
        discussion: "`auto` takes the branch from GITHUB_BASE_REF, CI_MERGE_REQUEST_TARGET_BRANCH_NAME or CHANGE_TARGET."))
    var base: String?

    @Flag(help: "Re-run only models whose inputs, recipe or settings differ from the base (HEAD without --base).")
    var changedOnly = false

    @Flag(help: "Check the staged content (the index) of models whose inputs are staged; for pre-commit hooks.")
    var staged = false

    @Flag(help: "Neither read nor write the result cache (.prunecheck/cache).")
    var noCache = false

    @Option(help: "Also write each pruned, fine-tuned model as DIR/<name>.onnx (re-runs every model: no cache).")
    var exportOnnx: String?

    @Option(help: "Run shard i of n (e.g. 2/4): every n-th model, starting with the i-th.")
    var shard: String?

    func validate() throws {
        if staged && base != nil { throw ValidationError("--staged compares the index with HEAD; it cannot be combined with --base") }
        if let shard { _ = try parseShard(shard) }
    }

    func run() throws {
        var request = CheckRequest(configPath: options.config)
        request.select = options.apply
        request.base = base
        request.changedOnly = changedOnly
        request.staged = staged
        request.useCache = !noCache
        request.exportOnnx = exportOnnx
        request.shard = try shard.map(parseShard)
        switch try request.run(progress: Progress()) {
        case .nothingStaged:
            print("prunecheck: no staged change affects a model")
        case .checked(let verdicts, let context):
            throw ExitCode(try reports.emit(verdicts, context: context))
        }
    }
}
