import TensorEngine

/// Keep-masks for prunable weights: 1 keeps a weight, 0 removes it; keyed by parameter name.
public typealias PruningMasks = [String: [Float]]

public enum MagnitudePruning {
    /// |w| of every weight, as scores.
    public static func scores(_ weights: [(name: String, tensor: Tensor)]) -> WeightScores {
        weights.map { w in (w.name, w.tensor.shape.first ?? 1, w.tensor.scalars.map { Double($0.magnitude) }) }
    }

    /// Masks that remove the `sparsity` fraction of smallest-magnitude weights, ranked across
    /// all layers (`.global`) or within each layer (`.layer`).
    ///
    /// The count removed is round(sparsity · n), so the achieved sparsity is within one weight
    /// (per layer for `.layer`) of the request. Ties in magnitude go to the earlier layer and
    /// the lower index first, so the masks are the same on every run.
    public static func masks(
        for weights: [(name: String, tensor: Tensor)], sparsity: Double, scope: PruneRecipe.Scope
    ) -> PruningMasks {
        Selection.masks(scores(weights), sparsity: sparsity, scope: scope)
    }
}

public enum NMPruning {
    /// Masks that keep the `n` largest-magnitude weights of every group of `m` consecutive
    /// weights along each output row (a weight `(out, in, k…)` is viewed as `out` rows of
    /// `in·Πk`, the layout sparse tensor cores and the 2:4 kernels use). A row whose length is
    /// not a multiple of `m` ends with a shorter group, which keeps min(n, its length).
    /// Ties go to the lower index.
    public static func masks(for weights: [(name: String, tensor: Tensor)], n: Int, m: Int) -> PruningMasks {
        var out: PruningMasks = [:]
        for l in MagnitudePruning.scores(weights) { out[l.name] = Selection.nm(l, n: n, m: m) }
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
