import Common
import Kernels

/// Weight initializers from the counter-based Philox stream, so the same seed gives the same
/// weights on every platform. Fan-in and fan-out follow PyTorch: for a weight
/// `(out, in, k…)`, fan_in = in·Πk and fan_out = out·Πk.
public enum Initializer: String, CaseIterable, Sendable {
    case kaimingUniform = "kaiming_uniform"
    case kaimingNormal = "kaiming_normal"
    case xavierUniform = "xavier_uniform"
    case xavierNormal = "xavier_normal"
    /// PyTorch's default for Linear and Conv weights: kaiming_uniform with a = √5, i.e.
    /// U(−1/√fan_in, 1/√fan_in); biases U(−1/√fan_in, 1/√fan_in).
    case pytorchDefault = "pytorch_default"

    public static func fans(_ shape: [Int]) -> (fanIn: Int, fanOut: Int) {
        guard shape.count >= 2 else { return (shape.first ?? 1, shape.first ?? 1) }
        let receptive = shape[2...].reduce(1, *)
        return (shape[1] * receptive, shape[0] * receptive)
    }

    /// A fresh tensor of `shape`. Kaiming uses the ReLU gain √2 (fan_in mode).
    public func sample(_ shape: [Int], rng: inout Philox) -> Tensor {
        let (fanIn, fanOut) = Initializer.fans(shape)
        let n = shape.reduce(1, *)
        let uniformBound: Double?
        let std: Double
        switch self {
        case .kaimingUniform: std = (2.0 / Double(fanIn)).squareRoot(); uniformBound = std * 3.0.squareRoot()
        case .kaimingNormal: std = (2.0 / Double(fanIn)).squareRoot(); uniformBound = nil
        case .xavierUniform: std = (2.0 / Double(fanIn + fanOut)).squareRoot(); uniformBound = std * 3.0.squareRoot()
        case .xavierNormal: std = (2.0 / Double(fanIn + fanOut)).squareRoot(); uniformBound = nil
        case .pytorchDefault: std = 0; uniformBound = 1 / Double(fanIn).squareRoot()
        }
        var out = [Float](repeating: 0, count: n)
        if let b = uniformBound {
            for i in 0..<n { out[i] = Float((Double(rng.nextUnitFloat()) * 2 - 1) * b) }
        } else {
            var i = 0
            while i < n {
                // Box–Muller on two uniforms in (0, 1].
                let u1 = 1 - Double(rng.nextUnitFloat()), u2 = Double(rng.nextUnitFloat())
                let r = (-2 * log64(u1)).squareRoot()
                let (s, c) = sinCos64(2 * Double.pi * u2)
                out[i] = Float(r * c * std)
                if i + 1 < n { out[i + 1] = Float(r * s * std) }
                i += 2
            }
        }
        return Tensor(shape: shape, scalars: out)
    }
}

extension Graph {
    /// Re-initializes every prunable weight with `scheme` and every other trainable
    /// parameter (biases, normalization) as PyTorch does: biases U(±1/√fan_in of their layer),
    /// normalization scale 1 and shift 0.
    public func reinitialize(_ scheme: Initializer, seed: UInt64) {
        var rng = Philox(seed: seed, stream: 7)
        var fanInOf: [String: Int] = [:]
        for n in nodes where ["Gemm", "Conv", "MatMul"].contains(n.opType) && n.inputs.count > 2 {
            if case .float(let w)? = initializer(n.inputs[1]) { fanInOf[n.inputs[2]] = Initializer.fans(w.value.shape).fanIn }
        }
        var normScale = Set<String>(), normShift = Set<String>()
        for n in nodes where ["BatchNormalization", "LayerNormalization"].contains(n.opType) {
            if n.inputs.count > 1 { normScale.insert(n.inputs[1]) }
            if n.inputs.count > 2 { normShift.insert(n.inputs[2]) }
        }
        let prunable = Set(prunableWeights.map(\.name))
        for (name, v) in parameters {
            let fresh: Tensor
            if prunable.contains(name) {
                fresh = scheme.sample(v.value.shape, rng: &rng)
            } else if normScale.contains(name) {
                fresh = Tensor(shape: v.value.shape, scalars: [Float](repeating: 1, count: v.value.count))
            } else if normShift.contains(name) {
                fresh = Tensor(zeros: v.value.shape)
            } else {
                let bound = 1 / Double(fanInOf[name] ?? max(v.value.count, 1)).squareRoot()
                fresh = Tensor(shape: v.value.shape, scalars: (0..<v.value.count).map { _ in Float((Double(rng.nextUnitFloat()) * 2 - 1) * bound) })
            }
            v.update { p in fresh.withUnsafeBufferPointer { src in for i in 0..<p.count { p[i] = src[i] } } }
        }
    }
}
