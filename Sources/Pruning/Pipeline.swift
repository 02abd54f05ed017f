import Kernels
import TensorEngine

/// What a recipe did to a model.
public struct PruningOutcome {
    /// The pruned (and fine-tuned) model; a new, smaller graph for neuron and channel pruning.
    public var graph: Graph
    /// The masks fine-tuning kept (empty for structured pruning).
    public var masks: PruningMasks
    /// The per-layer sparsities `auto` and `energy` chose.
    public var allocation: Allocation?
    /// Lines worth printing: allocation, rounds.
    public var notes: [String] = []
}

/// A recipe from start to end: regularized training, the cut on its schedule, fine-tuning
/// with optional distillation. Deterministic: seeds derive from `seed`, every kernel's result
/// is independent of `threads`.
public enum PruningPipeline {
    /// Runs `recipe` on `model` (changed in place for unstructured and N:M pruning) with the
    /// training split `train`. `teacher` replaces the dense model as the distillation teacher.
    /// `afterCut` sees the model right after a one-shot cut, before fine-tuning. `progress` gets
    /// every fine-tuning epoch with the phase's name and epoch count. `latencyProbe` times models
    /// for an `auto` latency budget (required for one), `energyEstimate` ranks layers for the `energy`
    /// method (required for it). `calibration` replaces `train` as what data-driven criteria
    /// see (an embedding model's training targets are its dense outputs, whose loss is flat at
    /// the dense weights: its criteria see another loss).
    public static func run(
        _ model: Graph, recipe: PruneRecipe, train: LabeledData, calibration calibrationData: LabeledData? = nil,
        seed: UInt64, threads: Int, teacher: Graph? = nil,
        latencyProbe: LatencyProbe? = nil, energyEstimate: EnergyEstimate? = nil, afterCut: ((Graph) -> Void)? = nil, progress: ((String, EpochLog, Int) -> Void)? = nil,
        phase: ((String) -> Void)? = nil
    ) throws -> PruningOutcome {
        if let p = recipe.problem { preconditionFailure("recipe refused by its own check: \(p.key): \(p.message)") }
        let teacherModel = recipe.distill != nil ? (teacher ?? model.copy()) : nil
        let settings = recipe.finetune ?? FineTuneSettings(epochs: 0)
        var notes: [String] = []
        let calibration = recipe.method.usesCalibration ? CalibrationSet(calibrationData ?? train, settings: recipe.calibration, seed: seed) : nil
        var context = PruningContext(calibration: calibration, seed: seed, threads: threads)

        if let reg = recipe.regularize, reg.epochs > 0 {
            var s = settings
            s.epochs = reg.epochs
            let layers = targetLayers(model, recipe: recipe)
            FineTuning.run(model: model, masks: [:], data: train, settings: s, seed: seed &+ 0x5EED, threads: threads,
                           penalty: { Regularizer.addGradient(reg, model: model, layers: layers) },
                           progress: { progress?("regularization (\(reg.kind.rawValue))", $0, reg.epochs) })
            let count = layers.reduce(0) { acc, name in acc + (model.initializer(name)?.shape.reduce(1, *) ?? 0) }
            notes.append("regularization: \(reg.epochs) epochs of \(reg.kind.rawValue) λ=\(reg.lambda); weights below 1e-3 before the cut: \(smallWeights(model, layers: layers)) of \(count)")
        }
        if let scheme = recipe.initializer ?? (recipe.method == .snip ? .xavierUniform : nil) { model.reinitialize(scheme, seed: seed) }
        var allocation: Allocation?
        if recipe.method.allocates, let budget = recipe.budget {
            phase?("allocating sparsity per layer (\(recipe.method.rawValue))")
            let a = try Allocator.allocate(model, layers: targetLayers(model, recipe: recipe), maxSparsity: recipe.sparsity,
                                           budget: budget, energy: recipe.method == .energy ? energyEstimate ?? {
                                               preconditionFailure("the energy method needs an energy estimate")
                                           }() : nil,
                                           calibration: calibration!, threads: threads, latencyProbe: latencyProbe)
            context.layerSparsity = Dictionary(uniqueKeysWithValues: a.layers.map { ($0.name, $0.sparsity) })
            notes.append("\(recipe.method.rawValue): per-layer sparsity " + a.layers.map { "\(StructuredPruning.layerName($0.name)) \(format($0.sparsity))" }.joined(separator: ", ")
                         + "; total \(format(a.totalSparsity)) (uniform within the same budget: \(format(a.uniformSparsity))); calibration accuracy \(format(a.denseAccuracy)) → \(format(a.prunedAccuracy))"
                         + (a.prunedLatency.map { p in "; p50 latency at batch \(budget.latencyBatchSize) \(format(a.denseLatency!, digits: 1)) → \(format(p, digits: 1)) µs (measured on this machine: the allocation depends on its timings)" } ?? ""))
            allocation = a
        }
        let label = "fine-tuning"
        switch recipe.schedule {
        case .oneshot:
            phase?(calibration != nil ? "pruning (\(recipe.method.rawValue), calibrating on \(calibration!.count) examples)" : "pruning (\(recipe.method.rawValue))")
            let (graph, masks) = try prune(model, recipe: recipe, context: context)
            afterCut?(graph)
            fineTune(graph, masks: masks, train: train, settings: settings, epochs: settings.epochs, seed: seed, threads: threads, recipe: recipe,
                     teacher: teacherModel, label: label, progress: progress)
            return PruningOutcome(graph: graph, masks: masks, allocation: allocation, notes: notes)
        case .iterative(let steps):
            var graph = model, masks: PruningMasks = [:]
            for round in 1...steps {
                // Density (1 − s)^(r/k) after round r; structured rounds remove that fraction of
                // the units that are left, unstructured rounds reach it over all weights.
                let density = pow64(1 - recipe.sparsity, Double(round) / Double(steps))
                let previous = pow64(1 - recipe.sparsity, Double(round - 1) / Double(steps))
                let amount = round == steps && !recipe.granularity.isStructured ? recipe.sparsity
                    : recipe.granularity.isStructured ? 1 - density / previous : 1 - density
                context.previous = masks
                phase?("pruning round \(round)/\(steps) (\(recipe.method.rawValue))")
                (graph, masks) = try prune(graph, recipe: recipe, sparsity: min(max(amount, 0), 0.999_999), context: context)
                let epochs = settings.epochs / steps + (round == steps ? settings.epochs % steps : 0)
                fineTune(graph, masks: masks, train: train, settings: settings, epochs: epochs, seed: seed &+ UInt64(round), threads: threads,
                         recipe: recipe, teacher: teacherModel, label: "round \(round)/\(steps) \(label)", progress: progress)
            }
            notes.append("iterative: \(steps) rounds to sparsity \(format(recipe.sparsity))")
            return PruningOutcome(graph: graph, masks: masks, allocation: allocation, notes: notes)
        case let .gradual(frequency, initial, end):
            var masks: PruningMasks = [:]
            if initial > 0 { masks = try prune(model, recipe: recipe, sparsity: initial, context: context).masks }
            let steps = (train.count + settings.batchSize - 1) / max(settings.batchSize, 1) * settings.epochs
            let endStep = max(1, min(steps, Int((end * Double(steps)).rounded())))
            var last = initial
            var failure: Error?
            let optimizerHook: (Int, Optimizer) -> Void = { step, optimizer in
                let t = step + 1
                guard t <= endStep, t % frequency == 0 || t == endStep, failure == nil else { return }
                let s = GradualSchedule.sparsity(step: t, initial: initial, final: recipe.sparsity, endStep: endStep)
                guard s > last else { return }
                do {
                    context.previous = masks
                    masks = try prune(model, recipe: recipe, sparsity: s, context: context).masks
                    last = s
                    for (name, v) in model.prunableWeights { if let m = masks[name] { optimizer.setMask(m, for: v) } }
                } catch { failure = error }
            }
            FineTuning.run(model: model, masks: masks, data: train, settings: settings, seed: seed, threads: threads,
                           teacher: teacherModel, distill: distillation(recipe), afterStep: optimizerHook,
                           progress: { progress?(label, $0, settings.epochs) })
            if let failure { throw failure }
            if last < recipe.sparsity {
                context.previous = masks
                masks = try prune(model, recipe: recipe, context: context).masks
            }
            notes.append("gradual: masks every \(frequency) steps, cubic from \(format(initial)) to \(format(recipe.sparsity)) at step \(endStep) of \(steps)")
            return PruningOutcome(graph: model, masks: masks, allocation: allocation, notes: notes)
        }
    }

