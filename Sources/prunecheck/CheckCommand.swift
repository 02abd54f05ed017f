import ArgumentParser
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
        let code = verdictExitCode(for: verdicts)
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
        switch code {
        case Exit.ok: print("prunecheck: no regression in \(ran) model(s)" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        case Exit.regression: print("prunecheck: \(regressed.count) regression(s): " + regressed.map(\.metric).joined(separator: ", "))
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

    func run() throws {
        let shardSpec = try shard.map(parseShard)
        let configFolder = folder(of: options.config)
        let repository = try Repository.discover(containing: configFolder)
        if staged && repository == nil { throw InputError("--staged needs a git repository") }
        if staged && base != nil { throw InputError("--staged compares the index with HEAD; it cannot be combined with --base") }
        let view = InputView(kind: staged ? .index : .workingTree, repository: repository)

        // The configuration as the view has it (staged content for pre-commit).
        let configText = try view.contents(options.config)
        guard let configText else { throw ConfigError(file: options.config, line: nil, key: nil, "no such file; create one with `prunecheck init`") }
        var config = try options.apply(try CheckConfig.parse(String(decoding: configText, as: UTF8.self), file: options.config))
        let selection = try resolveBase(base, repository: repository, environment: ProcessInfo.processInfo.environment)
        // Positions in the whole configuration: reports keep them, so merged shards sort back.
        var positions = Array(config.models.indices)
        if let shardSpec {
            positions = positions.filter { $0 % shardSpec.count == shardSpec.index - 1 }
            config.models = positions.map { config.models[$0] }
        }

        // Which models must run: with --changed-only or --staged, those whose inputs differ.
        var reasons: [String: String] = [:]
        if changedOnly || staged, let repository {
            let reference = try selection?.mergeBase ?? repository.headCommit()
            if let reference {
                let baseConfig = try configurationAt(reference, path: options.config, repository: repository)
                for spec in config.models {
                    if let why = try changeReason(spec, baseConfig: baseConfig, base: reference, repository: repository, view: view) {
                        note("\(spec.name): runs: \(why)")
                    } else {
                        reasons[spec.name] = "inputs, recipe and settings unchanged since \(reference.prefix(12))"
                    }
                }
            }
        }
        if staged && reasons.count == config.models.count {
            print("prunecheck: no staged change affects a model")
            return
        }

        var env = try RunEnvironment.gather(folder: configFolder, repository: repository)
        if let exportOnnx {
            do { try FileManager.default.createDirectory(atPath: exportOnnx, withIntermediateDirectories: true) } catch {
                throw InputError("--export-onnx \(exportOnnx): cannot create the folder (\(error.localizedDescription))")
            }
        }
        let cache = noCache || exportOnnx != nil ? nil : ResultCache(folder: cacheFolder(repository: repository, configFolder: configFolder))
        let progress = Progress()
        var verdicts: [ModelVerdict] = []
        for (index, spec) in config.models.enumerated() {
            let baselinePath = config.baselinePath(for: spec.name)
            var verdict = ModelVerdict(index: positions[index], model: spec.name, baselineFile: relativeToCwd(baselinePath))
            if let reason = reasons[spec.name] {
                verdict.skipReason = reason
                verdicts.append(verdict)
                continue
            }
            progress.line("checking \(spec.name) (\(spec.recipe.method.rawValue), \(spec.recipe.scope.rawValue), sparsity \(spec.recipe.sparsity))")
            let resolved = try resolveBaseline(path: baselinePath, selection: selection, repository: repository, view: view)
            verdict.baselineChange = resolved.change

            let local = try localized(spec, view: view)
            let key = cache?.key(for: spec, files: inputFiles(of: local), machine: env.machine)
            var run: ModelRunResult
            if let cache, let key, let hit = cache.lookup(key) {
                run = ModelRunResult(metrics: hit.metrics, evidence: hit.evidence, folds: hit.folds, confusion: hit.confusion,
                                     seconds: 0, remeasure: nil)
                verdict.cached = true
                progress.line("  \(spec.name): results from the cache (inputs unchanged; --no-cache to re-run)")
            } else {
                run = try runModel(local, progress: progress,
                                   exportTo: exportOnnx.map { ($0 as NSString).appendingPathComponent("\(spec.name).onnx") })
                verdict.seconds = run.seconds
                if let cache, let key {
                    cache.store(key, entry: .init(metrics: run.metrics, evidence: run.evidence, folds: run.folds, confusion: run.confusion))
                }
            }
            verdict.folds = run.folds
            verdict.confusion = run.confusion

            switch resolved.used {
            case .failure(let problem):
                verdict.baselineProblem = problem
                verdict.checks = Comparison.check(current: run.metrics, baseline: [:], tolerances: spec.tolerances)
            case .success(let b):
                let timing = timingPolicy(spec: spec, baseline: b, env: &env)
                func compare(_ run: ModelRunResult) -> [MetricCheck] {
                    var evidence = run.evidence
                    evidence.baselineLatency = b.latencySamples
                    evidence.baselineCorrect = b.evalCorrect
                    evidence.latencyFloor = spec.latency.noiseFloorMicroseconds
                    var checks = Comparison.check(current: run.metrics, baseline: b.metrics, tolerances: spec.tolerances,
                                                  timing: timing, evidence: evidence)
                    if resolved.change != nil, let own = resolved.branch {
                        checks = Comparison.accept(checks, branchBaseline: own.metrics, tolerances: spec.tolerances)
                    }
                    return checks
                }
                var checks = compare(run)
                // A suspected slowdown is measured once more before it is reported (a cached
                // result is first re-run, so the model is at hand).
                let slower = Set(checks.filter { $0.status == .regressed && MetricNames.isTiming($0.metric) }.compactMap { MetricNames.batch(of: $0.metric) })
                if !slower.isEmpty {
                    if run.remeasure == nil {
                        run = try runModel(local, progress: progress,
                                   exportTo: exportOnnx.map { ($0 as NSString).appendingPathComponent("\(spec.name).onnx") })
                        verdict.cached = false
                        verdict.seconds = run.seconds
                    }
                    progress.line("  \(spec.name): latency looks slower at batch \(slower.sorted().map(String.init).joined(separator: ", ")); measuring again")
                    for batch in slower.sorted() {
                        let again = run.remeasure!(batch)
                        run.metrics.merge(latencyMetrics(again)) { _, new in new }
                        run.evidence.currentLatency[batch] = again.samples
                    }
                    checks = compare(run)
                }
                verdict.checks = checks
                verdict.baselineCommit = b.recorded.commit
                verdict.baselineToolVersion = b.recorded.toolVersion
                verdict.recipeChanged = b.recipeSHA256 != spec.recipeSHA256
                if verdict.recipeChanged { progress.line("  \(spec.name): the recipe differs from the one the baseline was recorded with") }
                if case .skip(let reason) = timing { progress.line("  \(spec.name): latency not gated: \(reason)") }
            }
            verdicts.append(verdict)
        }
        var context = env.context
        context.baseRevision = selection?.revision
        context.mergeBase = selection?.mergeBase
        context.shard = shard
        context.calibration = env.calibration
        context.energyCounters = RAPL.isAvailable
        throw ExitCode(try reports.emit(verdicts, context: context))
    }

    /// The baseline to compare with, and the branch's own when it changed it.
    struct ResolvedBaseline {
        var used: Result<Baseline, BaselineError>
        var branch: Baseline?
        var change: BaselineChange?
    }

    func resolveBaseline(path: String, selection: BaseSelection?, repository: Repository?, view: InputView) throws -> ResolvedBaseline {
        func parse(_ bytes: [UInt8]?, file: String) -> Result<Baseline, BaselineError> {
            guard let bytes else {
                return .failure(BaselineError(file: file, "baseline is missing; record it with `prunecheck baseline update`"))
            }
            return Result { try Baseline(data: Data(bytes), file: file) }.mapError { $0 as! BaselineError }
        }
        let own = parse(try view.contents(path), file: relativeToCwd(path))
        guard let selection, let repository, let rel = repository.relativePath(path) else {
            return ResolvedBaseline(used: own, branch: try? own.get(), change: nil)
        }
        let atBaseBytes = try repository.file(rel, at: selection.mergeBase)
        let atBase = parse(atBaseBytes, file: "\(rel) at \(selection.mergeBase.prefix(12))")
        let ownBytes = try view.contents(path)
        guard ownBytes != atBaseBytes else { return ResolvedBaseline(used: atBase, branch: try? own.get(), change: nil) }
        // The branch changed the baseline: find the commit that did (or say it is uncommitted).
        var commit: String?, summary: String?
        if let head = try repository.headCommit(), try repository.file(rel, at: head) == ownBytes {
            if let last = try repository.history(of: rel, limit: 1).first {
                commit = last.commit
                summary = last.summary
            }
        }
        let change = BaselineChange(old: (try? atBase.get())?.metrics ?? [:], new: (try? own.get())?.metrics ?? [:],
                                    commit: commit, summary: summary)
        // A model new on this branch has no baseline at the merge-base: its own one is used.
        let used = atBaseBytes == nil ? own : atBase
        return ResolvedBaseline(used: used, branch: try? own.get(), change: change)
    }
}

/// How this run's timings compare with a baseline's, from `latency_gate` and the machines.
func timingPolicy(spec: ModelSpec, baseline b: Baseline, env: inout RunEnvironment) -> TimingPolicy {
    let recorded = b.recorded
    let same = recorded.machine.isSameMachine(as: env.machine) && (recorded.threads == spec.threads || recorded.threads == 0)
    switch spec.latencyGate {
    case .off:
        return .report("latency_gate: off")
    case _ where same:
        return .compare(factor: 1)
    case .sameMachine:
        return .skip("the baseline was measured on another machine (\(recorded.machine.cpu), \(recorded.machine.cores) cores, \(recorded.machine.isa), \(recorded.threads) threads)")
    case .normalized:
        guard let then = recorded.calibration, then > 0 else {
            return .skip("the baseline has no calibration score to normalize by; re-record it")
        }
        // A machine twice as fast (score ×2) halves latency: scale current timings back up.
        return .compare(factor: env.calibration / then)
    }
}

/// `.prunecheck/cache` at the repository root, or beside the config outside git.
func cacheFolder(repository: Repository?, configFolder: String) -> String {
    let root = repository?.workingDirectory ?? (configFolder + "/")
    return root + ".prunecheck/cache"
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
