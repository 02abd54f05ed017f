/// The update rule of an `Optimizer`, PyTorch semantics.
public enum OptimizerKind: Equatable, Sendable {
    /// v ← μ·v + g (g includes weight decay λ·p); p ← p − lr·v, or with Nesterov
    /// p ← p − lr·(g + μ·v). Dampening 0.
    case sgd(momentum: Float, nesterov: Bool, weightDecay: Float)
    /// Adam (L2 weight decay added to the gradient) or, with `decoupled`, AdamW
    /// (p ← p·(1 − lr·λ) before the Adam step).
    case adam(beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, decoupled: Bool)
}

/// First-order optimizers for the engine's parameters.
///
/// Parameters with a mask keep masked entries at exactly zero: the gradient is masked before it
/// enters any state, and masked parameters are set to +0 after each step. Every loop runs in
/// index order, so a step is bit-identical on every run.
public final class Optimizer {
    public let kind: OptimizerKind
    public var learningRate: Float
    private var first: [ObjectIdentifier: [Float]] = [:]
    private var second: [ObjectIdentifier: [Float]] = [:]
    private var steps: [ObjectIdentifier: Int] = [:]
    private var masks: [ObjectIdentifier: [Float]] = [:]

    public init(_ kind: OptimizerKind, learningRate: Float) {
        self.kind = kind
        self.learningRate = learningRate
    }

    /// Keeps `parameter` zero wherever `mask` is 0 (mask entries are 0 or 1).
    public func setMask(_ mask: [Float], for parameter: Variable) {
        precondition(mask.count == parameter.value.count,
                     "mask of \(mask.count) for parameter of shape \(parameter.value.shape)")
        masks[ObjectIdentifier(parameter)] = mask
    }

    public func removeMasks() { masks.removeAll() }

    /// One update of every parameter that has a gradient; gradients are cleared.
    public func step(_ parameters: [Variable]) {
        for p in parameters {
            guard let grad = p.grad else { continue }
            let id = ObjectIdentifier(p)
            let lr = learningRate
            let n = p.value.count
            // The state leaves the dictionary while it is updated, so writing it does not copy
            // it (copy-on-write), and the gradient is read in place: the masked gradient is 0.
            var m = first.removeValue(forKey: id) ?? [Float](repeating: 0, count: n)
            let mask = masks[id] ?? []
            grad.withUnsafeBufferPointer { gp in
            mask.withUnsafeBufferPointer { mp in
            m.withUnsafeMutableBufferPointer { m in
                let masked = !mp.isEmpty
                @inline(__always) func g(_ i: Int) -> Float { masked && mp[i] == 0 ? 0 : gp[i] }
                switch kind {
                case let .sgd(mu, nesterov, wd):
                    p.update { w in
                        // Sixteen at a time, then one at a time: the same operations in the same
                        // order per element (no fused multiply-add), so the same bits.
                        var i = 0
                        while i + 16 <= n {
                            var gi = ld(gp.baseAddress! + i)
                            if masked { gi = gi.replacing(with: 0, where: ld(mp.baseAddress! + i) .== 0) }
                            let wi = ld(w.baseAddress! + i)
                            if wd != 0 { gi = gi + wd * wi }
                            let mi = mu * ld(m.baseAddress! + i) + gi
                            st(m.baseAddress! + i, mi)
                            st(w.baseAddress! + i, wi - lr * (nesterov ? gi + mu * mi : mi))
                            i += 16
                        }
                        while i < n {
                            let gi = wd != 0 ? g(i) + wd * w[i] : g(i)
                            m[i] = mu * m[i] + gi
                            w[i] -= lr * (nesterov ? gi + mu * m[i] : m[i])
                            i += 1
                        }
                        if masked { zeroMasked(w, mp) }
                    }
                case let .adam(b1, b2, eps, wd, decoupled):
                    var v = second.removeValue(forKey: id) ?? [Float](repeating: 0, count: n)
                    let t = (steps[id] ?? 0) + 1
                    steps[id] = t
                    let bc1 = 1 - Float(powInt(Double(b1), t)), bc2 = 1 - Float(powInt(Double(b2), t))
                    let bc2Root = bc2.squareRoot()
                    v.withUnsafeMutableBufferPointer { v in
                        p.update { w in
                            let decay = 1 - lr * wd, step = lr / bc1
                            var i = 0
                            while i + 16 <= n {
                                var gi = ld(gp.baseAddress! + i)
                                if masked { gi = gi.replacing(with: 0, where: ld(mp.baseAddress! + i) .== 0) }
                                var wi = ld(w.baseAddress! + i)
                                if decoupled { wi = wi * decay } else if wd != 0 { gi = gi + wd * wi }
                                let mi = b1 * ld(m.baseAddress! + i) + (1 - b1) * gi
                                let vi = b2 * ld(v.baseAddress! + i) + (1 - b2) * gi * gi
                                st(m.baseAddress! + i, mi)
                                st(v.baseAddress! + i, vi)
                                st(w.baseAddress! + i, wi - step * mi / (vi.squareRoot() / bc2Root + eps))
                                i += 16
                            }
                            while i < n {
                                var gi = g(i)
                                if decoupled { w[i] *= decay } else if wd != 0 { gi += wd * w[i] }
                                m[i] = b1 * m[i] + (1 - b1) * gi
                                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                                // PyTorch: p −= lr/bc1 · m / (√v/√bc2 + ε)
                                w[i] -= step * m[i] / (v[i].squareRoot() / bc2Root + eps)
                                i += 1
                            }
                            if masked { zeroMasked(w, mp) }
                        }
                    }
                    second[id] = v
                }
            }
            }
            }
            first[id] = m
            p.zeroGrad()
        }
    }
}

