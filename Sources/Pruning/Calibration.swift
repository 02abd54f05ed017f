import Common
import Kernels
import TensorEngine

/// The training examples data-driven criteria see: the first `samples` of one seeded
/// permutation of the training split, cut into batches.
public struct CalibrationSet {
    public let batches: [LabeledData]

    public init(_ data: LabeledData, settings: PruneRecipe.Calibration, seed: UInt64) {
        var rng = Philox(seed: seed, stream: 11)
        let order = rng.permutation(data.count)
        let n = min(settings.samples, data.count)
        let size = max(settings.batchSize, 1)
        batches = stride(from: 0, to: n, by: size).map { data.subset(Array(order[$0..<min($0 + size, n)])) }
    }

    /// These batches as they are.
    init(batches: [LabeledData]) { self.batches = batches }

    public var count: Int { batches.reduce(0) { $0 + $1.count } }
}

/// The task's training loss: cross-entropy on class (or token) labels, mean squared error on
/// targets.
func taskLoss(_ output: Variable, _ batch: LabeledData, tape: Tape) -> Variable {
    batch.targets.map { meanSquaredError(output, targets: $0, tape: tape) } ?? softmaxCrossEntropy(output, labels: batch.labels, tape: tape)
}

/// What calibration measures of a model: gradients and the inputs its layers see.
enum Probe {
    /// ∂loss/∂w of each named parameter for one batch (inference mode: BatchNorm running
    /// statistics, no Dropout); every gradient is cleared afterwards.
    static func gradients(_ model: Graph, _ batch: LabeledData, names: Set<String>, threads: Int) -> [String: [Float]] {
        let tape = Tape()
        let output = model.forward(batch.feeds, tape: tape, threads: threads)
        tape.backward(from: taskLoss(output, batch, tape: tape))
        var out: [String: [Float]] = [:]
        for (name, v) in model.parameters {
            if names.contains(name) { out[name] = v.grad?.scalars ?? [Float](repeating: 0, count: v.value.count) }
            v.zeroGrad()
        }
        return out
    }

    /// The index of the node that multiplies by `weight`.
    static func node(of weight: String, in model: Graph) -> Int {
        guard let i = model.nodes.firstIndex(where: { ["Gemm", "Conv", "MatMul"].contains($0.opType) && $0.inputs.count > 1 && $0.inputs[1] == weight }) else {
            preconditionFailure("no layer multiplies by '\(weight)'")
        }
        return i
    }

    /// The rows layer `weight` multiplies by its weight over every calibration example
    /// (`Graph.layerRows`), as one (rows, columns) tensor per batch.
    static func layerRows(_ model: Graph, weight: String, calibration: CalibrationSet, threads: Int) throws -> [Tensor] {
        let index = node(of: weight, in: model)
        let input = model.nodes[index].inputs[0]
        return try calibration.batches.map { batch in
            let feeds = batch.feeds
            guard let x = try model.capture(feeds, [input], threads: threads)[input] else {
                throw GraphError(node: model.nodes[index].name, op: model.nodes[index].opType, "input '\(input)' is not a float value")
            }
            return try model.layerRows(node: index, input: x)
        }
    }

    /// Σ x_j² over every calibration row each layer in `weights` multiplies, per column j
    /// (Double sums, rows in order): one run of the model per batch captures every layer's
    /// input at once.
    static func columnSquares(_ model: Graph, weights: [String], calibration: CalibrationSet, threads: Int) throws -> [String: [Double]] {
        let nodes = weights.map { node(of: $0, in: model) }
        let inputs = Set(nodes.map { model.nodes[$0].inputs[0] })
        var out: [String: [Double]] = [:]
        for batch in calibration.batches {
            let values = try model.capture(batch.feeds, inputs, threads: threads)
            for (name, index) in zip(weights, nodes) {
                let input = model.nodes[index].inputs[0]
                guard let x = values[input] else {
                    throw GraphError(node: model.nodes[index].name, op: model.nodes[index].opType, "input '\(input)' is not a float value")
                }
                let rows = try model.layerRows(node: index, input: x)
                let cols = rows.shape[1]
                var sq = out[name] ?? [Double](repeating: 0, count: cols)
                rows.withUnsafeBufferPointer { p in
                    for r in 0..<rows.shape[0] { for j in 0..<cols { let v = Double(p[r * cols + j]); sq[j] += v * v } }
                }
                out[name] = sq
            }
        }
        return out
    }

    /// H = (2/n)·Σ x·xᵀ over the rows (n of them), in Double: the Hessian of the layer's
    /// squared reconstruction error ‖WX − ŴX‖². The sums run through `gemm` (one FMA chain per
    /// entry over the rows in order), so H is the same for any thread count.
    static func hessian(_ rows: [Tensor], threads: Int) -> (h: [Double], cols: Int, n: Int) {
        let cols = rows.first?.shape[1] ?? 0
        var acc = [Float](repeating: 0, count: cols * cols)
        var n = 0
        for (b, x) in rows.enumerated() {
            let r = x.shape[0]
            n += r
            x.withUnsafeBufferPointer { xp in
                acc.withUnsafeMutableBufferPointer { cp in
                    gemm(m: cols, n: cols, k: r, a: xp.baseAddress!, lda: cols, transposeA: true, b: xp.baseAddress!, ldb: cols,
                         transposeB: false, c: cp.baseAddress!, ldc: cols, accumulate: b > 0, threads: threads)
                }
            }
        }
        let scale = 2 / Double(max(n, 1))
        return (acc.map { Double($0) * scale }, cols, n)
    }
}

