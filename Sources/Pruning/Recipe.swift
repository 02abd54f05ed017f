import Foundation
import TensorEngine

/// How to prune one model and how to recover afterwards: the `prune:` section of a model in
/// `prunecheck.yml`.
public struct PruneRecipe: Equatable, Sendable {
    /// The criterion that ranks weights or units (`prune.method`).
    public enum Method: String, CaseIterable, Sendable {
        /// |w|, or the L1/L2 norm of a unit's weights.
        case magnitude
        /// Seeded uniform scores: the control every criterion must beat.
        case random
        /// First-order Taylor importance (g·w)² averaged over calibration batches (Molchanov 2019).
        case taylor
        /// Connection sensitivity |g·w| at a fresh initialization on one batch, then training
        /// from scratch with the mask (Lee et al. 2019).
        case snip
        /// Optimal Brain Damage: ½·h_ii·w² with the empirical-Fisher Hessian diagonal.
        case obd
        /// Layer-wise Optimal Brain Surgeon: saliency w²/(2[H⁻¹]_qq) with H = 2XᵀX/n, and the
        /// survivors of every row updated to the exact least-squares optimum.
        case obs
        /// SparseGPT: blockwise OBS with the Cholesky factor of H⁻¹ (Frantar & Alistarh 2023).
        case sparsegpt
        /// Wanda: |W|·‖X_j‖₂ compared within each output row (Sun et al. 2023).
        case wanda
        /// Layer-wise relevance propagation (z⁺ rule) of units (Yeom et al. 2021).
        case lrp
        /// Per-layer sparsities that save the most estimated energy within an accuracy budget.
        case energy
        /// Per-layer sparsities that remove the most weights within an accuracy budget.
        case auto

        /// Methods that set their own per-layer sparsities from a sensitivity sweep.
        public var allocates: Bool { self == .energy || self == .auto }
        /// Methods that need calibration data (examples fed through the model).
        public var usesCalibration: Bool { ![.magnitude, .random].contains(self) }
        /// Methods whose published form prunes every layer to the same sparsity.
        public var isLayerwise: Bool { [.obs, .sparsegpt].contains(self) }
    }
    public enum Scope: String, CaseIterable, Sendable { case global, layer }
    /// The norm that ranks a unit's weights for magnitude pruning of neurons and channels.
    public enum Norm: String, CaseIterable, Sendable { case l1, l2 }
    /// What one pruning decision removes: single weights, or N:M patterns (N weights kept in
    /// every group of M consecutive weights along a row's inputs; "2:4" keeps 2 of 4).
    public enum Granularity: Equatable, Sendable {
        case unstructured
        case nm(n: Int, m: Int)
        /// Whole output features of Linear (Gemm) layers, physically removed.
        case neuron
        /// Whole output channels of Conv layers, physically removed (with everything tied to
        /// them: residual partners, depthwise convolutions, a vision transformer's width).
        case channel
        /// Whole attention heads (their query, key, value and output weights), physically removed.
        case head
        /// Whole blocks removed: residual branches, and layers whose output keeps their
        /// input's shape (with their activation).
        case layer

