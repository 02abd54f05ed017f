import Configuration
import Dispatch
import Foundation
import Evaluation
import ModelIO
import Pruning
import Regression
import TensorEngine

/// Loads a model file: ONNX, or safetensors with its layer-list architecture.
func loadModel(path: String, architecture: String?) throws -> Graph {
    try ModelLoading.load(path: path, architecture: architecture)
}

/// The number of classes a classifier predicts: the width of its output for one example.
func classCount(of model: Graph, file: String) throws -> Int {
    let shapes: [String: [Int]]
    do { shapes = try model.valueShapes(for: Tensor(zeros: [1] + model.inputShape)) } catch {
        throw ModelIOError(file: file, "the model does not run on an input of shape \([1] + model.inputShape): \(error)")
    }
    guard let out = model.outputs.first.flatMap({ shapes[$0] }), out.count == 2, out[0] == 1, out[1] > 0 else {
        throw ModelIOError(file: file, "the model's output must be (batch, classes)")
    }
    return out[1]
}

/// Loads one split and checks that its examples fit the model's input.
func loadSplit(_ data: DataSpec, _ split: SplitSource, model: Graph, classes: Int) throws -> LabeledData {
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
    /// Latency samples by batch size and per-example correctness on the eval set.
    var evidence: Evidence
    /// Cross-validation: each fold's metrics.
    var folds: [[String: Double]]
    /// Confusion matrix on the eval set (classification).
    var confusion: [[Int]] = []
    var seconds: Double
    /// Measures one batch size's latency again (nil for results from the cache).
    var remeasure: ((Int) -> LatencyResult)?
}

/// Prunes and fine-tunes `model` with `spec`'s recipe: in place for unstructured and N:M
/// pruning, into a smaller graph for neuron and channel pruning. Returns the pruned model and
/// what the recipe reports (allocations, rounds).
func pruneAndFineTune(_ model: Graph, spec: ModelSpec, train: LabeledData, progress: Progress?, label: String) throws -> PruningOutcome {
    let recipe = spec.recipe
    let teacher = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
    let started = Date()
    do {
        return try PruningPipeline.run(model, recipe: recipe, train: train, seed: spec.seed, threads: spec.threads, teacher: teacher,
                                       progress: { phase, e, total in
            progress?.update("  \(label) \(phase)", done: e.epoch, total: total,
                             detail: "epochs, loss \(String(format: "%.4f", e.meanLoss))", started: started)
        })
    } catch let e as StructuredPruningError {
        throw InputError("\(spec.model): \(e) (model '\(spec.name)', prune.method \(recipe.method.rawValue), prune.granularity \(recipe.granularity.text))")
    } catch let e as GraphError {
        throw InputError("\(spec.model): \(e) (model '\(spec.name)', prune.method \(recipe.method.rawValue))")
    } catch let e as AllocationError {
        throw InputError("\(spec.name): \(e)")
    }
}

/// Loads one split for regression and checks that its examples fit the model's input and
/// its targets the model's output.
func loadRegressionSplit(_ data: DataSpec, _ split: SplitSource, model: Graph, outputs: Int) throws -> LabeledData {
    let loaded = try DataLoading.loadRegressionSplit(path: data.file, split: split, scale: Float(data.scale))
    let rowShape = Array(loaded.inputs.shape.dropFirst())
    guard rowShape.reduce(1, *) == model.inputShape.reduce(1, *) else {
        throw ModelIOError(file: data.file, "array '\(split.inputs)' has examples of shape \(rowShape), the model expects \(model.inputShape)")
    }
    guard loaded.targets!.shape[1] == outputs else {
        throw ModelIOError(file: data.file, "array '\(split.labels)' has \(loaded.targets!.shape[1]) target column(s), the model predicts \(outputs)")
    }
    return LabeledData(inputs: loaded.inputs.reshaped([loaded.count] + model.inputShape), targets: loaded.targets!)
}

/// `cv: {folds: k}`: the recipe re-run from the dense weights on k folds (stratified by
/// `strata`), each scored on its held-out fold; empty without `cv`.
func crossValidate(
    _ dense: Graph, spec: ModelSpec, train: LabeledData, strata: [Int32], progress: Progress,
    score: (Graph, LabeledData) -> [String: Double]
) throws -> [[String: Double]] {
    guard let k = spec.cvFolds else { return [] }
    return try CrossValidation.stratifiedFolds(labels: strata, folds: k, seed: spec.seed).enumerated().map { i, held in
        let heldSet = Set(held)
        let candidate = dense.copy()
        let pruned = try pruneAndFineTune(candidate, spec: spec, train: train.subset((0..<train.count).filter { !heldSet.contains($0) }),
                                          progress: progress, label: "\(spec.name) fold \(i + 1)/\(k)")
        return score(pruned.graph, train.subset(held))
    }
}

