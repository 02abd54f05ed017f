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

        func run() throws {
            let config = try options.load()
            var env = try RunEnvironment.gather(folder: folder(of: config.file),
                                                repository: try Repository.discover(containing: folder(of: config.file)))
            let progress = Progress()
            // Run every model before writing anything: a bad input in the third model must not
            // leave the first two baselines updated and the rest old.
            var results: [(ModelSpec, ModelRunResult)] = []
            for spec in config.models {
                progress.line("recording \(spec.name)")
                results.append((spec, try runModel(spec, progress: progress)))
            }
            for (spec, result) in results {
                let path = config.baselinePath(for: spec.name)
                let old = try? Baseline.read(path: path)
                let baseline = Baseline(model: spec.name, recipeSHA256: spec.recipeSHA256, metrics: result.metrics,
                                        recorded: env.recording(threads: spec.threads),
                                        latencySamples: result.evidence.currentLatency.mapValues { Statistics.quantiles($0.sorted()) },
                                        evalCorrect: result.evidence.currentCorrect, modelSHA256: result.modelSHA256)
                try baseline.write(path: path)
                print("wrote \(relativeToCwd(path))" + (old == nil ? " (new)" : ""))
                for name in result.metrics.keys.sorted() where !MetricNames.isDetail(name) {
                    let now = MetricCheck.format(result.metrics[name]!, name)
                    if let before = old?.metrics[name], before != result.metrics[name] {
                        print("  \(name): \(MetricCheck.format(before, name)) -> \(now)")
                    } else if old?.metrics[name] == nil {
                        print("  \(name): \(now)")
                    }
                }
            }
        }
    }
}
