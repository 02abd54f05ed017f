/// Stochastic gradient descent with momentum, PyTorch semantics (dampening 0):
/// v ← μ·v + g;  p ← p − lr·v.
///
/// Parameters with a mask keep masked entries at exactly zero: the gradient is masked before
/// it enters the velocity, and masked parameters are set to +0 after the step.
public final class SGD {
    public var learningRate: Float
    public let momentum: Float
    private var velocity: [ObjectIdentifier: [Float]] = [:]
    private var masks: [ObjectIdentifier: [Float]] = [:]

    public init(learningRate: Float, momentum: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
    }

    /// Keeps `parameter` zero wherever `mask` is 0 (mask entries are 0 or 1).
    public func setMask(_ mask: [Float], for parameter: Variable) {
        precondition(mask.count == parameter.value.count,
                     "mask of \(mask.count) for parameter of shape \(parameter.value.shape)")
        masks[ObjectIdentifier(parameter)] = mask
    }

    /// One update of every parameter that has a gradient; gradients are cleared.
    public func step(_ parameters: [Variable]) {
        for p in parameters {
            guard var g = p.grad else { continue }
            let id = ObjectIdentifier(p)
            let mask = masks[id]
            var v = velocity[id] ?? [Float](repeating: 0, count: p.value.count)
            let lr = learningRate, mu = momentum
            g.withUnsafeMutableBufferPointer { gp in
                if let mask { for i in 0..<gp.count where mask[i] == 0 { gp[i] = 0 } }
                v.withUnsafeMutableBufferPointer { vp in
                    p.update { w in
                        for i in 0..<w.count {
                            vp[i] = mu * vp[i] + gp[i]
                            w[i] -= lr * vp[i]
                        }
                        if let mask { for i in 0..<w.count where mask[i] == 0 { w[i] = 0 } }
                    }
                }
            }
            velocity[id] = v
            p.zeroGrad()
        }
    }
}
