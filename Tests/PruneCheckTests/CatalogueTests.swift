import Common
import Foundation
import Testing
import Evaluation
@testable import ModelIO
@testable import Pruning
@testable import TensorEngine

/// The small fixtures the catalogue tests run on.
enum CatalogueFixtures {
    static func digitsModel() throws -> Graph {
        try LayerList.load(architecture: Repo.path("examples/models/mlp_digits.json"), weights: Repo.path("examples/models/mlp_digits.safetensors"))
    }

    static func digits(_ split: String = "train") throws -> LabeledData {
        try DataLoading.loadSplit(path: Repo.path("examples/data/digits.npz"), split: SplitSource(inputs: "x_\(split)", labels: "y_\(split)"),
                                  scale: 1, classes: 10)
    }

    /// A one-layer linear classifier (in → out) with seeded weights.
    static func linear(in cols: Int, out rows: Int, seed: UInt64) -> Graph {
        var rng = Philox(seed: seed)
        var b = GraphBuilder(inputShape: [cols])
        b.linear("fc", weight: Tensor(shape: [rows, cols], scalars: (0..<(rows * cols)).map { _ in rng.nextUnitFloat() * 2 - 1 }),
                 bias: Tensor(zeros: [rows]))
        return b.build()
    }

    static func randomData(count: Int, cols: Int, classes: Int, seed: UInt64, columnScale: ((Int) -> Float)? = nil) -> LabeledData {
        var rng = Philox(seed: seed)
        let x = (0..<(count * cols)).map { i in (rng.nextUnitFloat() * 2 - 1) * (columnScale?(i % cols) ?? 1) }
        return LabeledData(inputs: Tensor(shape: [count, cols], scalars: x), labels: (0..<count).map { _ in Int32(rng.nextInt(below: classes)) })
    }

    static func accuracy(_ model: Graph, _ data: LabeledData) -> Double {
        let y = model.predict(data.inputs, threads: 1)
        let c = y.shape[1]
        var correct = 0
        for n in 0..<data.count {
            let row = y.scalars[(n * c)..<((n + 1) * c)]
            if row.firstIndex(of: row.max()!)! - n * c == Int(data.labels[n]) { correct += 1 }
        }
        return Double(correct) / Double(data.count)
    }
}

@Suite struct SelectionTests {
    @Test func globalAndLayerCountsAreExactAndTiesAreStable() {
        let layers: WeightScores = [("a", 2, [0.1, 0.5, 0.3, 0.2]), ("b", 1, [0.2, 0.05, 0.9, 0.2])]
        let g = Selection.masks(layers, sparsity: 0.5, scope: .global)
        #expect(g["a"] == [0, 1, 1, 0] && g["b"] == [0, 0, 1, 1])  // 0.05, 0.1, then the 0.2s by layer and index
        let l = Selection.masks(layers, sparsity: 0.25, scope: .layer)
        #expect(l["a"] == [0, 1, 1, 1] && l["b"] == [1, 0, 1, 1])
        #expect(Selection.layerSparsities(layers, sparsity: 0.5) == [0.5, 0.5])
    }

    @Test func perRowPrunesTheSameCountInEveryRow() {
        let m = Selection.perRow(("w", 2, [4, 3, 2, 1, 1, 2, 3, 4]), sparsity: 0.5)
        #expect(m == [1, 1, 0, 0, 0, 0, 1, 1])
        // 0.5 of 3 columns: 1.5 per row; rows alternate 2 and 1, the layer loses exactly 3.
        #expect(Selection.perRow(("w", 2, [1, 2, 3, 1, 2, 3]), sparsity: 0.5) == [0, 0, 1, 0, 1, 1])
    }

    @Test func lockedWeightsStayPruned() {
        let locked = Selection.locking([("a", 1, [9, 1, 5, 7])], previous: ["a": [0, 1, 1, 1]])
        #expect(Selection.masks(locked, sparsity: 0.5, scope: .layer)["a"] == [0, 0, 1, 1])
    }

    /// TFMOT's PolynomialDecay (power 3, s_i = 0, s_f = 0.8, end 1000), the values of
    /// PRUNING-REFERENCES §3.4.
    @Test func gradualScheduleMatchesTFMOT() {
        let expected: [(Int, Double)] = [(0, 0), (100, 0.2168), (250, 0.4625), (500, 0.7), (750, 0.7875), (900, 0.7992), (1000, 0.8), (1200, 0.8)]
        for (step, s) in expected {
            #expect(abs(GradualSchedule.sparsity(step: step, initial: 0, final: 0.8, endStep: 1000) - s) < 5e-5, "step \(step)")
        }
    }
}

