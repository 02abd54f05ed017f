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
    do { shapes = try model.valueShapes() } catch {
        throw ModelIOError(file: file, "the model does not run on one example of zeros (inputs \(model.sampleFeeds().map(\.shape))): \(error)")
    }
    guard let out = model.outputs.first.flatMap({ shapes[$0] }), out.count == 2, out[0] == 1, out[1] > 0 else {
        throw ModelIOError(file: file, "the model's output must be (batch, classes)")
    }
    return out[1]
}

/// Loads one split and checks that its examples fit the model's input.
public func loadSplit(_ data: DataSpec, _ split: SplitSource, model: Graph, classes: Int) throws -> LabeledData {
    guard split.arrays == nil, model.inputs.count == 1, model.inputs[0].dtype == .float32 else {
        let (features, labels) = try loadExamples(data, split, model: model)
        guard let labels else { throw ModelIOError(file: data.file, "\(data.key(of: split)) names no labels; classification needs them") }
        return LabeledData(features: features, labels: try classLabels(labels, name: split.labels!, file: data.file, classes: classes))
    }
    let loaded = try DataLoading.loadSplit(
        path: data.file, split: split, scale: Float(data.scale), classes: classes)
    let rowShape = Array(loaded.inputs.shape.dropFirst())
    let want = model.inputShape
    guard rowShape.reduce(1, *) == want.reduce(1, *) else {
        throw ModelIOError(file: data.file, "array '\(split.inputs)' has examples of shape \(rowShape), the model expects \(want) (\(want.reduce(1, *)) values)")
    }
    return LabeledData(inputs: loaded.inputs.reshaped([loaded.count] + want), labels: loaded.labels)
}

/// One split of `spec`'s data as its task reads it (labels checked), for `model`.
public func loadSplit(for spec: ModelSpec, _ split: SplitSource, model: Graph) throws -> LabeledData {
    try TaskScoring.make(spec, model: model).load(split)
}

/// One split of `data` as `task` reads it, for `model` (from the file `modelFile`).
public func loadSplit(task: Task, data: DataSpec, _ split: SplitSource, model: Graph, modelFile: String) throws -> LabeledData {
    try TaskScoring.make(task, .init(data: data, model: modelFile, threads: 1), model: model).load(split)
}

/// The metrics of `model` on `data` as `task` scores them (for `prunecheck eval`), with the
/// name of the headline metric.
public func taskMetrics(task: Task, data: DataSpec, model: Graph, modelFile: String, examples: LabeledData, threads: Int) throws
    -> (headline: String, metrics: [String: Double])
{
    let t = try TaskScoring.make(task, .init(data: data, model: modelFile, threads: threads), model: model)
    let y = OutputMetrics.outputs(model: model, data: examples, threads: threads)
    return (t.headline, t.score(model, examples, y, "").metrics)
}

/// One split's arrays for `model`'s inputs, each checked against its graph input (element
/// type, rank, fixed dimensions, one batch length), and its labels array when it names one.
/// The list form `[inputs, labels]` feeds a model of one input.
public func loadExamples(_ data: DataSpec, _ split: SplitSource, model: Graph) throws -> (features: [FeatureArray], labels: NPYArray?) {
    let key = data.key(of: split)
    var mapping = split.arrays ?? [:]
    if split.arrays == nil {
        guard model.inputs.count == 1 else {
            throw ModelIOError(file: data.file, "\(key) gives one inputs array, the model has \(model.inputs.count) inputs (\(model.inputs.map(\.name).joined(separator: ", "))): write \(key) as {\(model.inputs.map { "\($0.name): ARRAY" }.joined(separator: ", ")), labels: ARRAY}")
        }
        mapping[model.inputs[0].name] = split.inputs
    }
    return try GraphFeeds.loadSplit(path: data.file, graph: model, mapping: mapping, labels: split.labels, scale: Float(data.scale),
                                    mappingSyntax: { "\(key).\($0): ARRAY" })
}

