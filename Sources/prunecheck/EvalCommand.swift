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

    @Option(help: "Input and label array names, comma-separated.")
    var split = "x_test,y_test"

    @Option(help: "Multiply inputs by this before the model (e.g. 0.00392156862745098 for uint8 pixels).")
    var scale: Double = 1

    @OptionGroup var threadOptions: ThreadOptions
    var threads: Int { threadOptions.threads }

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let names = split.split(separator: ",").map(String.init)
        guard names.count == 2 else { throw ValidationError("--split takes two names: inputs,labels") }
        let m = try loadModel(path: model, architecture: architecture)
        let classes = try classCount(of: m, file: model)
        let split = SplitSource(inputs: names[0], labels: names[1])
        let eval = try loadSplit(DataSpec(file: data, train: split, eval: split, scale: scale), split, model: m, classes: classes)
        let scores = Evaluator.classify(model: m, data: eval, classes: classes, threads: threads)
        let metrics: [(String, Double)] = [
            (MetricNames.accuracy, scores.accuracy), (MetricNames.precisionMacro, scores.precisionMacro),
            (MetricNames.recallMacro, scores.recallMacro), (MetricNames.f1Macro, scores.f1Macro),
        ]
        if json {
            print(JSONValue.object([
                ("model", .string(model)), ("data", .string(data)), ("examples", .number(Double(eval.count))),
                ("metrics", .object(metrics.map { ($0.0, .number($0.1)) })),
            ]).rendered(), terminator: "")
        } else {
            print("\(model) on \(data) (\(eval.count) examples)")
            for (name, value) in metrics { print("  \(name) \(MetricCheck.format(value, name))") }
        }
    }
}

