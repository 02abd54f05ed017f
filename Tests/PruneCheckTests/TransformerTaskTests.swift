import Foundation
import Testing
import Common
import Evaluation
import ModelIO
@testable import Pruning
@testable import TensorEngine

/// What transformer models need of pruning and evaluation: MatMul weights stored (in, out),
/// token labels with ignored positions, fidelity to the dense model.
@Suite struct TransformerTaskTests {
    static func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = Philox(seed: seed, stream: 3)
        return Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in rng.nextUnitFloat() * 2 - 1 })
    }

    static func transpose(_ t: Tensor) -> Tensor {
        let r = t.shape[0], c = t.shape[1], s = t.scalars
        return Tensor(shape: [c, r], scalars: (0..<(r * c)).map { i in s[(i % r) * c + i / r] })
    }

    /// x (B, 3, 8) → MatMul W1 (8, 12) → Relu → MatMul W2 (12, 5): weights stored inputs first,
    /// as the dynamo exporter writes Linear layers of sequence models.
    static func matmulModel(_ w1: Tensor, _ w2: Tensor) -> Graph {
        Graph(nodes: [Node(name: "fc1", opType: "MatMul", inputs: ["x", "w1"], outputs: ["h"]),
                      Node(name: "act", opType: "Relu", inputs: ["h"], outputs: ["a"]),
                      Node(name: "fc2", opType: "MatMul", inputs: ["a", "w2"], outputs: ["y"])],
              inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 3, 8])], outputs: ["y"],
              initializers: [("w1", .float(w1)), ("w2", .float(w2))], opset: 17)
    }

    /// The same layers as Linear Gemms on (B·3, 8) rows, weights (out, in).
    static func gemmModel(_ w1: Tensor, _ w2: Tensor) -> Graph {
        var b = GraphBuilder(inputShape: [8], inputName: "x")
        b.linear("fc1", weight: transpose(w1), bias: nil, weightKey: "w1")
        b.relu("act")
        b.linear("fc2", weight: transpose(w2), bias: nil, weightKey: "w2")
        return b.build()
    }

    /// Pruning a weight stored (in, out) must do what it does to the same weight stored
    /// (out, in): per-output-row Wanda groups, N:M groups along the inputs, SparseGPT's column
    /// order and updates, Taylor scores. The Gemm model is the oracle.
    @Test(arguments: ["wanda", "sparsegpt", "nm-magnitude", "taylor", "obs"])
    func aMatMulWeightIsPrunedAsItsLinearTwin(_ kind: String) throws {
        let w1 = Self.random([8, 12], seed: 1), w2 = Self.random([12, 5], seed: 2)
        let x = Self.random([40, 3, 8], seed: 3)
        let labels = (0..<(40 * 3)).map { Int32($0 % 5) }
        let recipe: PruneRecipe
        switch kind {
        case "wanda": recipe = PruneRecipe(method: .wanda, scope: .layer, sparsity: 0.5)
        case "sparsegpt": recipe = PruneRecipe(method: .sparsegpt, scope: .layer, sparsity: 0.5)
        case "obs": recipe = PruneRecipe(method: .obs, scope: .layer, sparsity: 0.4)
        case "taylor": recipe = PruneRecipe(method: .taylor, scope: .global, sparsity: 0.6)
        default: recipe = PruneRecipe(method: .magnitude, granularity: .nm(n: 2, m: 4), sparsity: 0.5)
        }
        let mm = Self.matmulModel(w1, w2), gm = Self.gemmModel(w1, w2)
        let mmData = LabeledData(features: [.float(x)], labels: labels, labelsPerExample: 3)
        let gmData = LabeledData(inputs: x.reshaped([120, 8]), labels: labels)
        // The same calibration rows in the same order, one batch: the Gemm model's rows are
        // the MatMul model's (example, position) rows.
        let c1 = PruningContext(calibration: CalibrationSet(batches: [mmData]), seed: 0, threads: 1)
        let c2 = PruningContext(calibration: CalibrationSet(batches: [gmData]), seed: 0, threads: 1)
        let (_, masks1) = try prune(mm, recipe: recipe, context: c1)
        let (_, masks2) = try prune(gm, recipe: recipe, context: c2)
        for name in ["w1", "w2"] {
            guard case .float(let a)? = mm.initializer(name), case .float(let b)? = gm.initializer(name) else { Issue.record("no \(name)"); continue }
            let expected = Self.transpose(b.value)
            #expect(masks1[name]!.count == a.value.count)
            let maskT = Self.transpose(Tensor(shape: b.value.shape, scalars: masks2[name]!)).scalars
            #expect(masks1[name]! == maskT, "\(kind) \(name): masks differ from the Linear twin's")
            let close = zip(a.value.scalars, expected.scalars).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }
            #expect(close, "\(kind) \(name): pruned weights differ from the Linear twin's")
            let zeros = a.value.scalars.filter { $0 == 0 }.count
            #expect(zeros > 0, "\(kind) \(name): nothing pruned")
        }
        // Stored masks keep pruned weights at zero under fine-tuning.
        FineTuning.run(model: mm, masks: masks1, data: mmData, settings: FineTuneSettings(epochs: 1, batchSize: 8), seed: 0, threads: 1)
        if case .float(let a)? = mm.initializer("w1") {
            #expect(zip(a.value.scalars, masks1["w1"]!).allSatisfy { $1 != 0 || $0 == 0 })
        }
    }

    /// Token cross-entropy over (B, T, V) logits with -100 positions ignored equals the mean
    /// over the counted positions, and their gradient is zero at the ignored ones.
    @Test func tokenCrossEntropyIgnoresMaskedPositions() {
        let logits = Variable(Self.random([2, 3, 4], seed: 9), requiresGrad: true)
        let labels: [Int32] = [1, -100, 3, 0, 2, -100]
        let tape = Tape()
        let loss = softmaxCrossEntropy(logits, labels: labels, tape: tape)
        tape.backward(from: loss)
        let v = logits.value.scalars
        var want = 0.0, n = 0.0
        for r in 0..<6 where labels[r] != -100 {
            let row = (0..<4).map { Double(v[r * 4 + $0]) }
            let lse = log(row.map { exp($0) }.reduce(0, +))
            want += lse - row[Int(labels[r])]
            n += 1
        }
        #expect(abs(Double(loss.value.scalars[0]) - want / n) < 1e-5)
        let g = logits.grad!.scalars
        #expect(g[4..<8].allSatisfy { $0 == 0 } && g[20..<24].allSatisfy { $0 == 0 })
        #expect(abs(g[0..<4].reduce(0, +)) < 1e-6 && g[0..<4].contains { $0 != 0 })
        let m = OutputMetrics.languageModel(logits: logits.value, labels: labels)
        #expect(abs(m.perplexity - exp(want / n)) < 1e-9 * exp(want / n))
    }

    /// Fidelity metrics against values worked by hand.
    @Test func fidelityToTheDenseOutputs() {
        let dense = Tensor(shape: [2, 2], scalars: [1, 0, 0, 2])
        let y = Tensor(shape: [2, 2], scalars: [1, 1, 0, -2])
        let f = OutputMetrics.fidelity(y, dense: dense, scores: true)
        #expect(abs(f["cosine_to_dense"]! - (1 / 2.0.squareRoot() - 1) / 2) < 1e-12)
        #expect(abs(f["output_rmse_to_dense"]! - (17.0 / 4).squareRoot()) < 1e-12)
        // Row 0: dense top-1 is 0, y ties (first wins: 0); row 1: dense 1, y 0.
        #expect(f["agreement"] == 0.5)
        let p = [exp(1.0), 1].map { $0 / (exp(1.0) + 1) }
        let klRow0 = p[0] * log(p[0] / 0.5) + p[1] * log(p[1] / 0.5)
        let q = [1, exp(-2.0)].map { $0 / (1 + exp(-2.0)) }, r = [1, exp(2.0)].map { $0 / (1 + exp(2.0)) }
        let klRow1 = r[0] * log(r[0] / q[0]) + r[1] * log(r[1] / q[1])
        #expect(abs(f["kl_to_dense"]! - (klRow0 + klRow1) / 2) < 1e-9)
        let same = OutputMetrics.fidelity(dense, dense: dense, scores: true)
        #expect(same["cosine_to_dense"] == 1 && same["output_rmse_to_dense"] == 0 && same["agreement"] == 1 && abs(same["kl_to_dense"]!) < 1e-12)
        #expect(OutputMetrics.fidelity(y, dense: dense, scores: false)["agreement"] == nil)
    }
}

