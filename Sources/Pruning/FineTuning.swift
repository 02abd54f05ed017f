import Common
import TensorEngine

/// One epoch of fine-tuning: its mean training loss.
public struct EpochLog: Equatable, Sendable {
    public var epoch: Int
    public var meanLoss: Double
    /// For a report in the middle of an epoch: the batches done and the epoch's batch count
    /// (nil once the epoch is complete).
    public var batch: Int? = nil
    public var batches: Int? = nil

    public init(epoch: Int, meanLoss: Double, batch: Int? = nil, batches: Int? = nil) {
        self.epoch = epoch
        self.meanLoss = meanLoss
        self.batch = batch
        self.batches = batches
    }

    public var isComplete: Bool { batch == nil }
}

public enum FineTuning {
    /// The optimizer a setting asks for.
    public static func optimizer(_ settings: FineTuneSettings) -> Optimizer {
        let lr = Float(settings.learningRate), wd = Float(settings.weightDecay)
        switch settings.optimizer {
        case .sgd:
            return Optimizer(.sgd(momentum: Float(settings.momentum), nesterov: settings.nesterov, weightDecay: wd), learningRate: lr)
        case .adam:
            return Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: wd, decoupled: false), learningRate: lr)
        case .adamw:
            return Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: wd, decoupled: true), learningRate: lr)
        }
    }

    /// The rate of optimizer step `step` (in epoch `epoch`) of a run of `total` steps.
    /// step, multistep and exponential decay per epoch; cosine and one-cycle per step.
    public static func rate(_ s: FineTuneSettings, epoch: Int, step: Int, total: Int) -> Double {
        switch s.schedule {
        case .constant, .plateau: return s.learningRate
        case .step: return LRSchedule.step(stepSize: s.stepSize, gamma: s.gamma).rate(base: s.learningRate, step: epoch)
        case .multistep: return LRSchedule.multiStep(milestones: s.milestones, gamma: s.gamma).rate(base: s.learningRate, step: epoch)
        case .exponential: return LRSchedule.exponential(gamma: s.gamma).rate(base: s.learningRate, step: epoch)
        case .cosine:
            return LRSchedule.cosine(total: total, warmup: s.warmupSteps, minLR: s.minLearningRate).rate(base: s.learningRate, step: step)
        case .onecycle: return LRSchedule.oneCycle(total: total, pctStart: 0.3).rate(base: s.learningRate, step: step)
        }
    }

    /// Trains `model` on `data` with cross-entropy (class or token labels; -100 ignored) or
    /// mean squared error (targets),
    /// keeping `masks` (pruned weights stay exactly zero). Mini-batches follow one seeded
    /// permutation per epoch, so the result is the same on every run and for every thread
    /// count. `teacher` (logits for the same inputs) and `distill` mix in a distillation loss.
    /// `penalty` runs after every backward pass, before the optimizer step (regularization adds
    /// its gradient there). `afterStep` runs after every optimizer step with the global step
    /// index (gradual pruning updates masks there).
    @discardableResult
    public static func run(
        model: Graph, masks: PruningMasks, data: LabeledData, settings: FineTuneSettings,
        seed: UInt64, threads: Int, teacher: Graph? = nil, distill: (temperature: Float, alpha: Float)? = nil,
        penalty: (() -> Void)? = nil, afterStep: ((Int, Optimizer) -> Void)? = nil,
        progress: ((EpochLog) -> Void)? = nil
    ) -> [EpochLog] {
        let optimizer = Self.optimizer(settings)
        for (name, variable) in model.prunableWeights {
            if let mask = masks[name] { optimizer.setMask(mask, for: variable) }
        }
        let parameters = model.parameters.map(\.variable)
        var rng = Philox(seed: seed, stream: 1)
        var logs: [EpochLog] = []
        let stepsPerEpoch = (data.count + settings.batchSize - 1) / max(settings.batchSize, 1)
        let total = stepsPerEpoch * settings.epochs
        var step = 0
        var plateau = PlateauState()
        var plateauScale = 1.0
        model.training = true
        model.dropoutSeed = seed
        // One tape, one input Variable and one batch buffer for every step, and the graph keeps
        // its steps between them: the loop allocates no output, gradient or closure per op.
        let keptSteps = model.keepsTrainingSteps
        model.keepsTrainingSteps = true
        defer {
            model.training = false
            model.keepsTrainingSteps = keptSteps
        }
        let tape = Tape()
        var feeds: [Value] = []
        var labels: [Int32] = []
        var targets = Tensor(zeros: [0])
        let crossEntropy = CrossEntropyLoss(labelSmoothing: Float(settings.labelSmoothing))
        for epoch in 0..<settings.epochs {
            let order = rng.permutation(data.count)
            var lossSum = 0.0
            var batches = 0
            var start = 0
            while start < data.count {
                let end = min(start + settings.batchSize, data.count)
                data.gather(order[start..<end], into: &feeds, labels: &labels, targets: &targets)
                optimizer.learningRate = Float(rate(settings, epoch: epoch, step: step, total: total) * plateauScale)
                let output = model.forward(feeds, tape: tape, threads: threads)
                var loss = data.targets != nil
                    ? meanSquaredError(output, targets: targets, tape: tape)
                    : crossEntropy(output, labels: labels, tape: tape)
                if let teacher, let distill, data.targets == nil {
                    let t = teacher.predict(feeds, threads: threads)
                    let kd = distillationKL(student: output, teacher: t, temperature: distill.temperature, tape: tape)
                    loss = weightedSum(kd, distill.alpha, loss, 1 - distill.alpha, tape: tape)
                }
                tape.backward(from: loss)
                penalty?()
                optimizer.step(parameters)
                afterStep?(step, optimizer)
                lossSum += Double(loss.value.scalars[0])
                batches += 1
                step += 1
                start = end
                if let progress, start < data.count {
                    progress(EpochLog(epoch: epoch + 1, meanLoss: lossSum / Double(batches), batch: batches, batches: stepsPerEpoch))
                }
            }
            let log = EpochLog(epoch: epoch + 1, meanLoss: lossSum / Double(max(batches, 1)))
            if settings.schedule == .plateau {
                plateauScale = plateau.record(loss: log.meanLoss, factor: settings.gamma, patience: settings.patience)
            }
            logs.append(log)
            progress?(log)
        }
        return logs
    }
}
