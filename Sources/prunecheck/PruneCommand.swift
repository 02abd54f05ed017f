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

    @Option(help: "Pruning criterion: \(PruneRecipe.Method.allCases.map(\.rawValue).joined(separator: ", ")).")
    var method = "magnitude"

    @Option(help: "Fraction of prunable weights to remove, in [0, 1) (implied by N:M).")
    var sparsity: Double?

    @Option(help: "unstructured, N:M (N kept per group of M, e.g. 2:4), neuron (Linear outputs), channel (Conv outputs) or layer (residual branches and shape-keeping layers); neuron, channel and layer make the model smaller.")
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

    @Option(help: "Worker threads.")
    var threads = 1

    @Option(help: "Where to write the pruned model: .onnx, or .safetensors (with the layer-list .json beside it).")
    var out: String

    @Option(help: ArgumentHelp("Also write the first 16 eval inputs and the pruned model's outputs for them (.npz), for checks with other runtimes.", visibility: .hidden))
    var referenceOutputs: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        guard let meth = PruneRecipe.Method(rawValue: method) else {
            throw InputError("--method: '\(method)' is not available; allowed: \(PruneRecipe.Method.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let gran = PruneRecipe.Granularity(text: granularity) else {
            throw InputError("--granularity: '\(granularity)' is not allowed; expected \(PruneRecipe.Granularity.allowedText)")
        }
        let sc: PruneRecipe.Scope
        if let scope {
            guard let parsed = PruneRecipe.Scope(rawValue: scope) else { throw InputError("--scope: '\(scope)' is not allowed; expected global or layer") }
            sc = parsed
        } else {
            sc = meth.isLayerwise ? .layer : .global
        }
        let amount: Double
        switch gran {
        case let .nm(n, m):
            amount = 1 - Double(n) / Double(m)
            if let s = sparsity, abs(s - amount) > 1e-9 { throw InputError("--sparsity \(s) contradicts --granularity \(granularity) (which prunes \(amount))") }
        case .unstructured, .neuron, .channel, .layer:
            guard let s = sparsity else { throw InputError("--sparsity is required for \(gran.text) pruning") }
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
        let dense = try loadModel(path: model, architecture: architecture)
        let classes = try classCount(of: dense, file: model)
        let spec = DataSpec(file: data, train: trainSplit, eval: evalSource, scale: scale)
        let eval = try loadSplit(spec, evalSource, model: dense, classes: classes)
        let before = Evaluator.classify(model: dense, data: eval, classes: classes, threads: threads).accuracy
        let finetune = finetuneEpochs > 0
            ? FineTuneSettings(epochs: finetuneEpochs, batchSize: batchSize, learningRate: lr, momentum: 0.9, schedule: .cosine)
            : nil
        var recipe = PruneRecipe(method: meth, scope: sc, granularity: gran, sparsity: amount, finetune: finetune)
        recipe.protect = protect
        recipe.schedule = try Self.parseSchedule(schedule)
        if let initializer {
            guard let scheme = Initializer(rawValue: initializer) else {
                throw InputError("--initializer: '\(initializer)' is not allowed; expected \(Initializer.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            recipe.initializer = scheme
        }
        if let distill {
            let parts = distill.split(separator: ",").map { Double($0) }
            guard parts.count == 2, let t = parts[0], let a = parts[1], t > 0, (0...1).contains(a) else {
                throw InputError("--distill: '\(distill)' is not T,alpha with T > 0 and alpha in [0, 1]")
            }
            recipe.distill = PruneRecipe.Distillation(temperature: t, alpha: a, teacher: teacher, teacherArchitecture: teacherArchitecture)
        } else if teacher != nil || teacherArchitecture != nil {
            throw InputError("--teacher and --teacher-architecture need --distill T,alpha")
        }
        if let teacher, !teacher.hasSuffix(".onnx"), teacherArchitecture == nil {
            throw InputError("--teacher-architecture is missing; a .safetensors teacher needs its architecture file")
        }
        if let norm {
            guard let n = PruneRecipe.Norm(rawValue: norm) else { throw InputError("--norm: '\(norm)' is not allowed; expected l1 or l2") }
            recipe.norm = n
        }
        if let damping {
            guard damping > 0, damping.isFinite else { throw InputError("--damping \(damping) must be positive") }
            recipe.damping = damping
        }
        if let regularize {
            let parts = regularize.split(separator: ":").map(String.init)
            guard (2...3).contains(parts.count), let kind = PruneRecipe.Regularization.Kind(rawValue: parts[0]), let lambda = Double(parts[1]), lambda > 0,
                  parts.count == 2 || Int(parts[2]).map({ $0 >= 1 }) == true else {
                throw InputError("--regularize: '\(regularize)' is not l1:λ or group_lasso:λ (λ > 0), optionally :epochs")
            }
            recipe.regularize = PruneRecipe.Regularization(kind: kind, lambda: lambda, epochs: parts.count == 3 ? Int(parts[2])! : max(finetuneEpochs, 1))
        }
        if maxAccuracyDrop != nil || maxLatencyP50Us != nil {
            if let b = latencyBatchSize, b < 1 { throw InputError("--latency-batch-size must be at least 1") }
            if let l = maxLatencyP50Us, !(l > 0) { throw InputError("--max-latency-p50-us must be a number of microseconds above 0") }
            recipe.budget = PruneRecipe.Budget(maxAccuracyDrop: maxAccuracyDrop, maxLatencyP50: maxLatencyP50Us, latencyBatchSize: latencyBatchSize ?? 1)
        } else if latencyBatchSize != nil {
            throw InputError("--latency-batch-size goes with --max-latency-p50-us")
        }
        if let calibrationSamples {
            guard calibrationSamples >= 1 else { throw ValidationError("--calibration-samples must be at least 1") }
            recipe.calibration.samples = calibrationSamples
        }
        if let calibrationBatchSize {
            guard calibrationBatchSize >= 1 else { throw ValidationError("--calibration-batch-size must be at least 1") }
            recipe.calibration.batchSize = calibrationBatchSize
        }
        if let (key, problem) = recipe.problem {
            // The recipe's keys, as the options that set them.
            let option = ["budget": "--max-accuracy-drop / --max-latency-p50-us", "finetune": "--finetune-epochs"][key]
                ?? "--\(key.replacingOccurrences(of: "_", with: "-"))"
            throw InputError("\(option): \(problem)")
        }
        let paramsBefore = dense.parameters.reduce(0) { $0 + $1.variable.value.count }
        let needsTrain = finetune != nil || meth.usesCalibration || recipe.regularize != nil
        let train = needsTrain ? try loadSplit(spec, trainSplit, model: dense, classes: classes) : LabeledData(inputs: Tensor(zeros: [0] + dense.inputShape), labels: [])
        // The accuracy right after a one-shot cut of trained weights, before fine-tuning.
        var oneShot = Double.nan
        let reportCut = finetune != nil && recipe.initializer == nil
        let teacherModel = try recipe.distill?.teacher.map { try loadModel(path: $0, architecture: recipe.distill?.teacherArchitecture) }
        let outcome = try Self.runPipeline(dense, recipe: recipe, train: train, seed: seed, threads: threads, model: model, teacher: teacherModel, afterCut: { cut in
            if reportCut { oneShot = Evaluator.classify(model: cut, data: eval, classes: classes, threads: threads).accuracy }
        }) { phase, e, total in
            if !json { note("  \(phase) epoch \(e.epoch)/\(total): loss \(String(format: "%.4f", e.meanLoss))") }
        }
        let m = outcome.graph
        if !json { for line in outcome.notes { note("  \(line)") } }
        let paramsAfter = m.parameters.reduce(0) { $0 + $1.variable.value.count }
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
                ("sparsity", .number(report.sparsity)), ("accuracy_dense", .number(before)), ("accuracy_pruned", oneShot.isNaN ? (finetune == nil ? .number(after) : .null) : .number(oneShot)),
                ("accuracy_finetuned", .number(after)), ("finetune_epochs", .number(Double(finetuneEpochs))), ("method", .string(meth.rawValue)),
                ("params_before", .number(Double(paramsBefore))), ("params_after", .number(Double(paramsAfter))),
                ("layers", .array(report.perLayer.map { l in
                    .object([("name", .string(l.name)), ("zeros", .number(Double(l.zeros))), ("count", .number(Double(l.count))),
                             ("sparsity", .number(l.count == 0 ? 0 : Double(l.zeros) / Double(l.count)))])
                })),
            ]).rendered(), terminator: "")
        } else {
            print("\(model) → \(out): \(gran.text) \(meth.rawValue) pruning, scope \(sc.rawValue), schedule \(recipe.schedule.text)")
            print("  accuracy dense \(String(format: "%.4f", before))"
                  + (finetune == nil ? ", pruned \(String(format: "%.4f", after))"
                     : (oneShot.isNaN ? "" : ", pruned \(String(format: "%.4f", oneShot))") + ", after \(finetuneEpochs) fine-tuning epochs \(String(format: "%.4f", after))"))
            print("  sparsity \(String(format: "%.4f", report.sparsity)) (\(report.zeros) of \(report.count) weights); parameters \(paramsBefore) → \(paramsAfter)")
            for l in report.perLayer {
                print("    \(l.name): \(String(format: "%.4f", l.count == 0 ? 0 : Double(l.zeros) / Double(l.count))) (\(l.zeros)/\(l.count))")
            }
        }
    }
}