@Suite struct CriterionOracleTests {
    /// Wanda's mask is the per-row bottom-k of |W|·‖X_j‖₂; with equal column norms it is
    /// per-row magnitude pruning.
    @Test func wandaMatchesItsFormula() throws {
        let cols = 12, rows = 5
        for equalNorms in [false, true] {
            let g = CatalogueFixtures.linear(in: cols, out: rows, seed: 1)
            guard case .float(let weight)? = g.initializer("fc.weight") else { Issue.record("no weight"); return }
            let w = weight.value.scalars
            // Equal norms: every column a permutation of the same values.
            let data: LabeledData
            if equalNorms {
                let x = (0..<40).flatMap { n in (0..<cols).map { j in Float(((n + j) % 40) + 1) / 40 } }
                data = LabeledData(inputs: Tensor(shape: [40, cols], scalars: x), labels: [Int32](repeating: 0, count: 40))
            } else {
                data = CatalogueFixtures.randomData(count: 40, cols: cols, classes: rows, seed: 2) { Float($0 + 1) }
            }
            var recipe = PruneRecipe(method: .wanda, scope: .layer, sparsity: 0.5)
            recipe.calibration = .init(samples: 40, batchSize: 16)
            let context = PruningContext(calibration: CalibrationSet(data, settings: recipe.calibration, seed: 0), seed: 0, threads: 1)
            let mask = try prune(g, recipe: recipe, context: context).masks["fc.weight"]!
            var norms = [Double](repeating: 0, count: cols)
            for n in 0..<40 { for j in 0..<cols { let v = Double(data.inputs.scalars[n * cols + j]); norms[j] += v * v } }
            let score = (0..<(rows * cols)).map { i in Double(abs(w[i])) * (equalNorms ? 1 : norms[i % cols].squareRoot()) }
            #expect(mask == Selection.perRow(("fc.weight", rows, score), sparsity: 0.5), "equal norms: \(equalNorms)")
        }
    }

    /// SNIP's score g·w equals ∂L(c⊙w)/∂c at c = 1, checked by central differences in c.
    @Test func snipScoreIsTheConnectionSensitivity() throws {
        let model = try CatalogueFixtures.digitsModel()
        let batch = try CatalogueFixtures.digits().subset(Array(0..<64))
        let scores = try Criteria.scores(.snip, model: model, layers: ["fc1.weight"], calibration: CalibrationSet(batch, settings: .init(samples: 64, batchSize: 64), seed: 0),
                                         seed: 0, threads: 1)[0].scores
        guard case .float(let v)? = model.initializer("fc1.weight") else { Issue.record("no fc1.weight"); return }
        func loss() -> Double {
            let out = model.predict(batch.inputs, threads: 1)
            return Double(softmaxCrossEntropy(Variable(out), labels: batch.labels, tape: nil).value.scalars[0])
        }
        let original = v.value.scalars
        let h = 1e-2
        for j in [0, 17, 500, 1023, 2047] {
            v.update { $0[j] = Float(Double(original[j]) * (1 + h)) }
            let up = loss()
            v.update { $0[j] = Float(Double(original[j]) * (1 - h)) }
            let down = loss()
            v.update { $0[j] = original[j] }
            let numeric = abs((up - down) / (2 * h))
            #expect(abs(numeric - scores[j]) <= 2e-3 * max(scores.max()!, 1e-6) + 0.05 * scores[j], "weight \(j): numeric \(numeric), score \(scores[j])")
        }
    }

    /// OBD's Hessian diagonal is the empirical Fisher: for a linear softmax classifier the
    /// per-example gradient is (p − y)·xᵀ, so the score is ½·mean((p_i − y_i)·x_j)²·w².
    @Test func obdScoreIsHalfTheFisherTimesWeightSquared() throws {
        let cols = 6, rows = 3
        let g = CatalogueFixtures.linear(in: cols, out: rows, seed: 5)
        let data = CatalogueFixtures.randomData(count: 20, cols: cols, classes: rows, seed: 6)
        let scores = try Criteria.scores(.obd, model: g, layers: ["fc.weight"], calibration: CalibrationSet(data, settings: .init(samples: 20, batchSize: 7), seed: 0),
                                         seed: 0, threads: 1)[0].scores
        guard case .float(let v)? = g.initializer("fc.weight") else { Issue.record("no weight"); return }
        let logits = g.predict(data.inputs, threads: 1).scalars
        var fisher = [Double](repeating: 0, count: rows * cols)
        for n in 0..<20 {
            let z = logits[(n * rows)..<((n + 1) * rows)].map { Double($0) }
            let e = z.map { exp($0 - z.max()!) }
            let p = e.map { $0 / e.reduce(0, +) }
            for i in 0..<rows {
                let d = p[i] - (Int(data.labels[n]) == i ? 1 : 0)
                for j in 0..<cols { let gij = d * Double(data.inputs.scalars[n * cols + j]); fisher[i * cols + j] += gij * gij / 20 }
            }
        }
        for k in 0..<(rows * cols) {
            let w = Double(v.value.scalars[k])
            let expected = 0.5 * fisher[k] * w * w
            #expect(abs(scores[k] - expected) <= 1e-5 * max(expected, 1e-3), "entry \(k): \(scores[k]) vs \(expected)")
        }
    }

