import ArgumentParser
import Checking
import Common
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
        loads the result. Prints the task's headline metric (accuracy, rmse, perplexity or \
        cosine_to_dense) before and after on the eval split and the sparsity of \
        every layer.
        """)

    @OptionGroup var modelOptions: ModelOptions
    var model: String { modelOptions.model }
    var architecture: String? { modelOptions.architecture }

    @Option(help: "The data file (.npz).")
    var data: String

    @Option(help: "Training inputs and labels, comma-separated (fine-tuning), for a model of one float input whose inputs the archive does not name.")
    var split = "x_train,y_train"

    @Option(help: "Evaluation inputs and labels, comma-separated (as --split).")
    var evalSplit = "x_test,y_test"

    @OptionGroup var dataOptions: TaskDataOptions

    @Option(help: "Multiply inputs by this before the model (e.g. 0.00392156862745098 for uint8 pixels).")
    var scale: Double = 1

    @Option(help: "Pruning criterion: \(PruneRecipe.Method.allCases.map(\.rawValue).joined(separator: ", ")).")
    var method = "magnitude"

    @Option(help: "Fraction of prunable weights to remove, in [0, 1) (implied by N:M).")
    var sparsity: Double?

    @Option(help: "unstructured, N:M (N kept per group of M, e.g. 2:4), channel (Conv output channels; a transformer's width), head (attention heads), neuron (other Linear outputs: MLP hidden units) or layer (residual branches and shape-keeping layers); channel, head, neuron and layer make the model smaller.")
    var granularity = "unstructured"

    @Option(help: "Layers pruning leaves whole, by layer, weight or node name (repeatable).")
    var protect: [String] = []

    @Option(help: "global (one ranking) or layer (the same ratio per layer); default layer for obs and sparsegpt, global otherwise.")
    var scope: String?

    @Option(help: "oneshot, iterative:K (K rounds of cut + fine-tuning) or gradual:F[:INITIAL[:END]] (cubic schedule from sparsity INITIAL, default 0, masks every F steps, reaching the target at fraction END of fine-tuning, default 0.75).")
    var schedule = "oneshot"

    @Option(help: "auto and energy: the largest accepted accuracy drop on the calibration examples (0.01 = one point).")
    var maxAccuracyDrop: Double?

    @Option(name: .customLong("max-latency-p50-us"),
            help: "auto: the p50 latency (µs) to reach on this machine, with the least accuracy lost (and within --max-accuracy-drop if given).")
    var maxLatencyP50Us: Double?

    @Option(help: "The batch size --max-latency-p50-us is measured at (default 1).")
    var latencyBatchSize: Int?

    @Option(help: "Calibration examples for data-driven criteria (default 1000 for snip, 512 otherwise).")
    var calibrationSamples: Int?

    @Option(help: "Calibration batch size (default 100 for snip, 128 otherwise).")
    var calibrationBatchSize: Int?

    @Option(help: "Distillation during fine-tuning from the dense model (or --teacher): T,alpha (e.g. 4,0.5).")
    var distill: String?

    @Option(help: "With --distill: the teacher model file (.onnx, or .safetensors with --teacher-architecture) instead of the dense model.")
    var teacher: String?

    @Option(help: "The architecture file (layer-list JSON) of a .safetensors teacher.")
    var teacherArchitecture: String?

    @Option(help: "Norm that ranks neurons, channels and layers for magnitude pruning: l1 or l2.")
    var norm: String?

    @Option(help: "SparseGPT and OBS dampening: λ = damping · mean(diag H) (default 0.01).")
    var damping: Double?

    @Option(help: "A penalized training phase before the cut: l1:λ or group_lasso:λ, optionally :epochs (default: the fine-tuning epochs).")
    var regularize: String?

    @Option(help: "Re-initialize before the cut (pruning at initialization): \(Initializer.allCases.map(\.rawValue).joined(separator: ", ")); snip defaults to xavier_uniform (the SNIP paper's Glorot initialization).")
    var initializer: String?

    @Option(help: "Fine-tuning epochs after the cut (0: none).")
    var finetuneEpochs = 0

    @Option(help: "Fine-tuning learning rate (SGD, momentum 0.9, cosine to 0).")
    var lr: Double = 0.01

    @Option(help: "Fine-tuning batch size.")
    var batchSize = 64

    @Option(help: "Seed of the fine-tuning order.")
    var seed: UInt64 = 0

    @OptionGroup var threadOptions: ThreadOptions
    var threads: Int { threadOptions.threads }

    @Option(help: "Where to write the pruned model: .onnx, or .safetensors (with the layer-list .json beside it).")
    var out: String

    @Option(help: ArgumentHelp("Also write the first 16 eval inputs and the pruned model's outputs for them (.npz), for checks with other runtimes.", visibility: .hidden))
    var referenceOutputs: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        guard out.hasSuffix(".onnx") || out.hasSuffix(".safetensors") else {
            throw InputError("--out must name an .onnx file, or a .safetensors file (its layer-list JSON is written beside it), found '\(out)'")
        }
        func pair(_ text: String, _ option: String) throws -> SplitSource {
            let names = text.split(separator: ",").map(String.init)
            guard names.count == 2 else { throw ValidationError("\(option) takes two names: inputs,labels") }
            return SplitSource(inputs: names[0], labels: names[1])
        }
        let recipe = try Self.flagged { try buildRecipe() }
        let (meth, gran, sc, finetune) = (recipe.method, recipe.granularity, recipe.scope, recipe.finetune)
        let graph = try loadModel(path: model, architecture: architecture)
        let spec: DataSpec
        if let named = try dataOptions.namedSplit(for: graph, data: data) {
            // Arrays named like the graph inputs: the same examples train (fine-tuning,
            // calibration) and evaluate; prunecheck.yml's data mapping separates the splits.
            spec = DataSpec(file: data, train: named, eval: named, scale: scale)
        } else {
            spec = DataSpec(file: data, train: try pair(split, "--split"), eval: try pair(evalSplit, "--eval-split"), scale: scale)
        }
        var request = PruneRequest(model: model, architecture: architecture, data: spec, recipe: recipe)
        request.task = dataOptions.task
        request.seed = seed
        request.threads = threads
        request.out = out
        request.referenceOutputs = referenceOutputs
        let json = self.json
        let result = try request.run { line in if !json { note(line) } }
        let (before, after, paramsBefore, paramsAfter) = (result.dense, result.final, result.paramsBefore, result.paramsAfter)
        let oneShot = result.afterCut ?? .nan
        let metric = result.metric
        let report = result.sparsity
        if json {
            Console.out(JSONValue.object([
                ("model", .string(model)), ("out", .string(out)), ("granularity", .string(gran.text)), ("scope", .string(sc.rawValue)),
                ("sparsity", .number(report.sparsity)), ("task", .string(dataOptions.task.rawValue)), ("metric", .string(metric)),
                ("\(metric)_dense", .number(before)), ("\(metric)_pruned", oneShot.isNaN ? (finetune == nil ? .number(after) : .null) : .number(oneShot)),
                ("\(metric)_finetuned", .number(after)), ("metrics", .object(result.metrics.sorted { $0.key < $1.key }.map { ($0.key, .number($0.value)) })), ("finetune_epochs", .number(Double(finetuneEpochs))), ("method", .string(meth.rawValue)),
                ("params_before", .number(Double(paramsBefore))), ("params_after", .number(Double(paramsAfter))),
                ("layers", .array(report.perLayer.map { l in
                    .object([("name", .string(l.name)), ("zeros", .number(Double(l.zeros))), ("count", .number(Double(l.count))),
                             ("sparsity", .number(l.count == 0 ? 0 : Double(l.zeros) / Double(l.count)))])
                })),
            ]).rendered(), terminator: "")
        } else {
            Console.out("\(model) → \(out): \(gran.text) \(meth.rawValue) pruning, scope \(sc.rawValue), schedule \(recipe.schedule.text)")
            Console.out("  \(metric) dense \(String(format: "%.4f", before))"
                  + (finetune == nil ? ", pruned \(String(format: "%.4f", after))"
                     : (oneShot.isNaN ? "" : ", pruned \(String(format: "%.4f", oneShot))") + ", after \(finetuneEpochs) fine-tuning epochs \(String(format: "%.4f", after))"))
            Console.out("  sparsity \(String(format: "%.4f", report.sparsity)) (\(report.zeros) of \(report.count) weights); parameters \(paramsBefore) → \(paramsAfter)")
            for l in report.perLayer {
                Console.out("    \(l.name): \(String(format: "%.4f", l.count == 0 ? 0 : Double(l.zeros) / Double(l.count))) (\(l.zeros)/\(l.count))")
            }
        }
    }
}

extension Prune {
    /// The recipe the flags describe, every field checked by the checks `prunecheck.yml` uses
    /// (`Pruning.RecipeFields`); a refusal names its field by configuration key.
    func buildRecipe() throws -> PruneRecipe {
        let meth = try recipeChoice(method, key: "method", PruneRecipe.Method.self)
        let gran = try PruneRecipe.granularity(from: granularity)
        let sc = try scope.map { try recipeChoice($0, key: "scope", PruneRecipe.Scope.self) } ?? (meth.isLayerwise ? .layer : .global)
        let amount = try PruneRecipe.sparsity(sparsity, granularity: gran)
        var finetune: FineTuneSettings?
        if finetuneEpochs != 0 {
            let f = FineTuneSettings(epochs: finetuneEpochs, batchSize: batchSize, learningRate: lr, momentum: 0.9, schedule: .cosine)
            try f.check()
            finetune = f
        }
        var recipe = PruneRecipe(method: meth, scope: sc, granularity: gran, sparsity: amount, finetune: finetune)
        recipe.protect = protect
        recipe.schedule = try Self.parseSchedule(schedule)
        recipe.initializer = try initializer.map { try recipeChoice($0, key: "init", Initializer.self) }
        if let distill {
            let parts = distill.split(separator: ",").map { Double($0) }
            guard parts.count == 2, let t = parts[0], let a = parts[1] else {
                throw RecipeFieldError("distill", "'\(distill)' is not T,alpha (e.g. 4,0.5)")
            }
            recipe.distill = try PruneRecipe.Distillation.checked(temperature: t, alpha: a, teacher: teacher, teacherArchitecture: teacherArchitecture)
        } else if teacher != nil || teacherArchitecture != nil {
            throw InputError("--teacher and --teacher-architecture need --distill T,alpha")
        }
        if let norm { recipe.norm = try recipeChoice(norm, key: "norm", PruneRecipe.Norm.self) }
        if let damping { recipe.damping = try PruneRecipe.checkedDamping(damping) }
        if let regularize {
            let parts = regularize.split(separator: ":").map(String.init)
            guard (2...3).contains(parts.count), let kind = PruneRecipe.Regularization.Kind(rawValue: parts[0]), let lambda = Double(parts[1]),
                  parts.count == 2 || Int(parts[2]) != nil else {
                throw RecipeFieldError("regularize", "'\(regularize)' is not l1:λ or group_lasso:λ (λ > 0), optionally :epochs")
            }
            recipe.regularize = try PruneRecipe.Regularization.checked(kind: kind, lambda: lambda, epochs: parts.count == 3 ? Int(parts[2])! : nil,
                                                                       finetuneEpochs: finetuneEpochs)
        }
        if maxAccuracyDrop != nil || maxLatencyP50Us != nil || latencyBatchSize != nil {
            recipe.budget = try PruneRecipe.Budget.checked(maxAccuracyDrop: maxAccuracyDrop, maxLatencyP50: maxLatencyP50Us, batchSize: latencyBatchSize)
        }
        if let calibrationSamples {
            guard calibrationSamples >= 1 else { throw RecipeFieldError("calibration.samples", "must be at least 1") }
            recipe.calibration.samples = calibrationSamples
        }
        if let calibrationBatchSize {
            guard calibrationBatchSize >= 1 else { throw RecipeFieldError("calibration.batch_size", "must be at least 1") }
            recipe.calibration.batchSize = calibrationBatchSize
        }
        if let (key, problem) = recipe.problem { throw RecipeFieldError(key, problem) }
        return recipe
    }

    /// The options that set each recipe key (`prunecheck.yml`'s names in a refusal become them).
    static let optionOfKey: [(key: String, option: String)] = [
        ("budget.max_accuracy_drop", "--max-accuracy-drop"), ("budget.max_latency_p50_us", "--max-latency-p50-us"),
        ("budget.batch_size", "--latency-batch-size"), ("budget", "--max-accuracy-drop / --max-latency-p50-us"),
        ("max_accuracy_drop", "--max-accuracy-drop"), ("max_latency_p50_us", "--max-latency-p50-us"),
        ("distill.teacher_architecture", "--teacher-architecture"), ("distill", "--distill"), ("regularize", "--regularize"),
        ("finetune.epochs", "--finetune-epochs"), ("finetune.lr", "--lr"), ("finetune.batch_size", "--batch-size"), ("finetune", "--finetune-epochs"),
        ("calibration.samples", "--calibration-samples"), ("calibration.batch_size", "--calibration-batch-size"), ("init", "--initializer"),
        ("schedule", "--schedule"),
    ]

    /// Runs `body`, turning a recipe field's refusal into an input error that names the option.
    static func flagged<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as RecipeFieldError {
            let entry = optionOfKey.first { e.key == $0.key || e.key.hasPrefix($0.key + ".") }
            var option = entry?.option ?? "--\(e.key.replacingOccurrences(of: "_", with: "-"))"
            if let entry, entry.key != e.key { option += " (\(e.key.dropFirst(entry.key.count + 1)))" }
            var problem = e.problem
            for (key, flag) in optionOfKey where key.contains("_") && !key.contains(".") { problem = problem.replacingOccurrences(of: key, with: flag) }
            throw InputError("\(option): \(problem)")
        }
    }

    /// `oneshot`, `iterative:K` or `gradual:F`.
    static func parseSchedule(_ text: String) throws -> PruneRecipe.Schedule {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let numbers = parts.dropFirst().map { Double($0) }
        let refusal = RecipeFieldError("schedule", "'\(text)' is not allowed; expected oneshot, iterative:K or gradual:F[:INITIAL[:END]] (K, F ≥ 1, 0 ≤ INITIAL < 1, 0 < END ≤ 1)")
        guard numbers.allSatisfy({ $0 != nil }) else { throw refusal }
        let n = numbers.map { $0! }
        func whole(_ v: Double) throws -> Int {
            guard v == v.rounded(), abs(v) < 1e9 else { throw refusal }
            return Int(v)
        }
        switch (parts[0], n.count) {
        case ("oneshot", 0): return .oneshot
        case ("iterative", 1): return try PruneRecipe.Schedule.checked(kind: "iterative", steps: try whole(n[0]))
        case ("gradual", 1...3):
            return try PruneRecipe.Schedule.checked(kind: "gradual", frequency: try whole(n[0]), initialSparsity: n.count > 1 ? n[1] : nil,
                                                    end: n.count > 2 ? n[2] : nil)
        default: throw refusal
        }
    }
}
