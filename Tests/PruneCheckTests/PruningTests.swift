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
