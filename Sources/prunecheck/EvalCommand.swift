import ArgumentParser
import Checking
import Common
import Configuration
import Evaluation
import Foundation
import ModelIO
import Regression
import Reports

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate one dense model on a data set and print its metrics.")

    @OptionGroup var modelOptions: ModelOptions
    var model: String { modelOptions.model }
    var architecture: String? { modelOptions.architecture }

    @Option(help: "The data file (.npz).")
    var data: String

    @Option(help: "Input and label array names, comma-separated, for a model of one float input whose input the archive does not name.")
    var split = "x_test,y_test"

    @OptionGroup var dataOptions: TaskDataOptions

    @Option(help: "Multiply inputs by this before the model (e.g. 0.00392156862745098 for uint8 pixels).")
    var scale: Double = 1

    @OptionGroup var threadOptions: ThreadOptions
    var threads: Int { threadOptions.threads }

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let m = try loadModel(path: model, architecture: architecture)
        let split: SplitSource
        if let named = try dataOptions.namedSplit(for: m, data: data) {
            split = named
        } else {
            let names = self.split.split(separator: ",").map(String.init)
            guard names.count == 2 else { throw ValidationError("--split takes two names: inputs,labels") }
            split = SplitSource(inputs: names[0], labels: names[1])
        }
        let spec = DataSpec(file: data, train: split, eval: split, scale: scale)
        let eval = try loadSplit(task: dataOptions.task, data: spec, split, model: m, modelFile: model)
        let metrics: [(String, Double)]
        if dataOptions.task == .classification {
            let classes = try classCount(of: m, file: model)
            let scores = Evaluator.classify(model: m, data: eval, classes: classes, threads: threads)
            metrics = [
                (MetricNames.accuracy, scores.accuracy), (MetricNames.precisionMacro, scores.precisionMacro),
                (MetricNames.recallMacro, scores.recallMacro), (MetricNames.f1Macro, scores.f1Macro),
            ]
        } else {
            metrics = try taskMetrics(task: dataOptions.task, data: spec, model: m, modelFile: model, examples: eval, threads: threads)
                .metrics.sorted { $0.key < $1.key }
        }
        if json {
            Console.out(JSONValue.object([
                ("model", .string(model)), ("data", .string(data)), ("task", .string(dataOptions.task.rawValue)), ("examples", .number(Double(eval.count))),
                ("metrics", .object(metrics.map { ($0.0, .number($0.1)) })),
            ]).rendered(), terminator: "")
        } else {
            Console.out("\(model) on \(data) (\(eval.count) examples, task \(dataOptions.task.rawValue))")
            for (name, value) in metrics { Console.out("  \(name) \(MetricCheck.format(value, name))") }
            if metrics.isEmpty { Console.out("  (an embedding model has no metrics of its own; prune it to see its fidelity to the dense model)") }
        }
    }
}
