import Common
import Foundation
import Testing
@testable import ModelIO
@testable import Pruning
@testable import TensorEngine

@Suite struct MagnitudeTests {
    @Test func globalRemovesTheSmallestAcrossLayersWithStableTies() {
        let a = Tensor(shape: [4], scalars: [0.1, -0.5, 0.3, 0.2])
        let b = Tensor(shape: [4], scalars: [-0.2, 0.05, 0.9, 0.2])
        let masks = MagnitudePruning.masks(for: [("a", a), ("b", b)], sparsity: 0.5, scope: .global)
        // Sorted magnitudes: 0.05(b1) 0.1(a0) 0.2(a3) 0.2(b0) 0.2(b3) ...; four go: ties by layer, then index.
        #expect(masks["a"] == [0, 1, 1, 0])
        #expect(masks["b"] == [0, 0, 1, 1])
    }

    @Test func layerScopeUsesTheSameRatioPerLayer() {
        let a = Tensor(shape: [10], scalars: (0..<10).map { Float($0) })
        let b = Tensor(shape: [3], scalars: [3, 1, 2])
        let masks = MagnitudePruning.masks(for: [("a", a), ("b", b)], sparsity: 0.4, scope: .layer)
        #expect(masks["a"]!.filter { $0 == 0 }.count == 4)
        #expect(masks["a"]![0..<4].allSatisfy { $0 == 0 })
        #expect(masks["b"] == [1, 0, 1])  // round(1.2) = 1 removed
    }

    @Test(arguments: [0.0, 0.3, 0.5, 0.9, 0.95])
    func achievedSparsityIsWithinOneWeight(sparsity: Double) throws {
        let model = try LayerList.load(architecture: Repo.path("examples/models/lenet300100_mnist5k.json"),
                                       weights: Repo.path("examples/models/lenet300100_mnist5k.safetensors"))
        let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
        applyMasks(MagnitudePruning.masks(for: weights, sparsity: sparsity, scope: .global), to: model)
        let report = SparsityReport(model: model)
        #expect(abs(Double(report.zeros) - sparsity * Double(report.count)) <= 1, "\(report.zeros) zeros of \(report.count)")
    }
}

@Suite struct FineTuningTests {
    static func setup() throws -> (Graph, LabeledData, PruningMasks) {
        let model = try LayerList.load(architecture: Repo.path("examples/models/mlp_digits.json"),
                                       weights: Repo.path("examples/models/mlp_digits.safetensors"))
        let data = try DataLoading.loadSplit(path: Repo.path("examples/data/digits.npz"),
                                             split: SplitSource(inputs: "x_train", labels: "y_train"), scale: 1, classes: 10)
        let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
        let masks = MagnitudePruning.masks(for: weights, sparsity: 0.8, scope: .global)
        applyMasks(masks, to: model)
        return (model, data, masks)
    }

    @Test func keepsMasksAndIsBitIdenticalAcrossRunsAndThreads() throws {
        var results: [[UInt32]] = []
        for threads in [1, 2, 3, 2] {
            let (model, data, masks) = try Self.setup()
            let logs = FineTuning.run(model: model, masks: masks, data: data,
                                      settings: FineTuneSettings(epochs: 2, batchSize: 32, learningRate: 0.05, momentum: 0.9),
                                      seed: 3, threads: threads)
            #expect(logs.count == 2 && logs[1].meanLoss < logs[0].meanLoss)
            for (name, v) in model.prunableWeights {
                let pruned = zip(v.value.scalars, masks[name]!).filter { $0.1 == 0 }
                #expect(pruned.allSatisfy { $0.0.bitPattern == 0 }, "\(name): a pruned weight is no longer exactly zero")
            }
            results.append(model.parameters.flatMap { $0.variable.value.scalars.map(\.bitPattern) })
        }
        #expect(results.allSatisfy { $0 == results[0] }, "trained weights differ between runs or thread counts")
    }

    @Test func differentSeedsGiveDifferentWeights() throws {
        var results: [[Float]] = []
        for seed: UInt64 in [1, 2] {
            let (model, data, masks) = try Self.setup()
            FineTuning.run(model: model, masks: masks, data: data, settings: FineTuneSettings(epochs: 1, batchSize: 32), seed: seed, threads: 1)
            results.append(model.parameters.flatMap { $0.variable.value.scalars })
        }
        #expect(results[0] != results[1])
    }
}

