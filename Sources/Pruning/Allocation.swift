import TensorEngine

/// Per-layer sparsities chosen by `auto` (most weights removed) or `energy` (most estimated
/// energy saved) within an accuracy budget.
public struct Allocation: Equatable, Sendable {
    /// The chosen sparsity of each layer, in layer order.
    public var layers: [(name: String, sparsity: Double)]
    /// Accuracy on the calibration examples: dense, and with the allocation applied (no
    /// fine-tuning).
    public var denseAccuracy: Double
    public var prunedAccuracy: Double
    /// The highest uniform per-layer sparsity whose measured drop fits the same budget.
    public var uniformSparsity: Double
    /// Total sparsity of the allocation over the layers it covers.
    public var totalSparsity: Double

    public static func == (a: Allocation, b: Allocation) -> Bool {
        a.layers.elementsEqual(b.layers) { $0.name == $1.name && $0.sparsity == $1.sparsity } && a.denseAccuracy == b.denseAccuracy
            && a.prunedAccuracy == b.prunedAccuracy && a.uniformSparsity == b.uniformSparsity && a.totalSparsity == b.totalSparsity
    }
}

/// Sensitivity analysis and greedy allocation (NNI's sensitivity analysis, with the budget of
/// AMC-style allocation): each layer alone is pruned by magnitude at the levels 0.1 … 0.9,
/// 0.95, 0.98, 0.99 (up to the recipe's sparsity) and the accuracy on the calibration
/// examples is measured. Layers then advance one level at a time, always the move with the
/// best gain per predicted accuracy cost (the per-layer drops, made monotone, are summed),
/// while the prediction fits the budget. The allocation is then measured as a whole, and the
/// last moves are undone until the measured drop fits too.
public enum Allocator {
    public static let levels: [Double] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]

    public static func allocate(_ model: Graph, layers: [String], maxSparsity: Double, budget: Double, energy: Bool,
                                calibration: CalibrationSet, threads: Int) throws -> Allocation {
        let training = model.training
        model.training = false
        defer { model.training = training }
        let allowed = levels.filter { $0 <= maxSparsity + 1e-12 }
        let steps = allowed.isEmpty ? [maxSparsity] : allowed
        let variables = layers.map { name -> Variable in
            guard case .float(let v)? = model.initializer(name) else { preconditionFailure("'\(name)' is not a float parameter") }
            return v
        }
        let originals = variables.map(\.value.scalars)
        func setLayer(_ l: Int, sparsity: Double) {
            let mask = MagnitudePruning.masks(for: [(layers[l], Tensor(shape: [originals[l].count], scalars: originals[l]))], sparsity: sparsity, scope: .layer)[layers[l]]!
            variables[l].update { p in for i in 0..<p.count { p[i] = mask[i] == 0 ? 0 : originals[l][i] } }
        }
        func accuracy() -> Double {
            var correct = 0, total = 0
            for b in calibration.batches {
                let y = model.predict(b.inputs, threads: threads)
                let classes = y.shape[1]
                y.withUnsafeBufferPointer { p in
                    for n in 0..<b.count {
                        var best = 0
                        for c in 1..<classes where p[n * classes + c] > p[n * classes + best] { best = c }
                        if best == Int(b.labels[n]) { correct += 1 }
                    }
                }
                total += b.count
            }
            return Double(correct) / Double(max(total, 1))
        }
        let dense = accuracy()
        // Sensitivity: drop[l][k] for layer l alone at steps[k], made non-decreasing in k.
        var drop: [[Double]] = []
        for l in layers.indices {
            var row: [Double] = []
            for s in steps {
                setLayer(l, sparsity: s)
                row.append(max(dense - accuracy(), row.last ?? 0))
            }
            setLayer(l, sparsity: 0)
            drop.append(row)
        }
        // Gain of layer l at level index k (−1 = dense).
        let costs = try layerCosts(model, layers: layers)
        func gain(_ l: Int, _ k: Int) -> Double {
            guard k >= 0 else { return 0 }
            let s = steps[k], n = Double(originals[l].count)
            guard energy else { return (s * n).rounded() }
            return costs[l].energy(density: 1) - costs[l].energy(density: 1 - s)
        }
        var level = [Int](repeating: -1, count: layers.count)
        var moves: [Int] = []
        var predicted = 0.0
        while true {
            var best: (l: Int, ratio: Double, cost: Double)?
            for l in layers.indices where level[l] + 1 < steps.count {
                let k = level[l] + 1
                let cost = drop[l][k] - (level[l] >= 0 ? drop[l][level[l]] : 0)
                guard predicted + cost <= budget + 1e-12 else { continue }
                // One calibration example's worth of accuracy smooths the ratio of free moves.
                let ratio = (gain(l, k) - gain(l, k - 1)) / (cost + 1 / Double(max(calibration.count, 1)))
                if best == nil || ratio > best!.ratio { best = (l, ratio, cost) }
            }
            guard let move = best else { break }
            level[move.l] += 1
            predicted += move.cost
            moves.append(move.l)
        }
        func apply() { for l in layers.indices { setLayer(l, sparsity: level[l] >= 0 ? steps[level[l]] : 0) } }
        apply()
        var measured = accuracy()
        while dense - measured > budget + 1e-12, let last = moves.popLast() {
            level[last] -= 1
            apply()
            measured = accuracy()
        }
        // The uniform reference: the highest level every layer can share within the budget.
        var uniform = 0.0
        for s in steps {
            for l in layers.indices { setLayer(l, sparsity: s) }
            if dense - accuracy() <= budget + 1e-12 { uniform = s } else { break }
        }
        for l in layers.indices { variables[l].update { p in for i in 0..<p.count { p[i] = originals[l][i] } } }
        let chosen = layers.indices.map { (layers[$0], level[$0] >= 0 ? steps[level[$0]] : 0.0) }
        let removed = zip(chosen, originals).reduce(0.0) { $0 + ($1.0.1 * Double($1.1.count)).rounded() }
        let total = Double(originals.reduce(0) { $0 + $1.count })
        return Allocation(layers: chosen, denseAccuracy: dense, prunedAccuracy: measured, uniformSparsity: uniform,
                          totalSparsity: removed / max(total, 1))
    }

    /// What one layer costs per inference of one example under `EnergyModel`.
    struct LayerCost {
        var weights: Int
        var rows: Int
        /// Output positions each weight is used at (1 for Linear).
        var positions: Int
        /// Energy in picojoules at weight density `d`: the nonzero MACs, and the parameter
        /// words read from DRAM in the cheaper of dense and CSR storage.
        func energy(density d: Double) -> Double {
            let nnz = Double(weights) * d
            let macs = nnz * Double(positions)
            let words = min(Double(weights), 2 * nnz + Double(rows + 1))
            return macs * (EnergyModel.floatMultiplyPJ + EnergyModel.floatAddPJ) + words * EnergyModel.dramWordPJ
        }
    }

    static func layerCosts(_ model: Graph, layers: [String]) throws -> [LayerCost] {
        let shapes = try model.valueShapes(for: Tensor(zeros: [1] + model.inputShape))
        return layers.map { name in
            let node = model.nodes[Probe.node(of: name, in: model)]
            guard case .float(let w)? = model.initializer(name) else { return LayerCost(weights: 0, rows: 0, positions: 0) }
            let out = shapes[node.outputs[0]] ?? []
            let positions = node.opType == "Conv" ? out.dropFirst(2).reduce(1, *) : 1
            return LayerCost(weights: w.value.count, rows: w.value.shape[0], positions: positions)
        }
    }
}