    /// OBS on a quadratic with a known H: removing one weight applies
    /// δw = −(w_q/[H⁻¹]_qq)·H⁻¹e_q and costs exactly L_q = w_q²/(2[H⁻¹]_qq); removing several
    /// leaves the survivors at the constrained minimum (zero gradient on the kept set), in both
    /// the kept-set and the pruned-set forms.
    @Test func obsUpdateIsTheClosedFormOptimum() {
        let n = 7
        var rng = Philox(seed: 9)
        let a = (0..<(n * n)).map { _ in Double(rng.nextUnitFloat()) - 0.5 }
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { h[i * n + j] += a[i * n + k] * a[j * n + k] } }; h[i * n + i] += 0.1 }
        let hInv = SPD.inverse(lower: SPD.cholesky(h, n: n)!, n: n)
        let w = (0..<n).map { _ in Double(rng.nextUnitFloat()) * 2 - 1 }
        func cost(_ v: [Double]) -> Double {
            let d = zip(v, w).map { $0 - $1 }
            return 0.5 * (0..<n).reduce(0.0) { acc, i in acc + d[i] * (0..<n).reduce(0.0) { $0 + h[i * n + $1] * d[$1] } }
        }
        let q = 3
        var mask = [Float](repeating: 1, count: n)
        mask[q] = 0
        let single = Reconstruction.obsRow(w, mask: mask[...], h: h, hInverse: hInv, cols: n)
        for i in 0..<n {
            let expected = i == q ? 0 : w[i] - w[q] / hInv[q * n + q] * hInv[i * n + q]
            #expect(abs(single[i] - expected) < 1e-9, "entry \(i)")
        }
        #expect(abs(cost(single) - w[q] * w[q] / (2 * hInv[q * n + q])) < 1e-9)
        for pruned in [[0, 2, 5], [0, 1, 2, 4, 6]] {   // kept-set form, then pruned-set form
            var m = [Float](repeating: 1, count: n)
            for p in pruned { m[p] = 0 }
            let r = Reconstruction.obsRow(w, mask: m[...], h: h, hInverse: hInv, cols: n)
            let d = zip(r, w).map { $0 - $1 }
            for i in 0..<n where m[i] == 1 {
                let grad = (0..<n).reduce(0.0) { $0 + h[i * n + $1] * d[$1] }
                #expect(abs(grad) < 1e-9, "pruned \(pruned): gradient \(grad) on kept weight \(i)")
            }
            #expect(pruned.allSatisfy { r[$0] == 0 })
        }
    }

    /// SparseGPT hits the exact count, keeps N:M valid, and reconstructs the layer's outputs
    /// on its calibration data better than the magnitude mask without updates.
    @Test func sparseGPTReconstructsBetterThanMagnitude() throws {
        let cols = 40, rows = 9
        let data = CatalogueFixtures.randomData(count: 200, cols: cols, classes: rows, seed: 4) { Float(1 + $0 % 5) }
        func outputError(_ g: Graph, _ dense: Graph) -> Double {
            zip(g.predict(data.inputs, threads: 1).scalars, dense.predict(data.inputs, threads: 1).scalars).reduce(0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
        }
        let dense = CatalogueFixtures.linear(in: cols, out: rows, seed: 3)
        for granularity in [PruneRecipe.Granularity.unstructured, .nm(n: 2, m: 4)] {
            var recipe = PruneRecipe(method: .sparsegpt, scope: .layer, granularity: granularity, sparsity: 0.5)
            recipe.calibration = .init(samples: 200, batchSize: 64)
            let context = PruningContext(calibration: CalibrationSet(data, settings: recipe.calibration, seed: 0), seed: 0, threads: 1)
            let (g, masks) = try prune(dense.copy(), recipe: recipe, context: context)
            let mask = masks["fc.weight"]!
            #expect(mask.filter { $0 == 0 }.count == rows * cols / 2)
            if case .nm = granularity { #expect(NMPruning.isValid(mask, rows: rows, n: 2, m: 4)) }
            var magRecipe = recipe
            magRecipe.method = .magnitude
            let (mag, _) = try prune(dense.copy(), recipe: magRecipe)
            #expect(outputError(g, dense) < 0.8 * outputError(mag, dense), "\(granularity.text)")
        }
    }

    /// z⁺ relevance is conserved through Linear layers and MaxPool: the relevance of a layer's
    /// inputs sums to that of its outputs. Through a Conv on images a unit whose receptive field
    /// is all background has z⁺ = 0 (the rule has no bias) and absorbs its relevance, so there
    /// the sum may only shrink.
    @Test(arguments: ["lenet300100_mnist5k", "lenet5_mnist5k"])
    func lrpConservesRelevance(_ name: String) throws {
        let model = try ModelLoading.load(path: Repo.path("examples/models/\(name).onnx"), architecture: nil)
        let data = try DataLoading.loadSplit(path: Repo.path("examples/data/mnist5k.npz"), split: SplitSource(inputs: "x_test", labels: "y_test"),
                                             scale: Float(1.0 / 255), classes: 10)
        let batch = LabeledData(inputs: data.inputs.rows(0..<16).reshaped([16] + model.inputShape), labels: Array(data.labels[0..<16]))
        let gemms = model.nodes.filter { ["Gemm", "Conv", "MaxPool"].contains($0.opType) }
        let keep = Set(gemms.flatMap { [$0.outputs[0], $0.inputs[0]] })
        let r = try LRP.propagate(model, batch: batch, keep: keep.union([model.outputs[0]]), threads: 1)
        let logits = model.predict(batch.inputs, threads: 1).scalars
        let start = (0..<16).reduce(0.0) { $0 + Double(logits[$1 * 10 + Int(batch.labels[$1])]) }
        #expect(abs(r[model.outputs[0]]!.scalars.reduce(0) { $0 + Double($1) } - start) < 1e-4)
        for node in gemms {
            // Outputs with z = 0 under V = max(W, 0) pass nothing down; the rest is conserved.
            guard let out = r[node.outputs[0]] else { continue }
            let total = out.scalars.reduce(0) { $0 + Double($1) }
            let inputRelevance = try LRP.ruleStep(model, node: node, a: try model.capture(batch.inputs, [node.inputs[0]], threads: 1)[node.inputs[0]] ?? batch.inputs,
                                                  r: out, threads: 1).scalars.reduce(0) { $0 + Double($1) }
            if node.opType == "Conv" {
                #expect(abs(inputRelevance) <= abs(total) * (1 + 1e-4) && abs(inputRelevance) > 0.5 * abs(total), "\(node.name): \(inputRelevance) vs \(total)")
            } else {
                #expect(abs(inputRelevance - total) <= 1e-3 * max(abs(total), 1), "\(node.name): \(inputRelevance) vs \(total)")
            }
        }
    }
}

@Suite struct CatalogueInvariantTests {
    static let weightMethods: [PruneRecipe.Method] = [.magnitude, .random, .taylor, .snip, .obd, .obs, .sparsegpt, .wanda]

    static func recipe(_ method: PruneRecipe.Method, _ granularity: PruneRecipe.Granularity, scope: PruneRecipe.Scope) -> PruneRecipe {
        var r = PruneRecipe(method: method, scope: scope, granularity: granularity, sparsity: granularity == .nm(n: 2, m: 4) ? 0.5 : 0.7,
                            finetune: FineTuneSettings(epochs: 1, batchSize: 64, learningRate: 0.02, momentum: 0.9))
        r.calibration = .init(samples: 128, batchSize: 64)
        return r
    }

    /// For every weight-level method: the achieved sparsity is within one weight (per layer
    /// for scope layer) of the request, N:M masks are valid, pruned weights stay +0 through
    /// fine-tuning, and the result is bit-identical at 1 and 2 threads.
    @Test(arguments: weightMethods)
    func weightMethodsKeepTheirInvariants(_ method: PruneRecipe.Method) throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<512))
        for granularity in [PruneRecipe.Granularity.unstructured, .nm(n: 2, m: 4)] {
            for scope in method.isLayerwise ? [PruneRecipe.Scope.layer, .global] : [.global, .layer] {
                let recipe = Self.recipe(method, granularity, scope: scope)
                var results: [[UInt32]] = []
                for threads in [1, 2] {
                    let outcome = try PruningPipeline.run(try CatalogueFixtures.digitsModel(), recipe: recipe, train: train, seed: 7, threads: threads)
                    let g = outcome.graph
                    for (name, v) in g.prunableWeights {
                        let mask = outcome.masks[name]!
                        let zeros = v.value.scalars.filter { $0 == 0 }.count
                        let requested = recipe.sparsity * Double(v.value.count)
                        if case .nm = granularity {
                            #expect(NMPruning.isValid(mask, rows: v.value.shape[0], n: 2, m: 4), "\(method.rawValue) \(name)")
                        } else if scope == .layer {
                            #expect(abs(Double(mask.filter { $0 == 0 }.count) - requested) <= 1, "\(method.rawValue) \(name)")
                        }
                        #expect(zeros >= mask.filter { $0 == 0 }.count)
                        #expect(zip(v.value.scalars, mask).allSatisfy { $1 != 0 || $0.bitPattern == 0 }, "\(method.rawValue): a pruned weight of \(name) is not +0")
                    }
                    if scope == .global, granularity == .unstructured {
                        let total = outcome.masks.values.reduce(0) { $0 + $1.count }, pruned = outcome.masks.values.reduce(0) { $0 + $1.filter { $0 == 0 }.count }
                        #expect(abs(Double(pruned) - recipe.sparsity * Double(total)) <= Double(outcome.masks.count), "\(method.rawValue) global")
                    }
                    results.append(g.parameters.flatMap { $0.variable.value.scalars.map(\.bitPattern) })
                }
                #expect(results[0] == results[1], "\(method.rawValue) \(granularity.text) \(scope.rawValue): results differ between 1 and 2 threads")
            }
        }
    }

    /// For every unit-level method: the shrunk model computes what the dense model with the
    /// same units zeroed computes, and a second run chooses the same units.
    @Test(arguments: [PruneRecipe.Method.magnitude, .random, .taylor, .obd, .snip, .lrp])
    func unitMethodsShrinkToTheMaskedModel(_ method: PruneRecipe.Method) throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<256))
        var recipe = PruneRecipe(method: method, scope: .global, granularity: .neuron, sparsity: 0.5)
        recipe.calibration = .init(samples: 128, batchSize: 64)
        let dense = try CatalogueFixtures.digitsModel()
        let context = PruningContext(calibration: CalibrationSet(train, settings: recipe.calibration, seed: 1), seed: 1, threads: 1)
        let (plan, keep) = try unitSelection(dense, recipe: recipe, sparsity: 0.5, context: context)
        #expect(keep.map(\.count) == [16])
        #expect(try unitSelection(dense, recipe: recipe, sparsity: 0.5, context: context).keep == keep)
        let small = try plan.shrink(dense, keep: keep)
        let masked = dense.copy()
        try plan.zeroOut(masked, keep: keep)
        let x = train.inputs.rows(0..<32)
        #expect(maxAbsDiff(small.predict(x, threads: 1).scalars, masked.predict(x, threads: 1).scalars) <= 1e-5)
    }

    @Test func iterativeReachesTheSparsityAndNeverRevivesAWeight() throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<512))
        var recipe = Self.recipe(.random, .unstructured, scope: .global)
        recipe.schedule = .iterative(steps: 3)
        recipe.finetune?.epochs = 3
        let outcome = try PruningPipeline.run(try CatalogueFixtures.digitsModel(), recipe: recipe, train: train, seed: 2, threads: 1)
        // Random scores would revive weights without the lock: every pruned weight is +0.
        Self.expectSparsity(0.7, outcome)
        #expect(outcome.notes.contains { $0.contains("iterative: 3 rounds") })
    }

    @Test func gradualEndsAtTheFinalSparsityWithZerosKept() throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<512))
        var recipe = Self.recipe(.magnitude, .unstructured, scope: .global)
        recipe.schedule = .gradual(frequency: 2, initial: 0.1, end: 0.5)
        recipe.finetune?.epochs = 2
        let outcome = try PruningPipeline.run(try CatalogueFixtures.digitsModel(), recipe: recipe, train: train, seed: 2, threads: 1)
        Self.expectSparsity(0.7, outcome)
    }

    /// The masks remove `sparsity` of the weights to within one, and every removed weight is +0.
    static func expectSparsity(_ sparsity: Double, _ outcome: PruningOutcome, sourceLocation: SourceLocation = #_sourceLocation) {
        let pruned = outcome.masks.values.reduce(0) { $0 + $1.filter { $0 == 0 }.count }, total = outcome.masks.values.reduce(0) { $0 + $1.count }
        #expect(abs(Double(pruned) - sparsity * Double(total)) <= 1, sourceLocation: sourceLocation)
        for (name, v) in outcome.graph.prunableWeights {
            #expect(zip(v.value.scalars, outcome.masks[name]!).allSatisfy { $1 != 0 || $0.bitPattern == 0 }, "\(name)", sourceLocation: sourceLocation)
        }
    }
}

