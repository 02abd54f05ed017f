import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import ModelIO
import Regression

/// `prunecheck init`: a starter configuration for one model.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a starter prunecheck.yml for a model and its data (never overwrites one).")

    @Option(help: "The model file (.safetensors).")
    var model: String

    @Option(help: "Its architecture (layer-list JSON); default: the model's path with .json.")
    var architecture: String?

    @Option(help: "The data file (.npz) with train and test splits.")
    var data: String

    @Option(name: .shortAndLong, help: "Where to write the configuration.")
    var config = "prunecheck.yml"

    func run() throws {
        guard !FileManager.default.fileExists(atPath: config) else {
            throw InputError("\(config) already exists; it was left as it is (edit it, or pass --config NEW.yml)")
        }
        let arch = architecture ?? (model.hasSuffix(".safetensors") ? String(model.dropLast(".safetensors".count)) + ".json" : nil)
        let m = try loadModel(path: model, architecture: arch)
        let classes = try classCount(of: m, file: model)

        // Splits: integer 1-D arrays are labels; their inputs share the first dimension and
        // the split word (train / test / val).
        let names = try NPZ.keys(path: data)
        let arrays = try NPZ.read(path: data)
        func split(_ words: [String]) -> SplitSource? {
            for word in words {
                let candidates = names.filter { $0.lowercased().contains(word) }
                guard let labels = candidates.first(where: { arrays[$0]!.shape.count == 1 && arrays[$0]!.integers() != nil }),
                      let inputs = candidates.first(where: { $0 != labels && arrays[$0]!.shape.first == arrays[labels]!.shape.first })
                else { continue }
                return SplitSource(inputs: inputs, labels: labels)
            }
            return nil
        }
        guard let train = split(["train"]) else {
            throw ModelIOError(file: data, "no training split found: expected arrays like x_train and y_train (found: \(names.joined(separator: ", ")))")
        }
        guard let eval = split(["test", "val", "eval"]) else {
            throw ModelIOError(file: data, "no evaluation split found: expected arrays like x_test and y_test (found: \(names.joined(separator: ", ")))")
        }
        let scale = arrays[train.inputs]!.dtype == .uint8 ? 1.0 / 255.0 : 1.0
        // Check that the data fits the model before writing anything.
        let spec = DataSpec(file: data, train: train, eval: eval, scale: scale)
        _ = try loadSplit(spec, eval, model: m, classes: classes)

        let configFolder = URL(fileURLWithPath: folder(of: config)).standardizedFileURL.path
        func rel(_ p: String) -> String {
            let abs = URL(fileURLWithPath: p).standardizedFileURL.path
            return abs.hasPrefix(configFolder + "/") ? String(abs.dropFirst(configFolder.count + 1)) : abs
        }
        let base = ((model as NSString).lastPathComponent as NSString).deletingPathExtension
        var text = """
            # PruneCheck configuration (reference: docs/configuration.md). Written by `prunecheck init`.
            version: 1
            baselines: baselines
            defaults:
              seed: 0
              threads: 1          # results do not depend on it; one thread keeps timings steadier
              latency: {batch_sizes: [1, 64], warmup: 10, min_runs: 30, max_seconds: 2}
              # Absolute drops for quality metrics; a relative rise for latency (0.5 = +50 %):
              # single-run timings of small models move by tens of percent on shared CI runners.
              tolerances: {accuracy: 0.005, f1_macro: 0.01, sparsity: 0.0, latency_p50: 0.5}
            models:
              - name: \(base)-magnitude50
                model: \(rel(model))

            """
        if let arch { text += "    architecture: \(rel(arch))\n" }
        text += """
                data:
                  file: \(rel(data))
                  train: [\(train.inputs), \(train.labels)]
                  eval: [\(eval.inputs), \(eval.labels)]
                  scale: \(scale)
                prune:
                  method: magnitude
                  scope: global
                  granularity: unstructured
                  sparsity: 0.5
                  finetune: {epochs: 3, batch_size: 64, optimizer: sgd, lr: 0.01, momentum: 0.9}

            """
        // The written file must parse: it is validated exactly as `check` will read it.
        _ = try CheckConfig.parse(text, file: config)
        try writeFileAtomically(text, to: config)
        print("""
            wrote \(config) for \(base) (\(classes) classes; train [\(train.inputs), \(train.labels)], eval [\(eval.inputs), \(eval.labels)]\(scale != 1 ? ", inputs scaled by 1/255" : "")).
            Next:
              prunecheck baseline update     # record the accepted results in baselines/
              git add \(config) baselines && git commit -m "Add PruneCheck"
              prunecheck check               # compares every later commit with them
            """)
    }
}
