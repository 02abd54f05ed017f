import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import ModelIO
import Regression
import TensorEngine

/// `prunecheck init`: a starter configuration for one model.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a starter prunecheck.yml for a model and its data (never overwrites one).")

    @Option(help: "The model file (.onnx, or .safetensors with its layer-list JSON).")
    var model: String

    @Option(help: "Its architecture (layer-list JSON); default: the model's path with .json.")
    var architecture: String?

    @Option(help: "The data file (.npz) with train and test splits.")
    var data: String

    @Option(name: .shortAndLong, help: "Where to write the configuration.")
    var config = "prunecheck.yml"

    @Option(help: ArgumentHelp("The training split's arrays, INPUTS,LABELS (default: found by name, e.g. x_train,y_train).", valueName: "INPUTS,LABELS"))
    var train: String?

    @Option(help: ArgumentHelp("The evaluation split's arrays, INPUTS,LABELS (default: found by name, e.g. x_test,y_test).", valueName: "INPUTS,LABELS"))
    var eval: String?

    func validate() throws {
        for (flag, value) in [("--train", train), ("--eval", eval)] {
            if let value, value.split(separator: ",", omittingEmptySubsequences: false).count != 2 || value.contains(",,") || value.hasPrefix(",") || value.hasSuffix(",") {
                throw ValidationError("\(flag) \(value): expected INPUTS,LABELS (two array names, e.g. x_train,y_train)")
            }
        }
    }

    /// `--train`/`--eval` as a split; its arrays must be in the archive.
    func named(_ value: String?, flag: String, names: [String]) throws -> SplitSource? {
        guard let value else { return nil }
        let parts = value.split(separator: ",").map(String.init)
        if let missing = parts.first(where: { !names.contains($0) }) {
            throw ModelIOError(file: data, "\(flag) \(value): no array '\(missing)' (arrays: \(names.joined(separator: ", ")))")
        }
        return SplitSource(inputs: parts[0], labels: parts[1])
    }

    func run() throws {
        guard !FileManager.default.fileExists(atPath: config) else {
            throw InputError("\(config) already exists; it was left as it is (edit it, or pass --config NEW.yml)")
        }
        let arch = architecture ?? (model.hasSuffix(".safetensors") ? String(model.dropLast(".safetensors".count)) + ".json" : nil)
        let m = try loadModel(path: model, architecture: arch)
        let names = try NPZ.keys(path: data)
        let arrays = try NPZ.read(path: data)
        let given = (train: try named(self.train, flag: "--train", names: names), eval: try named(self.eval, flag: "--eval", names: names))
        var plan: Plan
        if m.inputs.count == 1 && m.inputs[0].dtype == .float32, let t = given.train, let e = given.eval {
            plan = Plan(train: t, eval: e, scale: arrays[t.inputs]!.dtype == .uint8 ? 1.0 / 255.0 : 1.0, task: .classification,
                        tolerances: "accuracy: 0.005, f1_macro: 0.01")
        } else {
            plan = try m.inputs.count == 1 && m.inputs[0].dtype == .float32
                ? classifierPlan(m, names: names, arrays: arrays) : graphInputPlan(m, names: names, arrays: arrays)
            if let t = given.train { plan.train = t }
            if let e = given.eval { plan.eval = e }
        }
        let (train, eval, scale, task) = (plan.train, plan.eval, plan.scale, plan.task)
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
              tolerances: {\(plan.tolerances), sparsity: 0.0, latency_p50: 0.5}
            models:
              - name: \(base)-magnitude50
                model: \(rel(model))
            \(task == .classification ? "" : "    task: \(task.rawValue)\n")
            """
        if let arch { text += "    architecture: \(rel(arch))\n" }
        text += """
                data:
                  file: \(rel(data))
                  train: \(train.text)
                  eval: \(eval.text)
                  scale: \(scale)
                prune:
                  method: magnitude
                  scope: global
                  granularity: unstructured
                  sparsity: 0.5
                  finetune: {epochs: 3, batch_size: 64, optimizer: sgd, lr: 0.01, momentum: 0.9}

            """
        // The written file must parse, and its data fit the model, as `check` will read them.
        let parsed = try CheckConfig.parse(text, file: config)
        for split in [train, eval] {
            _ = try loadSplit(for: parsed.models[0], split, model: m)
        }
        try writeFileAtomically(text, to: config)
        Console.out("""
            wrote \(config) for \(base) (task \(task.rawValue); train \(train.text), eval \(eval.text)\(scale != 1 ? ", inputs scaled by 1/255" : "")).
            Next:
              prunecheck baseline update     # record the accepted results in baselines/
              git add \(config) baselines && git commit -m "Add PruneCheck"
              prunecheck check               # compares every later commit with them
            """)
    }

    /// What `init` writes for the data: the splits, the input scale and the task.
    struct Plan {
        var train: SplitSource
        var eval: SplitSource
        var scale: Double
        var task: Task
        var tolerances: String
    }

    /// A model of one float input: integer 1-D arrays are labels; their inputs share the first
    /// dimension and the split word (train / test / val).
    func classifierPlan(_ m: Graph, names: [String], arrays: [String: NPYArray]) throws -> Plan {
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
            throw ModelIOError(file: data, "no training split found: expected arrays like x_train and y_train (found: \(names.joined(separator: ", "))); name them with --train INPUTS,LABELS")
        }
        guard let eval = split(["test", "val", "eval"]) else {
            throw ModelIOError(file: data, "no evaluation split found: expected arrays like x_test and y_test (found: \(names.joined(separator: ", "))); name them with --eval INPUTS,LABELS")
        }
        let scale = arrays[train.inputs]!.dtype == .uint8 ? 1.0 / 255.0 : 1.0
        return Plan(train: train, eval: eval, scale: scale, task: .classification, tolerances: "accuracy: 0.005, f1_macro: 0.01")
    }

    /// A model of several inputs, or of token ids: each graph input reads the array of its own
    /// name with the split word (`input_ids_train`, `train_input_ids`), or the array of its
    /// name alone (then both splits use it); labels are `labels` with the split word, or
    /// `labels`. Integer labels of one per example make a classifier, of one per position a
    /// language model; no labels, an embedding model.
    func graphInputPlan(_ m: Graph, names: [String], arrays: [String: NPYArray]) throws -> Plan {
        func array(_ base: String, _ words: [String]) -> String? {
            for w in words {
                if let n = names.first(where: { $0 == "\(base)_\(w)" || $0 == "\(w)_\(base)" }) { return n }
            }
            return names.contains(base) ? base : nil
        }
        func split(_ words: [String]) throws -> SplitSource {
            var mapping: [String: String] = [:]
            for input in m.inputs {
                guard let a = array(input.name, words) else {
                    throw ModelIOError(file: data, "no array for the model's input '\(input.name)': expected \(input.name)_\(words[0]) or \(input.name) (found: \(names.joined(separator: ", ")))")
                }
                if a != input.name { mapping[input.name] = a }
            }
            return SplitSource(arrays: mapping, labels: array("labels", words))
        }
        let train = try split(["train"]), eval = try split(["test", "val", "eval"])
        let labels = eval.labels.flatMap { arrays[$0] }
        let task: Task = labels == nil ? .embedding : labels!.shape.count >= 2 ? .languageModel : .classification
        let tolerances = task == .embedding ? "cosine_to_dense: 0.01" : task == .languageModel ? "perplexity: 0.05" : "accuracy: 0.005, f1_macro: 0.01"
        return Plan(train: train, eval: eval, scale: 1, task: task, tolerances: tolerances)
    }
}
