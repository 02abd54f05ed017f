import TensorEngine

/// One epoch of fine-tuning: its mean training loss.
public struct EpochLog: Equatable, Sendable {
    public var epoch: Int
    public var meanLoss: Double
}

public enum FineTuning {
    /// Trains `model` on `data` with cross-entropy (classes) or mean squared error (targets) and SGD, keeping `masks` (pruned weights
    /// stay exactly zero). Mini-batches follow one seeded permutation per epoch, so the result
    /// is the same on every run and for every thread count.
    @discardableResult
    public static func run(
        model: Graph, masks: PruningMasks, data: LabeledData, settings: FineTuneSettings,
        seed: UInt64, threads: Int, progress: ((EpochLog) -> Void)? = nil
    ) -> [EpochLog] {
        let optimizer = SGD(learningRate: Float(settings.learningRate), momentum: Float(settings.momentum))
        for (name, variable) in model.prunableWeights {
            if let mask = masks[name] { optimizer.setMask(mask, for: variable) }
        }
        let parameters = model.parameters.map(\.variable)
        var rng = Philox(seed: seed, stream: 1)
        var logs: [EpochLog] = []
        for epoch in 0..<settings.epochs {
            let order = rng.permutation(data.count)
            var lossSum = 0.0
            var batches = 0
            var start = 0
            while start < data.count {
                let end = min(start + settings.batchSize, data.count)
                let batch = data.subset(Array(order[start..<end]))
                let tape = Tape()
                let output = model.forward(Variable(batch.inputs), tape: tape, threads: threads)
                let loss = batch.targets.map { meanSquaredError(output, targets: $0, tape: tape) }
                    ?? softmaxCrossEntropy(output, labels: batch.labels, tape: tape)
                tape.backward(from: loss)
                optimizer.step(parameters)
                lossSum += Double(loss.value.scalars[0])
                batches += 1
                start = end
            }
            let log = EpochLog(epoch: epoch + 1, meanLoss: lossSum / Double(max(batches, 1)))
            logs.append(log)
            progress?(log)
        }
        return logs
    }
}