        /// "unstructured", "neuron", "channel", "head", "layer" or "N:M" with 0 < N < M ≤ 64; nil otherwise.
        public init?(text: String) {
            if text == "unstructured" { self = .unstructured; return }
            if text == "neuron" { self = .neuron; return }
            if text == "channel" { self = .channel; return }
            if text == "head" { self = .head; return }
            if text == "layer" { self = .layer; return }
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]), n > 0, n < m, m <= 64 else { return nil }
            self = .nm(n: n, m: m)
        }

        public var text: String {
            switch self {
            case .unstructured: return "unstructured"
            case .neuron: return "neuron"
            case .channel: return "channel"
            case .head: return "head"
            case .layer: return "layer"
            case let .nm(n, m): return "\(n):\(m)"
            }
        }

        public var rawValue: String { text }
        public static let allowedText = "unstructured, neuron, channel, head, layer, or N:M with 0 < N < M ≤ 64 (e.g. \"2:4\": 2 of every 4 weights kept)"

        /// Neuron, channel and layer pruning remove structure (the model gets smaller).
        public var isStructured: Bool { self == .neuron || self == .channel || self == .head || self == .layer }
    }

    /// When the cut happens (`prune.schedule`).
    public enum Schedule: Equatable, Sendable {
        /// One cut, then fine-tuning.
        case oneshot
        /// `steps` rounds of cut + fine-tuning; each round removes the same fraction of the
        /// weights (or units) that remain, so round r ends at density (1 − s)^(r/steps), as in
        /// Han et al. 2015 and the lottery-ticket procedure. The fine-tuning epochs are split
        /// evenly across rounds (the remainder goes to the last).
        case iterative(steps: Int)
        /// Zhu & Gupta's cubic schedule during fine-tuning: the masks are recomputed every
        /// `frequency` optimizer steps to s_t = s_f + (s_i − s_f)(1 − p)³, where p runs from 0 at
        /// the first step to 1 at `end` (a fraction of all fine-tuning steps).
        case gradual(frequency: Int, initial: Double, end: Double)

        public var text: String {
            switch self {
            case .oneshot: return "oneshot"
            case let .iterative(steps): return "iterative(steps=\(steps))"
            case let .gradual(f, i, e): return "gradual(frequency=\(f),initial=\(i),end=\(e))"
            }
        }
    }

    /// A penalty added during a training phase before the cut (`prune.regularize`).
    public struct Regularization: Equatable, Sendable {
        public enum Kind: String, CaseIterable, Sendable {
            /// λ·Σ|w| over the prunable weights (subgradient λ·sign w).
            case l1
            /// λ·Σ_units ‖w_unit‖₂ over the rows of the prunable weights (group lasso).
            case groupLasso = "group_lasso"
        }
        public var kind: Kind
        public var lambda: Double
        /// Epochs of penalized training before the cut (with the `finetune` optimizer).
        public var epochs: Int
        public init(kind: Kind, lambda: Double, epochs: Int) {
            self.kind = kind
            self.lambda = lambda
            self.epochs = epochs
        }
    }

    /// Knowledge distillation during fine-tuning (`prune.distill`).
    public struct Distillation: Equatable, Sendable {
        public var temperature: Double
        /// Weight of the distillation loss; 1 − alpha goes to the label loss.
        public var alpha: Double
        /// The teacher model file (nil: the dense model before pruning), and its architecture
        /// file when it is safetensors.
        public var teacher: String?
        public var teacherArchitecture: String?
        public init(temperature: Double = 4, alpha: Double = 0.5, teacher: String? = nil, teacherArchitecture: String? = nil) {
            self.temperature = temperature
            self.alpha = alpha
            self.teacher = teacher
            self.teacherArchitecture = teacherArchitecture
        }
    }

    /// Which training examples data-driven criteria see (`prune.calibration`): the first
    /// `samples` of one seeded permutation of the training split, in batches.
    public struct Calibration: Equatable, Sendable {
        public var samples: Int
        public var batchSize: Int
        public init(samples: Int, batchSize: Int) {
            self.samples = samples
            self.batchSize = batchSize
        }
        /// SNIP scores 1000 examples in batches of 100: the sum of the batches' gradients is the
        /// gradient over all 1000, so this is the paper's one-batch sensitivity estimated on a
        /// larger batch (docs/pruning-quality.md measures it against one batch of 100). The
        /// others see 512 examples.
        public static func defaults(for method: Method) -> Calibration {
            method == .snip ? Calibration(samples: 1000, batchSize: 100) : common
        }
        /// Every method's default but SNIP's.
        public static let common = Calibration(samples: 512, batchSize: 128)
    }

    /// The limits `auto` and `energy` allocate within (`prune.budget`): at least one of them.
    public struct Budget: Equatable, Sendable {
        /// The largest accepted drop in accuracy on the calibration examples (0.01 = 1 point).
        public var maxAccuracyDrop: Double?
        /// `auto` only: the p50 latency in microseconds the pruned model must reach on this
        /// machine, measured on `latencyBatchSize` calibration examples with the run's threads.
        public var maxLatencyP50: Double?
        public var latencyBatchSize: Int
        public init(maxAccuracyDrop: Double? = nil, maxLatencyP50: Double? = nil, latencyBatchSize: Int = 1) {
            self.maxAccuracyDrop = maxAccuracyDrop
            self.maxLatencyP50 = maxLatencyP50
            self.latencyBatchSize = latencyBatchSize
        }
        /// The canonical text of the recipe hash (the accuracy-only form is the one hashes
        /// were recorded with before latency budgets).
        var text: String {
            var parts: [String] = []
            if let d = maxAccuracyDrop { parts.append("max_accuracy_drop:\(d)") }
            if let l = maxLatencyP50 { parts.append("max_latency_p50_us:\(l)") }
            if maxLatencyP50 != nil && latencyBatchSize != 1 { parts.append("batch_size:\(latencyBatchSize)") }
            return parts.joined(separator: ",")
        }
    }

    public var method: Method
    public var scope: Scope
    public var granularity: Granularity
    /// Fraction of the prunable weights set to zero, in [0, 1). For `auto` and `energy`, the
    /// most any one layer may reach.
    public var sparsity: Double
    /// Fine-tuning after the cut; nil for none.
    public var finetune: FineTuneSettings?
    /// Layers (weight or layer names) that pruning leaves whole.
    public var protect: [String] = []
    public var norm: Norm = .l2
    public var schedule: Schedule = .oneshot
    public var regularize: Regularization?
    public var distill: Distillation?
    public var calibration: Calibration
    /// Re-initialize every parameter with this scheme before the cut (pruning at
    /// initialization); nil keeps the trained weights. SNIP always starts from one: Glorot
    /// uniform (xavier_uniform) unless given, the variance-scaling initialization of the SNIP
    /// paper.
    public var initializer: Initializer?
    public var budget: Budget?
    /// SparseGPT/OBS dampening: λ = damping · mean(diag H).
    public var damping: Double = 0.01

    public init(method: Method = .magnitude, scope: Scope = .global, granularity: Granularity = .unstructured,
                sparsity: Double, finetune: FineTuneSettings? = nil) {
        self.method = method
        self.scope = scope
        self.granularity = granularity
        self.sparsity = sparsity
        self.finetune = finetune
        self.calibration = Calibration.defaults(for: method)
        self.initializer = method == .snip ? .xavierUniform : nil
    }

    /// A canonical one-line text of every setting, the input of the recipe hash. Settings
    /// added after the first release are written only when they differ from their defaults,
    /// so recipe hashes recorded before them stay valid.
    public var canonicalDescription: String {
        var s = "method=\(method.rawValue);scope=\(scope.rawValue);granularity=\(granularity.rawValue);sparsity=\(sparsity)"
        if !protect.isEmpty { s += ";protect=\(protect.joined(separator: ","))" }
        if let f = finetune {
            s += ";finetune(\(f.canonicalDescription))"
        }
        if norm != .l2 { s += ";norm=\(norm.rawValue)" }
        if schedule != .oneshot { s += ";schedule=\(schedule.text)" }
        if let r = regularize { s += ";regularize=\(r.kind.rawValue),\(r.lambda),epochs=\(r.epochs)" }
        if let d = distill {
            s += ";distill=T\(d.temperature),alpha=\(d.alpha),teacher=\(d.teacher.map { ($0 as NSString).lastPathComponent } ?? "dense")"
        }
        // Against the common default, not the method's: SNIP's default has changed once (one batch
        // of 100 → 1000 examples), and its recipes must not share a cache key or fingerprint
        // across that change.
        if calibration != Calibration.common { s += ";calibration=\(calibration.samples)x\(calibration.batchSize)" }
        if let i = initializer { s += ";init=\(i.rawValue)" }
        if let b = budget { s += ";budget=\(b.text)" }
        if damping != 0.01 { s += ";damping=\(damping)" }
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
