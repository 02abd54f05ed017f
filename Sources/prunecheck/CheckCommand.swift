import ArgumentParser
import Checking
import Common
import Configuration
import Evaluation
import Foundation
import GitKit
import Regression
import Reports

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
        try options.confine()
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
            Console.out("prunecheck: no staged change affects a model")
        case .checked(let verdicts, let context):
            let tolerances = (try? CheckConfig.load(path: options.config)).map { Dictionary($0.models.map { ($0.name, $0.tolerances) }, uniquingKeysWith: { a, _ in a }) } ?? [:]
            throw ExitCode(try reports.emit(verdicts, context: context, tolerances: tolerances))
        }
    }
}
