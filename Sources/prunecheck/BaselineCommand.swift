import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import GitKit
import Regression
import Reports

struct BaselineGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "baseline", abstract: "Manage accepted baselines.", subcommands: [Update.self])

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the configured models and record their results as the new baselines.")

        @OptionGroup var options: ConfigOptions

        @Flag(help: "Neither read nor write the result cache (.prunecheck/cache).")
        var noCache = false

        @Flag(help: "Rewrite every baseline, also those whose gated metrics are within their tolerances.")
        var force = false

        func run() throws {
            let config = try options.load()
            let repository = try Repository.discover(containing: folder(of: config.file))
            var env = try RunEnvironment.gather(folder: folder(of: config.file), repository: repository)
            let progress = Progress()
            let cache = noCache ? nil : ResultCache(folder: cacheFolder(repository: repository, configFolder: folder(of: config.file)))
            // Run every model before writing anything: a bad input in the third model must not
            // leave the first two baselines updated and the rest old.
            var results: [(ModelSpec, ModelRunResult)] = []
            for (i, spec) in config.models.enumerated() {
                progress.startModel(i + 1, of: config.models.count, name: spec.name, detail: "recording its baseline")
                if let cache {
                    let (result, cached) = try cache.run(spec, machine: env.machine, progress: progress)
                    if cached { progress.line("  \(spec.name): results from the cache (inputs unchanged; --no-cache to re-run)") }
                    results.append((spec, result))
                } else {
                    results.append((spec, try runModel(spec, progress: progress)))
                }
            }
            progress.finishModel()
            // Every baseline goes to its temporary first and all are renamed together: a failed
            // write (a full disk) or a kill leaves the old set, not a mix of old and new.
            var files: [(path: String, bytes: [UInt8])] = []
            var lines: [String] = []
            for (spec, result) in results {
                let path = config.baselinePath(for: spec.name)
                let old = try? Baseline.read(path: path)
                // Nothing to record when the recipe and the model are the same (its timings can
                // only differ by noise) and every other gated metric is within its tolerance:
                // rewriting would only churn timing noise.
                if !force, let old, old.recipeSHA256 == spec.recipeSHA256, old.modelSHA256 != nil, old.modelSHA256 == result.modelSHA256,
                   Set(old.metrics.keys) == Set(result.metrics.keys),
                   Comparison.check(current: result.metrics.filter { !MetricNames.isTiming($0.key) }, baseline: old.metrics, tolerances: spec.tolerances)
                       .allSatisfy({ $0.status == .pass || $0.status == .info }) {
                    lines.append("kept \(relativeToCwd(path)) (the same model; gated metrics within their tolerances; --force rewrites it)")
                    continue
                }
                var baseline = Baseline(model: spec.name, recipeSHA256: spec.recipeSHA256, metrics: result.metrics,
                                        recorded: env.recording(threads: spec.threads),
                                        latencySamples: result.evidence.currentLatency.mapValues { Statistics.quantiles($0.sorted()) },
                                        evalCorrect: result.evidence.currentCorrect, modelSHA256: result.modelSHA256)
                baseline.latencyDevices = result.devices.filter { !$0.value.hasPrefix("skipped") }
                files.append((path, Array(baseline.json.rendered().utf8)))
                lines.append("wrote \(relativeToCwd(path))" + (old == nil ? " (new)" : ""))
                for name in result.metrics.keys.sorted() where !MetricNames.isDetail(name) {
                    let now = MetricCheck.format(result.metrics[name]!, name)
                    if let before = old?.metrics[name], before != result.metrics[name] {
                        lines.append("  \(name): \(MetricCheck.format(before, name)) -> \(now)")
                    } else if old?.metrics[name] == nil {
                        lines.append("  \(name): \(now)")
                    }
                }
            }
            try writeFilesAtomically(files)
            lines.forEach { Console.out($0) }
        }
    }
}
