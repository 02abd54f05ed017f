import Common
import Configuration
import Evaluation
import Foundation
import ModelIO
import Pruning
import TensorEngine

/// One `prunecheck prune`: a model, its data and a recipe, and where the pruned model goes.
public struct PruneRequest {
    public var model: String
    public var architecture: String?
    public var data: DataSpec
    public var recipe: PruneRecipe
    public var seed: UInt64 = 0
    public var threads = 1
    /// The pruned model: .onnx, or .safetensors with its layer-list JSON beside it.
    public var out = "pruned.onnx"
    /// Also the first 16 eval inputs and the pruned model's outputs for them (.npz).
    public var referenceOutputs: String?

    public init(model: String, architecture: String?, data: DataSpec, recipe: PruneRecipe) {
        self.model = model
        self.architecture = architecture
        self.data = data
        self.recipe = recipe
    }

    /// What the model predicts (how its data is read and scored).
    public var task: Task = .classification

    /// Loads, scores the dense model, prunes (and fine-tunes), scores again and writes the
    /// pruned model; `note` gets each fine-tuning epoch and the recipe's notes.
    public func run(note: @escaping (String) -> Void) throws -> PruneResult {
        let dense = try loadModel(path: model, architecture: architecture)
        let scoring = try TaskScoring.make(task, .init(data: data, model: model, threads: threads), model: dense)
        let eval = try scoring.load(data.eval)
        let outputs = { (m: Graph) in OutputMetrics.outputs(model: m, data: eval, threads: self.threads) }
        let denseOutputs = outputs(dense)
        /// The headline metric of scores on `y` (a fidelity metric when the task has none).
        let headlineOf = { (scores: TaskScoring.Scores, y: Tensor) -> Double in
            scores.headline ?? OutputMetrics.fidelity(y, dense: denseOutputs, scores: scoring.outputsAreScores)[scoring.headline]!
        }
        let headline = { (m: Graph, y: Tensor) -> Double in headlineOf(scoring.score(m, eval, y, ""), y) }
        let before = headline(dense, denseOutputs)
        let paramsBefore = dense.parameters.reduce(0) { $0 + $1.variable.value.count }
        let needsTrain = recipe.finetune != nil || recipe.method.usesCalibration || recipe.regularize != nil
        let (train, calibration) = needsTrain ? scoring.prepare(dense, try scoring.load(data.train)) : (eval.subset([]), nil)
        // The headline metric right after a one-shot cut of trained weights, before fine-tuning.
        var afterCut: Double?
        let reportCut = recipe.finetune != nil && recipe.initializer == nil
        let teacher = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
        let outcome: PruningOutcome
        do {
            outcome = try PruningPipeline.run(
                dense, recipe: recipe, train: train, calibration: calibration, seed: seed, threads: threads, teacher: teacher,
                latencyProbe: pruningLatencyProbe, energyEstimate: pruningEnergyEstimate,
                afterCut: { cut in if reportCut { afterCut = headline(cut, outputs(cut)) } },
                progress: { phase, e, total in
                    if e.isComplete { note("  \(phase) epoch \(e.epoch)/\(total): loss \(String(format: "%.4f", e.meanLoss))") }
                })
        } catch let e as UserFacingError where e is StructuredPruningError || e is AllocationError || e is GraphError {
            // A recipe this model cannot take: named by the model's file.
            throw InputError("\(model): \(e)")
        }
        let m = outcome.graph
        for line in outcome.notes { note("  \(line)") }
        let finalOutputs = outputs(m)
        let finalScores = scoring.score(m, eval, finalOutputs, "")
        let after = headlineOf(finalScores, finalOutputs)
        var metrics = finalScores.metrics
        metrics.merge(OutputMetrics.fidelity(finalOutputs, dense: denseOutputs, scores: scoring.outputsAreScores)) { a, _ in a }
        if out.hasSuffix(".safetensors") {
            try LayerList.write(m, to: String(out.dropLast(".safetensors".count)) + ".json")
            try Safetensors.write(m, to: out)
        } else {
            try ONNXModel.save(m, to: out)
        }
        if let referenceOutputs {
            // The first 16 eval examples under their graph input names, and the outputs.
            let first = eval.subset(Array(0..<min(16, eval.count)))
            var arrays: [String: NPYArray] = [:]
            for (input, v) in zip(m.inputs, first.feeds) { arrays[input.name] = GraphFeeds.array(v) }
            let y = m.predict(first.feeds, threads: threads)
            if m.inputs.count == 1, case .float = first.features[0] { arrays["input"] = arrays[m.inputs[0].name] }
            arrays["logits"] = NPYArray(floats: y.scalars, shape: y.shape)
            try NPZ.write(arrays, to: referenceOutputs)
        }
        return PruneResult(metric: scoring.headline, dense: before, afterCut: afterCut, final: after, metrics: metrics, paramsBefore: paramsBefore,
                           paramsAfter: m.parameters.reduce(0) { $0 + $1.variable.value.count }, sparsity: SparsityReport(model: m))
    }
}

/// What `PruneRequest.run` measured.
public struct PruneResult {
    /// The task's headline metric (accuracy, rmse, perplexity, cosine_to_dense).
    public var metric: String
    /// Its value for the dense model, right after a one-shot cut before fine-tuning (nil
    /// without fine-tuning or when pruning at initialization), and at the end.
    public var dense: Double
    public var afterCut: Double?
    public var final: Double
    /// Every metric of the final model on the eval split, fidelity to the dense model included.
    public var metrics: [String: Double]
    public var paramsBefore: Int
    public var paramsAfter: Int
    public var sparsity: SparsityReport
}
