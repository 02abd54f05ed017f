/// Inputs and what to predict: class labels (classification) or target values (regression).
/// `inputs` `(N, …)`; `labels` `(N)`, or `targets` `(N, outputs)` with `labels` empty.
public struct LabeledData: Sendable {
    public let inputs: Tensor
    public let labels: [Int32]
    public let targets: Tensor?

    public init(inputs: Tensor, labels: [Int32]) {
        precondition(inputs.shape.first == labels.count,
                     "inputs \(inputs.shape) do not fit \(labels.count) labels")
        self.inputs = inputs
        self.labels = labels
        self.targets = nil
    }

    public init(inputs: Tensor, targets: Tensor) {
        precondition(inputs.shape.first == targets.shape.first && targets.shape.count == 2,
                     "inputs \(inputs.shape) do not fit targets \(targets.shape)")
        self.inputs = inputs
        self.labels = []
        self.targets = targets
    }

    public var count: Int { inputs.shape.first ?? 0 }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledData {
        if let targets { return LabeledData(inputs: inputs.gatherRows(indices), targets: targets.gatherRows(indices)) }
        return LabeledData(inputs: inputs.gatherRows(indices), labels: indices.map { labels[$0] })
    }
}
