/// How to prune one model and how to recover afterwards: the `prune:` section of a model in
/// `prunecheck.yml`.
public struct PruneRecipe: Equatable, Sendable {
    public enum Method: String, CaseIterable, Sendable { case magnitude }
    public enum Scope: String, CaseIterable, Sendable { case global, layer }
    /// What one pruning decision removes: single weights, or N:M patterns (N weights kept in
    /// every group of M consecutive weights along a row's inputs; "2:4" keeps 2 of 4).
    public enum Granularity: Equatable, Sendable {
        case unstructured
        case nm(n: Int, m: Int)
        /// Whole output features of Linear (Gemm) layers, physically removed.
        case neuron
        /// Whole output channels of Conv layers, physically removed.
        case channel

        /// "unstructured", "neuron", "channel" or "N:M" with 0 < N < M ≤ 64; nil otherwise.
        public init?(text: String) {
            if text == "unstructured" { self = .unstructured; return }
            if text == "neuron" { self = .neuron; return }
            if text == "channel" { self = .channel; return }
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), n > 0, n < m, m <= 64 else { return nil }
            self = .nm(n: n, m: m)
        }

        public var text: String {
            switch self {
            case .unstructured: return "unstructured"
            case .neuron: return "neuron"
            case .channel: return "channel"
            case let .nm(n, m): return "\(n):\(m)"
            }
        }

        public var rawValue: String { text }
        public static let allowedText = "unstructured, neuron, channel, or N:M with 0 < N < M ≤ 64 (e.g. \"2:4\": 2 of every 4 weights kept)"

        public var isStructured: Bool { self == .neuron || self == .channel }
    }

    public var method: Method
    public var scope: Scope
    public var granularity: Granularity
    /// Fraction of the prunable weights set to zero, in [0, 1).
    public var sparsity: Double
    /// Fine-tuning after the cut; nil for none.
    public var finetune: FineTuneSettings?
    /// Layers (weight or layer names) that structured pruning leaves whole.
    public var protect: [String] = []

    public init(method: Method = .magnitude, scope: Scope = .global, granularity: Granularity = .unstructured,
                sparsity: Double, finetune: FineTuneSettings? = nil) {
        self.method = method
        self.scope = scope
        self.granularity = granularity
        self.sparsity = sparsity
        self.finetune = finetune
    }

    /// A canonical one-line text of every setting, the input of the recipe hash.
    public var canonicalDescription: String {
        var s = "method=\(method.rawValue);scope=\(scope.rawValue);granularity=\(granularity.rawValue);sparsity=\(sparsity)"
        if !protect.isEmpty { s += ";protect=\(protect.joined(separator: ","))" }
        if let f = finetune {
            s += ";finetune(\(f.canonicalDescription))"
        }
        return s
    }
}

/// Fine-tuning settings (`finetune:`).
public struct FineTuneSettings: Equatable, Sendable {
    public enum Optimizer: String, CaseIterable, Sendable { case sgd, adam, adamw }
    public enum ScheduleKind: String, CaseIterable, Sendable { case constant, step, multistep, exponential, cosine, onecycle, plateau }
    public var epochs: Int
    public var batchSize: Int
    public var optimizer: Optimizer
    public var learningRate: Double
    /// SGD momentum (ignored by Adam).
    public var momentum: Double
    public var nesterov: Bool
    public var weightDecay: Double
    public var labelSmoothing: Double
    public var schedule: ScheduleKind
    /// `step`: epochs between decays; `multistep`: the epochs where the rate decays.
    public var stepSize: Int
    public var milestones: [Int]
    /// Decay factor of step, multistep, exponential (per epoch) and plateau.
    public var gamma: Double
    /// `cosine`: warm-up steps (batches) and the final rate.
    public var warmupSteps: Int
    public var minLearningRate: Double
    /// `plateau`: epochs without improvement of the training loss before decaying.
    public var patience: Int

    public init(epochs: Int, batchSize: Int = 64, optimizer: Optimizer = .sgd, learningRate: Double = 0.01, momentum: Double = 0.9,
                nesterov: Bool = false, weightDecay: Double = 0, labelSmoothing: Double = 0, schedule: ScheduleKind = .constant,
                stepSize: Int = 1, milestones: [Int] = [], gamma: Double = 0.1, warmupSteps: Int = 0, minLearningRate: Double = 0,
                patience: Int = 1) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.labelSmoothing = labelSmoothing
        self.schedule = schedule
        self.stepSize = stepSize
        self.milestones = milestones
        self.gamma = gamma
        self.warmupSteps = warmupSteps
        self.minLearningRate = minLearningRate
        self.patience = patience
    }

    /// Every setting as one line (part of the recipe hash). The fields added after the first
    /// release are written only when they differ from their defaults, so existing recipe
    /// hashes (and caches) stay valid.
    public var canonicalDescription: String {
        var s = "epochs=\(epochs);batch_size=\(batchSize);optimizer=\(optimizer.rawValue);lr=\(learningRate);momentum=\(momentum)"
        if nesterov { s += ";nesterov=true" }
        if weightDecay != 0 { s += ";weight_decay=\(weightDecay)" }
        if labelSmoothing != 0 { s += ";label_smoothing=\(labelSmoothing)" }
        if schedule != .constant {
            s += ";lr_schedule=\(schedule.rawValue),step_size=\(stepSize),milestones=\(milestones),gamma=\(gamma)"
            s += ",warmup=\(warmupSteps),min_lr=\(minLearningRate),patience=\(patience)"
        }
        return s
    }
}
