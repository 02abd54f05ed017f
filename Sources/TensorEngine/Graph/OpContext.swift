import Kernels

/// The ops a graph can run, by ONNX op type. Everything else is rejected at import with the
/// node's name, the op and the opset.
public let supportedOps: Set<String> = [
    "Gemm", "MatMul", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "LayerNormalization", "Dropout",
    "Relu", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Clip", "Exp", "Log",
    "Sqrt", "Pow", "Erf", "Abs", "Neg", "Reciprocal",
    "Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean",
    "Reshape", "Flatten", "Transpose", "Concat", "Slice", "Pad", "Gather", "Squeeze", "Unsqueeze",
    "Identity", "Shape", "Constant", "Cast",
    "ReduceSum", "ReduceMean", "ReduceMax", "ArgMax",
]

/// An op type resolved once per graph (a run switches on this, not on strings).
enum OpKind {
    case identity, constant, shape, cast, relu, unary, clip, binary, variadic, softmax, logSoftmax, reshapeLike, transpose
    case concat, slice, pad, gather, reduce, argMax, gemm, matMul, conv, pool, batchNorm, layerNorm, dropout, unsupported

    init(opType: String) {
        switch opType {
        case "Identity": self = .identity
        case "Constant": self = .constant
        case "Shape": self = .shape
        case "Cast": self = .cast
        case "Relu": self = .relu
        case "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Abs", "Neg", "Reciprocal": self = .unary
        case "Clip": self = .clip
        case "Add", "Sub", "Mul", "Div", "Pow": self = .binary
        case "Sum", "Max", "Min", "Mean": self = .variadic
        case "Softmax": self = .softmax
        case "LogSoftmax": self = .logSoftmax
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze": self = .reshapeLike
        case "Transpose": self = .transpose
        case "Concat": self = .concat
        case "Slice": self = .slice
        case "Pad": self = .pad
        case "Gather": self = .gather
        case "ReduceSum", "ReduceMean", "ReduceMax": self = .reduce
        case "ArgMax": self = .argMax
        case "Gemm": self = .gemm
        case "MatMul": self = .matMul
        case "Conv": self = .conv
        case "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool": self = .pool
        case "BatchNormalization": self = .batchNorm
        case "LayerNormalization": self = .layerNorm
        case "Dropout": self = .dropout
        default: self = .unsupported
        }
    }

    /// Whether the op keeps its backward step between training runs (`Graph.keepsTrainingSteps`):
    /// its backward closure captures only its input Variables and what their shapes and the
    /// node's attributes determine, and it makes a new output Variable.
    var keepsTrainingStep: Bool {
        switch self {
        case .gemm, .conv, .pool, .relu, .reshapeLike: return true
        default: return false
        }
    }
}

/// A node's outputs. Most nodes have one, and a one-element array would cost an allocation
/// per node and run.
struct NodeOutputs {
    let first: Value
    let rest: [Value]
    init(_ value: Value) { first = value; rest = [] }
    init(all values: [Value]) {
        precondition(!values.isEmpty, "an op returned no outputs")
        first = values[0]
        rest = Array(values.dropFirst())
    }
    var count: Int { 1 + rest.count }
    subscript(k: Int) -> Value { k == 0 ? first : rest[k - 1] }
}

/// One node's execution: its inputs, attributes and the tape. Every op throws `GraphError`
/// for what a file could get wrong (shapes, attributes), before any kernel runs.
struct OpContext {
    let graph: Graph
    let index: Int
    /// The node (read from the graph on use: copying its five arrays and strings into every
    /// context cost a retain and a release each per node and run).
    var node: Node { graph.nodes[index] }
    let kind: OpKind
    let inputs: [Value?]
    let tape: Tape?
    let threads: Int
    /// Apply the next node's ReLU to this Conv's or Gemm's output (`Graph.reluFused`).
    var fuseRelu = false
    /// The node's step from the last training run, when this run may record it again
    /// (`Graph.keepsTrainingSteps`); its output's buffer is this run's output buffer.
    var reusable: NodeStep? = nil

    func fail(_ message: String) -> GraphError { GraphError(node: node.name, op: node.opType, message) }

    // MARK: inputs

    func has(_ i: Int) -> Bool { i < inputs.count && inputs[i] != nil }

    func value(_ i: Int) throws -> Value {
        guard i < inputs.count, let v = inputs[i] else { throw fail("input \(i) is required") }
        return v
    }

    func float(_ i: Int) throws -> Variable {
        let v = try value(i)
        guard case .float(let x) = v else { throw fail("input \(i) ('\(node.inputs[i])') must be float32, found \(v.dtype.rawValue)") }
        return x
    }

    func ints(_ i: Int) throws -> IntTensor {
        let v = try value(i)
        guard case .int64(let x) = v else { throw fail("input \(i) ('\(node.inputs[i])') must be int64, found \(v.dtype.rawValue)") }
        return x
    }

    func optionalInts(_ i: Int) throws -> [Int]? {
        guard has(i) else { return nil }
        return try ints(i).data.map { Int($0) }
    }

