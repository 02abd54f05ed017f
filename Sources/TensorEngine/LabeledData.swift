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

    /// The examples at `indices`, in that order, written into `inputs` and `labels` (or
    /// `targets`), whose buffers are written again when the batch has their size: a training
    /// loop's batches then allocate nothing.
    public func gather(_ indices: ArraySlice<Int>, into inputs: Variable, labels: inout [Int32], targets: inout Tensor) {
        Self.gatherRows(of: self.inputs, indices, into: &inputs.value)
        if let t = self.targets {
            Self.gatherRows(of: t, indices, into: &targets)
        } else {
            labels.removeAll(keepingCapacity: true)
            for i in indices { labels.append(self.labels[i]) }
        }
    }

    /// Rows `indices` of `source` into `out`, reshaped (and made anew) only when its shape differs.
    private static func gatherRows(of source: Tensor, _ indices: ArraySlice<Int>, into out: inout Tensor) {
        let s = source.shape, o = out.shape
        if !(o.count == s.count && o.first == indices.count && o.dropFirst().elementsEqual(s.dropFirst())) {
            out = Tensor(uninitialized: [indices.count] + s.dropFirst())
        }
        let inner = s.dropFirst().reduce(1, *)
        source.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (r, i) in indices.enumerated() {
                    precondition(i >= 0 && i < s[0], "row \(i) out of bounds for shape \(s)")
                    (dst.baseAddress! + r * inner).update(from: src.baseAddress! + i * inner, count: inner)
                }
            }
        }
    }

    /// The examples at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledData {
        if let targets { return LabeledData(inputs: inputs.gatherRows(indices), targets: targets.gatherRows(indices)) }
        return LabeledData(inputs: inputs.gatherRows(indices), labels: indices.map { labels[$0] })
    }
}