/// The importance of every weight under each criterion that scores weights one by one.
enum Criteria {
    /// Scores of `layers` (weight names of `model`) for `method`. OBS, SparseGPT and LRP are
    /// not scored here: they need their own passes.
    static func scores(
        _ method: PruneRecipe.Method, model: Graph, layers: [String], calibration: CalibrationSet?, seed: UInt64, threads: Int
    ) throws -> WeightScores {
        let weights = layers.map { name -> (String, Tensor) in
            guard case .float(let v)? = model.initializer(name) else { preconditionFailure("'\(name)' is not a float parameter") }
            return (name, v.value)
        }
        func rows(_ t: Tensor) -> Int { t.shape.first ?? 1 }
        // Scores in the stored order, then in the (outputs, inputs) view every caller ranks in.
        let stored = try storedScores(method, model: model, layers: layers, weights: weights, calibration: calibration, seed: seed, threads: threads)
        return stored.map { l in
            let view = WeightView(model, l.name)
            return (l.name, view.rows, view.view(l.scores))
        }
    }

    private static func storedScores(
        _ method: PruneRecipe.Method, model: Graph, layers: [String], weights: [(String, Tensor)], calibration: CalibrationSet?, seed: UInt64, threads: Int
    ) throws -> WeightScores {
        func rows(_ t: Tensor) -> Int { t.shape.first ?? 1 }
        switch method {
        case .magnitude, .auto, .energy:
            return MagnitudePruning.scores(weights.map { (name: $0.0, tensor: $0.1) })
        case .random:
            var rng = Philox(seed: seed, stream: 13)
            return weights.map { ($0.0, rows($0.1), (0..<$0.1.count).map { _ in Double(rng.nextUnitFloat()) }) }
        case .taylor, .snip:
            // taylor: mean over batches of (g·w)² (Molchanov 2019); snip: |Σ_batches g·w| (Lee 2019:
            // the sum of the batches' mean-loss gradients is, up to a factor, the gradient over
            // all of them, so several batches are one larger batch).
            let batches = calibration!.batches
            var acc = weights.map { [Double](repeating: 0, count: $0.1.count) }
            let names = Set(layers)
            for batch in batches {
                let g = Probe.gradients(model, batch, names: names, threads: threads)
                for (l, (name, w)) in weights.enumerated() {
                    let gl = g[name]!
                    w.withUnsafeBufferPointer { wp in
                        for i in 0..<wp.count {
                            let t = Double(gl[i]) * Double(wp[i])
                            acc[l][i] += method == .taylor ? t * t : t
                        }
                    }
                }
            }
            let k = Double(max(batches.count, 1))
            return weights.enumerated().map { l, w in (w.0, rows(w.1), acc[l].map { method == .taylor ? $0 / k : abs($0) }) }
        case .obd:
            // ½·h_ii·w² with h_ii the empirical Fisher, the mean squared per-example gradient.
            var fisher = weights.map { [Double](repeating: 0, count: $0.1.count) }
            let names = Set(layers)
            var n = 0
            for batch in calibration!.batches {
                for e in 0..<batch.count {
                    let g = Probe.gradients(model, batch.subset([e]), names: names, threads: threads)
                    for (l, name) in layers.enumerated() {
                        let gl = g[name]!
                        for i in 0..<gl.count { fisher[l][i] += Double(gl[i]) * Double(gl[i]) }
                    }
                    n += 1
                }
            }
            return weights.enumerated().map { l, w in
                (w.0, rows(w.1), w.1.scalars.enumerated().map { i, v in 0.5 * fisher[l][i] / Double(max(n, 1)) * Double(v) * Double(v) })
            }
        case .wanda:
            // |W_ij|·‖X_j‖₂ over every calibration row the layer multiplies; every layer's
            // inputs from one run of the (unpruned) model per batch.
            let squares = try Probe.columnSquares(model, weights: weights.map(\.0), calibration: calibration!, threads: threads)
            return weights.map { name, w in
                let view = WeightView(model, name)
                let cols = view.cols
                let norms = squares[name]!.map { $0.squareRoot() }
                // Input j of stored element i: its column, or its row when stored inputs first.
                let outputs = view.rows
                return (name, rows(w), w.scalars.enumerated().map { i, v in Double(v.magnitude) * norms[view.transposed ? i / outputs : i % cols] })
            }
        case .obs, .sparsegpt, .lrp:
            preconditionFailure("\(method.rawValue) is not a per-weight score")
        }
    }
}
