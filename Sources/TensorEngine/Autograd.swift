/// A tensor in a computation, with its gradient once `Tape.backward` has run.
public final class Variable {
    /// The forward value.
    public internal(set) var value: Tensor
    /// ∂loss/∂value, accumulated by backward; zeros until then.
    public internal(set) var grad: Tensor?
    /// Whether gradients flow into this variable.
    public let requiresGrad: Bool

    public init(_ value: Tensor, requiresGrad: Bool = false) {
        self.value = value
        self.requiresGrad = requiresGrad
    }

    /// Runs `body` on the gradient buffer, creating it (zeros) on first use.
    public func accumulateGrad(_ body: (UnsafeMutablePointer<Float>) -> Void) {
        if grad == nil {
            if var spare = spareGrad, spare.shape == value.shape {
                // The buffer `zeroGrad` let go of, zeroed again (written in place unless someone
                // still holds the old gradient).
                spareGrad = nil
                spare.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
                grad = spare
            } else {
                grad = Tensor(zeros: value.shape)
            }
        }
        grad!.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    /// Counts in-place updates, so that derived forms (a sparse copy) know when to rebuild.
    public private(set) var version = 0

    /// Replaces the value in place (optimizers, pruning). The shape must stay.
    public func update(_ body: (inout UnsafeMutableBufferPointer<Float>) -> Void) {
        value.withUnsafeMutableBufferPointer(body)
        version += 1
    }

    /// Sets the gradient back to none. Its buffer is kept for the next `accumulateGrad`: a
    /// training step then does not allocate (and zero) a new one per parameter (LeNet-300-100's
    /// fc1 gradient is 940 KB).
    public func zeroGrad() {
        if let grad { spareGrad = grad }
        grad = nil
    }

    private var spareGrad: Tensor?
}

/// One graph node's backward step, kept by the graph between training runs (see
/// `Graph.keepsTrainingSteps`): the node's output Variable, the inputs it was made for, and the
/// closure that turns ∂loss/∂output into the inputs' gradients. The closure reads every value at
/// backward time and captures nothing that depends on the run but the input Variables, so a
/// later run with the same inputs of the same shapes records it again instead of a new one.
final class NodeStep {
    /// The node's output: its value and gradient buffers are written again by a reusing run.
    var output: Variable
    /// The float inputs, by identity (nil where the node had no such input).
    let inputs: [Variable?]
    /// Their shapes when the step was made.
    let shapes: [[Int]]
    /// The thread count of the run that made it (its closure runs with it).
    let threads: Int
    let back: (Tensor) -> Void
    /// What the op keeps for a reusing run to write again and the closure to read (a max
    /// pool's argmax).
    var state: AnyObject?
    /// After backward, let go of the output's value: a reshape's output shares its input's
    /// storage, which the producer writes again on the next run (in place only when unique).
    let dropsValue: Bool

    init(output: Variable, inputs: [Variable?], threads: Int, dropsValue: Bool, back: @escaping (Tensor) -> Void) {
        self.output = output
        self.threads = threads
        self.inputs = inputs
        self.shapes = inputs.map { $0?.value.shape ?? [] }
        self.dropsValue = dropsValue
        self.back = back
    }

    func run() {
        if let dy = output.grad { back(dy) }
        if dropsValue { output.value = .placeholder }
    }
}

/// Records the backward step of every op run with it; `backward` replays them in reverse.
/// A tape can serve one training step after another: `backward` clears it and keeps its
/// storage.
public final class Tape {
    enum Step {
        case closure(() -> Void)
        case node(NodeStep)
    }

    private var steps: [Step] = []

    public init() {}

    /// Appends the backward step of an op just run.
    public func record(_ step: @escaping () -> Void) { steps.append(.closure(step)) }

    /// Appends a graph node's kept step.
    func record(_ step: NodeStep) { steps.append(.node(step)) }

    /// Back-propagates from a scalar `loss`: seeds ∂loss/∂loss = 1, runs the steps in reverse
    /// order and clears the tape.
    public func backward(from loss: Variable) {
        precondition(loss.value.count == 1, "backward needs a scalar loss, got shape \(loss.value.shape)")
        loss.accumulateGrad { $0[0] += 1 }
        replay()
    }

    /// A vector-Jacobian product: seeds ∂/∂output = `seed` (same shape as the output), runs
    /// the steps in reverse order and clears the tape. Relevance propagation uses it.
    public func backward(from output: Variable, seed: Tensor) {
        precondition(seed.shape == output.value.shape, "backward seed \(seed.shape) for output \(output.value.shape)")
        seed.withUnsafeBufferPointer { s in output.accumulateGrad { g in for i in 0..<s.count { g[i] += s[i] } } }
        replay()
    }

    private func replay() {
        for step in steps.reversed() {
            switch step {
            case .closure(let run): run()
            case .node(let node): node.run()
            }
        }
        steps.removeAll(keepingCapacity: true)
    }
}
