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

public enum NMPruning {
    /// Masks that keep the `n` largest-magnitude weights of every group of `m` consecutive
    /// weights along each output row (a weight `(out, in, k…)` is viewed as `out` rows of
    /// `in·Πk`, the layout sparse tensor cores and the 2:4 kernels use). A row whose length is
    /// not a multiple of `m` ends with a shorter group, which keeps min(n, its length).
    /// Ties go to the lower index.
    public static func masks(for weights: [(name: String, tensor: Tensor)], n: Int, m: Int) -> PruningMasks {
        precondition(n > 0 && n < m, "N:M needs 0 < N < M, got \(n):\(m)")
        var out: PruningMasks = [:]
        for w in weights {
            let rows = w.tensor.shape.first ?? 1
            let cols = w.tensor.count / max(rows, 1)
            var mask = [Float](repeating: 0, count: w.tensor.count)
            w.tensor.withUnsafeBufferPointer { p in
                for r in 0..<rows {
                    var g = 0
                    while g < cols {
                        let len = min(m, cols - g)
                        let base = r * cols + g
                        let order = (0..<len).sorted { a, b in
                            let x = p[base + a].magnitude, y = p[base + b].magnitude
                            return x != y ? x > y : a < b
                        }
                        for k in order.prefix(min(n, len)) { mask[base + k] = 1 }
                        g += m
                    }
                }
            }
            out[w.name] = mask
        }
        return out
    }

    /// Whether `mask` keeps at most `n` of every full group of `m` (the invariant the tests check).
    public static func isValid(_ mask: [Float], rows: Int, n: Int, m: Int) -> Bool {
        let cols = mask.count / max(rows, 1)
        for r in 0..<rows {
            var g = 0
            while g + m <= cols {
                if mask[(r * cols + g)..<(r * cols + g + m)].reduce(0, +) > Float(n) { return false }
                g += m
            }
        }
        return true
    }
}

/// The masks a recipe's magnitude criterion gives.
public func magnitudeMasks(_ recipe: PruneRecipe, weights: [(name: String, tensor: Tensor)]) -> PruningMasks {
    switch recipe.granularity {
    case .unstructured: return MagnitudePruning.masks(for: weights, sparsity: recipe.sparsity, scope: recipe.scope)
    case let .nm(n, m): return NMPruning.masks(for: weights, n: n, m: m)
    case .neuron, .channel: preconditionFailure("structured granularity has no masks; use prune(_:recipe:)")
    }
}

/// Prunes `model` with a magnitude recipe: masks for unstructured and N:M (applied in place,
/// the returned graph is `model`), or a smaller graph for neuron and channel granularity
/// (units ranked by the L2 norm of their weights). Returns the graph and the masks that
/// fine-tuning must keep (none for structured pruning: the units are gone).
public func prune(_ model: Graph, recipe: PruneRecipe) throws -> (graph: Graph, masks: PruningMasks) {
    switch recipe.granularity {
    case .unstructured, .nm:
        let masks = magnitudeMasks(recipe, weights: model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) })
        applyMasks(masks, to: model)
        return (model, masks)
    case .neuron, .channel:
        let known = Set(model.nodes.map(\.name) + model.prunableWeights.flatMap { [$0.name, StructuredPruning.layerName($0.name)] })
        if let unknown = recipe.protect.first(where: { !known.contains($0) }) {
            throw StructuredPruningError(layer: unknown, message: "named in protect is not a layer of the model (layers: \(model.prunableWeights.map { StructuredPruning.layerName($0.name) }.joined(separator: ", ")))")
        }
        let groups = try StructuredPruning.groups(model, channel: recipe.granularity == .channel, protect: Set(recipe.protect))
        let scores = groups.map { StructuredPruning.norms(model, $0) }
        let fanIns = groups.map { g -> Int in
            guard case .float(let w)? = model.initializer(g.weight) else { return 1 }
            return w.value.count / max(g.units, 1)
        }
        let keep = StructuredPruning.select(scores: scores, fanIns: fanIns, sparsity: recipe.sparsity, scope: recipe.scope)
        return (StructuredPruning.shrink(model, groups: groups, keep: keep), [:])
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
