import TensorEngine

/// Importance scores of every weight of the layers being pruned, keyed by weight name; higher
/// is more important. A score of -1 marks a weight already pruned (it stays pruned).
public typealias WeightScores = [(name: String, rows: Int, scores: [Double])]

/// Turns scores into keep-masks. Every ranking breaks ties by layer order, then index, so the
/// masks are the same on every run.
public enum Selection {
    /// Removes the lowest-scored round(sparsity · n) weights, ranked across all layers
    /// (`.global`) or within each layer (`.layer`, round(sparsity · n_layer) each), so the
    /// achieved sparsity is within one weight (per layer) of the request.
    public static func masks(_ layers: WeightScores, sparsity: Double, scope: PruneRecipe.Scope) -> PruningMasks {
        precondition(sparsity >= 0 && sparsity < 1, "sparsity \(sparsity) outside [0, 1)")
        switch scope {
        case .layer:
            var out: PruningMasks = [:]
            for l in layers { out[l.name] = lowest(l.scores, count: Int((sparsity * Double(l.scores.count)).rounded())) }
            return out
        case .global:
            let all = layers.flatMap(\.scores)
            let mask = lowest(all, count: Int((sparsity * Double(all.count)).rounded()))
            var out: PruningMasks = [:]
            var offset = 0
            for l in layers {
                out[l.name] = Array(mask[offset..<(offset + l.scores.count)])
                offset += l.scores.count
            }
            return out
        }
    }

    /// Per-layer sparsities from one global ranking of the scores (how many of each layer's
    /// weights fall among the lowest round(sparsity · n)).
    public static func layerSparsities(_ layers: WeightScores, sparsity: Double) -> [Double] {
        let m = masks(layers, sparsity: sparsity, scope: .global)
        return layers.map { l in Double(m[l.name]!.reduce(0) { $0 + ($1 == 0 ? 1 : 0) }) / Double(max(l.scores.count, 1)) }
    }

    /// Wanda's comparison group: the lowest scores within every output row. Row r loses
    /// round(s·cols·(r+1)) − round(s·cols·r) weights, so rows differ by at most one and the
    /// layer loses exactly round(sparsity · n).
    public static func perRow(_ layer: (name: String, rows: Int, scores: [Double]), sparsity: Double) -> [Float] {
        let cols = layer.scores.count / max(layer.rows, 1)
        var mask: [Float] = []
        mask.reserveCapacity(layer.scores.count)
        for r in 0..<layer.rows {
            let k = Int((sparsity * Double(cols * (r + 1))).rounded()) - Int((sparsity * Double(cols * r)).rounded())
            mask += lowest(Array(layer.scores[(r * cols)..<((r + 1) * cols)]), count: k)
        }
        return mask
    }

    /// Keeps the `n` highest-scored of every group of `m` consecutive weights along each row
    /// (a shorter last group keeps min(n, its length)); ties go to the lower index.
    public static func nm(_ layer: (name: String, rows: Int, scores: [Double]), n: Int, m: Int) -> [Float] {
        precondition(n > 0 && n < m, "N:M needs 0 < N < M, got \(n):\(m)")
        let cols = layer.scores.count / max(layer.rows, 1)
        var mask = [Float](repeating: 0, count: layer.scores.count)
        for r in 0..<layer.rows {
            var g = 0
            while g < cols {
                let len = min(m, cols - g), base = r * cols + g
                let order = (0..<len).sorted { a, b in
                    let x = layer.scores[base + a], y = layer.scores[base + b]
                    return x != y ? x > y : a < b
                }
                for k in order.prefix(min(n, len)) { mask[base + k] = 1 }
                g += m
            }
        }
        return mask
    }

    /// A mask with the `count` lowest scores set to 0 (ties: lower index first).
    static func lowest(_ scores: [Double], count: Int) -> [Float] {
        var mask = [Float](repeating: 1, count: scores.count)
        guard count > 0 else { return mask }
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        for i in order.prefix(count) { mask[i] = 0 }
        return mask
    }

    /// `scores` with every weight that `previous` already removed set to -1, so later rounds
    /// of iterative and gradual pruning never bring a weight back.
    public static func locking(_ layers: WeightScores, previous: PruningMasks) -> WeightScores {
        layers.map { l in
            guard let mask = previous[l.name] else { return l }
            var s = l.scores
            for i in s.indices where mask[i] == 0 { s[i] = -1 }
            return (l.name, l.rows, s)
        }
    }
}