/// Class indices in 0..<classes, one per example.
func classLabels(_ y: NPYArray, name: String, file: String, classes: Int) throws -> [Int32] {
    guard let labels = y.integers() else { throw ModelIOError(file: file, "array '\(name)' holds \(y.dtype.numpyName) values, labels must be integers") }
    guard y.shape.count == 1 else { throw ModelIOError(file: file, "array '\(name)' has shape \(y.shape), class labels must be 1-D") }
    if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= Int64(classes) }) {
        throw ModelIOError(file: file, "array '\(name)'[\(bad)] = \(labels[bad]) is not a class index in 0..<\(classes)")
    }
    return labels.map { Int32($0) }
}

extension DataSpec {
    /// The config key of `split`, for messages.
    func key(of split: SplitSource) -> String {
        if split == train { return "data.train" }
        if split == eval { return "data.eval" }
        return evalSets.first { $0.value == split }.map { "data.eval_sets.\($0.key)" } ?? "data"
    }
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
    /// SHA-256 of the pruned model's ONNX encoding.
    public var modelSHA256: String?
    /// The pruned model and the inputs latency is measured on, per batch size (nil for
    /// results from the cache).
    public var model: Graph?
    public var latencyFeeds: ((Int) -> [Value])?
    /// Remote latency targets: the device each was measured on ("pi@edge-7 (Cortex-A76, 4
    /// cores)"), or why it was skipped ("skipped: …"), by target name ("" for `target:`).
    public var devices: [String: String] = [:]
    /// The unpruned model's size and speed (see `ModelVerdict.dense`).
    public var dense: [String: Double] = [:]
}

/// SHA-256 of `model`'s ONNX encoding: equal for models that compute the same way.
public func modelFingerprint(_ model: Graph) throws -> String {
    SHA256.hex(Array(try ONNXModel.encode(model)))
}

/// What pruning measures with (`auto`'s latency budget, `energy`'s ranking): Evaluation's
/// latency harness and energy model, the same as the metrics'.
let pruningLatencyProbe: LatencyProbe = LatencyHarness.budgetProbe
let pruningEnergyEstimate: EnergyEstimate = { EnergyModel.picojoules(macs: $0, parameterWords: $1) }

/// Prunes and fine-tunes `model` with `spec`'s recipe: in place for unstructured and N:M
/// pruning, into a smaller graph for neuron and channel pruning. Returns the pruned model and
/// what the recipe reports (allocations, rounds).
public func pruneAndFineTune(_ model: Graph, spec: ModelSpec, train: LabeledData, calibration: LabeledData? = nil, progress: Progress?,
                             label: String) throws -> PruningOutcome {
    let recipe = spec.recipe
    let teacher = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
    let started = Date()
    var losses: [Double] = []
    do {
        let outcome = try PruningPipeline.run(model, recipe: recipe, train: train, calibration: calibration, seed: spec.seed, threads: spec.threads, teacher: teacher,
                                              latencyProbe: pruningLatencyProbe, energyEstimate: pruningEnergyEstimate, progress: { phase, e, total in
            if e.isComplete { losses.append(e.meanLoss) }
            progress?.update("  \(label) \(phase)", done: e.epoch, total: total,
                             detail: (e.isComplete ? "epochs, " : "") + "loss \(String(format: "%.4f", e.meanLoss))", started: started,
                             within: e.batch, withinTotal: e.batches)
        }, phase: { text in
            // A fold's phases say which fold ("fold 2/5: pruning").
            let fold = label.hasPrefix(spec.name) ? label.dropFirst(spec.name.count).trimmingCharacters(in: .whitespaces) : label
            progress?.phase(fold.isEmpty ? text : "\(fold): \(text)")
        })
        try checkFineTuning(losses, spec: spec, label: label, progress: progress)
        return outcome
    } catch let e as StructuredPruningError {
        throw InputError("\(spec.model): \(e) (model '\(spec.name)', prune.method \(recipe.method.rawValue), prune.granularity \(recipe.granularity.text))")
    } catch let e as GraphError {
        throw InputError("\(spec.model): \(e) (model '\(spec.name)', prune.method \(recipe.method.rawValue))")
    } catch let e as AllocationError {
        throw InputError("\(spec.name): \(e)")
    }
}

