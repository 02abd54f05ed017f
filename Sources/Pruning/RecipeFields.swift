// The one place a recipe's fields are read from text and checked: `prunecheck.yml`'s `prune:`
// (Configuration.ConfigParser) and `prune`'s flags both build recipes through these, so a value
// accepted in one is accepted in the other, with the same message. Each check throws a
// `RecipeFieldError` naming the field by its configuration key (relative to `prune`); the
// caller turns the key into a YAML location or an option name.

/// A value a recipe field does not accept: the field's key (`sparsity`, `distill.alpha`) and
/// what is wrong.
public struct RecipeFieldError: Error, Equatable {
    public let key: String
    public let problem: String
    public init(_ key: String, _ problem: String) {
        self.key = key
        self.problem = problem
    }
}

/// Case-iterable choices by name, with the allowed names in the refusal.
public func recipeChoice<E: RawRepresentable & CaseIterable>(_ text: String, key: String, _: E.Type) throws -> E where E.RawValue == String {
    guard let v = E(rawValue: text) else {
        throw RecipeFieldError(key, "'\(text)' is not allowed; expected one of: \(E.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return v
}

extension PruneRecipe {
    /// The granularity from its text (`unstructured`, `neuron`, `channel`, `layer`, `N:M`).
    public static func granularity(from text: String) throws -> Granularity {
        guard let g = Granularity(text: text) else { throw RecipeFieldError("granularity", "'\(text)' is not allowed; expected \(Granularity.allowedText)") }
        return g
    }

    /// The sparsity a request means: N:M fixes it at 1 − N/M (a stated one must agree); every
    /// other granularity needs one in [0, 1).
    public static func sparsity(_ given: Double?, granularity: Granularity) throws -> Double {
        if case let .nm(n, m) = granularity {
            let implied = 1 - Double(n) / Double(m)
            if let s = given, abs(s - implied) > 1e-9 {
                throw RecipeFieldError("sparsity", "granularity \(granularity.text) prunes exactly \(implied); leave sparsity out or give that")
            }
            return implied
        }
        guard let s = given else { throw RecipeFieldError("sparsity", "is missing; give a fraction in [0, 1)") }
        guard s >= 0 && s < 1 else { throw RecipeFieldError("sparsity", "\(s) is outside [0, 1)") }
        return s
    }

    /// SparseGPT's and OBS's dampening, λ = damping · mean(diag H).
    public static func checkedDamping(_ d: Double) throws -> Double {
        guard d > 0 && d.isFinite else { throw RecipeFieldError("damping", "must be positive (λ = damping · mean(diag H))") }
        return d
    }
}

extension PruneRecipe.Distillation {
    /// Distillation with its ranges checked: T > 0, alpha in [0, 1], a .safetensors teacher with
    /// its architecture file, an architecture only with a teacher.
    public static func checked(temperature: Double?, alpha: Double?, teacher: String?, teacherArchitecture: String?) throws -> Self {
        var d = Self()
        if let t = temperature {
            guard t > 0 && t.isFinite else { throw RecipeFieldError("distill.temperature", "must be positive") }
            d.temperature = t
        }
        if let a = alpha {
            guard (0...1).contains(a) else { throw RecipeFieldError("distill.alpha", "must be in [0, 1] (the weight of the distillation loss)") }
            d.alpha = a
        }
        d.teacher = teacher
        d.teacherArchitecture = teacherArchitecture
        if let t = teacher, !t.hasSuffix(".onnx"), teacherArchitecture == nil {
            throw RecipeFieldError("distill.teacher_architecture", "is missing; a .safetensors teacher needs its architecture file")
        }
        if teacher == nil, teacherArchitecture != nil { throw RecipeFieldError("distill.teacher_architecture", "needs teacher") }
        return d
    }
}

extension PruneRecipe.Regularization {
    /// A penalized phase with λ > 0 and at least one epoch (default: the fine-tuning epochs).
    public static func checked(kind: Kind, lambda: Double, epochs: Int?, finetuneEpochs: Int?) throws -> Self {
        guard lambda > 0 && lambda.isFinite else { throw RecipeFieldError("regularize.\(kind.rawValue)", "λ must be positive") }
        if let e = epochs, e < 1 { throw RecipeFieldError("regularize.epochs", "must be at least 1") }
        return Self(kind: kind, lambda: lambda, epochs: epochs ?? max(finetuneEpochs ?? 1, 1))
    }
}

extension PruneRecipe.Budget {
    /// A budget of at least one limit: an accuracy drop in [0, 1), a latency above 0 µs, and a
    /// latency batch (≥ 1) only with a latency.
    public static func checked(maxAccuracyDrop: Double?, maxLatencyP50: Double?, batchSize: Int?) throws -> Self {
        var budget = Self()
        if let drop = maxAccuracyDrop {
            guard (0..<1).contains(drop) else { throw RecipeFieldError("budget.max_accuracy_drop", "must be in [0, 1) (0.01 = one point of accuracy)") }
            budget.maxAccuracyDrop = drop
        }
        if let us = maxLatencyP50 {
            guard us > 0 && us.isFinite else { throw RecipeFieldError("budget.max_latency_p50_us", "must be a number of microseconds above 0") }
            budget.maxLatencyP50 = us
        }
        if let b = batchSize {
            guard budget.maxLatencyP50 != nil else { throw RecipeFieldError("budget.batch_size", "is the batch of max_latency_p50_us; give that too") }
            guard b >= 1 else { throw RecipeFieldError("budget.batch_size", "must be at least 1") }
            budget.latencyBatchSize = b
        }
        guard budget.maxAccuracyDrop != nil || budget.maxLatencyP50 != nil else {
            throw RecipeFieldError("budget", "needs max_accuracy_drop or max_latency_p50_us, e.g. budget: {max_accuracy_drop: 0.01}")
        }
        return budget
    }
}

extension FineTuneSettings {
    /// Throws for the first field outside its range: epochs ≥ 0, batch size ≥ 1, lr > 0,
    /// momentum and label smoothing in [0, 1), weight decay ≥ 0.
    public func check() throws {
        if epochs < 0 { throw RecipeFieldError("finetune.epochs", "must be at least 0") }
        if batchSize < 1 { throw RecipeFieldError("finetune.batch_size", "must be at least 1") }
        if !(learningRate > 0 && learningRate.isFinite) { throw RecipeFieldError("finetune.lr", "must be positive") }
        if !(0..<1).contains(momentum) { throw RecipeFieldError("finetune.momentum", "must be in [0, 1)") }
        if !(weightDecay >= 0) { throw RecipeFieldError("finetune.weight_decay", "must be ≥ 0") }
        if !(0..<1).contains(labelSmoothing) { throw RecipeFieldError("finetune.label_smoothing", "must be in [0, 1)") }
    }
}

extension PruneRecipe.Schedule {
    /// The schedule `kind` (oneshot, iterative, gradual) with its settings checked: at least
    /// one step and frequency, an initial sparsity in [0, 1), an end in (0, 1]. Defaults: 5
    /// iterative steps; gradual masks every 100 steps from sparsity 0, reaching the target at
    /// 0.75 of fine-tuning.
    public static func checked(kind: String, steps: Int? = nil, frequency: Int? = nil, initialSparsity: Double? = nil, end: Double? = nil) throws -> Self {
        switch kind {
        case "oneshot":
            return .oneshot
        case "iterative":
            let k = steps ?? 5
            guard k >= 1 else { throw RecipeFieldError("schedule.steps", "must be at least 1") }
            return .iterative(steps: k)
        case "gradual":
            let f = frequency ?? 100, initial = initialSparsity ?? 0, e = end ?? 0.75
            guard f >= 1 else { throw RecipeFieldError("schedule.frequency", "must be at least 1") }
            guard (0..<1).contains(initial) else { throw RecipeFieldError("schedule.initial_sparsity", "must be in [0, 1)") }
            guard e > 0 && e <= 1 else {
                throw RecipeFieldError("schedule.end", "must be in (0, 1]: the fraction of fine-tuning steps at which the final sparsity is reached")
            }
            return .gradual(frequency: f, initial: initial, end: e)
        default:
            throw RecipeFieldError("schedule.kind", "'\(kind)' is not allowed; expected one of: oneshot, iterative, gradual")
        }
    }
}
