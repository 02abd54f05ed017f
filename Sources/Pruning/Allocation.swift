import Common
import TensorEngine

/// Per-layer sparsities chosen by `auto` (most weights removed, or the least accuracy lost for
/// a latency) or `energy` (most estimated energy saved) within a budget.
public struct Allocation: Equatable, Sendable {
    /// The chosen sparsity of each layer, in layer order.
    public var layers: [(name: String, sparsity: Double)]
    /// Accuracy on the calibration examples: dense, and with the allocation applied (no
    /// fine-tuning).
    public var denseAccuracy: Double
    public var prunedAccuracy: Double
    /// The uniform reference within the same budget: the highest per-layer sparsity whose
    /// measured drop fits an accuracy budget; with a latency budget, the lowest one whose
    /// latency fits it.
    public var uniformSparsity: Double
    /// Total sparsity of the allocation over the layers it covers.
    public var totalSparsity: Double
    /// With a latency budget: p50 latency (µs) of the dense model and of the allocation, as
    /// measured here at the budget's batch size.
    public var denseLatency: Double?
    public var prunedLatency: Double?

    public static func == (a: Allocation, b: Allocation) -> Bool {
        a.layers.elementsEqual(b.layers) { $0.name == $1.name && $0.sparsity == $1.sparsity } && a.denseAccuracy == b.denseAccuracy
            && a.prunedAccuracy == b.prunedAccuracy && a.uniformSparsity == b.uniformSparsity && a.totalSparsity == b.totalSparsity
            && a.denseLatency == b.denseLatency && a.prunedLatency == b.prunedLatency
    }
}

/// A budget the allocation cannot meet (exit 2, naming the key).
public struct AllocationError: UserFacingError, Equatable {
    public let key: String
    public let message: String
    public var description: String { "\(key): \(message)" }
}

/// Sensitivity analysis and greedy allocation (NNI's sensitivity analysis, with the budget of
/// AMC-style allocation): each layer alone is pruned by magnitude at the levels 0.1 … 0.9,
/// 0.95, 0.98, 0.99 (up to the recipe's sparsity) and the accuracy on the calibration
/// examples is measured.
///
/// Accuracy budget: layers advance one level at a time, always the move with the best gain
/// (weights, or energy) per predicted accuracy cost (the per-layer drops, made monotone, are
/// summed), while the prediction fits the budget. The allocation is then measured as a whole,
/// and the last moves are undone until the measured drop fits too.
///
/// Latency budget (`auto`): the latency of each layer alone at each level is measured too
/// (savings under 3 % of the dense time count as none). A layer's time falls in steps, where
/// its kernel changes, so levels are chosen together: the per-layer levels with the least
/// summed accuracy drop whose summed savings reach the target (a knapsack over the savings in
/// steps of 1 % of the dense time). The whole model is then measured; when the savings did not
/// add up, the shortfall is asked for on top, until the measurement fits (when none fits, each
/// attempt is timed once more, cheapest first); then each layer steps back down while the whole
/// still fits. With an accuracy
/// budget as well, the summed drop must fit it too, and so must the measured one.
/// Times models for a latency budget: given the input batch and the thread count, a function
/// from a model to its p50 latency in microseconds. Evaluation's harness supplies it
/// (`LatencyHarness.budgetProbe`), so pruning depends on no evaluation code.
public typealias LatencyProbe = (_ input: Tensor, _ threads: Int) -> (Graph) -> Double

/// Estimates the energy of one inference (picojoules) from its multiply-adds and the parameter
/// words read from DRAM. Evaluation's cost model supplies it (`EnergyModel.picojoules`), so the
/// `energy` method ranks by the same formula as the `energy_nj` metric.
public typealias EnergyEstimate = (_ macs: Double, _ parameterWords: Double) -> Double

