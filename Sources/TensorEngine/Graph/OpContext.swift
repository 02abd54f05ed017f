import Kernels

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
    /// The node's op, nil when the registry has none (running it then fails with the op's name).
    let op: OpDefinition?
    let inputs: [Value?]
    let tape: Tape?
    let threads: Int
    /// Apply the next node's ReLU to this Conv's or Gemm's output (`Graph.reluFused`).
    var fuseRelu = false
    /// The Clip or SiLU after this Conv, applied to its output at inference (`Graph.convEpilogues`).
    var epilogue: ConvEpilogue? = nil

    /// A Conv's output block after its bias: the fused ReLU, Clip or SiLU, while it is in cache.
    static func finish(_ p: UnsafeMutablePointer<Float>, count: Int, relu: Bool, epilogue: ConvEpilogue?) {
        if relu { reluForward(p, count: count, out: p) }
        switch epilogue {
        case .clip(let lo, let hi)?: clipForward(p, count: count, lo: lo, hi: hi)
        case .silu?: siluForward(p, count: count)
        case nil: break
        }
    }
    /// The node's step from the last training run, when this run may record it again
    /// (`Graph.keepsTrainingSteps`); its output's buffer is this run's output buffer.
    var reusable: NodeStep? = nil

    func fail(_ message: String) -> GraphError { GraphError(node: node.name, op: node.opType, message) }

    /// The element count of an output of `shape`, or this node's error when it (with an index
    /// map of 8 bytes an element, as the movement ops build) would exceed the tensor cap
    /// (`AllocationLimit`): checked before anything is allocated.
    func checkedCount(_ shape: [Int], bytesPerElement: Int = 8) throws -> Int {
        guard let n = AllocationLimit.count(shape, bytesPerElement: bytesPerElement) else {
            throw fail(AllocationLimit.problem(shape, bytesPerElement: bytesPerElement))
        }
        return n
    }

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

    /// Runs the node's op (`OpRegistry`).
    func execute() throws -> NodeOutputs {
        guard let op else { throw fail("op '\(node.opType)' is not supported (opset \(graph.opset))") }
        return try op.run(self)
    }
}
