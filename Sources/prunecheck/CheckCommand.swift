import ArgumentParser
import Configuration
import Foundation
import Regression
import Reports

/// Options shared by the commands that run the configured models.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file.")
    var config = "prunecheck.yml"

    @Option(help: "Run only these models (repeatable).")
    var only: [String] = []

    /// The config with `--only` applied; an unknown name is an input error.
    func load() throws -> CheckConfig {
        var config = try CheckConfig.load(path: self.config)
        if !only.isEmpty {
            let names = Set(config.models.map(\.name))
            if let unknown = only.first(where: { !names.contains($0) }) {
                throw InputError("--only \(unknown): no such model in \(self.config) (models: \(config.models.map(\.name).joined(separator: ", ")))")
            }
            config.models = config.models.filter { only.contains($0.name) }
        }
        return config
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune, fine-tune and evaluate every configured model and compare it with its baseline.",
        discussion: "Exit codes: 0 no regression, 1 regression, 2 usage/config/input error, 3 baseline missing or unreadable.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Write a JUnit XML report here.")
    var junit: String?

    @Option(help: "Write a JSON report here.")
    var json: String?

    func run() throws {
        let config = try options.load()
        let env = try RunEnvironment.gather(folder: folder(of: config.file))
        var verdicts: [ModelVerdict] = []
        for spec in config.models {
            note("checking \(spec.name) (\(spec.recipe.method.rawValue), \(spec.recipe.scope.rawValue), sparsity \(spec.recipe.sparsity))")
            let baselinePath = config.baselinePath(for: spec.name)
            // Read the baseline first: a missing one is reported, but the model still runs.
            let baseline = Result { try Baseline.read(path: baselinePath) }.mapError { $0 as! BaselineError }
            let result = try runModel(spec, log: note)
            let base = try? baseline.get()
            let sameMachine = base.map { $0.recorded.machine.isSameMachine(as: env.machine) } ?? true
            if !sameMachine {
                note("  \(spec.name): the baseline was measured on another machine (\(base!.recorded.machine.cpu), \(base!.recorded.machine.cores) cores); latency is reported, not gated")
            }
            verdicts.append(ModelVerdict(
                model: spec.name, baselineFile: relativeToCwd(baselinePath),
                checks: Comparison.check(current: result.metrics, baseline: base?.metrics ?? [:], tolerances: spec.tolerances,
                                         sameMachine: sameMachine),
                baseline: baseline,
                recipeChanged: (try? baseline.get()).map { $0.recipeSHA256 != spec.recipeSHA256 } ?? false,
                seconds: result.seconds))
            if verdicts.last!.recipeChanged {
                note("  \(spec.name): the recipe differs from the one the baseline was recorded with")
            }
        }
        let code = verdictExitCode(for: verdicts)
        print(TextTable.render(verdicts), terminator: "")
        if let junit {
            try writeFileAtomically(try JUnitReport.render(verdicts, context: env.context), to: junit)
            note("JUnit report: \(junit)")
        }
        if let json {
            try writeFileAtomically(JSONReport.render(verdicts, context: env.context, exitCode: code), to: json)
            note("JSON report: \(json)")
        }
        let regressed = verdicts.flatMap(\.regressions)
        switch code {
        case Exit.ok: print("prunecheck: no regression in \(verdicts.count) model(s)")
        case Exit.regression: print("prunecheck: \(regressed.count) regression(s): " + regressed.map(\.metric).joined(separator: ", "))
        default: print("prunecheck: baseline missing or incomplete; record it with `prunecheck baseline update`")
        }
        throw ExitCode(code)
    }
}

func folder(of file: String) -> String {
    let f = (file as NSString).deletingLastPathComponent
    return f.isEmpty ? FileManager.default.currentDirectoryPath : f
}

/// `path` relative to the working directory when it lies below it (for reports and annotations).
func relativeToCwd(_ path: String) -> String {
    let cwd = FileManager.default.currentDirectoryPath + "/"
    let absolute = path.hasPrefix("/") ? path : cwd + path
    let standardized = (absolute as NSString).standardizingPath
    return standardized.hasPrefix(cwd) ? String(standardized.dropFirst(cwd.count)) : standardized
}