@Suite struct RecoveryTests {
    /// Group lasso shrinks whole rows and L1 single weights, compared with the same training
    /// without the penalty.
    @Test func regularizationDrivesWeightsTowardZero() throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<512))
        func trained(_ reg: PruneRecipe.Regularization?) throws -> [Float] {
            var r = PruneRecipe(sparsity: 0.0, finetune: FineTuneSettings(epochs: 2, batchSize: 32, learningRate: 0.05, momentum: 0.9))
            r.regularize = reg
            r.finetune?.epochs = 0
            let g = try PruningPipeline.run(try CatalogueFixtures.digitsModel(), recipe: r, train: train, seed: 1, threads: 1).graph
            guard case .float(let v)? = g.initializer("fc1.weight") else { return [] }
            return v.value.scalars
        }
        let plain = try trained(.init(kind: .l1, lambda: 1e-12, epochs: 2))
        let l1 = try trained(.init(kind: .l1, lambda: 2e-3, epochs: 2))
        #expect(l1.filter { abs($0) < 1e-2 }.count > plain.filter { abs($0) < 1e-2 }.count + 100)
        let lasso = try trained(.init(kind: .groupLasso, lambda: 5e-2, epochs: 2))
        func smallestRows(_ w: [Float]) -> Double {
            let norms: [Double] = (0..<32).map { r in
                var sq = 0.0
                for k in 0..<64 { sq += Double(w[r * 64 + k]) * Double(w[r * 64 + k]) }
                return sq.squareRoot()
            }
            return norms.sorted()[0..<8].reduce(0, +)
        }
        let lassoSmall = smallestRows(lasso), plainSmall = smallestRows(plain)
        #expect(lassoSmall < 0.5 * plainSmall, "the 8 smallest row norms: group lasso \(lassoSmall), plain \(plainSmall)")
    }

    /// With alpha = 1 the student learns only from the teacher: its outputs end closer to the
    /// dense model's than after the same fine-tuning on labels.
    @Test func distillationPullsTheStudentTowardTheTeacher() throws {
        let train = try CatalogueFixtures.digits().subset(Array(0..<512))
        let dense = try CatalogueFixtures.digitsModel()
        let x = train.inputs
        let teacherOut = dense.predict(x, threads: 1)
        func kl(_ distill: PruneRecipe.Distillation?) throws -> Double {
            var r = PruneRecipe(sparsity: 0.8, finetune: FineTuneSettings(epochs: 2, batchSize: 32, learningRate: 0.05, momentum: 0.9))
            r.distill = distill
            let g = try PruningPipeline.run(try CatalogueFixtures.digitsModel(), recipe: r, train: train, seed: 1, threads: 1).graph
            return Double(distillationKL(student: Variable(g.predict(x, threads: 1)), teacher: teacherOut, temperature: 1, tape: nil).value.scalars[0])
        }
        let labels = try kl(nil), distilled = try kl(.init(temperature: 2, alpha: 1))
        #expect(distilled < 0.9 * labels, "KL to the teacher: distilled \(distilled), labels only \(labels)")
    }
}