public enum Allocator {
    public static let levels: [Double] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]

    /// With a latency budget, `latency` times the model (p50, µs) on the budget's batch, or else
    /// `latencyProbe` does on the first calibration examples (`latencyInput`) with `threads`;
    /// one of them is required then (Pruning does not time models itself).
    public static func allocate(_ model: Graph, layers: [String], maxSparsity: Double, budget: PruneRecipe.Budget, energy: EnergyEstimate?,
                                calibration: CalibrationSet, threads: Int, latency: ((Graph) -> Double)? = nil,
                                latencyProbe: LatencyProbe? = nil) throws -> Allocation {
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
        defer { for l in layers.indices { variables[l].update { p in for i in 0..<p.count { p[i] = originals[l][i] } } } }
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
        // Cost of layer l from level a to level b (−1 = dense), and one calibration example's
        // worth of accuracy that smooths the ratio of free moves.
        func cost(_ l: Int, _ a: Int, _ b: Int) -> Double { (b >= 0 ? drop[l][b] : 0) - (a >= 0 ? drop[l][a] : 0) }
        let smoothing = 1 / Double(max(calibration.count, 1))
        var level = [Int](repeating: -1, count: layers.count)
        func apply() { for l in layers.indices { setLayer(l, sparsity: level[l] >= 0 ? steps[level[l]] : 0) } }
        func total() -> Double {
            let removed = layers.indices.reduce(0.0) { $0 + (level[$1] >= 0 ? (steps[level[$1]] * Double(originals[$1].count)).rounded() : 0) }
            return removed / max(Double(originals.reduce(0) { $0 + $1.count }), 1)
        }
        func result(measured: Double, uniform: Double, latencies: (Double, Double)? = nil) -> Allocation {
            Allocation(layers: layers.indices.map { (layers[$0], level[$0] >= 0 ? steps[level[$0]] : 0.0) }, denseAccuracy: dense,
                       prunedAccuracy: measured, uniformSparsity: uniform, totalSparsity: total(),
                       denseLatency: latencies?.0, prunedLatency: latencies?.1)
        }

        if let target = budget.maxLatencyP50 {
            guard let time = latency ?? latencyProbe.map({ $0(latencyInput(calibration: calibration, batchSize: budget.latencyBatchSize), threads) }) else {
                preconditionFailure("a latency budget needs `latency` or `latencyProbe`")
            }
            let accuracyBudget = budget.maxAccuracyDrop ?? 1
            // The first timing of a process runs on cold caches and a CPU still clocking up:
            // one untimed round, and the dense time is the lowest of a timing before the scan
            // and one after each pass.
            _ = time(model)
            var denseTime = time(model)
            // Two passes over the table, each entry the lower of the two: a slow stretch of a
            // shared machine lasts seconds, longer than the three medians of one timing.
            var times = [[Double]](repeating: [Double](repeating: .infinity, count: steps.count), count: layers.count)
            for _ in 0..<2 {
                for l in layers.indices {
                    for (k, s) in steps.enumerated() {
                        setLayer(l, sparsity: s)
                        times[l][k] = min(times[l][k], time(model))
                    }
                    setLayer(l, sparsity: 0)
                }
                denseTime = min(denseTime, time(model))
            }
            // Time saved by layer l alone at steps[k], made non-decreasing in k. Savings under
            // 3 % of the dense time count as none: they are within the timing noise, and
            // chasing them would prune for nothing.
            let noise = 0.03 * denseTime
            let saving = times.map { row in
                row.reduce(into: [Double]()) { acc, t in
                    let saved = denseTime - t
                    acc.append(max(saved >= noise ? saved : 0, acc.last ?? 0))
                }
            }
            // The levels with the least summed accuracy drop whose summed savings reach `need`
            // (a knapsack over savings in 1 % steps of the dense time, rounded down), or nil.
            let unit = denseTime / 100
            func cheapest(saving need: Double) -> [Int]? {
                let buckets = Int((need / unit).rounded(.up))
                guard buckets <= 100 else { return nil }
                // best[j]: (cost, levels) reaching at least j buckets with the layers so far.
                var best: [(cost: Double, levels: [Int])?] = [(0, [])] + [(cost: Double, levels: [Int])?](repeating: nil, count: buckets)
                for l in layers.indices {
                    var next = [(cost: Double, levels: [Int])?](repeating: nil, count: buckets + 1)
                    for j in 0...buckets {
                        guard let b = best[j] else { continue }
                        for k in -1..<steps.count {
                            let got = k >= 0 ? Int((saving[l][k] / unit).rounded(.down)) : 0
                            let c = b.cost + (k >= 0 ? drop[l][k] : 0)
                            let to = min(buckets, j + got)
                            if next[to] == nil || c < next[to]!.cost - 1e-12 { next[to] = (c, b.levels + [k]) }
                        }
                    }
                    best = next
                }
                guard let found = best[buckets], found.cost <= accuracyBudget + 1e-12 else { return nil }
                return found.levels
            }
            // Knapsack allocations until one measures within the target: when the savings do
            // not add up, the shortfall (at least one step) is asked for on top.
            var need = denseTime - target, fastest = denseTime
            var found: (levels: [Int], time: Double, accuracy: Double)?
            var attempts: [[Int]] = []
            if denseTime <= target { found = ([Int](repeating: -1, count: layers.count), denseTime, dense) }
            while found == nil, need > 0, let levels = cheapest(saving: need) {
                guard !attempts.contains(levels) else { need += unit; continue }
                attempts.append(levels)
                level = levels
                apply()
                let t = time(model)
                fastest = min(fastest, t)
                if t <= target { found = (levels, t, accuracy()) } else { need += max(t - target, unit) }
            }
            // None fit: time the attempts once more, cheapest first (a slow stretch of a shared
            // machine can push an allocation just over the target).
            for levels in attempts where found == nil {
                level = levels
                apply()
                let t = time(model)
                if t <= target { found = (levels, t, accuracy()) }
            }
            // The uniform reference: the lowest level every layer can share that fits the
            // latency. The summed drops only predict the accuracy, so when the uniform
            // allocation measures better (or the knapsack found nothing), it is the answer.
            var uniform = denseTime <= target ? 0.0 : 1.0
            for k in steps.indices where uniform > 0 {
                level = [Int](repeating: k, count: layers.count)
                guard !attempts.contains(level) || found?.levels == level else { continue }
                apply()
                let t = time(model)
                fastest = min(fastest, t)
                guard t <= target else { continue }
                uniform = steps[k]
                let a = accuracy()
                if found == nil || a > found!.accuracy { found = (level, t, a) }
                break
            }
            // Trim: each layer steps back down while the whole still measures within the target
            // (a saving timed in a slow stretch made the knapsack ask for more than it needed).
            if var (levels, t, _) = found, levels.contains(where: { $0 >= 0 }) {
                for l in layers.indices {
                    while levels[l] >= 0 {
                        var lower = levels
                        lower[l] -= 1
                        level = lower
                        apply()
                        // A step that measures over gets one more timing before it is refused.
                        var lt = time(model)
                        if lt > target { lt = min(lt, time(model)) }
                        guard lt <= target else { break }
                        (levels, t) = (lower, lt)
                    }
                }
                level = levels
                apply()
                found = (levels, t, accuracy())
            }
            guard let (chosen, measuredTime, measured) = found else {
                throw AllocationError(key: "prune.budget.max_latency_p50_us", message: String(
                    format: "%.1f µs is out of reach at batch %d: within sparsity ≤ %.2f per layer%@ the fastest allocation tried measured %.1f µs (dense %.1f µs)",
                    target, budget.latencyBatchSize, steps.last!, budget.maxAccuracyDrop.map { String(format: " and an accuracy drop ≤ %.3f", $0) } ?? "",
                    fastest, denseTime))
            }
            level = chosen
            if let d = budget.maxAccuracyDrop, dense - measured > d + 1e-12 {
                throw AllocationError(key: "prune.budget", message: String(
                    format: "max_latency_p50_us %.1f and max_accuracy_drop %.3f cannot both be met: the allocation that reaches %.1f µs drops accuracy by %.3f on the calibration examples",
                    target, d, measuredTime, dense - measured))
            }
            return result(measured: measured, uniform: uniform, latencies: (denseTime, measuredTime))
        }

        let accuracyBudget = budget.maxAccuracyDrop!
        let costs = try layerCosts(model, layers: layers)
        func gain(_ l: Int, _ k: Int) -> Double {
            guard k >= 0 else { return 0 }
            let s = steps[k], n = Double(originals[l].count)
            guard let energy else { return (s * n).rounded() }
            return costs[l].energy(density: 1, energy) - costs[l].energy(density: 1 - s, energy)
        }
        var moves: [Int] = []
        var predicted = 0.0
        while true {
            var best: (l: Int, ratio: Double, cost: Double)?
            for l in layers.indices where level[l] + 1 < steps.count {
                let k = level[l] + 1
                let c = cost(l, level[l], k)
                guard predicted + c <= accuracyBudget + 1e-12 else { continue }
                let ratio = (gain(l, k) - gain(l, k - 1)) / (c + smoothing)
                if best == nil || ratio > best!.ratio { best = (l, ratio, c) }
            }
            guard let move = best else { break }
            level[move.l] += 1
            predicted += move.cost
            moves.append(move.l)
        }
        apply()
        var measured = accuracy()
        while dense - measured > accuracyBudget + 1e-12, let last = moves.popLast() {
            level[last] -= 1
            apply()
            measured = accuracy()
        }
        // The uniform reference: the highest level every layer can share within the budget.
        let chosen = level
        var uniform = 0.0
        for k in steps.indices {
            level = [Int](repeating: k, count: layers.count)
            apply()
            if dense - accuracy() <= accuracyBudget + 1e-12 { uniform = steps[k] } else { break }
        }
        level = chosen
        return result(measured: measured, uniform: uniform)
    }

    /// The input a latency budget is timed on: the first `batchSize` calibration examples
    /// (repeated when there are fewer).
    static func latencyInput(calibration: CalibrationSet, batchSize: Int) -> Tensor {
        let all = calibration.batches.map(\.inputs)
        let rowShape = Array(all[0].shape.dropFirst()), rowSize = rowShape.reduce(1, *)
        var scalars: [Float] = []
        scalars.reserveCapacity(batchSize * rowSize)
        let flat = all.flatMap(\.scalars), rows = flat.count / max(rowSize, 1)
        for i in 0..<batchSize {
            let r = i % max(rows, 1)
            scalars.append(contentsOf: flat[(r * rowSize)..<((r + 1) * rowSize)])
        }
        return Tensor(shape: [batchSize] + rowShape, scalars: scalars)
    }

    /// What one layer costs per inference of one example.
    struct LayerCost {
        var weights: Int
        var rows: Int
        /// Output positions each weight is used at (1 for Linear).
        var positions: Int
        /// Energy in picojoules at weight density `d`: the nonzero MACs, and the parameter
        /// words read from DRAM in the cheaper of dense and CSR storage.
        func energy(density d: Double, _ estimate: EnergyEstimate) -> Double {
            let nnz = Double(weights) * d
            let macs = nnz * Double(positions)
            let words = min(Double(weights), 2 * nnz + Double(rows + 1))
            return estimate(macs, words)
        }
    }

    static func layerCosts(_ model: Graph, layers: [String]) throws -> [LayerCost] {
        let shapes = try model.valueShapes()
        return layers.map { name in
            let node = model.nodes[Probe.node(of: name, in: model)]
            guard case .float(let w)? = model.initializer(name) else { return LayerCost(weights: 0, rows: 0, positions: 0) }
            let out = shapes[node.outputs[0]] ?? []
            let positions = node.opType == "Conv" ? out.dropFirst(2).reduce(1, *) : 1
            return LayerCost(weights: w.value.count, rows: w.value.shape[0], positions: positions)
        }
    }
}
