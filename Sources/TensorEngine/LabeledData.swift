/// One array of examples for one graph input, batch first: pixels, token ids, attention masks.
public enum FeatureArray: Sendable, Equatable {
    case float(Tensor)
    case int64(IntTensor)
    case bool(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): return t.shape
        case .int64(let t), .bool(let t): return t.shape
        }
    }

    /// The number of examples (the first dimension).
    public var count: Int { shape.first ?? 0 }

    /// The graph value of these examples.
    public var value: Value {
        switch self {
        case .float(let t): return .float(Variable(t))
        case .int64(let t): return .int64(t)
        case .bool(let t): return .bool(t)
        }
    }

    /// A graph value of the same kind as `v`.
    public init(_ v: Value) {
        switch v {
        case .float(let x): self = .float(x.value)
        case .int64(let t): self = .int64(t)
        case .bool(let t): self = .bool(t)
        }
    }

    /// The examples at `indices`, in that order.
    public func gatherRows(_ indices: [Int]) -> FeatureArray {
        switch self {
        case .float(let t): return .float(t.gatherRows(indices))
        case .int64(let t): return .int64(t.gatherRows(indices))
        case .bool(let t): return .bool(t.gatherRows(indices))
        }
    }

    /// Examples `range`.
    public func rows(_ range: Range<Int>) -> FeatureArray { gatherRows(Array(range)) }
}

extension IntTensor {
    /// Rows at `indices` of the outermost dimension, in that order.
    public func gatherRows<C: Collection>(_ indices: C) -> IntTensor where C.Element == Int {
        let inner = shape.dropFirst().reduce(1, *)
        var out: [Int64] = []
        out.reserveCapacity(indices.count * inner)
        for i in indices {
            precondition(i >= 0 && i < shape[0], "row \(i) out of bounds for shape \(shape)")
            out += data[(i * inner)..<((i + 1) * inner)]
        }
        return IntTensor(shape: [indices.count] + shape.dropFirst(), data: out)
    }
}

/// Examples and what to predict. `features` holds one array per graph input, in the graph's
/// input order, each batch first. What to predict is one of: class labels (`labels` with one
/// label per example), per-position token labels (`labelsPerExample` > 1: a language model's
/// next tokens, -100 where nothing is predicted), targets (`targets`, batch first: regression
/// values, or the dense model's outputs an embedding model is fine-tuned to keep), or nothing.
public struct LabeledData: Sendable {
    public let features: [FeatureArray]
    /// `count × labelsPerExample` labels, or none.
    public let labels: [Int32]
    public let labelsPerExample: Int
    public let targets: Tensor?

    /// Labels that mark positions without a prediction (Hugging Face's `ignore_index`).
    public static let ignoredLabel: Int32 = -100

    public init(inputs: Tensor, labels: [Int32]) {
        self.init(features: [.float(inputs)], labels: labels)
    }

    public init(inputs: Tensor, targets: Tensor) {
        self.init(features: [.float(inputs)], targets: targets)
    }

    /// `labels` holds `labelsPerExample` labels per example (1: one class each).
    public init(features: [FeatureArray], labels: [Int32], labelsPerExample: Int = 1) {
        let n = features.first?.count ?? 0
        precondition(features.allSatisfy { $0.count == n } && labels.count == n * labelsPerExample,
                     "features \(features.map(\.shape)) do not fit \(labels.count) labels (\(labelsPerExample) per example)")
        self.features = features
        self.labels = labels
        self.labelsPerExample = labelsPerExample
        self.targets = nil
    }

    public init(features: [FeatureArray], targets: Tensor?) {
        let n = features.first?.count ?? 0
        precondition(features.allSatisfy { $0.count == n } && (targets == nil || targets!.shape.first == n),
                     "features \(features.map(\.shape)) do not fit targets \(targets?.shape ?? [])")
        self.features = features
        self.labels = []
        self.labelsPerExample = 1
        self.targets = targets
    }

    public var count: Int { features.first?.count ?? 0 }

    /// The one float input of a single-input model.
    public var inputs: Tensor {
        guard features.count == 1, case .float(let t) = features[0] else {
            preconditionFailure("a single float input was expected, the data has \(features.map(\.shape))")
        }
        return t
    }

    /// The graph's feeds for all examples.
    public var feeds: [Value] { features.map(\.value) }

    /// The graph's feeds for examples `range`.
    public func feeds(_ range: Range<Int>) -> [Value] { features.map { $0.rows(range).value } }

    /// The same examples with `targets` to predict instead.
    public func with(targets: Tensor) -> LabeledData { LabeledData(features: features, targets: targets) }

    /// The examples at `indices`, in that order, written into `feeds` (one per feature) and
    /// `labels` (or `targets`). A float feature's Variable, and `targets`, are written again
    /// when the batch has their size: a training loop's batches then allocate nothing for them.
    public func gather(_ indices: ArraySlice<Int>, into feeds: inout [Value], labels: inout [Int32], targets: inout Tensor) {
        if feeds.count != features.count { feeds = features.map { _ in .float(Variable(Tensor(zeros: [0]))) } }
        for (k, f) in features.enumerated() {
            switch f {
            case .float(let t):
                if case .float(let v) = feeds[k] { Self.gatherRows(of: t, indices, into: &v.value) } else {
                    feeds[k] = .float(Variable(t.gatherRows(Array(indices))))
                }
            case .int64(let t): feeds[k] = .int64(t.gatherRows(indices))
            case .bool(let t): feeds[k] = .bool(t.gatherRows(indices))
            }
        }
        if let t = self.targets {
            Self.gatherRows(of: t, indices, into: &targets)
        } else {
            labels.removeAll(keepingCapacity: true)
            let per = labelsPerExample
            for i in indices { labels += self.labels[(i * per)..<((i + 1) * per)] }
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
        let f = features.map { $0.gatherRows(indices) }
        if let targets { return LabeledData(features: f, targets: targets.gatherRows(indices)) }
        if labels.isEmpty { return LabeledData(features: f, targets: nil) }
        let per = labelsPerExample
        return LabeledData(features: f, labels: indices.flatMap { labels[($0 * per)..<(($0 + 1) * per)] }, labelsPerExample: per)
    }
}