/// Fine-tuning that diverged (a loss that is not finite) is an error, and one that ends well
/// above where it started a warning: both name the likely causes instead of leaving only "accuracy
/// regressed".
func checkFineTuning(_ losses: [Double], spec: ModelSpec, label: String, progress: Progress?) throws {
    guard let first = losses.first, let last = losses.last else { return }
    let hint = "lower prune.finetune.lr, or check data.scale (\(spec.data.scale)): the inputs must be in the range the model was trained on"
    if let bad = losses.firstIndex(where: { !$0.isFinite }) {
        throw InputError("fine-tuning of '\(spec.name)' diverged: the loss is \(losses[bad]) in epoch \(bad + 1); \(hint)")
    }
    if losses.count >= 2, last > 2 * first, last - first > 0.5 {
        progress?.line("  \(label): warning: fine-tuning ended with loss \(String(format: "%.4f", last)), above its first epoch's \(String(format: "%.4f", first)); \(hint)")
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
/// scored on one. Everything else (cross-validation, pruning, fidelity to the dense model,
/// costs, latency) is the same for every task.
struct TaskScoring {
    /// What a model scores on one split.
    struct Scores {
        var metrics: [String: Double]
        /// The value of `TaskScoring.headline`, printed dense → pruned (nil: a fidelity metric).
        var headline: Double?
        /// Per-example correctness (classification), for the paired test on accuracy.
        var correct: [Bool]? = nil
        var confusion: [[Int]] = []
    }

    /// The metric printed dense → pruned.
    let headline: String
    let load: (SplitSource) throws -> LabeledData
    /// The labels cross-validation stratifies by.
    var strata: (LabeledData) -> [Int32] = { [Int32](repeating: 0, count: $0.count) }
    /// The metrics a cross-validation fold reports.
    var foldMetrics: (Graph, LabeledData) -> [String: Double] = { _, _ in [:] }
    /// The metrics of a model on a split (given its outputs there), their names prefixed.
    let score: (Graph, LabeledData, _ outputs: Tensor, _ prefix: String) -> Scores
    /// Metrics of the pruned model that need the training split (given the eval scores).
    var trainMetrics: (Graph, LabeledData, Scores) -> [String: Double] = { _, _, _ in [:] }
    /// Whether the outputs are scores over classes or tokens (`agreement` and `kl_to_dense`
    /// apply).
    let outputsAreScores: Bool
    /// The training split fine-tuning sees, and what calibration sees instead (nil: the
    /// same), given the dense model.
    var prepare: (Graph, LabeledData) -> (train: LabeledData, calibration: LabeledData?) = { _, t in (t, nil) }

    /// What the scoring of one model needs besides the model.
    struct Setting {
        var data: DataSpec
        /// The model's file, for messages.
        var model: String
        var threads: Int
    }

    static func make(_ spec: ModelSpec, model: Graph) throws -> TaskScoring {
        try make(spec.task, Setting(data: spec.data, model: spec.model, threads: spec.threads), model: model)
    }

    static func make(_ task: Task, _ spec: Setting, model: Graph) throws -> TaskScoring {
        switch task {
        case .classification: return try classification(spec, model: model)
        case .regression: return try regression(spec, model: model)
        case .languageModel: return try languageModel(spec, model: model)
        case .embedding: return embedding(spec, model: model)
        }
    }

    static func classification(_ spec: Setting, model: Graph) throws -> TaskScoring {
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
            score: { m, data, _, prefix in
                let r = Evaluator.evaluate(model: m, data: data, classes: classes, threads: threads)
                return Scores(metrics: r.values(prefix: prefix), headline: r.scores.accuracy, correct: r.correct, confusion: r.scores.confusion)
            },
            trainMetrics: { m, train, eval in
                let accuracy = Evaluator.classify(model: m, data: train, classes: classes, threads: threads).accuracy
                return ["train_accuracy": accuracy, "generalization_gap": accuracy - eval.headline!]
            },
            outputsAreScores: true)
    }

    static func regression(_ spec: Setting, model: Graph) throws -> TaskScoring {
        let outputs = try classCount(of: model, file: spec.model)
        let threads = spec.threads
        return TaskScoring(
            headline: "rmse",
            load: { try loadRegressionSplit(spec.data, $0, model: model, outputs: outputs) },
            // No classes to stratify by: one seeded shuffle dealt to the folds.
            foldMetrics: { m, held in Evaluator.regress(model: m, data: held, threads: threads).values() },
            score: { m, data, _, prefix in
                let r = Evaluator.regress(model: m, data: data, threads: threads)
                return Scores(metrics: r.values(prefix: prefix), headline: r.rmse)
            },
            outputsAreScores: false)
    }

    /// Next-token prediction: labels (N, positions…) hold the next token of every position
    /// of the logits (N, positions…, vocabulary), -100 where nothing is predicted.
    static func languageModel(_ spec: Setting, model: Graph) throws -> TaskScoring {
        TaskScoring(
            headline: MetricNames.perplexity,
            load: { split in
                let (features, y) = try loadExamples(spec.data, split, model: model)
                let name = split.labels ?? "labels", file = spec.data.file
                guard let y, let ids = y.integers() else {
                    throw ModelIOError(file: file, "array '\(name)' must hold integer token ids (next token per position, -100 for none)")
                }
                let first = model.predict(features.map { $0.rows(0..<min(1, $0.count)).value }, threads: spec.threads).shape
                let positions = Array(first.dropFirst().dropLast())
                guard first.count >= 2, Array(y.shape.dropFirst()) == positions else {
                    throw ModelIOError(file: file, "array '\(name)' has shape \(y.shape), the model's logits \(first) need labels of shape [N\(positions.map { ", \($0)" }.joined())]")
                }
                let vocab = first.last!
                if let bad = ids.firstIndex(where: { $0 != Int64(LabeledData.ignoredLabel) && ($0 < 0 || $0 >= Int64(vocab)) }) {
                    throw ModelIOError(file: file, "array '\(name)' holds \(ids[bad]) at flat index \(bad): not a token id in 0..<\(vocab) or -100")
                }
                return LabeledData(features: features, labels: ids.map { Int32($0) }, labelsPerExample: max(positions.reduce(1, *), 1))
            },
            score: { _, data, logits, prefix in
                let r = OutputMetrics.languageModel(logits: logits, labels: data.labels)
                return Scores(metrics: [prefix + MetricNames.perplexity: r.perplexity, prefix + MetricNames.tokenAccuracy: r.tokenAccuracy],
                              headline: r.perplexity)
            },
            outputsAreScores: true)
    }

    /// Output vectors as the product: no labels; fine-tuning minimises the squared distance to
    /// the dense model's outputs (self-distillation), and the scores are the fidelity metrics.
    static func embedding(_ spec: Setting, model: Graph) -> TaskScoring {
        TaskScoring(
            headline: MetricNames.cosineToDense,
            load: { split in LabeledData(features: try loadExamples(spec.data, split, model: model).features, targets: nil) },
            score: { _, _, _, _ in Scores(metrics: [:], headline: nil) },
            outputsAreScores: false,
            prepare: { dense, train in
                let targets = OutputMetrics.outputs(model: dense, data: train, threads: spec.threads)
                // Criteria that take gradients (Taylor, SNIP, OBD) see ½‖y‖²: its gradient is the
                // output itself, where the distance to the dense outputs is flat at the start.
                return (train.with(targets: targets), train.with(targets: Tensor(zeros: targets.shape)))
            })
    }
}

/// Loads one split for regression and checks that its examples fit the model's input and
/// its targets the model's output.
func loadRegressionSplit(_ data: DataSpec, _ split: SplitSource, model: Graph, outputs: Int) throws -> LabeledData {
    guard split.arrays == nil, model.inputs.count == 1, model.inputs[0].dtype == .float32 else {
        let (features, y) = try loadExamples(data, split, model: model)
        guard let y, y.shape.count == 1 || y.shape.count == 2 else {
            throw ModelIOError(file: data.file, "\(data.key(of: split)).labels must name a 1-D or 2-D array of targets")
        }
        let columns = y.shape.count == 2 ? y.shape[1] : 1
        guard columns == outputs else {
            throw ModelIOError(file: data.file, "array '\(split.labels!)' has \(columns) target column(s), the model predicts \(outputs)")
        }
        return LabeledData(features: features, targets: Tensor(shape: [y.shape[0], columns], scalars: y.floats()))
    }
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
    progress.phase("loading the model and data")
    let denseModel = try loadModel(path: spec.model, architecture: spec.architecture)
    let task = try TaskScoring.make(spec, model: denseModel)
    let loadedTrain = try task.load(spec.data.train)
    let eval = try task.load(spec.data.eval)
    let extraSets = try spec.data.evalSets.mapValues { try task.load($0) }
    let dense = denseModel.copy()
    let outputs = { (m: Graph, data: LabeledData) in OutputMetrics.outputs(model: m, data: data, threads: spec.threads) }
    progress.phase("evaluating the dense model on \(eval.count) examples")
    let denseEval = outputs(denseModel, eval)
    let denseExtra = extraSets.mapValues { outputs(denseModel, $0) }
    let denseScores = task.score(denseModel, eval, denseEval, "")
    let (train, calibration) = task.prepare(denseModel, loadedTrain)
    if let warning = inputRangeWarning(spec, model: denseModel, eval: eval, denseAccuracy: spec.task == .classification ? denseScores.headline : nil,
                                       classes: Int(eval.labels.max() ?? 0) + 1) {
        progress.line("  warning: \(warning)")
    }

    // Cross-validation first, from the dense weights: k re-runs of the recipe on the folds.
    let folds = try crossValidate(dense, spec: spec, train: train, strata: task.strata(train), progress: progress, score: task.foldMetrics)

    let outcome = try pruneAndFineTune(denseModel, spec: spec, train: train, calibration: calibration, progress: progress, label: spec.name)
    let model = outcome.graph
    for line in outcome.notes { progress.line("  \(spec.name): \(line)") }
    if let exportTo { try ONNXModel.save(model, to: exportTo) }
    progress.phase("evaluating the pruned model on \(eval.count) examples")
    let prunedEval = outputs(model, eval)
    let scores = task.score(model, eval, prunedEval, "")
    var metrics = scores.metrics
    metrics.merge(OutputMetrics.fidelity(prunedEval, dense: denseEval, scores: task.outputsAreScores)) { a, _ in a }
    metrics.merge(task.trainMetrics(model, train, scores)) { a, _ in a }
    let sparsity = SparsityReport(model: model)
    progress.line("  \(spec.name): per-layer sparsity " + sparsity.perLayer.map { "\(StructuredPruning.layerName($0.name)) \(MetricCheck.format(Double($0.zeros) / Double(max($0.count, 1)), MetricNames.sparsity))" }.joined(separator: ", "))
    let headline = (dense: denseScores.headline ?? 1, pruned: scores.headline ?? metrics[task.headline] ?? .nan)
    progress.line("  \(spec.name): \(task.headline) dense \(MetricCheck.format(headline.dense, task.headline)) -> pruned \(MetricCheck.format(headline.pruned, task.headline)) at sparsity \(MetricCheck.format(sparsity.sparsity, MetricNames.sparsity))")
    for (name, data) in extraSets {
        let y = outputs(model, data)
        metrics.merge(task.score(model, data, y, "\(name)/").metrics) { a, _ in a }
        for (k, v) in OutputMetrics.fidelity(y, dense: denseExtra[name]!, scores: task.outputsAreScores) { metrics["\(name)/\(k)"] = v }
    }
    progress.phase("timing latency at batch " + spec.latency.batchSizes.map(String.init).joined(separator: ", ")
                   + (spec.latency.targets.isEmpty ? "" : " on " + spec.latency.targets.map { $0.name ?? "\($0)" }.joined(separator: ", ")))
    var result = try finish(model, spec: spec, eval: eval, metrics: metrics, sparsity: sparsity, folds: folds,
                            evidence: Evidence(currentCorrect: scores.correct), started: start)
    result.confusion = scores.confusion
    result.dense = try denseCosts(spec, eval: eval)
    return result
}

/// A warning that names `data.scale` when the float inputs are far outside what a model's first
/// layer usually takes (|x| beyond 20 straight into a Linear or Conv: raw 0–255 pixels fed to a
/// model trained on scaled ones), or when the dense model scores at chance on its own eval split.
/// The cause is the data, not pruning: without it the report only says "accuracy regressed".
func inputRangeWarning(_ spec: ModelSpec, model: Graph, eval: LabeledData, denseAccuracy: Double?, classes: Int) -> String? {
    var lo = Float.infinity, hi = -Float.infinity
    for case .float(let x) in eval.features {
        x.withUnsafeBufferPointer { p in for v in p.prefix(1 << 20) { lo = min(lo, v); hi = max(hi, v) } }
    }
    let range = lo.isFinite && hi.isFinite ? String(format: "[%g, %g]", lo, hi) : "?"
    // The first op reading the first float input, past shape-only ops.
    var value = model.inputs.first { $0.dtype == .float32 }?.name
    var first: String?
    while let v = value, let node = model.nodes.first(where: { $0.inputs.contains(v) }) {
        if ["Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Cast"].contains(node.opType) { value = node.outputs.first; continue }
        first = node.opType
        break
    }
    if lo.isFinite, max(abs(lo), abs(hi)) > 20, let op = first, ["Gemm", "MatMul", "Conv", "ConvTranspose"].contains(op) {
        return "the inputs of '\(spec.name)' span \(range) after data.scale \(spec.data.scale), straight into a \(op): "
            + "models are usually trained on scaled inputs ([0, 1] or standardized); if this one was, set data.scale "
            + "(e.g. 0.00392156862745098 for 0–255 pixels)"
    }
    if let accuracy = denseAccuracy, classes >= 2, accuracy < 1.5 / Double(classes) {
        return "the dense model of '\(spec.name)' scores \(MetricCheck.format(accuracy, MetricNames.accuracy)) accuracy on its eval split "
            + "(chance \(String(format: "%.3f", 1 / Double(classes)))), inputs \(range): check data.eval's arrays and labels, and data.scale"
    }
    return nil
}

/// What the unpruned model costs, to show what pruning bought: its parameters, MACs, deflated
/// bytes and p50 at the first batch size (timed with the model's latency settings).
func denseCosts(_ spec: ModelSpec, eval: LabeledData) throws -> [String: Double] {
    let dense = try loadModel(path: spec.model, architecture: spec.architecture)
    let costs = CostAnalysis.analyze(dense).values
    var out: [String: Double] = ["params": costs["params_total"] ?? 0, "macs": costs["macs"] ?? 0,
                                 "bytes_compressed": Double(try ParameterCompression.deflatedSize(dense))]
    if let b = spec.latency.batchSizes.first, eval.count > 0 {
        let feeds = eval.subset((0..<b).map { $0 % eval.count }).feeds
        let l = LatencyHarness.measure(model: dense, feeds: feeds, settings: spec.latency, threads: spec.threads)
        out[MetricNames.latency("p50", batch: b)] = (l.p50 * 100).rounded() / 100
    }
    return out
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
    let feeds: (Int) -> [Value] = { b in eval.subset((0..<b).map { $0 % eval.count }).feeds }
    let measure: (Int) -> LatencyResult = { b in
        LatencyHarness.measure(model: model, feeds: feeds(b), settings: spec.latency, threads: spec.threads)
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
        // The deterministic cost: instructions per inference at one thread (absent where the
        // kernel denies the counter; the report says so).
        let inputs = feeds(b)
        if let n = InstructionCost.perInference({ _ = model.predict(inputs, threads: 1) }) { metrics[MetricNames.instructions(batch: b)] = n }
    }
    var devices: [String: String] = [:]
    if !spec.latency.targets.isEmpty {
        // Latency where the model ships: each target's timings under its own names.
        let local = metrics.filter { MetricNames.isTiming($0.key) }
        for k in local.keys { metrics[k] = nil }
        for target in spec.latency.targets {
            if target.isLocal {
                for (k, v) in local { metrics[MetricNames.onTarget(k, target.name)] = v }
                continue
            }
            do {
                let m = try RemoteLatency.measure(model: model, base: nil, feeds: feeds(spec.latency.batchSizes.max()!), target: target,
                                                  settings: spec.latency, threads: spec.threads)
                for r in m.results {
                    for (k, v) in latencyMetrics(r) { metrics[MetricNames.onTarget(k, target.name)] = v }
                }
                devices[target.name ?? ""] = m.device
            } catch let e as RemoteLatencyError where spec.latency.remote.skipUnreachable && [.unreachable, .timeout].contains(e.kind) {
                devices[target.name ?? ""] = "skipped: \(e.description) (latency.on_unreachable: skip)"
            }
        }
    }
    var result = ModelRunResult(metrics: metrics, evidence: evidence, folds: folds,
                                seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9, remeasure: spec.latency.targets.isEmpty ? measure : nil,
                                modelSHA256: try modelFingerprint(model), model: model, latencyFeeds: feeds)
    result.devices = devices
    return result
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
