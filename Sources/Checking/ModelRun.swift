import Common
import Configuration
import Dispatch
import Foundation
import Evaluation
import ModelIO
import Pruning
import Regression
import Reports
import TensorEngine

/// Loads a model file: ONNX, or safetensors with its layer-list architecture.
public func loadModel(path: String, architecture: String?) throws -> Graph {
    try ModelLoading.load(path: path, architecture: architecture)
}

/// The number of classes a classifier predicts: the width of its output for one example.
public func classCount(of model: Graph, file: String) throws -> Int {
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
public func loadSplit(_ data: DataSpec, _ split: SplitSource, model: Graph, classes: Int) throws -> LabeledData {
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
public struct ModelRunResult {
    public var metrics: [String: Double]
    /// Latency samples by batch size and per-example correctness on the eval set.
    public var evidence: Evidence
    /// Cross-validation: each fold's metrics.
    public var folds: [[String: Double]]
    /// Confusion matrix on the eval set (classification).
    public var confusion: [[Int]] = []
    public var seconds: Double
    /// Measures one batch size's latency again (nil for results from the cache).
    public var remeasure: ((Int) -> LatencyResult)?
}

/// What pruning measures with (`auto`'s latency budget, `energy`'s ranking): Evaluation's
/// latency harness and energy model, the same as the metrics'.
let pruningLatencyProbe: LatencyProbe = LatencyHarness.budgetProbe
let pruningEnergyEstimate: EnergyEstimate = { EnergyModel.picojoules(macs: $0, parameterWords: $1) }

/// Prunes and fine-tunes `model` with `spec`'s recipe: in place for unstructured and N:M
/// pruning, into a smaller graph for neuron and channel pruning. Returns the pruned model and
/// what the recipe reports (allocations, rounds).
public func pruneAndFineTune(_ model: Graph, spec: ModelSpec, train: LabeledData, progress: Progress?, label: String) throws -> PruningOutcome {
    let recipe = spec.recipe
    let teacher = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
    let started = Date()
    do {
        return try PruningPipeline.run(model, recipe: recipe, train: train, seed: spec.seed, threads: spec.threads, teacher: teacher,
                                       latencyProbe: pruningLatencyProbe, energyEstimate: pruningEnergyEstimate, progress: { phase, e, total in
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

/// `cv: {folds: k}`: the recipe re-run from the dense weights on k folds (stratified by
/// `strata`), each scored on its held-out fold; empty without `cv`.
public func crossValidate(
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

/// One task's part of the pipeline: how a split is loaded for the model and how a model is
/// scored on one. Everything else (cross-validation, pruning, costs, latency) is the same for
/// every task.
struct TaskScoring {
    /// What a model scores on one split.
    struct Scores {
        var metrics: [String: Double]
        /// The value of `TaskScoring.headline`, printed dense → pruned.
        var headline: Double
        /// Per-example correctness (classification), for the paired test on accuracy.
        var correct: [Bool]? = nil
        var confusion: [[Int]] = []
    }

    /// The metric printed dense → pruned.
    let headline: String
    let load: (SplitSource) throws -> LabeledData
    /// The labels cross-validation stratifies by.
    let strata: (LabeledData) -> [Int32]
    /// The metrics a cross-validation fold reports.
    let foldMetrics: (Graph, LabeledData) -> [String: Double]
    /// The metrics of a model on a split, their names prefixed.
    let score: (Graph, LabeledData, _ prefix: String) -> Scores
    /// Metrics of the pruned model that need the training split (given the eval scores).
    let trainMetrics: (Graph, LabeledData, Scores) -> [String: Double]

    static func classification(_ spec: ModelSpec, model: Graph) throws -> TaskScoring {
        let classes = try classCount(of: model, file: spec.model)
        let threads = spec.threads
        return TaskScoring(
            headline: MetricNames.accuracy,
            load: { try loadSplit(spec.data, $0, model: model, classes: classes) },
            strata: { $0.labels },
            foldMetrics: { m, held in
                let r = Evaluator.evaluate(model: m, data: held, classes: classes, threads: threads)
                return ["accuracy": r.scores.accuracy, "f1_macro": r.scores.f1Macro]
            },
            score: { m, data, prefix in
                let r = Evaluator.evaluate(model: m, data: data, classes: classes, threads: threads)
                return Scores(metrics: r.values(prefix: prefix), headline: r.scores.accuracy, correct: r.correct, confusion: r.scores.confusion)
            },
            trainMetrics: { m, train, eval in
                let accuracy = Evaluator.classify(model: m, data: train, classes: classes, threads: threads).accuracy
                return ["train_accuracy": accuracy, "generalization_gap": accuracy - eval.headline]
            })
    }

    static func regression(_ spec: ModelSpec, model: Graph) throws -> TaskScoring {
        let outputs = try classCount(of: model, file: spec.model)
        let threads = spec.threads
        return TaskScoring(
            headline: "rmse",
            load: { try loadRegressionSplit(spec.data, $0, model: model, outputs: outputs) },
            // No classes to stratify by: one seeded shuffle dealt to the folds.
            strata: { [Int32](repeating: 0, count: $0.count) },
            foldMetrics: { m, held in Evaluator.regress(model: m, data: held, threads: threads).values() },
            score: { m, data, prefix in
                let r = Evaluator.regress(model: m, data: data, threads: threads)
                return Scores(metrics: r.values(prefix: prefix), headline: r.rmse)
            },
            trainMetrics: { _, _, _ in [:] })
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

/// Prunes, fine-tunes and evaluates one configured model: load, score the dense model,
/// cross-validate, prune and fine-tune, score the pruned model on every eval split, then the
/// costs and latency every task shares (`finish`).
public func runModel(_ spec: ModelSpec, progress: Progress, exportTo: String? = nil) throws -> ModelRunResult {
    let start = DispatchTime.now().uptimeNanoseconds
    let denseModel = try loadModel(path: spec.model, architecture: spec.architecture)
    let task = spec.task == .regression ? try TaskScoring.regression(spec, model: denseModel)
                                        : try TaskScoring.classification(spec, model: denseModel)
    let train = try task.load(spec.data.train)
    let eval = try task.load(spec.data.eval)
    let extraSets = try spec.data.evalSets.mapValues { try task.load($0) }
    let dense = denseModel.copy()
    let denseScores = task.score(denseModel, eval, "")

    // Cross-validation first, from the dense weights: k re-runs of the recipe on the folds.
    let folds = try crossValidate(dense, spec: spec, train: train, strata: task.strata(train), progress: progress, score: task.foldMetrics)

    let outcome = try pruneAndFineTune(denseModel, spec: spec, train: train, progress: progress, label: spec.name)
    let model = outcome.graph
    for line in outcome.notes { progress.line("  \(spec.name): \(line)") }
    if let exportTo { try ONNXModel.save(model, to: exportTo) }
    let scores = task.score(model, eval, "")
    var metrics = scores.metrics
    metrics.merge(task.trainMetrics(model, train, scores)) { a, _ in a }
    let sparsity = SparsityReport(model: model)
    progress.line("  \(spec.name): per-layer sparsity " + sparsity.perLayer.map { "\(StructuredPruning.layerName($0.name)) \(MetricCheck.format(Double($0.zeros) / Double(max($0.count, 1)), MetricNames.sparsity))" }.joined(separator: ", "))
    progress.line("  \(spec.name): \(task.headline) dense \(MetricCheck.format(denseScores.headline, task.headline)) -> pruned \(MetricCheck.format(scores.headline, task.headline)) at sparsity \(MetricCheck.format(sparsity.sparsity, MetricNames.sparsity))")
    for (name, data) in extraSets {
        metrics.merge(task.score(model, data, "\(name)/").metrics) { a, _ in a }
    }
    var result = try finish(model, spec: spec, eval: eval, metrics: metrics, sparsity: sparsity, folds: folds,
                            evidence: Evidence(currentCorrect: scores.correct), started: start)
    result.confusion = scores.confusion
    return result
}

/// What every task adds: sparsity, costs, the cross-validation summary and latency.
public func finish(
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

/// The latency metrics of one batch size, to a hundredth of a microsecond (far below the
/// noise; fewer digits keep baseline diffs readable).
public func latencyMetrics(_ l: LatencyResult) -> [String: Double] {
    func r(_ v: Double) -> Double { (v * 100).rounded() / 100 }
    return [MetricNames.latency("p50", batch: l.batchSize): r(l.p50), MetricNames.latency("p90", batch: l.batchSize): r(l.p90),
            MetricNames.latency("p99", batch: l.batchSize): r(l.p99), MetricNames.latency("mad", batch: l.batchSize): r(l.mad)]
}

/// `spec` with its input paths replaced by the local files `view` has for them.
public func localized(_ spec: ModelSpec, view: InputView) throws -> ModelSpec {
    var s = spec
    s.model = try view.localPath(spec.model)
    s.architecture = try spec.architecture.map(view.localPath)
    s.data.file = try view.localPath(spec.data.file)
    if let teacher = spec.recipe.distill?.teacher { s.recipe.distill?.teacher = try view.localPath(teacher) }
    if let arch = spec.recipe.distill?.teacherArchitecture { s.recipe.distill?.teacherArchitecture = try view.localPath(arch) }
    return s
}