    /// A float scalar input (a 0-d or one-element tensor), or nil when absent.
    func optionalScalar(_ i: Int) throws -> Float? {
        guard has(i) else { return nil }
        let v = try float(i).value
        guard v.count == 1 else { throw fail("input \(i) must be a scalar, found shape \(v.shape)") }
        return v.scalars[0]
    }

    // MARK: attributes

    func int(_ name: String, _ defaultValue: Int) throws -> Int {
        guard let a = node.attributes[name] else { return defaultValue }
        guard case .int(let v) = a else { throw fail("attribute '\(name)' must be an int") }
        return v
    }

    func float(_ name: String, _ defaultValue: Float) throws -> Float {
        guard let a = node.attributes[name] else { return defaultValue }
        switch a {
        case .float(let v): return v
        case .int(let v): return Float(v)
        default: throw fail("attribute '\(name)' must be a float")
        }
    }

    func ints(_ name: String) throws -> [Int]? {
        guard let a = node.attributes[name] else { return nil }
        switch a {
        case .ints(let v): return v
        case .int(let v): return [v]
        default: throw fail("attribute '\(name)' must be a list of ints")
        }
    }

    func string(_ name: String, _ defaultValue: String) throws -> String {
        guard let a = node.attributes[name] else { return defaultValue }
        guard case .string(let v) = a else { throw fail("attribute '\(name)' must be a string") }
        return v
    }

    func axis(_ a: Int, rank: Int) throws -> Int {
        guard let n = normalizeAxis(a, rank: rank) else { throw fail("axis \(a) is out of range for rank \(rank)") }
        return n
    }

    // MARK: differentiable outputs

    /// Wraps `y` as the op's output; when recording and a parent needs a gradient, `back`
    /// runs in the backward pass with ∂loss/∂y.
    func emit(_ y: Tensor, parents: [Variable], _ back: @escaping (Tensor) -> Void) -> Value {
        if tape == nil { return inferenceValue(y, requiresGrad: parents.contains { $0.requiresGrad }) }
        let out = Variable(y, requiresGrad: parents.contains { $0.requiresGrad })
        if let tape, out.requiresGrad {
            tape.record {
                guard let dy = out.grad else { return }
                back(dy)
            }
        }
        return .float(out)
    }

    /// For an op whose step a training run keeps (`OpKind.keepsTrainingStep`): `y` as the
    /// output of the step `reusable` (its old gradient kept as the buffer of the new one), which
    /// the tape records again. Nil when there is no such step: the op then emits as usual.
    func reuse(_ y: Tensor) -> Value? {
        guard let step = reusable, let tape else { return nil }
        step.output.value = y
        step.output.zeroGrad()
        tape.record(step)
        return .float(step.output)
    }

    /// `emit` for an op whose step a training run keeps: the backward step is a `NodeStep` over
    /// the node's float inputs, which the graph keeps while `keepsTrainingSteps`. `dropsValue`:
    /// the output shares its input's storage (a reshape). `state`: what the closure reads that
    /// a reusing run writes again (`NodeStep.state`).
    func emitKept(_ y: Tensor, dropsValue: Bool = false, state: AnyObject? = nil, _ back: @escaping (Tensor) -> Void) -> Value {
        let inputs = floatInputs
        let requiresGrad = inputs.contains { $0?.requiresGrad == true }
        guard let tape else { return inferenceValue(y, requiresGrad: requiresGrad) }
        let out = Variable(y, requiresGrad: requiresGrad)
        let keeps = graph.keepsTrainingSteps
        guard requiresGrad || keeps else { return .float(out) }
        // NOTE: kept without a gradient too (a Flatten of the input): the next node's step is
        // reused only for the same input Variable, and the tape replays it to drop a view.
        let step = NodeStep(output: out, inputs: inputs, threads: threads, dropsValue: keeps && dropsValue && !graph.outputEscapes[index], back: back)
        step.state = state
        if keeps { graph.trainingSteps[index] = step }
        tape.record(step)
        return .float(out)
    }

    /// The node's float inputs for `emitKept` (nil where absent or not float).
    var floatInputs: [Variable?] {
        inputs.map { if case .float(let v)? = $0 { return v } else { return nil } }
    }

    // MARK: output buffers

    /// A tensor of `shape` for this node's output, every element of which the op writes. At
    /// inference it is the buffer of the node's previous output when nothing else holds that
    /// output any more (the Variable is unique; if its storage is not, writing copies it); in
    /// training, the buffer of the step it reuses.
    func outputBuffer(_ shape: [Int]) -> Tensor {
        tape == nil ? graph.outputBuffer(node: index, shape) : keptBuffer { $0.shape == shape } ?? Tensor(uninitialized: shape)
    }

    /// `outputBuffer(_:)` for a (rows, cols) output, without building the shape when the kept
    /// buffer has it.
    func outputBuffer(rows: Int, cols: Int) -> Tensor {
        if tape == nil { return graph.outputBuffer(node: index, rows: rows, cols: cols) }
        return keptBuffer { $0.shape.count == 2 && $0.shape[0] == rows && $0.shape[1] == cols } ?? Tensor(uninitialized: [rows, cols])
    }

