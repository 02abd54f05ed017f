import ArgumentParser
import Configuration
import Evaluation
import Foundation
import ModelIO
import Pruning
import Regression
import TensorEngine

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Prune one model, optionally fine-tune it, and write it as ONNX.",
        discussion: """
        Pruned weights are written as exact zeros in dense initializers, so any ONNX runtime \
        loads the result. Prints accuracy before and after on the eval split and the sparsity of \
        every layer.
        """)

    @Option(help: "The model file (.onnx, or .safetensors with --architecture).")
    var model: String

    @Option(help: "The architecture file (layer-list JSON) for a .safetensors model.")
    var architecture: String?

    @Option(help: "The data file (.npz).")
    var data: String

    @Option(help: "Training inputs and labels, comma-separated (fine-tuning).")
    var split = "x_train,y_train"

    @Option(help: "Evaluation inputs and labels, comma-separated.")
    var evalSplit = "x_test,y_test"

    @Option(help: "Multiply inputs by this before the model (e.g. 0.00392156862745098 for uint8 pixels).")
    var scale: Double = 1

    @Option(help: "Pruning criterion (magnitude).")
    var method = "magnitude"

    @Option(help: "Fraction of prunable weights to remove, in [0, 1) (implied by N:M).")
    var sparsity: Double?

    @Option(help: "unstructured, N:M (N kept per group of M, e.g. 2:4), neuron (Linear outputs) or channel (Conv outputs); neuron and channel make the model smaller.")
    var granularity = "unstructured"

    @Option(help: "Layers neuron/channel pruning leaves whole (repeatable).")
    var protect: [String] = []

    @Option(help: "global (one ranking) or layer (the same ratio per layer).")
    var scope = "global"

    @Option(help: "Fine-tuning epochs after the cut (0: none).")
    var finetuneEpochs = 0

    @Option(help: "Fine-tuning learning rate (SGD, momentum 0.9, cosine to 0).")
    var lr: Double = 0.01

    @Option(help: "Fine-tuning batch size.")
    var batchSize = 64

    @Option(help: "Seed of the fine-tuning order.")
    var seed: UInt64 = 0

    @Option(help: "Worker threads.")
    var threads = 1

    @Option(help: "Where to write the pruned model: .onnx, or .safetensors (with the layer-list .json beside it).")
    var out: String

    @Option(help: ArgumentHelp("Also write the first 16 eval inputs and the pruned model's outputs for them (.npz), for checks with other runtimes.", visibility: .hidden))
    var referenceOutputs: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        guard method == "magnitude" else { throw InputError("--method: '\(method)' is not available; allowed: magnitude") }
        guard let gran = PruneRecipe.Granularity(text: granularity) else {
            throw InputError("--granularity: '\(granularity)' is not allowed; expected \(PruneRecipe.Granularity.allowedText)")
        }
        guard let sc = PruneRecipe.Scope(rawValue: scope) else { throw InputError("--scope: '\(scope)' is not allowed; expected global or layer") }
        let amount: Double
        switch gran {
        case let .nm(n, m):
            amount = 1 - Double(n) / Double(m)
            if let s = sparsity, abs(s - amount) > 1e-9 { throw InputError("--sparsity \(s) contradicts --granularity \(granularity) (which prunes \(amount))") }
        case .unstructured, .neuron, .channel:
            guard let s = sparsity else { throw InputError("--sparsity is required for unstructured pruning") }
            guard s >= 0 && s < 1 else { throw InputError("--sparsity \(s) is outside [0, 1)") }
            amount = s
        }
        guard out.hasSuffix(".onnx") || out.hasSuffix(".safetensors") else {
            throw InputError("--out must name an .onnx file, or a .safetensors file (its layer-list JSON is written beside it), found '\(out)'")
        }
        guard threads >= 1, batchSize >= 1, finetuneEpochs >= 0, lr > 0 else { throw ValidationError("--threads, --batch-size ≥ 1, --finetune-epochs ≥ 0 and --lr > 0") }
        func pair(_ text: String, _ option: String) throws -> SplitSource {
            let names = text.split(separator: ",").map(String.init)
            guard names.count == 2 else { throw ValidationError("\(option) takes two names: inputs,labels") }
            return SplitSource(inputs: names[0], labels: names[1])
        }
        let trainSplit = try pair(split, "--split"), evalSource = try pair(evalSplit, "--eval-split")
        var m = try loadModel(path: model, architecture: architecture)
        let classes = try classCount(of: m, file: model)
        let spec = DataSpec(file: data, train: trainSplit, eval: evalSource, scale: scale)
        let eval = try loadSplit(spec, evalSource, model: m, classes: classes)
        let before = Evaluator.classify(model: m, data: eval, classes: classes, threads: threads).accuracy
        let finetune = finetuneEpochs > 0
            ? FineTuneSettings(epochs: finetuneEpochs, batchSize: batchSize, learningRate: lr, momentum: 0.9, schedule: .cosine)
            : nil
        var recipe = PruneRecipe(method: .magnitude, scope: sc, granularity: gran, sparsity: amount, finetune: finetune)
        recipe.protect = protect
        let paramsBefore = m.parameters.reduce(0) { $0 + $1.variable.value.count }
        let pruned: (graph: Graph, masks: PruningMasks)
        do { pruned = try prune(m, recipe: recipe) } catch let e as StructuredPruningError {
            throw InputError("\(model): \(e)")
        }
        m = pruned.graph
        let masks = pruned.masks
        let paramsAfter = m.parameters.reduce(0) { $0 + $1.variable.value.count }
        let oneShot = Evaluator.classify(model: m, data: eval, classes: classes, threads: threads).accuracy
        if let finetune {
            let train = try loadSplit(spec, trainSplit, model: m, classes: classes)
            FineTuning.run(model: m, masks: masks, data: train, settings: finetune, seed: seed, threads: threads) { e in
                if !json { note("  fine-tuning epoch \(e.epoch)/\(finetune.epochs): loss \(String(format: "%.4f", e.meanLoss))") }
            }
        }
        let after = Evaluator.classify(model: m, data: eval, classes: classes, threads: threads).accuracy
        if out.hasSuffix(".safetensors") {
            try LayerList.write(m, to: String(out.dropLast(".safetensors".count)) + ".json")
            try Safetensors.write(m, to: out)
        } else {
            try ONNXModel.save(m, to: out)
        }
        if let referenceOutputs {
            let x = eval.inputs.rows(0..<min(16, eval.count))
            let y = m.predict(x, threads: threads)
            try NPZ.write(["input": NPYArray(floats: x.scalars, shape: x.shape), "logits": NPYArray(floats: y.scalars, shape: y.shape)],
                          to: referenceOutputs)
        }
        let report = SparsityReport(model: m)
        if json {
            print(JSONValue.object([
                ("model", .string(model)), ("out", .string(out)), ("granularity", .string(gran.text)), ("scope", .string(sc.rawValue)),
                ("sparsity", .number(report.sparsity)), ("accuracy_dense", .number(before)), ("accuracy_pruned", .number(oneShot)),
                ("accuracy_finetuned", .number(after)), ("finetune_epochs", .number(Double(finetuneEpochs))),
                ("params_before", .number(Double(paramsBefore))), ("params_after", .number(Double(paramsAfter))),
                ("layers", .array(report.perLayer.map { l in
                    .object([("name", .string(l.name)), ("zeros", .number(Double(l.zeros))), ("count", .number(Double(l.count))),
                             ("sparsity", .number(l.count == 0 ? 0 : Double(l.zeros) / Double(l.count)))])
                })),
            ]).rendered(), terminator: "")
        } else {
            print("\(model) → \(out): \(gran.text) magnitude pruning, scope \(sc.rawValue)")
            print("  accuracy dense \(String(format: "%.4f", before)), pruned \(String(format: "%.4f", oneShot))"
                  + (finetune == nil ? "" : ", after \(finetuneEpochs) fine-tuning epochs \(String(format: "%.4f", after))"))
            print("  sparsity \(String(format: "%.4f", report.sparsity)) (\(report.zeros) of \(report.count) weights); parameters \(paramsBefore) → \(paramsAfter)")
            for l in report.perLayer {
                print("    \(l.name): \(String(format: "%.4f", l.count == 0 ? 0 : Double(l.zeros) / Double(l.count))) (\(l.zeros)/\(l.count))")
            }
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a model's ops, shapes, parameter counts and sparsity per layer.")

    @Argument(help: "The model file (.onnx, or .safetensors with --architecture).")
    var file: String

    @Option(help: "The architecture file (layer-list JSON) for a .safetensors model.")
    var architecture: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let m = try loadModel(path: file, architecture: architecture)
        let shapes = try m.valueShapes(for: Tensor(zeros: [1] + m.inputShape))
        let cost = CostAnalysis.analyze(m)
        var rows: [(name: String, op: String, output: [Int], params: Int, nonzero: Int)] = []
        for n in m.nodes {
            var params = 0, nonzero = 0
            for i in n.inputs where !i.isEmpty {
                if case .float(let v)? = m.initializer(i), v.requiresGrad {
                    params += v.value.count
                    nonzero += v.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
                }
            }
            rows.append((n.name, n.opType, n.outputs.first.flatMap { shapes[$0] } ?? [], params, nonzero))
        }
        func shapeText(_ s: [Int]) -> String { "[" + (["batch"] + s.dropFirst().map(String.init)).joined(separator: ", ") + "]" }
        if json {
            print(JSONValue.object([
                ("file", .string(file)), ("opset", .number(Double(m.opset))),
                ("input", .array(([1] + m.inputShape).map { .number(Double($0)) })),
                ("params_total", .number(Double(cost.paramsTotal))), ("params_nonzero", .number(Double(cost.paramsNonzero))),
                ("macs", .number(Double(cost.macs))), ("macs_nonzero", .number(Double(cost.macsNonzero))),
                ("nodes", .array(rows.map { r in
                    .object([("name", .string(r.name)), ("op", .string(r.op)), ("output_shape", .array(r.output.map { .number(Double($0)) })),
                             ("params", .number(Double(r.params))), ("params_nonzero", .number(Double(r.nonzero))),
                             ("sparsity", .number(r.params == 0 ? 0 : 1 - Double(r.nonzero) / Double(r.params)))])
                })),
            ]).rendered(), terminator: "")
            return
        }
        print("\(file): opset \(m.opset), input \(shapeText([1] + m.inputShape)), \(m.nodes.count) nodes")
        let table = [["node", "op", "output", "params", "sparsity"]] + rows.map { r in
            [r.name, r.op, shapeText(r.output), r.params == 0 ? "" : "\(r.params)",
             r.params == 0 ? "" : String(format: "%.2f%%", 100 * (1 - Double(r.nonzero) / Double(r.params)))]
        }
        let widths = (0..<5).map { c in table.map { $0[c].count }.max() ?? 0 }
        for row in table {
            print("  " + row.enumerated().map { c, v in c >= 3 ? String(repeating: " ", count: widths[c] - v.count) + v : v.padding(toLength: widths[c], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        print("  total: \(cost.paramsTotal) parameters, \(cost.paramsNonzero) nonzero; \(cost.macs) MACs per example (\(cost.macsNonzero) on nonzero weights)")
    }
}