extension Prune {
    /// `oneshot`, `iterative:K` or `gradual:F`.
    static func parseSchedule(_ text: String) throws -> PruneRecipe.Schedule {
        let parts = text.split(separator: ":").map(String.init)
        switch (parts.first, parts.count) {
        case ("oneshot", 1): return .oneshot
        case ("iterative", 2): if let k = Int(parts[1]), k >= 1 { return .iterative(steps: k) }
        case ("gradual", 2...4):
            let initial = parts.count > 2 ? Double(parts[2]) : 0, end = parts.count > 3 ? Double(parts[3]) : 0.75
            if let f = Int(parts[1]), f >= 1, let initial, let end, initial >= 0, initial < 1, end > 0, end <= 1 {
                return .gradual(frequency: f, initial: initial, end: end)
            }
        default: break
        }
        throw InputError("--schedule: '\(text)' is not allowed; expected oneshot, iterative:K or gradual:F[:INITIAL[:END]] (K, F ≥ 1, 0 ≤ INITIAL < 1, 0 < END ≤ 1)")
    }

    static func runPipeline(_ graph: Graph, recipe: PruneRecipe, train: LabeledData, seed: UInt64, threads: Int, model: String, teacher: Graph? = nil,
                            afterCut: ((Graph) -> Void)? = nil, progress: ((String, EpochLog, Int) -> Void)? = nil) throws -> PruningOutcome {
        do {
            return try PruningPipeline.run(graph, recipe: recipe, train: train, seed: seed, threads: threads, teacher: teacher,
                                           latencyProbe: LatencyHarness.budgetProbe,
                                           energyEstimate: { EnergyModel.picojoules(macs: $0, parameterWords: $1) }, afterCut: afterCut, progress: progress)
        } catch let e as StructuredPruningError {
            throw InputError("\(model): \(e)")
        } catch let e as AllocationError {
            throw InputError("\(model): \(e)")
        } catch let e as GraphError {
            throw InputError("\(model): \(e)")
        }
    }
}
