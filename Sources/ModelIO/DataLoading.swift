import TensorEngine

/// Where one split of a data set is in an `.npz` file: `[inputs, labels]` (the list form, for
/// a model of one input), or the array of each graph input by name plus optional labels (the
/// mapping form: `{input_ids: ids_test, attention_mask: mask_test, labels: y_test}`).
public struct SplitSource: Sendable, Equatable {
    /// The list form's inputs array ("" in the mapping form).
    public var inputs: String
    /// The labels' (or targets') array; nil when the split gives none.
    public var labels: String?
    /// The mapping form's arrays by graph input (a graph input not named here reads the array
    /// of its own name); nil for the list form.
    public var arrays: [String: String]?

    public init(inputs: String, labels: String) {
        self.inputs = inputs
        self.labels = labels
    }

    public init(arrays: [String: String], labels: String?) {
        self.inputs = ""
        self.arrays = arrays
        self.labels = labels
    }

    /// How the split is written in the config.
    public var text: String {
        guard let arrays else { return "[\(inputs), \(labels ?? "")]" }
        let items = arrays.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" } + (labels.map { ["labels: \($0)"] } ?? [])
        return "{" + items.joined(separator: ", ") + "}"
    }
}

public enum DataLoading {
    /// Loads one split from an `.npz` file: inputs converted to float32 and multiplied by
    /// `scale`, labels checked to be integers in 0..<classes.
    public static func loadSplit(
        path: String, split: SplitSource, scale: Float, classes: Int, limits: IOLimits = .default
    ) throws -> LabeledData {
        let labelName = split.labels ?? ""
        let arrays = try ArrayFiles.read(path: path, names: [split.inputs, labelName], limits: limits)
        let x = arrays[split.inputs]!, y = arrays[labelName]!
        guard let labels = y.integers() else {
            throw ModelIOError(file: path, "array '\(labelName)' holds \(y.dtype) values, labels must be integers")
        }
        guard y.shape.count == 1 else {
            throw ModelIOError(file: path, "array '\(labelName)' has shape \(y.shape), labels must be 1-D")
        }
        guard x.shape.first == labels.count else {
            throw ModelIOError(file: path, "array '\(split.inputs)' has \(x.shape.first ?? 0) rows but '\(labelName)' has \(labels.count) labels")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || $0 >= Int64(classes) }) {
            throw ModelIOError(file: path, "array '\(labelName)'[\(bad)] = \(labels[bad]) is not a class index in 0..<\(classes)")
        }
        var values = x.floats()
        if scale != 1 { for i in values.indices { values[i] *= scale } }
        return LabeledData(inputs: Tensor(shape: x.shape, scalars: values), labels: labels.map { Int32($0) })
    }

    /// Loads one split for regression: inputs and targets (1-D targets become one column),
    /// both converted to float32; inputs multiplied by `scale`.
    public static func loadRegressionSplit(path: String, split: SplitSource, scale: Float, limits: IOLimits = .default) throws -> LabeledData {
        let labelName = split.labels ?? ""
        let arrays = try ArrayFiles.read(path: path, names: [split.inputs, labelName], limits: limits)
        let x = arrays[split.inputs]!, y = arrays[labelName]!
        guard y.shape.count == 1 || y.shape.count == 2 else {
            throw ModelIOError(file: path, "array '\(labelName)' has shape \(y.shape), regression targets must be 1-D or 2-D")
        }
        guard x.shape.first == y.shape.first else {
            throw ModelIOError(file: path, "array '\(split.inputs)' has \(x.shape.first ?? 0) rows but '\(labelName)' has \(y.shape.first ?? 0)")
        }
        let targets = y.floats()
        if let bad = targets.firstIndex(where: { !$0.isFinite }) {
            throw ModelIOError(file: path, "array '\(labelName)'[\(bad)] is not a finite number")
        }
        var values = x.floats()
        if scale != 1 { for i in values.indices { values[i] *= scale } }
        let columns = y.shape.count == 2 ? y.shape[1] : 1
        return LabeledData(inputs: Tensor(shape: x.shape, scalars: values), targets: Tensor(shape: [y.shape[0], columns], scalars: targets))
    }
}
