import Common
import Configuration
import Evaluation
import Foundation
import GitKit
import Regression
import Reports

/// What a check run produced.
public enum CheckOutcome {
    /// `staged`, and no staged change affects any model: nothing ran.
    case nothingStaged
    /// Each model's verdict, in configuration order, and the run's context for the reports.
    case checked(verdicts: [ModelVerdict], context: RunContext)
}

/// One `prunecheck check`: which configuration, which models, against which base, with which
/// cache. The CLI fills it from its options; tests build it directly.
public struct CheckRequest {
    /// The configuration file (read through the view: the index with `staged`).
    public var configPath: String
    /// Narrows the parsed configuration (the CLI's `--only`).
    public var select: (CheckConfig) throws -> CheckConfig = { $0 }
    /// Compare with the baselines at the merge-base of HEAD and this revision (`auto`: from the
    /// CI environment).
    public var base: String?
    /// Re-run only models whose inputs, recipe or settings differ from the base.
    public var changedOnly = false
    /// Check the index's content of models whose inputs are staged.
    public var staged = false
    /// Read and write the result cache.
    public var useCache = true
    /// Also write each pruned model as DIR/<name>.onnx (no cache then).
    public var exportOnnx: String?
    /// Run shard `index` of `count` (1-based): every count-th model.
    public var shard: (index: Int, count: Int)?
    /// The process environment (CI variables for `--base auto`).
    public var environment: [String: String]

    public init(configPath: String, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.configPath = configPath
        self.environment = environment
    }