    /// `outputBuffer(_:)` for an (n, c, spatial…) output.
    func outputBuffer(n: Int, c: Int, spatial: [Int]) -> Tensor {
        if tape == nil { return graph.outputBuffer(node: index, n: n, c: c, spatial: spatial) }
        return keptBuffer { t in
            t.shape.count == spatial.count + 2 && t.shape[0] == n && t.shape[1] == c && t.shape[2...].elementsEqual(spatial)
        } ?? Tensor(uninitialized: [n, c] + spatial)
    }

    /// The output value of the step this run reuses, taken out of its Variable, when `fits`.
    private func keptBuffer(where fits: (Tensor) -> Bool) -> Tensor? {
        guard let step = reusable, fits(step.output.value) else { return nil }
        let t = step.output.value
        step.output.value = .placeholder
        return t
    }

    /// An inference output as a value, in the node's previous output Variable when nothing
    /// else holds it.
    func inferenceValue(_ y: Tensor, requiresGrad: Bool) -> Value { graph.inferenceValue(node: index, y, requiresGrad: requiresGrad) }

    // MARK: dispatch

    func execute() throws -> NodeOutputs {
        switch kind {
        case .identity: return NodeOutputs(try value(0))
        case .constant: return NodeOutputs(try constant())
        case .shape: return NodeOutputs(try shape())
        case .cast: return NodeOutputs(try cast())
        case .relu: return NodeOutputs(try reluOp())
        case .unary: return NodeOutputs(try unary())
        case .clip: return NodeOutputs(try clip())
        case .binary: return NodeOutputs(try binary(node.opType, try value(0), try value(1)))
        case .variadic: return NodeOutputs(try variadic())
        case .softmax: return NodeOutputs(try softmax(log: false))
        case .logSoftmax: return NodeOutputs(try softmax(log: true))
        case .reshapeLike: return NodeOutputs(try reshapeLike())
        case .transpose: return NodeOutputs(try transpose())
        case .concat: return NodeOutputs(try concat())
        case .slice: return NodeOutputs(try slice())
        case .pad: return NodeOutputs(try pad())
        case .gather: return NodeOutputs(try gather())
        case .reduce: return NodeOutputs(try reduce())
        case .argMax: return NodeOutputs(try argMax())
        case .gemm: return NodeOutputs(try gemmOp())
        case .matMul: return NodeOutputs(try matMul())
        case .conv: return NodeOutputs(try conv())
        case .pool: return try pool()
        case .batchNorm: return NodeOutputs(try batchNorm())
        case .layerNorm: return NodeOutputs(all: try layerNorm())
        case .dropout: return NodeOutputs(all: try dropout())
        case .unsupported: throw fail("op '\(node.opType)' is not supported (opset \(graph.opset))")
        }
    }

    // MARK: constants and types

    func constant() throws -> Value {
        if case .tensor(let t)? = node.attributes["value"] { return t.value() }
        if case .float(let f)? = node.attributes["value_float"] { return .constant(Tensor(shape: [], scalars: [f])) }
        if case .floats(let f)? = node.attributes["value_floats"] { return .constant(Tensor(shape: [f.count], scalars: f)) }
        if case .int(let i)? = node.attributes["value_int"] { return .int64(IntTensor(shape: [], data: [Int64(i)])) }
        if case .ints(let i)? = node.attributes["value_ints"] { return .int64(IntTensor(shape: [i.count], data: i.map { Int64($0) })) }
        throw fail("needs one of the attributes value, value_float(s), value_int(s)")
    }

    func shape() throws -> Value {
        let s = try value(0).shape
        let r = s.count
        func clampAxis(_ a: Int) -> Int { min(max(a < 0 ? a + r : a, 0), r) }
        let start = clampAxis(try int("start", 0))
        let end = clampAxis(try int("end", r))
        let dims = start < end ? Array(s[start..<end]) : []
        return .int64(IntTensor(shape: [dims.count], data: dims.map { Int64($0) }))
    }

    func cast() throws -> Value {
        let to = try int("to", 1)
        let v = try value(0)
        // ONNX TensorProto.DataType: FLOAT 1, INT64 7, BOOL 9.
        switch (v, to) {
        case (.float(let x), 1): return .float(x)
        case (.float(let x), 7): return .int64(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0.isFinite ? Int64($0.rounded(.towardZero)) : 0 }))
        case (.float(let x), 9): return .bool(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0 != 0 ? 1 : 0 }))
        case (.int64(let t), 1), (.bool(let t), 1): return .constant(Tensor(shape: t.shape, scalars: t.data.map { Float($0) }))
        case (.int64(let t), 7), (.bool(let t), 7): return .int64(t)
        case (.int64(let t), 9), (.bool(let t), 9): return .bool(IntTensor(shape: t.shape, data: t.data.map { $0 != 0 ? 1 : 0 }))
        default: throw fail("cast to data type \(to) is not supported (float32 = 1, int64 = 7, bool = 9)")
        }
    }
}