@Suite struct NMPruningTests {
    @Test func everyGroupKeepsItsLargestN() {
        var rng = Philox(seed: 3)
        let w = Tensor(shape: [5, 11], scalars: (0..<55).map { _ in rng.nextUnitFloat() * 2 - 1 })
        for (n, m) in [(2, 4), (1, 4), (4, 8), (3, 5)] {
            let mask = NMPruning.masks(for: [("w", w)], n: n, m: m)["w"]!
            #expect(NMPruning.isValid(mask, rows: 5, n: n, m: m))
            // Full groups keep exactly n; the kept ones are the largest of their group.
            for r in 0..<5 {
                var g = 0
                while g < 11 {
                    let idx = Array((r * 11 + g)..<(r * 11 + min(g + m, 11)))
                    let kept = idx.filter { mask[$0] == 1 }
                    #expect(kept.count == min(n, idx.count))
                    let smallestKept = kept.map { abs(w.scalars[$0]) }.min() ?? .infinity
                    #expect(idx.filter { mask[$0] == 0 }.allSatisfy { abs(w.scalars[$0]) <= smallestKept })
                    g += m
                }
            }
        }
        // The invariant check itself rejects an over-full group.
        #expect(!NMPruning.isValid([1, 1, 1, 0], rows: 1, n: 2, m: 4))
    }
}

@Suite struct StructuredPruningTests {
    func model(_ name: String) throws -> Graph {
        try ModelLoading.load(path: Repo.path("examples/models/\(name).onnx"), architecture: nil)
    }

    /// Neuron pruning shrinks every dependent tensor, and the shrunk model computes what the
    /// dense model with those units zeroed computes.
    @Test func neuronPruningShrinksAndMatchesTheMaskedModel() throws {
        let dense = try model("lenet300100_mnist5k")
        let recipe = PruneRecipe(scope: .layer, granularity: .neuron, sparsity: 0.5)
        let (small, masks) = try prune(dense.copy(), recipe: recipe)
        #expect(masks.isEmpty)
        let shapes = Dictionary(uniqueKeysWithValues: small.parameters.map { ($0.name, $0.variable.value.shape) })
        #expect(shapes["fc1.weight"] == [150, 784] && shapes["fc1.bias"] == [150])
        #expect(shapes["fc2.weight"] == [50, 150] && shapes["fc3.weight"] == [10, 50])
        let plan = try StructuredPruning.plan(dense, granularity: .neuron, protect: [])
        #expect(plan.fanIns(dense) == [784, 300])
        let keep = StructuredPruning.select(scores: plan.norms(dense), fanIns: [784, 300], sparsity: 0.5, scope: .layer)
        let masked = dense.copy()
        try plan.zeroOut(masked, keep: keep)
        let (x, _) = try reference("lenet300100_mnist5k")
        #expect(maxAbsDiff(small.predict(x, threads: 1).scalars, masked.predict(x, threads: 1).scalars) <= 1e-5)
        // Kept units are the largest by L2 norm.
        let norms = plan.norms(dense)[0]
        let minKept = keep[0].map { norms[$0] }.min()!
        #expect(Set(0..<300).subtracting(keep[0]).allSatisfy { norms[$0] <= minKept })
    }

    /// Channel pruning of LeNet-5 through ReLU, MaxPool and the Reshape to the classifier.
    @Test func channelPruningFollowsPoolingAndFlatten() throws {
        let dense = try model("lenet5_mnist5k")
        let (small, _) = try prune(dense.copy(), recipe: PruneRecipe(scope: .layer, granularity: .channel, sparsity: 0.5))
        let shapes = Dictionary(uniqueKeysWithValues: small.parameters.map { ($0.name, $0.variable.value.shape) })
        #expect(shapes["conv1.weight"] == [3, 1, 5, 5] && shapes["conv2.weight"] == [8, 3, 5, 5] && shapes["fc1.weight"] == [120, 200])
        let plan = try StructuredPruning.plan(dense, granularity: .channel, protect: [])
        #expect(plan.groups.map(\.units) == [6, 16] && plan.fanIns(dense) == [25, 150])
        let keep = StructuredPruning.select(scores: plan.norms(dense), fanIns: [25, 150], sparsity: 0.5, scope: .layer)
        let masked = dense.copy()
        try plan.zeroOut(masked, keep: keep)
        let (x, _) = try reference("lenet5_mnist5k")
        #expect(maxAbsDiff(small.predict(x, threads: 2).scalars, masked.predict(x, threads: 2).scalars) <= 1e-5)
        // The smaller model exports and reloads with the same outputs.
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ONNXModel.save(small, to: dir + "/s.onnx")
        let back = try ModelLoading.load(path: dir + "/s.onnx", architecture: nil)
        #expect(back.predict(x, threads: 1).scalars == small.predict(x, threads: 1).scalars)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/s.onnx")).count < 160_000)  // dense: 249 kB
    }

