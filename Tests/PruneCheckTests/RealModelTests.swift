import Foundation
import Testing
import ModelIO
import SwiftProtobuf
@testable import TensorEngine

/// The architectures of Fixtures/real-models (exported by PyTorch) run through the importer and
/// the engine and agree with ONNX Runtime: max |ours − reference| ≤ 1e-3 · max(1, max |reference|).
@Suite struct RealModelTests {
    static let folder = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")

    static func load(_ name: String) throws -> (Graph, [Value], [String: NPYArray]) {
        let graph = try ModelLoading.loadGraph(path: "\(folder)/\(name).onnx", architecture: nil)
        let arrays = try NPZ.read(path: "\(folder)/\(name).npz")
        let feeds = try GraphFeeds.bind(graph, arrays: arrays, file: "\(name).npz")
        return (graph, feeds, try NPZ.read(path: "\(folder)/\(name).ref.npz"))
    }

    @Test(arguments: ["vit_small", "mobilenet_v3_small", "bert_tiny", "llama_tiny", "llama_markov"])
    func agreesWithONNXRuntime(_ name: String) throws {
        let (graph, feeds, reference) = try RealModelTests.load(name)
        let one = try graph.run(feeds, threads: 1)
        let two = try graph.run(feeds, threads: 2)
        for (k, output) in graph.outputs.enumerated() {
            guard case .float(let y) = one[k], case .float(let y2) = two[k], let ref = reference[output] else {
                Issue.record("\(name): output \(output) is not float or has no reference")
                continue
            }
            #expect(y.value.shape == ref.shape, "\(name) \(output): shape \(y.value.shape), reference \(ref.shape)")
            let r = ref.floats(), got = y.value.scalars
            let limit = 1e-3 * max(1, r.map { abs($0) }.max() ?? 0)
            let worst = zip(got, r).enumerated().max { abs($0.element.0 - $0.element.1) < abs($1.element.0 - $1.element.1) }
            if let worst {
                #expect(abs(worst.element.0 - worst.element.1) <= limit,
                        "\(name) \(output): element \(worst.offset) is \(worst.element.0), ONNX Runtime \(worst.element.1) (limit \(limit))")
            }
            #expect(got.map(\.bitPattern) == y2.value.scalars.map(\.bitPattern), "\(name): one and two threads differ")
        }
    }

    /// Running in chunks gives the same outputs as one run (the batch dimension is real).
    @Test func chunkedRunsJoinToTheWholeRun() throws {
        let (graph, feeds, _) = try RealModelTests.load("bert_tiny")
        let whole = try graph.run(feeds)
        let chunked = try GraphFeeds.run(graph, feeds: feeds, batchSize: 3, threads: 1)
        guard case .float(let a) = whole[0], case .float(let b) = chunked[0] else { Issue.record("not float"); return }
        #expect(a.value.shape == b.value.shape)
        for (x, y) in zip(a.value.scalars, b.value.scalars) { #expect(abs(x - y) <= 1e-6) }
    }

    /// An array of the wrong type, a missing input and a mapped name that is no input are
    /// errors naming the file, the input and the array.
    @Test func badFeedsAreNamed() throws {
        let graph = try ModelLoading.loadGraph(path: "\(RealModelTests.folder)/bert_tiny.onnx", architecture: nil)
        var arrays = try NPZ.read(path: "\(RealModelTests.folder)/bert_tiny.npz")
        let ids = arrays["input_ids"]!
        arrays["input_ids"] = NPYArray(floats: ids.floats(), shape: ids.shape)
        #expect(throws: ModelIOError.self) { try GraphFeeds.bind(graph, arrays: arrays, file: "d.npz") }
        do { _ = try GraphFeeds.bind(graph, arrays: arrays, file: "d.npz") } catch let e as ModelIOError {
            #expect(e.description.contains("d.npz") && e.description.contains("input_ids") && e.description.contains("float32")
                    && e.description.contains("int64"), "\(e)")
        }
        arrays["input_ids"] = nil
        do { _ = try GraphFeeds.bind(graph, arrays: arrays, file: "d.npz"); Issue.record("a missing input must throw") } catch let e as ModelIOError {
            #expect(e.description.contains("'input_ids'") && e.description.contains("--input"), "\(e)")
        }
        arrays["ids"] = ids
        #expect(try GraphFeeds.bind(graph, arrays: arrays, mapping: ["input_ids": "ids"], file: "d.npz").count == 2)
        do { _ = try GraphFeeds.bind(graph, arrays: arrays, mapping: ["tokens": "ids"], file: "d.npz"); Issue.record("must throw") } catch let e as ModelIOError {
            #expect(e.description.contains("no input 'tokens'"), "\(e)")
        }
    }

    /// An op of ONNX Runtime's contrib domain is refused with the op, the domain and the remedy.
    @Test func contribOpsAreRefusedWithTheRemedy() throws {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        model.opsetImport = [opset]
        var node = Onnx_NodeProto()
        node.opType = "SkipLayerNormalization"
        node.domain = "com.microsoft"
        node.name = "fused_ln"
        node.input = ["x"]
        node.output = ["y"]
        model.graph.node = [node]
        var x = Onnx_ValueInfoProto()
        x.name = "x"
        var t = Onnx_TypeProto.Tensor()
        t.elemType = 1
        x.type.tensorType = t
        model.graph.input = [x]
        var y = Onnx_ValueInfoProto()
        y.name = "y"
        model.graph.output = [y]
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(model.serializedBytes() as [UInt8]).write(to: URL(fileURLWithPath: "\(dir)/fused.onnx"))
        do {
            _ = try ModelLoading.loadGraph(path: "\(dir)/fused.onnx", architecture: nil)
            Issue.record("a com.microsoft op must be refused")
        } catch let e as ModelIOError {
            #expect(e.description.contains("fused.onnx") && e.description.contains("SkipLayerNormalization")
                    && e.description.contains("com.microsoft") && e.description.contains("export"), "\(e)")
        }
    }
}