/// Prunes, fine-tunes and evaluates one configured model.
func runModel(_ spec: ModelSpec, progress: Progress, exportTo: String? = nil) throws -> ModelRunResult {
    if spec.task == .regression { return try runRegressionModel(spec, progress: progress, exportTo: exportTo) }
    let start = DispatchTime.now().uptimeNanoseconds
    let denseModel = try loadModel(path: spec.model, architecture: spec.architecture)
    let classes = try classCount(of: denseModel, file: spec.model)
    let train = try loadSplit(spec.data, spec.data.train, model: denseModel, classes: classes)
    let eval = try loadSplit(spec.data, spec.data.eval, model: denseModel, classes: classes)
    let extraSets = try spec.data.evalSets.mapValues { try loadSplit(spec.data, $0, model: denseModel, classes: classes) }
    let dense = denseModel.copy()
    let denseScores = Evaluator.classify(model: denseModel, data: eval, classes: classes, threads: spec.threads)

    // Cross-validation first, from the dense weights: k re-runs of the recipe on the folds.
    let folds = try crossValidate(dense, spec: spec, train: train, strata: train.labels, progress: progress) { model, held in
        let r = Evaluator.evaluate(model: model, data: held, classes: classes, threads: spec.threads)
        return ["accuracy": r.scores.accuracy, "f1_macro": r.scores.f1Macro]
    }

    let outcome = try pruneAndFineTune(denseModel, spec: spec, train: train, progress: progress, label: spec.name)
    let model = outcome.graph
    for line in outcome.notes { progress.line("  \(spec.name): \(line)") }
    if let exportTo { try ONNXModel.save(model, to: exportTo) }
    let report = Evaluator.evaluate(model: model, data: eval, classes: classes, threads: spec.threads)
    let trainScores = Evaluator.classify(model: model, data: train, classes: classes, threads: spec.threads)
    let sparsity = SparsityReport(model: model)
    progress.line("  \(spec.name): per-layer sparsity " + sparsity.perLayer.map { "\(StructuredPruning.layerName($0.name)) \(MetricCheck.format(Double($0.zeros) / Double(max($0.count, 1)), MetricNames.sparsity))" }.joined(separator: ", "))
    progress.line("  \(spec.name): accuracy dense \(MetricCheck.format(denseScores.accuracy, MetricNames.accuracy)) -> pruned \(MetricCheck.format(report.scores.accuracy, MetricNames.accuracy)) at sparsity \(MetricCheck.format(sparsity.sparsity, MetricNames.sparsity))")

    var metrics = report.values()
    for (name, data) in extraSets {
        metrics.merge(Evaluator.evaluate(model: model, data: data, classes: classes, threads: spec.threads).values(prefix: "\(name)/")) { a, _ in a }
    }
    metrics["train_accuracy"] = trainScores.accuracy
    metrics["generalization_gap"] = trainScores.accuracy - report.scores.accuracy
    var result = try finish(model, spec: spec, eval: eval, metrics: metrics, sparsity: sparsity, folds: folds,
                            evidence: Evidence(currentCorrect: report.correct), started: start)
    result.confusion = report.scores.confusion
    return result
}

/// What every task adds: sparsity, costs, the cross-validation summary and latency.
func finish(
    _ model: Graph, spec: ModelSpec, eval: LabeledData, metrics partial: [String: Double], sparsity: SparsityReport,
    folds: [[String: Double]], evidence partialEvidence: Evidence, started: UInt64
) throws -> ModelRunResult {
    var metrics = partial
    metrics[MetricNames.sparsity] = sparsity.sparsity
    for layer in sparsity.perLayer where layer.count > 0 {
        metrics[MetricNames.layerSparsity(StructuredPruning.layerName(layer.name))] = Double(layer.zeros) / Double(layer.count)
    }
    metrics.merge(CostAnalysis.analyze(model).values) { a, _ in a }
    metrics["bytes_compressed"] = Double(try ParameterCompression.deflatedSize(model))
    for name in folds.first?.keys.sorted() ?? [] {
        let (mean, std) = CrossValidation.meanAndStd(folds.map { $0[name]! })
        metrics["cv_\(name)_mean"] = mean
        metrics["cv_\(name)_std"] = std
    }
    let measure: (Int) -> LatencyResult = { b in
        LatencyHarness.measure(model: model, input: eval.inputs.gatherRows((0..<b).map { $0 % eval.count }),
                               settings: spec.latency, threads: spec.threads)
    }
    var evidence = partialEvidence
    for b in spec.latency.batchSizes {
        var l: LatencyResult?
        // Measured energy where the CPU's counters are readable (absent otherwise; see RAPL).
        if let microjoules = RAPL.measure({ l = measure(b) }), let runs = l?.runs, runs > 0 {
            metrics["energy_measured_uj@b\(b)"] = (microjoules / Double(runs + spec.latency.warmup) * 100).rounded() / 100
        }
        metrics.merge(latencyMetrics(l!)) { _, new in new }
        evidence.currentLatency[b] = l!.samples
    }
    return ModelRunResult(metrics: metrics, evidence: evidence, folds: folds,
                          seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, remeasure: measure)
}