    @Test func globalScopeKeepsAUnitPerLayerAndHitsTheCount() throws {
        let scores: [[Double]] = [[1, 2, 3, 4], [0.1, 0.2]]
        let keep = StructuredPruning.select(scores: scores, fanIns: [1, 1], sparsity: 0.5, scope: .global)
        #expect(keep == [[2, 3], [1]] || keep.map(\.count).reduce(0, +) == 3)
        #expect(keep.allSatisfy { !$0.isEmpty })
    }

    @Test func unfollowableOpsAndUnknownLayersAreNamed() throws {
        // fc1 → relu → Add(residual with the input) → fc2: fc1's units meet the input, which
        // is not pruned, so they all stay, and neuron pruning has nothing to remove.
        var b = GraphBuilder(inputShape: [4])
        b.linear("fc1", weight: Tensor(shape: [4, 4], scalars: (0..<16).map { Float($0) / 16 }), bias: nil)
        b.relu("r")
        b.add("res", "Add", extraInputs: ["input"])
        b.linear("fc2", weight: Tensor(shape: [2, 4], scalars: (0..<8).map { Float($0) / 8 }), bias: nil)
        let g = b.build()
        do {
            _ = try prune(g, recipe: PruneRecipe(granularity: .neuron, sparsity: 0.5))
            Issue.record("residual Add was followed")
        } catch let e as StructuredPruningError {
            #expect(e.message.contains("fc1: its units meet a value that is not pruned at Add node 'res'"), "\(e)")
            #expect(e.message.contains("fc2: its units reach a graph output"), "\(e)")
        }
        var r = PruneRecipe(granularity: .neuron, sparsity: 0.5)
        r.protect = ["fc1"]
        #expect { try prune(g.copy(), recipe: r) } throws: { "\($0)".contains("fc1: it is protected") }
        r.protect = ["fc9"]
        #expect(throws: StructuredPruningError.self) { try prune(g.copy(), recipe: r) }
    }

    @Test func aRequestThatRemovesFarLessThanAskedIsAnError() throws {
        // Four hidden layers of two units: 20 % per layer rounds to none in each.
        var b = GraphBuilder(inputShape: [2])
        for i in 1...4 {
            b.linear("fc\(i)", weight: Tensor(shape: [2, 2], scalars: [1, 0.5, 0.25, 2]), bias: nil)
            b.relu("r\(i)")
        }
        b.linear("out", weight: Tensor(shape: [2, 2], scalars: [1, 0, 0, 1]), bias: nil)
        var r = PruneRecipe(granularity: .neuron, sparsity: 0.2)
        r.scope = .layer
        #expect { try prune(b.build(), recipe: r) } throws: { "\($0)".contains("removes 0 of 8 units, far less than the 1 asked") }
        // Half of them: one unit of each layer goes.
        r.sparsity = 0.5
        let (pruned, _) = try prune(b.build(), recipe: r)
        #expect(pruned.prunableWeights.map { $0.variable.value.shape[0] } == [1, 1, 1, 1, 2])
    }
}

@Suite struct ConvTrainingDeterminismTests {
    /// Fine-tuning a convolutional model gives bit-identical weights at 1 and 2 threads.
    @Test(arguments: ["lenet5_mnist5k", "cnn_mnist1d"])
    func convFineTuningIsBitIdenticalAcrossThreads(_ name: String) throws {
        let data = name == "cnn_mnist1d" ? "mnist1d" : "mnist5k"
        let split = try DataLoading.loadSplit(path: Repo.path("examples/data/\(data).npz"), split: SplitSource(inputs: "x_train", labels: "y_train"),
                                              scale: data == "mnist5k" ? Float(1.0 / 255) : 1, classes: 10)
        let train = split.subset(Array(0..<256))
        var results: [[Float]] = []
        for threads in [1, 2] {
            let m = try ModelLoading.load(path: Repo.path("examples/models/\(name).onnx"), architecture: nil)
            let (g, masks) = try prune(m, recipe: PruneRecipe(granularity: .nm(n: 2, m: 4), sparsity: 0.5))
            FineTuning.run(model: g, masks: masks, data: train, settings: FineTuneSettings(epochs: 1, batchSize: 32, optimizer: .adamw, learningRate: 0.001, weightDecay: 0.01, schedule: .cosine),
                           seed: 3, threads: threads)
            results.append(g.parameters.flatMap { $0.variable.value.scalars })
            // Masked weights stay exactly zero through fine-tuning.
            for (wname, v) in g.prunableWeights { #expect(zip(v.value.scalars, masks[wname]!).allSatisfy { $1 != 0 || ($0 == 0 && $0.sign == .plus) }) }
        }
        #expect(results[0] == results[1])
    }
}