/// The backward pass through whole exported transformers (embedding lookups, rotary
/// embeddings, attention masks, RMSNorm/LayerNorm, SwiGLU/GELU): the directional derivative of
/// the loss along a random direction equals the central difference of the loss.
@Suite struct TransformerGradientTests {
    @Test(arguments: ["llama_markov", "bert_tiny"])
    func gradientsMatchCentralDifferences(_ name: String) throws {
        let folder = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")
        let graph = try ModelLoading.loadGraph(path: "\(folder)/\(name).onnx", architecture: nil)
        let arrays = try NPZ.read(path: "\(folder)/\(name).npz")
        let feeds = try GraphFeeds.bind(graph, arrays: arrays, file: name)
        let data: LabeledData
        if name == "llama_markov" {
            data = LabeledData(features: feeds.map(FeatureArray.init), labels: arrays["labels"]!.integers()!.map { Int32($0) }, labelsPerExample: 16)
        } else {
            let y = graph.predict(feeds, threads: 1)
            data = LabeledData(features: feeds.map(FeatureArray.init), targets: Tensor(shape: y.shape, scalars: y.scalars.map { $0 * 0.5 + 0.1 }))
        }
        func loss() -> Double {
            let out = graph.forward(data.feeds, tape: nil, threads: 1)
            return Double(taskLoss(out, data, tape: Tape()).value.scalars[0])
        }
        let tape = Tape()
        tape.backward(from: taskLoss(graph.forward(data.feeds, tape: tape, threads: 1), data, tape: tape))
        var rng = Philox(seed: 5, stream: 1)
        let params = graph.parameters.map(\.variable)
        let direction = params.map { p in (0..<p.value.count).map { _ in rng.nextUnitFloat() * 2 - 1 } }
        var analytic = 0.0
        for (p, d) in zip(params, direction) {
            let g = try #require(p.grad, "no gradient for a parameter of \(name)").scalars
            for i in g.indices { analytic += Double(g[i]) * Double(d[i]) }
            p.zeroGrad()
        }
        let originals = params.map(\.value.scalars)
        func shift(_ e: Float) {
            for (k, p) in params.enumerated() { p.update { w in for i in 0..<w.count { w[i] = originals[k][i] + e * direction[k][i] } } }
        }
        let eps: Float = 1e-3
        shift(eps)
        let up = loss()
        shift(-eps)
        let down = loss()
        shift(0)
        let numeric = (up - down) / (2 * Double(eps))
        #expect(abs(numeric - analytic) <= 0.02 * max(abs(analytic), 1e-3), "\(name): analytic \(analytic), central difference \(numeric)")
    }
}