    /// Runs the check `request` describes, model by model, and returns each model's verdict
    /// with the run's context; regressions are verdicts, not errors. Throws for what stops the
    /// run (bad input, an unreadable repository).
    public func run(progress: Progress) throws -> CheckOutcome {
        let configPath = self.configPath
        let configFolder = folder(of: configPath)
        let repository = try Repository.discover(containing: configFolder)
        if staged && repository == nil { throw InputError("--staged needs a git repository") }
        let view = InputView(kind: staged ? .index : .workingTree, repository: repository)

        // The configuration as the view has it (staged content for pre-commit).
        let configText = try view.contents(configPath)
        guard let configText else { throw ConfigError(file: configPath, line: nil, key: nil, "no such file; create one with `prunecheck init`") }
        var config = try select(try CheckConfig.parse(String(decoding: configText, as: UTF8.self), file: configPath))
        let selection = try resolveBase(base, repository: repository, environment: environment)
        // Positions in the whole configuration: reports keep them, so merged shards sort back.
        var positions = Array(config.models.indices)
        if let shardSpec = shard {
            positions = positions.filter { $0 % shardSpec.count == shardSpec.index - 1 }
            config.models = positions.map { config.models[$0] }
        }

        // Which models must run: with --changed-only or --staged, those whose inputs differ.
        var reasons: [String: String] = [:]
        if changedOnly || staged, let repository {
            let reference = try selection?.mergeBase ?? repository.headCommit()
            if let reference {
                let baseConfig = try configurationAt(reference, path: configPath, repository: repository)
                for spec in config.models {
                    if let why = try changeReason(spec, baseConfig: baseConfig, base: reference, repository: repository, view: view) {
                        note("\(spec.name): runs: \(why)")
                    } else {
                        reasons[spec.name] = "inputs, recipe and settings unchanged since \(reference.prefix(12))"
                    }
                }
            }
        }
        if staged && reasons.count == config.models.count { return .nothingStaged }

        var env = try RunEnvironment.gather(folder: configFolder, repository: repository)
        if let exportOnnx {
            do { try FileManager.default.createDirectory(atPath: exportOnnx, withIntermediateDirectories: true) } catch {
                throw InputError("--export-onnx \(exportOnnx): cannot create the folder (\(error.localizedDescription))")
            }
        }
        let cache = !useCache || exportOnnx != nil ? nil : ResultCache(folder: cacheFolder(repository: repository, configFolder: configFolder))
        // Fail early: every model's input files must be there before the first model runs.
        var stopped: (model: String, error: String)?
        for spec in config.models where reasons[spec.name] == nil {
            for file in inputFiles(of: spec) where !FileManager.default.isReadableFile(atPath: try view.localPath(file)) {
                stopped = (spec.name, InputError("\(relativeToCwd(file)): no such file (model '\(spec.name)')").description)
                break
            }
            if stopped != nil { break }
        }
        var verdicts: [ModelVerdict] = []
        for (index, spec) in config.models.enumerated() {
            let baselinePath = config.baselinePath(for: spec.name)
            var verdict = ModelVerdict(index: positions[index], model: spec.name, baselineFile: relativeToCwd(baselinePath))
            if let reason = reasons[spec.name] {
                verdict.skipReason = reason
                verdicts.append(verdict)
                continue
            }
            // After a stop, the rest is listed as not run: the reports still say what happened.
            if let stopped {
                if stopped.model == spec.name { verdict.runError = stopped.error } else { verdict.skipReason = "not run: the check stopped at '\(stopped.model)'" }
                verdicts.append(verdict)
                continue
            }
            do {
            progress.startModel(index + 1, of: config.models.count, name: spec.name,
                                detail: "\(spec.recipe.method.rawValue), \(spec.recipe.scope.rawValue), sparsity \(spec.recipe.sparsity)")
            let resolved = try resolveBaseline(path: baselinePath, selection: selection, repository: repository, view: view)
            verdict.baselineChange = resolved.change

            let local = try localized(spec, view: view)
            let key = cache?.key(for: spec, files: inputFiles(of: local), machine: env.machine)
            var run: ModelRunResult
            if let cache, let key, let hit = cache.lookup(key) {
                run = ModelRunResult(metrics: hit.metrics, evidence: hit.evidence, folds: hit.folds, confusion: hit.confusion,
                                     seconds: 0, remeasure: nil, modelSHA256: hit.modelSHA256, devices: hit.devices, dense: hit.dense)
                verdict.cached = true
                progress.line("  \(spec.name): results from the cache (inputs unchanged; --no-cache to re-run)")
            } else {
                run = try runModel(local, progress: progress,
                                   exportTo: exportOnnx.map { ($0 as NSString).appendingPathComponent("\(spec.name).onnx") })
                verdict.seconds = run.seconds
                if let cache, let key {
                    cache.store(key, entry: .init(metrics: run.metrics, evidence: run.evidence, folds: run.folds, confusion: run.confusion,
                                                  modelSHA256: run.modelSHA256, devices: run.devices, dense: run.dense))
                    if spec.latencyGate == .paired, let model = run.model { cache.storeModel(key, model) }
                }
            }
            verdict.folds = run.folds
            verdict.confusion = run.confusion
            verdict.dense = run.dense

            switch resolved.used {
            case .failure(let problem):
                verdict.baselineProblem = problem
                verdict.checks = Comparison.check(current: run.metrics, baseline: [:], tolerances: spec.tolerances)
            case .success(let b):
                let localTiming = timingPolicy(spec: spec, baseline: b, env: &env)
                func compare(_ run: ModelRunResult) -> [MetricCheck] {
                    // Timings from a remote target compare as they are when the baseline was
                    // measured on the same device, and are skipped otherwise: this machine's
                    // calibration says nothing about the device.
                    let remote = spec.latency.targets.filter { !$0.isLocal }.map { $0.name ?? "" }
                    var checks: [MetricCheck] = []
                    for group in [false, true] where group == false || !remote.isEmpty {
                        let inGroup = { (name: String) in (MetricNames.isTiming(name) && remote.contains(MetricNames.target(of: name) ?? "")) == group }
                        let current = run.metrics.filter { inGroup($0.key) }
                        let timing: TimingPolicy
                        if group {
                            let then = b.latencyDevices, now = run.devices
                            let differing = remote.filter { then[$0] != nil && now[$0] != nil && then[$0] != now[$0] && !(now[$0]!.hasPrefix("skipped")) }
                            timing = differing.isEmpty ? .compare(factor: 1)
                                : .skip("the baseline was measured on \(differing.map { then[$0]! }.joined(separator: ", ")), this run on \(differing.map { now[$0]! }.joined(separator: ", "))")
                        } else {
                            timing = localTiming
                        }
                        checks += compareWith(run, current: current, baseline: b.metrics.filter { inGroup($0.key) }, timing: timing, localSamples: !group)
                    }
                    return checks
                }
                func compareWith(_ run: ModelRunResult, current: [String: Double], baseline: [String: Double], timing: TimingPolicy,
                                 localSamples: Bool) -> [MetricCheck] {
                    var evidence = run.evidence
                    // This machine's samples say nothing about a device's timings.
                    if !localSamples { evidence.currentLatency = [:] }
                    evidence.baselineLatency = localSamples ? b.latencySamples : [:]
                    evidence.baselineCorrect = b.evalCorrect
                    evidence.latencyFloor = spec.latency.noiseFloorMicroseconds
                    var checks = Comparison.check(current: current, baseline: baseline, tolerances: spec.tolerances, timing: timing, evidence: evidence)
                    if resolved.change != nil, let own = resolved.branch {
                        checks = Comparison.accept(checks, branchBaseline: own.metrics, tolerances: spec.tolerances)
                    }
                    return checks
                }
                // Paired timing: the base revision's model against this one, in this process.
                var base: PairedBase?
                if spec.latencyGate == .paired {
                    base = pairedBase(spec: local, baseline: b, baselinePath: baselinePath, currentSHA: run.modelSHA256, mergeBase: selection?.mergeBase,
                                      repository: repository, configPath: configPath, cache: cache, machine: env.machine, progress: progress)
                    if case .model = base, run.model == nil {
                        // A cached result has no model at hand: run it again.
                        run = try runModel(local, progress: progress, exportTo: nil)
                        verdict.cached = false
                        verdict.seconds = run.seconds
                    }
                }
                var checks = compare(run)
                if let base, case .unavailable(let why) = base {
                    progress.line("  \(spec.name): paired timing unavailable (\(why)); timings gated as latency_gate: normalized")
                    checks = checks.map { c in
                        guard MetricNames.isTiming(c.metric) else { return c }
                        var c = c
                        c.note = ["paired timing unavailable: \(why)", c.note].compactMap { $0 }.joined(separator: "; ")
                        return c
                    }
                } else if let base {
                    checks = try pairedTimingChecks(checks, base: base, run: run, spec: spec, progress: progress)
                }
                // A suspected slowdown is measured once more before it is reported (a cached
                // result is first re-run, so the model is at hand).
                let slower = base.map { if case .unavailable = $0 { return false } else { return true } } == true ? []
                    : Set(checks.filter { $0.status == .regressed && MetricNames.isTiming($0.metric) }.compactMap { MetricNames.batch(of: $0.metric) })
                if !slower.isEmpty && spec.latency.targets.isEmpty {
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
                verdict.checks = deviceChecks(checks, run: run, spec: spec, baseline: b.metrics)
                verdict.latencyQuantiles = run.evidence.currentLatency.mapValues { Statistics.quantiles($0.sorted()) }
                verdict.baselineLatencyQuantiles = b.latencySamples
                verdict.baselineCommit = b.recorded.commit
                verdict.baselineToolVersion = b.recorded.toolVersion
                verdict.recipeChanged = b.recipeSHA256 != spec.recipeSHA256
                if verdict.recipeChanged { progress.line("  \(spec.name): the recipe differs from the one the baseline was recorded with") }
                if case .skip(let reason) = localTiming { progress.line("  \(spec.name): latency not gated: \(reason)") }
            }
            verdicts.append(verdict)
            } catch let e as UserFacingError where e.exitStatus == .inputError {
                // Bad input in this model stops the run; its verdict carries the error.
                verdict.runError = e.description
                verdicts.append(verdict)
                stopped = (spec.name, e.description)
            }
        }
        progress.finishModel()
        var context = env.context
        context.baseRevision = selection?.revision
        context.mergeBase = selection?.mergeBase
        context.shard = shard.map { "\($0.index)/\($0.count)" }
        context.calibration = env.calibration
        context.energyCounters = RAPL.isAvailable
        context.instructionCounter = InstructionCost.isAvailable
        return .checked(verdicts: verdicts, context: context)
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
public func timingPolicy(spec: ModelSpec, baseline b: Baseline, env: inout RunEnvironment) -> TimingPolicy {
    let recorded = b.recorded
    let same = recorded.machine.isSameMachine(as: env.machine) && (recorded.threads == spec.threads || recorded.threads == 0)
    switch spec.latencyGate {
    case .off:
        return .report("latency_gate: off")
    case _ where same:
        return .compare(factor: 1)
    case .sameMachine:
        return .skip("the baseline was measured on another machine (\(recorded.machine.cpu), \(recorded.machine.cores) cores, \(recorded.machine.isa), \(recorded.threads) threads)")
    case .normalized, .paired:
        guard let then = recorded.calibration, then > 0 else {
            return .skip("the baseline has no calibration score to normalize by; re-record it")
        }
        // A machine twice as fast (score ×2) halves latency: scale current timings back up.
        return .compare(factor: env.calibration / then)
    }
}

/// `.prunecheck/cache` at the repository root, or beside the config outside git.
public func cacheFolder(repository: Repository?, configFolder: String) -> String {
    let root = repository?.workingDirectory ?? (configFolder + "/")
    return root + ".prunecheck/cache"
}

public func folder(of file: String) -> String {
    let f = (file as NSString).deletingLastPathComponent
    return f.isEmpty ? FileManager.default.currentDirectoryPath : f
}

/// `path` relative to the working directory when it lies below it (for reports and annotations).
public func relativeToCwd(_ path: String) -> String {
    let cwd = FileManager.default.currentDirectoryPath + "/"
    let absolute = path.hasPrefix("/") ? path : cwd + path
    let standardized = (absolute as NSString).standardizingPath
    return standardized.hasPrefix(cwd) ? String(standardized.dropFirst(cwd.count)) : standardized
}

/// The exit status a set of verdicts calls for: a missing or unreadable baseline, else a
/// regression, else ok.
public func overallStatus(of verdicts: [ModelVerdict]) -> ExitStatus {
    if verdicts.contains(where: { $0.runError != nil }) { return .inputError }
    if verdicts.contains(where: \.hasMissingBaseline) { return .baselineError }
    if verdicts.contains(where: { !$0.regressions.isEmpty }) { return .regression }
    return .ok
}

/// Lines for the user that are not results: progress and notes, on standard error.
public func note(_ message: String) {
    // Standard output first (in `Console.err`): a note must not land inside a table row when
    // both streams go to one CI log (a buffered table used to be split by "JSON report: …").
    Console.err(message)
}
