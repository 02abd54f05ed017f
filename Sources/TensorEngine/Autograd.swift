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
        spareGrad = grad
        grad = nil
    }

    private var spareGrad: Tensor?
}

/// Records the backward step of every op run with it; `backward` replays them in reverse.
public final class Tape {
    private var steps: [() -> Void] = []

    public init() {}

    /// Appends the backward step of an op just run.
    public func record(_ step: @escaping () -> Void) { steps.append(step) }

    /// Back-propagates from a scalar `loss`: seeds ∂loss/∂loss = 1, runs the steps in reverse
    /// order and clears the tape.
    public func backward(from loss: Variable) {
        precondition(loss.value.count == 1, "backward needs a scalar loss, got shape \(loss.value.shape)")
        loss.accumulateGrad { $0[0] += 1 }
        for step in steps.reversed() { step() }
        steps.removeAll(keepingCapacity: true)
    }

    /// A vector-Jacobian product: seeds ∂/∂output = `seed` (same shape as the output), runs
    /// the steps in reverse order and clears the tape. Relevance propagation uses it.
    public func backward(from output: Variable, seed: Tensor) {
        precondition(seed.shape == output.value.shape, "backward seed \(seed.shape) for output \(output.value.shape)")
        seed.withUnsafeBufferPointer { s in output.accumulateGrad { g in for i in 0..<s.count { g[i] += s[i] } } }
        for step in steps.reversed() { step() }
        steps.removeAll(keepingCapacity: true)
    }
}