// NOTE: the update runs sixteen parameters per step in explicit vectors: as scalar loops it
// was 30 % of a LeNet-300-100 training epoch (perf).
@inline(__always) private func ld(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
@inline(__always) private func st(_ p: UnsafeMutablePointer<Float>, _ v: SIMD16<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

/// w[i] = +0 wherever mask[i] == 0.
private func zeroMasked(_ w: UnsafeMutableBufferPointer<Float>, _ mask: UnsafeBufferPointer<Float>) {
    var i = 0
    while i + 16 <= w.count {
        st(w.baseAddress! + i, ld(w.baseAddress! + i).replacing(with: 0, where: ld(mask.baseAddress! + i) .== 0))
        i += 16
    }
    while i < w.count {
        if mask[i] == 0 { w[i] = 0 }
        i += 1
    }
}

/// x^n for a non-negative integer n by repeated multiplication (platform-independent).
func powInt(_ x: Double, _ n: Int) -> Double {
    var r = 1.0
    for _ in 0..<n { r *= x }
    return r
}

/// The old name: SGD with momentum, as `Optimizer(.sgd(...))`.
public func SGD(learningRate: Float, momentum: Float = 0) -> Optimizer {
    Optimizer(.sgd(momentum: momentum, nesterov: false, weightDecay: 0), learningRate: learningRate)
}

/// Learning rate as a function of the step, PyTorch's schedulers evaluated per optimizer step
/// (or per epoch for `plateau`, which reacts to the validation loss).
public enum LRSchedule: Equatable, Sendable {
    case constant
    /// lr·γ^⌊step/stepSize⌋.
    case step(stepSize: Int, gamma: Double)
    /// lr·γ^(number of milestones ≤ step).
    case multiStep(milestones: [Int], gamma: Double)
    /// lr·γ^step.
    case exponential(gamma: Double)
    /// Linear warm-up from 0 over `warmup` steps, then cosine from lr to `minLR` at `total`.
    case cosine(total: Int, warmup: Int, minLR: Double)
    /// One-cycle (PyTorch defaults): cosine up from lr/25 to lr over `pctStart` of the steps,
    /// then cosine down to lr/(25·10⁴).
    case oneCycle(total: Int, pctStart: Double)
    /// Multiply by `factor` when the monitored loss has not improved for `patience` epochs.
    case plateau(factor: Double, patience: Int)

    /// The rate at `step` (0-based) for base rate `lr`. `plateau` is handled by `PlateauState`.
    public func rate(base lr: Double, step: Int) -> Double {
        switch self {
        case .constant, .plateau: return lr
        case let .step(size, gamma): return lr * powInt(gamma, step / max(size, 1))
        case let .multiStep(milestones, gamma): return lr * powInt(gamma, milestones.filter { $0 <= step }.count)
        case let .exponential(gamma): return lr * powInt(gamma, step)
        case let .cosine(total, warmup, minLR):
            if step < warmup { return lr * Double(step + 1) / Double(warmup + 1) }
            let span = max(total - warmup, 1)
            let progress = min(Double(step - warmup) / Double(span), 1)
            return minLR + (lr - minLR) * 0.5 * (1 + cos64(Double.pi * progress))
        case let .oneCycle(total, pct):
            let initial = lr / 25, final = initial / 1e4
            let up = max(Int((pct * Double(total)).rounded(.down)) - 1, 1)
            let s = Double(step)
            if step <= up {
                return initial + (lr - initial) * 0.5 * (1 - cos64(Double.pi * s / Double(up)))
            }
            let down = max(Double(total - 1 - up), 1)
            return final + (lr - final) * 0.5 * (1 + cos64(Double.pi * min((s - Double(up)) / down, 1)))
        }
    }
}

/// Reduce-on-plateau bookkeeping (PyTorch's mode "min", threshold 1e-4 relative).
public struct PlateauState: Sendable {
    public private(set) var best = Double.infinity
    public private(set) var badEpochs = 0
    public private(set) var scale = 1.0
    public init() {}

    /// Records an epoch's loss; returns the factor the base rate is now multiplied by.
    public mutating func record(loss: Double, factor: Double, patience: Int) -> Double {
        if loss < best * (1 - 1e-4) {
            best = loss
            badEpochs = 0
        } else {
            badEpochs += 1
            if badEpochs > patience {
                scale *= factor
                badEpochs = 0
            }
        }
        return scale
    }
}

/// cos x in Double: reduction to [−π/4, π/4] by quadrant, then Taylor series (own code, so
/// schedules and initializers give the same bits on every platform).
public func cos64(_ x: Double) -> Double { sinCos64(x).cos }

public func sin64(_ x: Double) -> Double { sinCos64(x).sin }

func sinCos64(_ x: Double) -> (sin: Double, cos: Double) {
    let halfPi = 1.5707963267948966
    let q = (x / halfPi).rounded(.toNearestOrEven)
    // Cody–Waite: π/2 = hi + lo.
    let r = (x - q * 1.5707963267341256) - q * 6.077100506506192e-11
    let r2 = r * r
    var s = 0.0, c = 0.0, term = r
    var k = 1.0
    // sin r = r − r³/3! + …, cos r = 1 − r²/2! + …, both to 1e-18.
    while abs(term) > 1e-19 { s += term; term *= -r2 / ((k + 1) * (k + 2)); k += 2 }
    term = 1; k = 0
    while abs(term) > 1e-19 { c += term; term *= -r2 / ((k + 1) * (k + 2)); k += 2 }
    switch ((Int(q) % 4) + 4) % 4 {
    case 0: return (s, c)
    case 1: return (c, -s)
    case 2: return (-s, -c)
    default: return (-c, s)
    }
}
