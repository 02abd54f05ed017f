import TensorEngine

/// Keep-masks for prunable weights: 1 keeps a weight, 0 removes it; keyed by parameter name.
public typealias PruningMasks = [String: [Float]]

public enum MagnitudePruning {
    /// Masks that remove the `sparsity` fraction of smallest-magnitude weights, ranked across
    /// all layers (`.global`) or within each layer (`.layer`).
    ///
    /// The count removed is round(sparsity · n), so the achieved sparsity is within one weight
    /// (per layer for `.layer`) of the request. Ties in magnitude go to the earlier layer and
    /// the lower index first, so the masks are the same on every run.
    public static func masks(
        for weights: [(name: String, tensor: Tensor)], sparsity: Double, scope: PruneRecipe.Scope
    ) -> PruningMasks {
        precondition(sparsity >= 0 && sparsity < 1, "sparsity \(sparsity) outside [0, 1)")
        switch scope {
        case .layer:
            var out: PruningMasks = [:]
            for w in weights { out.merge(masks(for: [w], sparsity: sparsity, scope: .global)) { a, _ in a } }
            return out
        case .global:
            // Key = |w| bits (order-preserving for non-negative floats) · 2³² + global index.
            var keys: [UInt64] = []
            var offsets: [Int] = []
            for w in weights {
                offsets.append(keys.count)
                precondition(keys.count + w.tensor.count < 1 << 32, "too many prunable weights")
                w.tensor.withUnsafeBufferPointer { p in
                    for v in p { keys.append(UInt64(v.magnitude.bitPattern) << 32 | UInt64(keys.count)) }
                }
            }
            let k = Int((sparsity * Double(keys.count)).rounded())
            var out: PruningMasks = [:]
            for w in weights { out[w.name] = [Float](repeating: 1, count: w.tensor.count) }
            guard k > 0 else { return out }
            keys.sort()
            var layerOf = [Int](repeating: 0, count: keys.count)
            for (i, w) in weights.enumerated() {
                for j in 0..<w.tensor.count { layerOf[offsets[i] + j] = i }
            }
            for key in keys[0..<k] {
                let g = Int(key & 0xFFFF_FFFF)
                let l = layerOf[g]
                out[weights[l].name]![g - offsets[l]] = 0
            }
            return out
        }
    }
}

/// Sets every masked-out weight of `model` to +0 (not -0: the bits are part of the result).
public func applyMasks(_ masks: PruningMasks, to model: Graph) {
    for (name, variable) in model.prunableWeights {
        guard let mask = masks[name] else { continue }
        variable.update { w in for i in 0..<w.count where mask[i] == 0 { w[i] = 0 } }
    }
}

/// Sparsity of the prunable weights: exact zeros over their count, per layer and in total.
public struct SparsityReport: Equatable, Sendable {
    public var perLayer: [(name: String, zeros: Int, count: Int)]
    public var zeros: Int { perLayer.reduce(0) { $0 + $1.zeros } }
    public var count: Int { perLayer.reduce(0) { $0 + $1.count } }
    public var sparsity: Double { count == 0 ? 0 : Double(zeros) / Double(count) }

    public init(model: Graph) {
        perLayer = model.prunableWeights.map { name, v in
            (name, v.value.scalars.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }, v.value.count)
        }
    }

    public static func == (a: SparsityReport, b: SparsityReport) -> Bool {
        a.perLayer.elementsEqual(b.perLayer) { $0.name == $1.name && $0.zeros == $1.zeros && $0.count == $1.count }
    }
}