@Suite struct AllocationTests {
    /// `auto` keeps the measured drop within the budget and removes at least as many weights as
    /// the best uniform sparsity within it; `energy` saves at least as much estimated energy as
    /// that uniform allocation. Both are the same on a second run.
    @Test func allocationsBeatUniformWithinTheBudget() throws {
        let train = try CatalogueFixtures.digits()
        let calibration = CalibrationSet(train, settings: .init(samples: 600, batchSize: 200), seed: 3)
        let model = try CatalogueFixtures.digitsModel()
        let layers = model.prunableWeights.map(\.name)
        let a = try Allocator.allocate(model, layers: layers, maxSparsity: 0.99, budget: .init(maxAccuracyDrop: 0.01), energy: nil, calibration: calibration, threads: 1)
        #expect(a.denseAccuracy - a.prunedAccuracy <= 0.01 + 1e-12)
        #expect(a.totalSparsity >= a.uniformSparsity - 0.01, "auto \(a.totalSparsity) vs uniform \(a.uniformSparsity)")
        #expect(try Allocator.allocate(model, layers: layers, maxSparsity: 0.99, budget: .init(maxAccuracyDrop: 0.01), energy: nil, calibration: calibration, threads: 2) == a)
        let e = try Allocator.allocate(model, layers: layers, maxSparsity: 0.99, budget: .init(maxAccuracyDrop: 0.01), energy: { EnergyModel.picojoules(macs: $0, parameterWords: $1) }, calibration: calibration, threads: 1)
        let costs = try Allocator.layerCosts(model, layers: layers)
        func energy(_ s: [Double]) -> Double { zip(costs, s).reduce(0) { $0 + $1.0.energy(density: 1 - $1.1) { EnergyModel.picojoules(macs: $0, parameterWords: $1) } } }
        #expect(energy(e.layers.map(\.sparsity)) <= energy(layers.map { _ in e.uniformSparsity }) + 1e-6)
        // The weights were restored.
        #expect(model.prunableWeights.allSatisfy { $0.variable.value.scalars.contains { $0 == 0 } == false })
    }

