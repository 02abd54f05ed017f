/// Builds a single-input, single-output graph layer by layer (the layer-list loader and tests).
/// Each layer's output is named after the layer; parameters are named `<layer>.weight` and
/// `<layer>.bias` unless given, like PyTorch's `state_dict`.
public struct GraphBuilder {
    public private(set) var nodes: [Node] = []
    public private(set) var initializers: [(String, TensorData)] = []
    private var current: String
    private let input: GraphInput
    public var opset = 17

    /// `inputShape` without the batch dimension.
    public init(inputShape: [Int], inputName: String = "input") {
        input = GraphInput(name: inputName, dtype: .float32, shape: [nil] + inputShape.map { Optional($0) })
        current = inputName
    }

    /// The name of the value the next layer reads.
    public var output: String { current }

    public mutating func add(_ name: String, _ opType: String, extraInputs: [String] = [], attributes: [String: Attribute] = [:]) {
        let out = name
        nodes.append(Node(name: name, opType: opType, inputs: [current] + extraInputs, outputs: [out], attributes: attributes))
        current = out
    }

    public mutating func constant(_ name: String, _ data: TensorData) -> String {
        initializers.append((name, data))
        return name
    }

    /// y = x · Wᵀ + b with W `(out, in)` (a Gemm with transB = 1).
    public mutating func linear(_ name: String, weight: Tensor, bias: Tensor?, weightKey: String? = nil, biasKey: String? = nil) {
        precondition(weight.shape.count == 2, "linear \(name): weight must be 2-D, got \(weight.shape)")
        if let bias { precondition(bias.shape == [weight.shape[0]], "linear \(name): bias \(bias.shape) for weight \(weight.shape)") }
        var extra = [constant(weightKey ?? name + ".weight", .float(weight))]
        if let bias { extra.append(constant(biasKey ?? name + ".bias", .float(bias))) }
        add(name, "Gemm", extraInputs: extra, attributes: ["transB": .int(1)])
    }

    /// Conv with PyTorch's hyper-parameters (symmetric padding).
    public mutating func conv(_ name: String, weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int], dilation: [Int], groups: Int,
                              weightKey: String? = nil, biasKey: String? = nil) {
        var extra = [constant(weightKey ?? name + ".weight", .float(weight))]
        if let bias { extra.append(constant(biasKey ?? name + ".bias", .float(bias))) }
        add(name, "Conv", extraInputs: extra, attributes: [
            "kernel_shape": .ints(Array(weight.shape[2...])), "strides": .ints(stride), "pads": .ints(padding + padding),
            "dilations": .ints(dilation), "group": .int(groups),
        ])
    }

    public mutating func relu(_ name: String) { add(name, "Relu") }

    /// Flattens every dimension after the batch into one.
    public mutating func flatten(_ name: String) { add(name, "Flatten", attributes: ["axis": .int(1)]) }

    /// Reshapes to (batch, shape…).
    public mutating func reshape(_ name: String, to shape: [Int]) {
        let s = constant(name + ".shape", .int64(IntTensor(shape: [shape.count + 1], data: [-1] + shape.map { Int64($0) })))
        add(name, "Reshape", extraInputs: [s])
    }

    public mutating func maxPool(_ name: String, kernel: [Int], stride: [Int], padding: [Int], dilation: [Int], ceil: Bool) {
        add(name, "MaxPool", attributes: [
            "kernel_shape": .ints(kernel), "strides": .ints(stride), "pads": .ints(padding + padding),
            "dilations": .ints(dilation), "ceil_mode": .int(ceil ? 1 : 0),
        ])
    }

    public func build() -> Graph {
        Graph(nodes: nodes, inputs: [input], outputs: [current], initializers: initializers, opset: opset)
    }
}