    static func fineTune(_ graph: Graph, masks: PruningMasks, train: LabeledData, settings: FineTuneSettings, epochs: Int, seed: UInt64, threads: Int,
                         recipe: PruneRecipe, teacher: Graph?, label: String, progress: ((String, EpochLog, Int) -> Void)?) {
        guard epochs > 0 else { return }
        var s = settings
        s.epochs = epochs
        FineTuning.run(model: graph, masks: masks, data: train, settings: s, seed: seed, threads: threads,
                       teacher: teacher, distill: distillation(recipe), progress: { progress?(label, $0, epochs) })
    }

    static func distillation(_ recipe: PruneRecipe) -> (temperature: Float, alpha: Float)? {
        recipe.distill.map { (Float($0.temperature), Float($0.alpha)) }
    }

    static func smallWeights(_ model: Graph, layers: [String]) -> Int {
        layers.reduce(0) { acc, name in
            guard case .float(let v)? = model.initializer(name) else { return acc }
            return acc + v.value.scalars.reduce(0) { $0 + ($1.magnitude < 1e-3 ? 1 : 0) }
        }
    }

    static func format(_ x: Double, digits: Int = 4) -> String {
        let scale = pow64(10, Double(digits))
        let r = (x * scale).rounded() / scale
        return "\(r)"
    }
}

