/// How to prune one model and how to recover afterwards: the `prune:` section of a model in
/// `prunecheck.yml`.
public struct PruneRecipe: Equatable, Sendable {
    public enum Method: String, CaseIterable, Sendable { case magnitude }
    public enum Scope: String, CaseIterable, Sendable { case global, layer }
    public enum Granularity: String, CaseIterable, Sendable { case unstructured }

    public var method: Method
    public var scope: Scope
    public var granularity: Granularity
    /// Fraction of the prunable weights set to zero, in [0, 1).
    public var sparsity: Double
    /// Fine-tuning after the cut; nil for none.
    public var finetune: FineTuneSettings?

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
        if let f = finetune {
            s += ";finetune(epochs=\(f.epochs);batch_size=\(f.batchSize);optimizer=\(f.optimizer.rawValue);lr=\(f.learningRate);momentum=\(f.momentum))"
        }
        return s
    }
}

/// Fine-tuning settings (`finetune:`).
public struct FineTuneSettings: Equatable, Sendable {
    public enum Optimizer: String, CaseIterable, Sendable { case sgd }
    public var epochs: Int
    public var batchSize: Int
    public var optimizer: Optimizer
    public var learningRate: Double
    public var momentum: Double

    public init(epochs: Int, batchSize: Int = 64, optimizer: Optimizer = .sgd, learningRate: Double = 0.01, momentum: Double = 0.9) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.optimizer = optimizer
        self.learningRate = learningRate
        self.momentum = momentum
    }
}