extension TransformerGradientTests {
    /// Fine-tuning trains what PyTorch trains: module parameters (embeddings, RMSNorm scales,
    /// projections), never an exporter's scalar constants (a norm's epsilon: trained, it went
    /// negative and the loss NaN).
    @Test func theTrainableInitializersAreTheModulesParameters() throws {
        let graph = try ModelLoading.loadGraph(path: Repo.path("Tests/PruneCheckTests/Fixtures/real-models/llama_markov.onnx"), architecture: nil)
        let names = Set(graph.parameters.map(\.name))
        for n in ["lm.model.embed_tokens.weight", "lm.model.layers.0.input_layernorm.weight", "lm.model.norm.weight",
                  "lm.model.layers.1.mlp.down_proj.weight", "lm.lm_head.weight"] {
            #expect(names.contains(n), "\(n) is not trained")
        }
        #expect(graph.parameters.allSatisfy { !$0.variable.value.shape.isEmpty }, "a scalar constant is trained")
        #expect(names.count == 21, "\(names.sorted())")
    }
}

/// Inference holds the live values only: a value goes when its last reader has run, and past
/// a budget, or between 16 KiB and 32 MiB, outputs are not kept for the next run. Results are
/// the same bits either way.
@Suite struct InferenceMemoryTests {
    @Test func keptOutputsStayWithinTheBudgetAndResultsDoNotChange() throws {
        let folder = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")
        let load = { try ModelLoading.loadGraph(path: "\(folder)/llama_markov.onnx", architecture: nil) }
        let free = try load(), tight = try load()
        tight.cachedFloatsLimit = 4096
        let feeds = try GraphFeeds.bind(free, arrays: try NPZ.read(path: "\(folder)/llama_markov.npz"), file: "llama_markov.npz")
        let want = free.predict(feeds, threads: 1).scalars.map(\.bitPattern)
        for _ in 0..<2 { #expect(tight.predict(feeds, threads: 1).scalars.map(\.bitPattern) == want) }
        let kept = tight.inferenceOutputs.compactMap { $0?.value.count }.reduce(0, +)
        #expect(kept <= 4096, "\(kept) floats kept")
        #expect(free.inferenceOutputs.compactMap { $0?.value.count }.reduce(0, +) > 4096)
        #expect(free.predict(feeds, threads: 2).scalars.map(\.bitPattern) == want)
    }

    /// Outputs of up to 16 KiB stay for the next run (their allocation costs more than they hold
    /// of the caches); larger ones go back to the heap, which hands out buffers still in cache.
    @Test func onlySmallOutputsAreKeptForTheNextRun() throws {
        for (count, kept) in [(100, true), (4_096, true), (4_097, false), (200_000, false)] {
            let nodes = [Node(name: "add", opType: "Add", inputs: ["x", "x"], outputs: ["a"], attributes: [:]),
                         Node(name: "mul", opType: "Mul", inputs: ["a", "a"], outputs: ["y"], attributes: [:])]
            let graph = Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [1, count])], outputs: ["y"],
                              initializers: [], opset: 17)
            let x = Tensor(shape: [1, count], scalars: (0..<count).map { Float($0 % 7) - 3 })
            for _ in 0..<2 {
                guard case .float(let y) = try graph.run([.float(Variable(x))], threads: 1)[0] else { Issue.record("no float output"); return }
                #expect(y.value.scalars == x.scalars.map { ($0 + $0) * ($0 + $0) })
            }
            #expect((graph.inferenceOutputs[0] != nil) == kept, "\(count) floats")
        }
    }
}
