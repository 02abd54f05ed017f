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

    /// Loads, scores the dense model, prunes (and fine-tunes), scores again and writes the
    /// pruned model; `note` gets each fine-tuning epoch and the recipe's notes.
    public func run(note: @escaping (String) -> Void) throws -> PruneResult {
        let dense = try loadModel(path: model, architecture: architecture)
        let classes = try classCount(of: dense, file: model)
        let eval = try loadSplit(data, data.eval, model: dense, classes: classes)
        let before = Evaluator.classify(model: dense, data: eval, classes: classes, threads: threads).accuracy
        let paramsBefore = dense.parameters.reduce(0) { $0 + $1.variable.value.count }
        let needsTrain = recipe.finetune != nil || recipe.method.usesCalibration || recipe.regularize != nil
        let train = needsTrain ? try loadSplit(data, data.train, model: dense, classes: classes)
                               : LabeledData(inputs: Tensor(zeros: [0] + dense.inputShape), labels: [])
        // The accuracy right after a one-shot cut of trained weights, before fine-tuning.
        var afterCut: Double?
        let reportCut = recipe.finetune != nil && recipe.initializer == nil
        let teacher = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
        let outcome: PruningOutcome
        do {
            outcome = try PruningPipeline.run(
                dense, recipe: recipe, train: train, seed: seed, threads: threads, teacher: teacher,
                latencyProbe: pruningLatencyProbe, energyEstimate: pruningEnergyEstimate,
                afterCut: { cut in
                    if reportCut { afterCut = Evaluator.classify(model: cut, data: eval, classes: classes, threads: threads).accuracy }
                },
                progress: { phase, e, total in note("  \(phase) epoch \(e.epoch)/\(total): loss \(String(format: "%.4f", e.meanLoss))") })
        } catch let e as UserFacingError where e is StructuredPruningError || e is AllocationError || e is GraphError {
            // A recipe this model cannot take: named by the model's file.
            throw InputError("\(model): \(e)")
        }
        let m = outcome.graph
        for line in outcome.notes { note("  \(line)") }
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
        return PruneResult(accuracyDense: before, accuracyAfterCut: afterCut, accuracyFinal: after, paramsBefore: paramsBefore,
                           paramsAfter: m.parameters.reduce(0) { $0 + $1.variable.value.count }, sparsity: SparsityReport(model: m))
    }
}

/// What `PruneRequest.run` measured.
public struct PruneResult {
    public var accuracyDense: Double
    /// Right after a one-shot cut, before fine-tuning (nil without fine-tuning or when pruning
    /// at initialization).
    public var accuracyAfterCut: Double?
    public var accuracyFinal: Double
    public var paramsBefore: Int
    public var paramsAfter: Int
    public var sparsity: SparsityReport
}
