import Configuration
import Dispatch
import Foundation
import Evaluation
import ModelIO
import Pruning
import Regression
import TensorEngine

/// Loads a model file: safetensors with its layer-list architecture.
func loadModel(path: String, architecture: String?) throws -> Sequential {
    if path.hasSuffix(".onnx") {
        throw ModelIOError(file: path, "ONNX import is not available in this version; use the .safetensors weights with their architecture JSON")
    }
    guard let architecture else {
        throw InputError("\(path): a .safetensors model needs its architecture file (--architecture FILE.json)")
    }
    return try LayerList.load(architecture: architecture, weights: path)
}

/// The number of classes a classifier predicts: the width of its last Linear layer.
func classCount(of model: Sequential, file: String) throws -> Int {
    guard let last = model.layers.reversed().compactMap({ layer -> LinearLayer? in
        if case .linear(let l) = layer { return l } else { return nil }
    }).first else {
        throw ModelIOError(file: file, "model has no Linear layer to produce class scores")
    }
    return last.outFeatures
}

/// Loads one split and checks that its examples fit the model's input.
func loadSplit(_ data: DataSpec, _ split: SplitSource, model: Sequential, classes: Int) throws -> LabeledData {
    let loaded = try DataLoading.loadSplit(
        path: data.file, split: split, scale: Float(data.scale), classes: classes)
    let rowShape = Array(loaded.inputs.shape.dropFirst())
    let want = model.inputShape
    guard rowShape.reduce(1, *) == want.reduce(1, *) else {
        throw ModelIOError(file: data.file, "array '\(split.inputs)' has examples of shape \(rowShape), the model expects \(want) (\(want.reduce(1, *)) values)")
    }
    return LabeledData(inputs: loaded.inputs.reshaped([loaded.count] + want), labels: loaded.labels)
}

/// Everything one model's run produced.
struct ModelRunResult {
    var metrics: [String: Double]
    var sparsity: SparsityReport
    var seconds: Double
}

/// `spec` with its input paths replaced by the local files `view` has for them.
func localized(_ spec: ModelSpec, view: InputView) throws -> ModelSpec {
    var s = spec
    s.model = try view.localPath(spec.model)
    s.architecture = try spec.architecture.map(view.localPath)
    s.data.file = try view.localPath(spec.data.file)
    return s
}

/// Prunes, fine-tunes and evaluates one configured model.
func runModel(_ spec: ModelSpec, progress: Progress) throws -> ModelRunResult {
    let start = DispatchTime.now().uptimeNanoseconds
    let started = Date()
    let model = try loadModel(path: spec.model, architecture: spec.architecture)
    let classes = try classCount(of: model, file: spec.model)
    let train = try loadSplit(spec.data, spec.data.train, model: model, classes: classes)
    let eval = try loadSplit(spec.data, spec.data.eval, model: model, classes: classes)
    let dense = Evaluator.classify(model: model, data: eval, classes: classes, threads: spec.threads)

    let recipe = spec.recipe
    let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
    let masks = MagnitudePruning.masks(for: weights, sparsity: recipe.sparsity, scope: recipe.scope)
    applyMasks(masks, to: model)
    if let finetune = recipe.finetune, finetune.epochs > 0 {
        FineTuning.run(model: model, masks: masks, data: train, settings: finetune, seed: spec.seed, threads: spec.threads) { e in
            progress.update("  \(spec.name) fine-tuning", done: e.epoch, total: finetune.epochs,
                            detail: "epochs, loss \(String(format: "%.4f", e.meanLoss))", started: started)
        }
    }
    let scores = Evaluator.classify(model: model, data: eval, classes: classes, threads: spec.threads)
    let sparsity = SparsityReport(model: model)
    progress.line("  \(spec.name): accuracy dense \(MetricCheck.format(dense.accuracy, MetricNames.accuracy)) -> pruned \(MetricCheck.format(scores.accuracy, MetricNames.accuracy)) at sparsity \(MetricCheck.format(sparsity.sparsity, MetricNames.sparsity))")
    let nonzero = model.parameters.reduce(0) { sum, p in sum + p.variable.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
    var metrics: [String: Double] = [
        MetricNames.accuracy: scores.accuracy,
        MetricNames.precisionMacro: scores.precisionMacro,
        MetricNames.recallMacro: scores.recallMacro,
        MetricNames.f1Macro: scores.f1Macro,
        MetricNames.sparsity: sparsity.sparsity,
        MetricNames.paramsNonzero: Double(nonzero),
    ]
    for b in spec.latency.batchSizes {
        let input = eval.inputs.gatherRows((0..<b).map { $0 % eval.count })
        let l = LatencyHarness.measure(model: model, input: input, settings: spec.latency, threads: spec.threads)
        // Two decimals of a microsecond are far below the noise; fewer digits keep diffs readable.
        metrics[MetricNames.latency(50, batch: b)] = (l.p50 * 100).rounded() / 100
        metrics[MetricNames.latency(90, batch: b)] = (l.p90 * 100).rounded() / 100
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    return ModelRunResult(metrics: metrics, sparsity: sparsity, seconds: seconds)
}
