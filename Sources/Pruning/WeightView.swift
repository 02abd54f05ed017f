import TensorEngine

/// How pruning sees a weight: (outputs, inputs), one row per output unit, whatever the layout
/// it is stored in. A Conv's (out, in, k…) and a Linear Gemm's (out, in) are already so; a
/// MatMul's (in, out) is transposed into the view and back. Scores, Wanda's per-row groups,
/// N:M groups (along the inputs) and SparseGPT's columns all work in the view; masks leave
/// `prune` in the stored layout (the one the optimizer and `applyMasks` use).
struct WeightView {
    let rows: Int
    let cols: Int
    /// Stored (cols, rows): inputs first.
    let transposed: Bool

    init(_ model: Graph, _ name: String) {
        guard case .float(let v)? = model.initializer(name) else { preconditionFailure("'\(name)' is not a float parameter") }
        let shape = v.value.shape
        transposed = model.storesInputsFirst(name)
        rows = transposed ? shape[1] : shape.first ?? 1
        cols = v.value.count / max(rows, 1)
    }

    /// Values in the stored order, in the view's.
    func view<T>(_ stored: [T]) -> [T] { transposed ? Self.transpose(stored, rows: cols, cols: rows) : stored }

    /// Values in the view's order, in the stored one.
    func stored<T>(_ view: [T]) -> [T] { transposed ? Self.transpose(view, rows: rows, cols: cols) : view }

    /// A (rows, cols) row-major matrix as (cols, rows).
    static func transpose<T>(_ a: [T], rows: Int, cols: Int) -> [T] {
        precondition(a.count == rows * cols, "transpose: \(a.count) values are not \(rows)×\(cols)")
        guard let first = a.first else { return a }
        var out = [T](repeating: first, count: a.count)
        for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = a[r * cols + c] } }
        return out
    }
}

extension Graph {
    /// `masks` (in the pruning view) in each weight's stored layout.
    func storedMasks(_ masks: PruningMasks) -> PruningMasks {
        masks.reduce(into: [:]) { out, m in out[m.key] = WeightView(self, m.key).stored(m.value) }
    }

    /// `masks` (stored layout) in the pruning view.
    func viewedMasks(_ masks: PruningMasks) -> PruningMasks {
        masks.reduce(into: [:]) { out, m in out[m.key] = WeightView(self, m.key).view(m.value) }
    }
}
