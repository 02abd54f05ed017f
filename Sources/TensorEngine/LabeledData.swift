/// Inputs and class labels for classification: `inputs` `(N, …)`, `labels` `(N)`.
public struct LabeledData: Sendable {
    public let inputs: Tensor
    public let labels: [Int32]

    public init(inputs: Tensor, labels: [Int32]) {
        precondition(inputs.shape.first == labels.count,
                     "inputs \(inputs.shape) do not fit \(labels.count) labels")
        self.inputs = inputs
        self.labels = labels
    }

    public var count: Int { labels.count }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledData {
        LabeledData(inputs: inputs.gatherRows(indices), labels: indices.map { labels[$0] })
    }
}