/// Zhu & Gupta's cubic sparsity schedule (TFMOT's PolynomialDecay with power 3, begin 0).
public enum GradualSchedule {
    /// s_t = s_f + (s_i − s_f)·(1 − p)³ with p = min(1, step/endStep).
    public static func sparsity(step: Int, initial: Double, final: Double, endStep: Int) -> Double {
        let p = min(1, max(0, Double(step) / Double(max(endStep, 1))))
        let q = 1 - p
        return final + (initial - final) * q * q * q
    }
}

/// The gradient of `regularize:` penalties, added before each optimizer step.
enum Regularizer {
    static func addGradient(_ reg: PruneRecipe.Regularization, model: Graph, layers: [String]) {
        let lambda = Float(reg.lambda)
        for name in layers {
            guard case .float(let v)? = model.initializer(name), v.grad != nil else { continue }
            let w = v.value
            switch reg.kind {
            case .l1:
                // Subgradient of λ·Σ|w| (0 at 0).
                w.withUnsafeBufferPointer { p in v.accumulateGrad { g in for i in 0..<p.count where p[i] != 0 { g[i] += p[i] > 0 ? lambda : -lambda } } }
            case .groupLasso:
                // λ·w_u/‖w_u‖₂ for every unit u (a row: one output feature or channel).
                let rows = w.shape[0], len = w.count / max(rows, 1)
                w.withUnsafeBufferPointer { p in
                    v.accumulateGrad { g in
                        for r in 0..<rows {
                            var sq: Double = 0
                            for k in 0..<len { sq += Double(p[r * len + k]) * Double(p[r * len + k]) }
                            guard sq > 0 else { continue }
                            let scale = lambda / Float(sq.squareRoot())
                            for k in 0..<len { g[r * len + k] += scale * p[r * len + k] }
                        }
                    }
                }
            }
        }
    }
}