    /// A latency budget, with a deterministic stand-in for the clock (the nonzero weights, as
    /// "microseconds") so the search itself is checked: the allocation fits the target, loses
    /// no more calibration accuracy than the lowest uniform sparsity that fits it, and is the
    /// same for any thread count; a target the dense model meets prunes nothing; one that no
    /// allowed allocation meets is an error naming the key.
    @Test func latencyBudgetsReachTheTargetWithTheLeastAccuracyLost() throws {
        let train = try CatalogueFixtures.digits()
        let calibration = CalibrationSet(train, settings: .init(samples: 600, batchSize: 200), seed: 3)
        let model = try CatalogueFixtures.digitsModel()
        let layers = model.prunableWeights.map(\.name)
        let nonzeros: (Graph) -> Double = { g in
            Double(g.prunableWeights.reduce(0) { acc, w in acc + w.variable.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } })
        }
        let dense = nonzeros(model)
        func allocate(_ target: Double, threads: Int = 1, drop: Double? = nil) throws -> Allocation {
            try Allocator.allocate(model, layers: layers, maxSparsity: 0.95, budget: .init(maxAccuracyDrop: drop, maxLatencyP50: target),
                                   energy: nil, calibration: calibration, threads: threads, latency: nonzeros)
        }
        let a = try allocate(0.4 * dense)
        #expect(a.prunedLatency! <= 0.4 * dense && a.denseLatency == dense)
        #expect(try allocate(0.4 * dense, threads: 2) == a)
        // The lowest uniform level that fits, measured the same way.
        #expect(a.uniformSparsity >= 0.6 - 1e-9 && a.uniformSparsity <= 0.7 + 1e-9, "uniform \(a.uniformSparsity)")
        let uniform = try Allocator.allocate(model, layers: layers, maxSparsity: a.uniformSparsity, budget: .init(maxAccuracyDrop: 0.99),
                                             energy: nil, calibration: calibration, threads: 1)
        #expect(uniform.layers.allSatisfy { $0.sparsity == a.uniformSparsity })
        #expect(a.prunedAccuracy >= uniform.prunedAccuracy, "latency allocation \(a.prunedAccuracy) vs uniform \(uniform.prunedAccuracy)")
        let free = try allocate(2 * dense)
        #expect(free.layers.allSatisfy { $0.sparsity == 0 } && free.prunedAccuracy == free.denseAccuracy)
        #expect(throws: AllocationError.self) { try allocate(1) }
        do { _ = try allocate(1) } catch let e as AllocationError { #expect(e.key == "prune.budget.max_latency_p50_us", "\(e)") }
        // With an accuracy budget too, only moves within it count.
        #expect(throws: AllocationError.self) { try allocate(0.1 * dense, drop: 0) }
        // The real clock: the dense model is within a day of microseconds, and under a
        // nanosecond nothing runs.
        let real = try Allocator.allocate(model, layers: layers, maxSparsity: 0.9, budget: .init(maxLatencyP50: 86_400e6),
                                          energy: nil, calibration: calibration, threads: 1, latencyProbe: LatencyHarness.budgetProbe)
        #expect(real.layers.allSatisfy { $0.sparsity == 0 } && real.denseLatency! > 0)
        #expect(throws: AllocationError.self) {
            try Allocator.allocate(model, layers: layers, maxSparsity: 0.9, budget: .init(maxLatencyP50: 1e-3),
                                   energy: nil, calibration: calibration, threads: 1, latencyProbe: LatencyHarness.budgetProbe)
        }
        #expect(model.prunableWeights.allSatisfy { $0.variable.value.scalars.contains { $0 == 0 } == false })
    }
}