/// `runModel` for `task: regression`: MAE, RMSE and R² instead of class metrics.
func runRegressionModel(_ spec: ModelSpec, progress: Progress, exportTo: String? = nil) throws -> ModelRunResult {
    let start = DispatchTime.now().uptimeNanoseconds
    let denseModel = try loadModel(path: spec.model, architecture: spec.architecture)
    let outputs = try classCount(of: denseModel, file: spec.model)
    let train = try loadRegressionSplit(spec.data, spec.data.train, model: denseModel, outputs: outputs)
    let eval = try loadRegressionSplit(spec.data, spec.data.eval, model: denseModel, outputs: outputs)
    let extraSets = try spec.data.evalSets.mapValues { try loadRegressionSplit(spec.data, $0, model: denseModel, outputs: outputs) }
    let dense = denseModel.copy()
    let denseScores = Evaluator.regress(model: denseModel, data: eval, threads: spec.threads)
    // No classes to stratify by: one seeded shuffle dealt to the folds.
    let folds = try crossValidate(dense, spec: spec, train: train, strata: [Int32](repeating: 0, count: train.count), progress: progress) {
        model, held in Evaluator.regress(model: model, data: held, threads: spec.threads).values()
    }
    let outcome = try pruneAndFineTune(denseModel, spec: spec, train: train, progress: progress, label: spec.name)
    let model = outcome.graph
    for line in outcome.notes { progress.line("  \(spec.name): \(line)") }
    if let exportTo { try ONNXModel.save(model, to: exportTo) }
    let scores = Evaluator.regress(model: model, data: eval, threads: spec.threads)
    let sparsity = SparsityReport(model: model)
    progress.line("  \(spec.name): per-layer sparsity " + sparsity.perLayer.map { "\(StructuredPruning.layerName($0.name)) \(MetricCheck.format(Double($0.zeros) / Double(max($0.count, 1)), MetricNames.sparsity))" }.joined(separator: ", "))
    progress.line("  \(spec.name): rmse dense \(MetricCheck.format(denseScores.rmse, "rmse")) -> pruned \(MetricCheck.format(scores.rmse, "rmse")) at sparsity \(MetricCheck.format(sparsity.sparsity, MetricNames.sparsity))")
    var metrics = scores.values()
    for (name, data) in extraSets {
        metrics.merge(Evaluator.regress(model: model, data: data, threads: spec.threads).values(prefix: "\(name)/")) { a, _ in a }
    }
    return try finish(model, spec: spec, eval: eval, metrics: metrics, sparsity: sparsity, folds: folds,
                      evidence: Evidence(), started: start)
}

/// The latency metrics of one batch size, to a hundredth of a microsecond (far below the
/// noise; fewer digits keep baseline diffs readable).
func latencyMetrics(_ l: LatencyResult) -> [String: Double] {
    func r(_ v: Double) -> Double { (v * 100).rounded() / 100 }
    return [MetricNames.latency("p50", batch: l.batchSize): r(l.p50), MetricNames.latency("p90", batch: l.batchSize): r(l.p90),
            MetricNames.latency("p99", batch: l.batchSize): r(l.p99), MetricNames.latency("mad", batch: l.batchSize): r(l.mad)]
}

/// `spec` with its input paths replaced by the local files `view` has for them.
func localized(_ spec: ModelSpec, view: InputView) throws -> ModelSpec {
    var s = spec
    s.model = try view.localPath(spec.model)
    s.architecture = try spec.architecture.map(view.localPath)
    s.data.file = try view.localPath(spec.data.file)
    if let teacher = spec.recipe.distill?.teacher { s.recipe.distill?.teacher = try view.localPath(teacher) }
    if let arch = spec.recipe.distill?.teacherArchitecture { s.recipe.distill?.teacherArchitecture = try view.localPath(arch) }
    return s
}
