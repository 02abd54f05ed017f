import Foundation
import Testing
@testable import ModelIO
@testable import Pruning
@testable import TensorEngine

/// Structured pruning through the topologies PyTorch exports (Tests/tools/export_structures.py
/// and the real-model fixtures): removing units gives what the dense model computes with those
/// units' activations set to zero, for every structure where that is exact (LayerNorm over the
/// units renormalizes, so there only the shapes and the reload are checked).
@Suite struct StructuredTopologyTests {
    static let structures = Repo.path("Tests/PruneCheckTests/Fixtures/structures")
    static let realModels = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")

    struct Case: CustomTestStringConvertible, Sendable {
        let folder: String
        let name: String
        let granularity: String
        /// Masked == shrunk holds (no normalization across the units).
        let exact: Bool
        var testDescription: String { "\(name) \(granularity)" }
    }

    static let cases: [Case] = [
        Case(folder: structures, name: "dense_concat", granularity: "channel", exact: true),
        Case(folder: structures, name: "shuffle", granularity: "channel", exact: true),
        Case(folder: structures, name: "grouped", granularity: "channel", exact: true),
        Case(folder: structures, name: "mbconv", granularity: "channel", exact: true),
        Case(folder: structures, name: "convnext", granularity: "channel", exact: false),
        Case(folder: structures, name: "convnext", granularity: "neuron", exact: true),
        Case(folder: structures, name: "swin_tail", granularity: "channel", exact: false),
        Case(folder: realModels, name: "mobilenet_v3_small", granularity: "channel", exact: true),
        Case(folder: realModels, name: "vit_small", granularity: "channel", exact: false),
        Case(folder: realModels, name: "vit_small", granularity: "head", exact: true),
        Case(folder: realModels, name: "vit_small", granularity: "neuron", exact: true),
        Case(folder: realModels, name: "bert_tiny", granularity: "head", exact: true),
        Case(folder: realModels, name: "bert_tiny", granularity: "neuron", exact: true),
        Case(folder: realModels, name: "llama_tiny", granularity: "head", exact: true),
        Case(folder: realModels, name: "llama_tiny", granularity: "neuron", exact: true),
        Case(folder: realModels, name: "llama_tiny", granularity: "channel", exact: false),
    ]

    static func load(_ c: Case) throws -> (Graph, [Value]) {
        let graph = try ModelLoading.loadGraph(path: "\(c.folder)/\(c.name).onnx", architecture: nil)
        let feeds = try GraphFeeds.bind(graph, arrays: try NPZ.read(path: "\(c.folder)/\(c.name).npz"), file: c.name)
        return (graph, feeds)
    }

    static func floats(_ g: Graph) -> Int { g.initializerData.reduce(0) { $0 + ($1.1.dtype == .float32 ? $1.1.shape.reduce(1, *) : 0) } }

    @Test(arguments: cases)
    func shrunkEqualsMasked(_ c: Case) throws {
        let (dense, feeds) = try Self.load(c)
        let granularity = try #require(PruneRecipe.Granularity(text: c.granularity))
        let plan = try StructuredPruning.plan(dense, granularity: granularity, protect: [])
        #expect(!plan.groups.isEmpty)
        // Every other unit of every group, so that units go from the middle of each block.
        let keep = plan.groups.map { g in (0..<g.units).filter { $0 % 2 == 0 } }
        let small = try plan.shrink(dense, keep: keep)
        #expect(Self.floats(small) < Self.floats(dense))
        let masked = dense.copy()
        try plan.zeroOut(masked, keep: keep)
        let want = masked.predict(feeds, threads: 1).scalars
        let got = small.predict(feeds, threads: 2).scalars
        #expect(got.count == want.count)
        if c.exact {
            let scale = max(1, want.map { abs($0) }.max() ?? 0)
            #expect(maxAbsDiff(got, want) <= 1e-5 * scale, "\(c.name) \(c.granularity): \(maxAbsDiff(got, want))")
            // The masked model is not the dense one: the removed units mattered.
            #expect(maxAbsDiff(dense.predict(feeds, threads: 1).scalars, want) > 1e-4 * scale)
        }
        // The smaller model exports and reloads with the same outputs.
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ONNXModel.save(small, to: dir + "/s.onnx")
        #expect(try ModelLoading.loadGraph(path: dir + "/s.onnx", architecture: nil).predict(feeds, threads: 1).scalars == small.predict(feeds, threads: 1).scalars)
    }

    /// Grouped-query attention loses heads in whole key/value groups: a group's query heads go
    /// with their key and value head, and rotary embeddings keep the head dimension.
    @Test func groupedQueryAttentionLosesWholeKeyValueGroups() throws {
        let c = Case(folder: Self.realModels, name: "llama_tiny", granularity: "head", exact: true)
        let (dense, _) = try Self.load(c)
        let plan = try StructuredPruning.plan(dense, granularity: .head, protect: [])
        // Two layers, four query heads over two key/value heads each: two units per layer.
        #expect(plan.groups.map(\.units) == [2, 2])
        let small = try plan.shrink(dense, keep: plan.groups.map { _ in [1] })
        let shapes = Dictionary(uniqueKeysWithValues: small.initializerData.map { ($0.0, $0.1.shape) })
        let q = try #require(shapes.first { $0.key.hasSuffix("layers.0.self_attn.q_proj.weight") }?.value)
        let k = try #require(shapes.first { $0.key.hasSuffix("layers.0.self_attn.k_proj.weight") }?.value)
        let o = try #require(shapes.first { $0.key.hasSuffix("layers.0.self_attn.o_proj.weight") }?.value)
        // MatMul weights are stored (in, out): 64 → 2 query heads of 16, 1 key head of 16.
        #expect(q == [64, 32] && k == [64, 16] && o == [32, 64], "\(q) \(k) \(o)")
    }

    /// Heads are scored over their query, key, value and output weights, and the magnitude
    /// ranking keeps the larger ones.
    @Test func headScoresCoverQueryKeyValueAndOutput() throws {
        let c = Case(folder: Self.realModels, name: "bert_tiny", granularity: "head", exact: true)
        let (dense, _) = try Self.load(c)
        let plan = try StructuredPruning.plan(dense, granularity: .head, protect: [])
        #expect(plan.groups.map(\.units) == [4, 4])
        let producers = plan.perUnit(dense, consumers: false) { _, _, w in Double(w) * Double(w) }
        let all = plan.perUnit(dense) { _, _, w in Double(w) * Double(w) }
        for (p, a) in zip(producers.joined(), all.joined()) { #expect(a > p) }
    }

    /// A unit that meets an op it cannot follow is an error naming the layer and the op, and
    /// protecting the layer keeps the group whole instead.
    @Test func unfollowableOpsAreNamedAndProtectKeepsTheGroup() throws {
        let graph = try ModelLoading.loadGraph(path: Self.structures + "/grouped.onnx", architecture: nil)
        let relu = try #require(graph.nodes.firstIndex { $0.opType == "Relu" })
        var nodes = graph.nodes
        nodes[relu].opType = "Trilu"
        let odd = graph.rebuilt(nodes: nodes)
        #expect {
            try StructuredPruning.plan(odd, granularity: .channel, protect: [])
        } throws: { e in
            "\(e)".contains("Trilu node '\(nodes[relu].name)'") && "\(e)".contains("stem")
        }
        let plan = try StructuredPruning.plan(odd, granularity: .channel, protect: ["stem"])
        #expect(!plan.groups.flatMap(\.layers).contains("stem"))
    }
}