@Suite struct BlockPruningTests {
    /// Removing a residual branch computes what the model computes with every parameter of the
    /// branch zeroed (Add(x, 0) = x), in all three PyTorch exports.
    @Test(arguments: ["resnetish_nofold_opset13", "resnetish_opset13", "resnetish_opset17"])
    func residualBranchRemovalEqualsTheZeroedBranch(_ name: String) throws {
        let folder = Repo.fixtures + "/pytorch-extra"
        let model = try ModelLoading.load(path: folder + "/\(name).onnx", architecture: nil)
        let blocks = try BlockPruning.blocks(model, protect: [])
        #expect(blocks.map(\.name) == ["/block/Add"], "\(blocks.map(\.name))")
        let small = BlockPruning.remove(model, blocks)
        #expect(small.nodes.count == model.nodes.count - blocks[0].nodes.count)
        #expect(!small.nodes.contains { $0.name.hasPrefix("/block/conv") || $0.name == "/block/Add" })
        let zeroed = model.copy()
        for w in blocks[0].weights {
            guard case .float(let v)? = zeroed.initializer(w) else { continue }
            zeroed.setInitializer(w, .float(Tensor(zeros: v.value.shape)))
        }
        let r = try NPZ.read(path: folder + "/resnetish.npz")
        let x = Tensor(shape: r["input"]!.shape, scalars: r["input"]!.floats())
        #expect(maxAbsDiff(small.predict(x, threads: 1).scalars, zeroed.predict(x, threads: 1).scalars) <= 1e-5)
        #expect(maxAbsDiff(small.predict(x, threads: 1).scalars, model.predict(x, threads: 1).scalars) > 1e-3)   // the block mattered
        // Exported and reloaded, the smaller graph computes the same.
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ONNXModel.save(small, to: dir + "/b.onnx")
        #expect(try ModelLoading.load(path: dir + "/b.onnx", architecture: nil).predict(x, threads: 1).scalars == small.predict(x, threads: 1).scalars)
    }

    /// A layer whose output keeps its input's shape goes with its activation: the MLP without
    /// its 100 → 100 layer equals the same MLP built from the two remaining layers.
    @Test func equalWidthLayerRemovalEqualsTheHandBuiltModel() throws {
        let model = try ModelLoading.load(path: Repo.path("examples/models/mlp_mnist1d.onnx"), architecture: nil)
        let blocks = try BlockPruning.blocks(model, protect: [])
        #expect(blocks.map(\.name) == ["node_linear_1"] && blocks[0].nodes.count == 2)
        let small = try prune(model.copy(), recipe: PruneRecipe(granularity: .layer, sparsity: 0.5)).graph
        func tensor(_ name: String) -> Tensor {
            if case .float(let v)? = model.initializer(name) { return v.value }
            return Tensor(zeros: [0])
        }
        let gemms = model.nodes.filter { $0.opType == "Gemm" }
        var b = GraphBuilder(inputShape: [40])
        b.linear("a", weight: tensor(gemms[0].inputs[1]), bias: tensor(gemms[0].inputs[2]))
        b.relu("r")
        b.linear("c", weight: tensor(gemms[2].inputs[1]), bias: tensor(gemms[2].inputs[2]))
        let expected = b.build()
        let x = try CatalogueFixtures.mnist1dInputs()
        #expect(small.predict(x, threads: 1).scalars == expected.predict(x, threads: 1).scalars)
        #expect(small.parameters.reduce(0) { $0 + $1.variable.value.count } == 5110)
    }

    @Test func modelsWithoutBlocksAndProtectedBlocksAreErrors() throws {
        let cnn = try ModelLoading.load(path: Repo.path("examples/models/cnn_mnist1d.onnx"), architecture: nil)
        #expect(try BlockPruning.blocks(cnn, protect: []).isEmpty)   // every conv changes the length
        #expect(throws: StructuredPruningError.self) { try prune(cnn, recipe: PruneRecipe(granularity: .layer, sparsity: 0.5)) }
        let mlp = try ModelLoading.load(path: Repo.path("examples/models/mlp_mnist1d.onnx"), architecture: nil)
        var r = PruneRecipe(granularity: .layer, sparsity: 0.5)
        r.protect = ["node_linear_1"]
        #expect(throws: StructuredPruningError.self) { try prune(mlp, recipe: r) }
        var lrp = r
        lrp.method = .lrp
        #expect(lrp.problem?.key == "granularity")
    }
}

extension CatalogueFixtures {
    static func mnist1dInputs() throws -> Tensor {
        try DataLoading.loadSplit(path: Repo.path("examples/data/mnist1d.npz"), split: SplitSource(inputs: "x_test", labels: "y_test"), scale: 1, classes: 10)
            .inputs.rows(0..<32)
    }
}
