import Common
import Foundation
import SwiftProtobuf
import Regression
@testable import Pruning
import Testing
import Conformance
@testable import ModelIO
@testable import TensorEngine

let fixtureModels = ["lenet300100_mnist5k", "lenet5_mnist5k", "mlp_digits", "mlp_mnist1d", "cnn_mnist1d"]

func exampleModel(_ name: String, _ ext: String) -> String { Repo.path("examples/models/\(name).\(ext)") }

/// The 16 reference inputs and PyTorch's logits for a bundled model.
func reference(_ name: String) throws -> (input: Tensor, logits: [Float]) {
    let r = try NPZ.read(path: Repo.fixtures + "/reference/\(name).npz")
    let x = r["input"]!
    return (Tensor(shape: x.shape, scalars: x.floats()), r["logits"]!.floats())
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

@Suite struct ONNXConformanceTests {
    /// ONNX's own backend node tests for every supported op (784 tests, README tolerances):
    /// every test the manifest lists is there and passes.
    @Test func everyNodeTestPasses() throws {
        let outcomes = ONNXConformance.runAll(directory: Repo.fixtures + "/onnx-node-tests")
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Repo.fixtures + "/onnx-node-tests/MANIFEST.json")))
        let listed = ((manifest as? [String: Any])?["tests"] as? [[String: Any]])?.compactMap { $0["name"] as? String } ?? []
        #expect(outcomes.map(\.name).sorted() == listed.sorted())
        #expect(outcomes.count >= 784)
        let failures = outcomes.filter { $0.failure != nil }
        #expect(failures.isEmpty, "\(failures.map { "\($0.name): \($0.failure!)" }.joined(separator: "\n"))")
    }

    /// The comparison itself rejects a wrong answer (so the suite above can fail).
    @Test func comparisonRejectsAWrongValueAndAWrongShape() {
        let expected = TensorData.float(Tensor(shape: [2], scalars: [1, 2]))
        #expect(ONNXConformance.compare(.constant(Tensor(shape: [2], scalars: [1, 2.0001])), expected) == nil)
        #expect(ONNXConformance.compare(.constant(Tensor(shape: [2], scalars: [1, 2.01])), expected) != nil)
        #expect(ONNXConformance.compare(.constant(Tensor(shape: [1, 2], scalars: [1, 2])), expected) != nil)
        #expect(ONNXConformance.compare(.int64(IntTensor(shape: [2], data: [1, 2])), expected) != nil)
    }
}

@Suite struct ONNXModelTests {
    /// Every bundled model, from its .onnx and from safetensors + layer list, reproduces
    /// PyTorch's logits within 1e-4 at 1 and 2 threads, and both forms agree bit for bit.
    @Test(arguments: fixtureModels)
    func pytorchParity(_ name: String) throws {
        let (x, expected) = try reference(name)
        let fromONNX = try ModelLoading.load(path: exampleModel(name, "onnx"), architecture: nil)
        let fromSafetensors = try ModelLoading.load(path: exampleModel(name, "safetensors"), architecture: exampleModel(name, "json"))
        for threads in [1, 2] {
            let a = fromONNX.predict(x, threads: threads)
            #expect(a.shape == [16, 10])
            #expect(maxAbsDiff(a.scalars, expected) <= 1e-4, "\(name) ONNX, \(threads) threads")
            let b = fromSafetensors.predict(x, threads: threads)
            #expect(maxAbsDiff(b.scalars, expected) <= 1e-4, "\(name) safetensors, \(threads) threads")
        }
        #expect(fromONNX.parameters.map(\.name).sorted() == fromSafetensors.parameters.map(\.name).sorted())
    }

    /// The full test sets give PyTorch's accuracy (reference/dense_accuracy.json).
    @Test func convolutionalModelsReachPyTorchsTestAccuracy() throws {
        for (name, data, scale, correct) in [("lenet5_mnist5k", "mnist5k", Float(1.0 / 255), 977), ("cnn_mnist1d", "mnist1d", Float(1), 954)] {
            let model = try ModelLoading.load(path: exampleModel(name, "onnx"), architecture: nil)
            let split = try DataLoading.loadSplit(path: Repo.path("examples/data/\(data).npz"), split: .init(inputs: "x_test", labels: "y_test"),
                                                  scale: scale, classes: 10)
            let logits = model.predict(split.inputs, threads: 2).scalars
            var right = 0
            for i in 0..<split.count {
                let row = logits[(i * 10)..<(i * 10 + 10)]
                if row.firstIndex(of: row.max()!)! - i * 10 == Int(split.labels[i]) { right += 1 }
            }
            #expect(right == correct, "\(name): \(right) correct, PyTorch \(correct)")
        }
    }

    /// Export then import gives the same graph outputs bit for bit, also for a pruned model
    /// whose zeros must stay exact zeros in the dense initializers.
    @Test(arguments: fixtureModels)
    func exportRoundTrip(_ name: String) throws {
        let model = try ModelLoading.load(path: exampleModel(name, "onnx"), architecture: nil)
        let (w0name, w0) = model.prunableWeights[0]
        w0.update { p in for i in stride(from: 0, to: p.count, by: 2) { p[i] = 0 } }
        let (x, _) = try reference(name)
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/\(name).onnx"
        try ONNXModel.save(model, to: out)
        let back = try ModelLoading.load(path: out, architecture: nil)
        #expect(back.predict(x, threads: 1).scalars == model.predict(x, threads: 1).scalars)
        let w = back.prunableWeights.first { $0.name == w0name }!.variable.value.scalars
        #expect(stride(from: 0, to: w.count, by: 2).allSatisfy { w[$0] == 0 && w[$0].sign == .plus })
        #expect(w.count == w0.value.count)
    }

    /// Shape chains as the TorchScript exporter writes them (Shape → Gather → Unsqueeze →
    /// Concat → Reshape) run with any batch; the constant parts are folded at import.
    @Test func shapeArithmeticWithASymbolicBatch() throws {
        let nodes = [
            Node(name: "shape", opType: "Shape", inputs: ["x"], outputs: ["s"]),
            Node(name: "gather", opType: "Gather", inputs: ["s", "zero"], outputs: ["b"], attributes: ["axis": .int(0)]),
            Node(name: "unsq", opType: "Unsqueeze", inputs: ["b", "axes"], outputs: ["b1"]),
            Node(name: "minus1", opType: "Unsqueeze", inputs: ["m1", "axes"], outputs: ["m1u"]),
            Node(name: "concat", opType: "Concat", inputs: ["b1", "m1u"], outputs: ["shape"], attributes: ["axis": .int(0)]),
            Node(name: "reshape", opType: "Reshape", inputs: ["x", "shape"], outputs: ["y"]),
        ]
        let inits: [(String, TensorData)] = [
            ("zero", .int64(IntTensor(shape: [], data: [0]))), ("axes", .int64(IntTensor(shape: [1], data: [0]))),
            ("m1", .int64(IntTensor(shape: [], data: [-1]))),
        ]
        let folded = ONNXModel.foldConstants(nodes: nodes, initializers: inits, outputs: ["y"], opset: 17)
        #expect(!folded.nodes.contains { $0.name == "minus1" })  // constant: folded
        #expect(folded.nodes.contains { $0.name == "shape" })    // depends on the batch: kept
        let g = Graph(nodes: folded.nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 2, 3])], outputs: ["y"],
                      initializers: folded.initializers, opset: 17)
        for batch in [1, 5] {
            let y = try g.run([.constant(Tensor(zeros: [batch, 2, 3]))])
            #expect(y[0].shape == [batch, 6])
        }
    }
}

@Suite struct ONNXHostileInputTests {
    func model(_ mutate: (inout Onnx_ModelProto) -> Void) throws -> Data {
        var m = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: URL(fileURLWithPath: exampleModel("mlp_digits", "onnx"))))
        mutate(&m)
        return try m.serializedBytes()
    }

    func error(_ data: Data, file: String = "bad.onnx") -> String {
        do { _ = try ONNXModel.decode(data, file: file); return "no error" } catch { return "\(error)" }
    }

    @Test func truncatedAndGarbageFilesNameTheFile() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: exampleModel("mlp_digits", "onnx")))
        #expect(error(good.prefix(good.count / 2)).hasPrefix("bad.onnx: "))
        #expect(error(Data("not a model at all".utf8)).contains("bad.onnx"))
        #expect(error(Data()).contains("no graph"))
    }

    @Test func unsupportedOpNamesNodeOpAndOpset() throws {
        let data = try model { $0.graph.node[0].opType = "NonMaxSuppression" }
        let e = error(data)
        #expect(e.contains("node 'node_linear'") || e.contains("node '"))
        #expect(e.contains("NonMaxSuppression") && e.contains("opset 17"), "\(e)")
    }

    @Test func unknownAttributeIsRefused() throws {
        let data = try model { m in
            var a = Onnx_AttributeProto()
            a.name = "mystery"; a.type = .int; a.i = 1
            m.graph.node[0].attribute.append(a)
        }
        #expect(error(data).contains("attribute 'mystery'"))
    }

    @Test func rawDataOfTheWrongSizeIsRefused() throws {
        let data = try model { $0.graph.initializer[0].rawData.removeLast(4) }
        let e = error(data)
        #expect(e.contains("raw_data has") && e.contains(model0Name()), "\(e)")
    }

    func model0Name() -> String {
        (try? Onnx_ModelProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: exampleModel("mlp_digits", "onnx")))).graph.initializer[0].name) ?? "?"
    }

    @Test func hugeDimsAreRefusedBeforeAllocation() throws {
        let data = try model { $0.graph.initializer[0].dims = [1 << 40, 1 << 30] }
        #expect(error(data).contains("over the tensor limit") || error(data).contains("overflow"))
    }

    @Test func externalDataCannotLeaveTheModelsFolder() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for location in ["../secret.bin", "/etc/passwd"] {
            let data = try model { m in
                m.graph.initializer[0].rawData = Data()
                m.graph.initializer[0].dataLocation = .external
                var e = Onnx_StringStringEntryProto()
                e.key = "location"; e.value = location
                m.graph.initializer[0].externalData = [e]
            }
            #expect(error(data, file: dir + "/m.onnx").contains("leaves the model's folder"), "\(location)")
        }
    }

    /// External data inside the folder is read into the tensor as inline data would be; a
    /// file too short for the tensor is an error naming it.
    @Test func externalDataLoadsAndATruncatedFileIsNamed() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let inline = try Onnx_ModelProto(serializedBytes: Data(contentsOf: URL(fileURLWithPath: exampleModel("mlp_digits", "onnx"))))
        let raw = inline.graph.initializer[0].rawData
        for (bytes, name) in [(Data(repeating: 7, count: 16) + raw, "w.bin"), (raw.prefix(raw.count / 2), "short.bin")] {
            try bytes.write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
            let data = try model { m in
                m.graph.initializer[0].rawData = Data()
                m.graph.initializer[0].dataLocation = .external
                m.graph.initializer[0].externalData = [("location", name), ("offset", name == "w.bin" ? "16" : "0"), ("length", "\(raw.count)")].map {
                    var e = Onnx_StringStringEntryProto()
                    e.key = $0.0; e.value = $0.1
                    return e
                }
            }
            try data.write(to: URL(fileURLWithPath: "\(dir)/m.onnx"))
            if name == "w.bin" {
                let external = try ONNXModel.load(path: "\(dir)/m.onnx"), original = try ONNXModel.decode(try inline.serializedData(), file: "inline.onnx")
                let n = inline.graph.initializer[0].name
                guard case .float(let a)? = external.initializer(n), case .float(let b)? = original.initializer(n) else { Issue.record("no \(n)"); continue }
                #expect(a.value.scalars.map(\.bitPattern) == b.value.scalars.map(\.bitPattern))
            } else {
                #expect(error(data, file: dir + "/m.onnx").contains("short.bin") && error(data, file: dir + "/m.onnx").contains("the file has"))
            }
        }
    }

    @Test func aModelThatOnlyRunsAtBatchOneIsRejectedAtLoad() throws {
        // Reshape to a constant [1, 64] fits batch 1 only.
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var b = GraphBuilder(inputShape: [64])
        let s = b.constant("fixed", .int64(IntTensor(shape: [2], data: [1, 64])))
        b.add("reshape", "Reshape", extraInputs: [s])
        try ONNXModel.save(b.build(), to: dir + "/m.onnx")
        #expect(throws: ModelIOError.self) { try ModelLoading.load(path: dir + "/m.onnx", architecture: nil) }
    }
}

/// Every file in Fixtures/malformed gives an error that names the file and the problem
/// (expected.json), never a crash or a silent success.
@Suite struct MalformedFixtureTests {
    @Test func everyMalformedFileIsRefusedWithItsName() throws {
        let folder = Repo.fixtures + "/malformed"
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/expected.json"))
        guard case .object(let entries) = try JSONValue.parse(Array(data)) else { Issue.record("expected.json is not an object"); return }
        #expect(entries.count >= 27)
        for (name, spec) in entries {
            let path = folder + "/" + name
            let small = IOLimits(maxTensorBytes: 1 << 20, maxTotalBytes: 1 << 24)
            var message = "no error"
            do {
                switch spec["loader"]?.string {
                case "onnx": _ = try ONNXModel.load(path: path)
                case "model": _ = try ModelLoading.load(path: path, architecture: nil)
                case "safetensors": _ = try Safetensors.read(path: path)
                case "npy": _ = try NPY.read(path: path)
                case "npz": _ = try NPZ.read(path: path)
                case "npz-small-limit": _ = try NPZ.read(path: path, limits: small)
                case "idx": _ = try IDX.read(path: path)
                case "csv": _ = try CSV.read(path: path)
                default: Issue.record("\(name): unknown loader")
                }
            } catch let e as ModelIOError {
                message = e.description
            }
            #expect(message.contains(name), "\(name): \(message)")
            let phrase = spec["contains"]?.string ?? ""
            #expect(phrase.isEmpty || message.contains(phrase), "\(name): '\(message)' lacks '\(phrase)'")
            // What the file holds is not quoted back when it did not parse (a secret, say).
            if let absent = spec["absent"]?.string { #expect(!message.contains(absent), "\(name): '\(message)' quotes the file") }
        }
    }

    @Test func idxAndCSVDataLoadThroughAFolder() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Two 2×3 uint8 images and their labels in IDX; the same as CSV with a label column.
        let images: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3] + [0, 51, 102, 153, 204, 255, 1, 2, 3, 4, 5, 6]
        let labels: [UInt8] = [0, 0, 8, 1, 0, 0, 0, 2, 7, 3]
        try Data(images).write(to: URL(fileURLWithPath: dir + "/images-idx3-ubyte"))
        try Data(labels).write(to: URL(fileURLWithPath: dir + "/labels-idx1-ubyte"))
        try "p0,label,p1\n0.5,7,-1\n2,3,0.25\n".write(toFile: dir + "/set.csv", atomically: true, encoding: .utf8)
        let idx = try DataLoading.loadSplit(path: dir, split: SplitSource(inputs: "images-idx3-ubyte", labels: "labels-idx1-ubyte"),
                                            scale: 1.0 / 255, classes: 10)
        #expect(idx.inputs.shape == [2, 2, 3] && idx.labels == [7, 3])
        #expect(idx.inputs.scalars[5] == 1 && abs(idx.inputs.scalars[1] - 0.2) < 1e-6)
        let csv = try DataLoading.loadSplit(path: dir, split: SplitSource(inputs: "set.csv", labels: "set.csv#label"), scale: 1, classes: 10)
        #expect(csv.inputs.shape == [2, 2] && csv.inputs.scalars == [0.5, -1, 2, 0.25] && csv.labels == [7, 3])
        #expect(throws: ModelIOError.self) {
            try DataLoading.loadSplit(path: dir, split: SplitSource(inputs: "../etc", labels: "set.csv#label"), scale: 1, classes: 10)
        }
        // Big-endian float IDX.
        let floats = try IDX.parse([0, 0, 0x0D, 1, 0, 0, 0, 2] + [0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0], file: "f.idx")
        #expect(floats.floats() == [1.5, -2.5])
    }
}

/// Models PyTorch exports with ops beyond the bundled fixtures: residual Add, BatchNorm (folded
/// and kept), GELU as Erf/Div/Mul, LeakyReLU, AveragePool, GlobalAveragePool, Tanh, Sigmoid.
@Suite struct PyTorchExportTests {
    static let variants = ["resnetish_opset13", "resnetish_opset17", "resnetish_nofold_opset13"]

    @Test(arguments: variants)
    func logitsMatchPyTorch(_ name: String) throws {
        let folder = Repo.fixtures + "/pytorch-extra"
        let r = try NPZ.read(path: folder + "/resnetish.npz")
        let x = Tensor(shape: r["input"]!.shape, scalars: r["input"]!.floats())
        let model = try ModelLoading.load(path: folder + "/\(name).onnx", architecture: nil)
        for threads in [1, 2] {
            #expect(maxAbsDiff(model.predict(x, threads: threads).scalars, r["logits"]!.floats()) <= 1e-4, "\(name), \(threads) threads")
        }
    }

    /// Neuron pruning follows Tanh and Sigmoid between the Linear layers. Channel pruning
    /// couples the stem and the block convolution through the residual Add and prunes them as
    /// one group (with both BatchNorms), follows GELU's Div/Erf/Add/Mul by scalars into the
    /// classifier, and computes what the dense model with those channels zeroed computes.
    @Test func structuredPruningOnTheResidualModel() throws {
        let folder = Repo.fixtures + "/pytorch-extra"
        let model = try ModelLoading.load(path: folder + "/resnetish_nofold_opset13.onnx", architecture: nil)
        let (small, _) = try prune(model.copy(), recipe: PruneRecipe(scope: .layer, granularity: .neuron, sparsity: 0.5))
        let shapes = Dictionary(uniqueKeysWithValues: small.parameters.map { ($0.name, $0.variable.value.shape) })
        #expect(shapes["fc1.weight"] == [16, 12] && shapes["fc2.weight"] == [8, 16] && shapes["fc3.weight"] == [10, 8])
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ONNXModel.save(small, to: dir + "/s.onnx")
        let r = try NPZ.read(path: folder + "/resnetish.npz")
        let x = Tensor(shape: r["input"]!.shape, scalars: r["input"]!.floats())
        #expect(try ModelLoading.load(path: dir + "/s.onnx", architecture: nil).predict(x, threads: 1).scalars == small.predict(x, threads: 1).scalars)

        let plan = try StructuredPruning.plan(model, granularity: .channel, protect: [])
        let coupled = plan.groups.map(\.layers)
        #expect(coupled.count == 2 && coupled[0].count == 2 && coupled[1].count == 1, "\(coupled)")
        #expect(plan.groups[0].units == 8)
        for ext in ["nofold_opset13", "opset13", "opset17"] {
            let m = try ModelLoading.load(path: folder + "/resnetish_\(ext).onnx", architecture: nil)
            let p = try StructuredPruning.plan(m, granularity: .channel, protect: [])
            let keep = StructuredPruning.select(scores: p.norms(m), fanIns: p.fanIns(m), sparsity: 0.5, scope: .layer)
            let shrunk = try p.shrink(m, keep: keep)
            let masked = m.copy()
            try p.zeroOut(masked, keep: keep)
            #expect(maxAbsDiff(shrunk.predict(x, threads: 2).scalars, masked.predict(x, threads: 2).scalars) <= 1e-5, "\(ext)")
            #expect(shrunk.parameters.reduce(0) { $0 + $1.variable.value.count } < m.parameters.reduce(0) { $0 + $1.variable.value.count } * 6 / 10, "\(ext)")
            try ONNXModel.save(shrunk, to: dir + "/c-\(ext).onnx")
            #expect(try ModelLoading.load(path: dir + "/c-\(ext).onnx", architecture: nil).predict(x, threads: 1).scalars == shrunk.predict(x, threads: 1).scalars)
        }
        // Protecting one member of a coupled group keeps the whole group.
        var protected = PruneRecipe(scope: .layer, granularity: .channel, sparsity: 0.5)
        protected.protect = ["/stem/Conv"]
        #expect(try StructuredPruning.plan(model, granularity: .channel, protect: Set(protected.protect)).groups.map(\.layers.count) == [1])
        // BatchNormalization statistics shrink with their channels when the path allows it.
        var b = GraphBuilder(inputShape: [1, 6, 6])
        b.conv("c1", weight: Tensor(shape: [4, 1, 3, 3], scalars: (0..<36).map { Float($0 % 7) / 7 - 0.4 }), bias: nil,
               stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1)
        let names = ["bn.scale", "bn.bias", "bn.mean", "bn.var"].map { n in
            b.constant(n, .float(Tensor(shape: [4], scalars: n == "bn.var" ? [1, 2, 0.5, 1.5] : [0.1, -0.2, 0.3, 0.9])))
        }
        b.add("bn", "BatchNormalization", extraInputs: names)
        b.relu("r")
        b.conv("c2", weight: Tensor(shape: [2, 4, 1, 1], scalars: [1, -1, 0.5, 0.25, -0.5, 1, 1, -2]), bias: nil,
               stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1)
        b.flatten("f")
        b.linear("fc", weight: Tensor(shape: [3, 72], scalars: (0..<216).map { Float($0 % 11) / 11 - 0.5 }), bias: nil)
        let g = b.build()
        let (p, _) = try prune(g, recipe: PruneRecipe(scope: .layer, granularity: .channel, sparsity: 0.5))
        guard case .float(let v)? = p.initializer("bn.var") else { Issue.record("no bn.var"); return }
        #expect(v.value.shape == [2])
        let y = p.predict(Tensor(zeros: [2, 1, 6, 6]), threads: 1)
        #expect(y.shape == [2, 3])
    }
}

@Suite struct WriterTests {
    /// ONNX → safetensors + layer-list JSON → back: the same outputs bit for bit, also after
    /// channel pruning changed every shape.
    @Test(arguments: fixtureModels)
    func safetensorsAndLayerListRoundTrip(_ name: String) throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var model = try ModelLoading.load(path: exampleModel(name, "onnx"), architecture: nil)
        if name == "lenet5_mnist5k" {
            model = try prune(model, recipe: PruneRecipe(scope: .layer, granularity: .channel, sparsity: 0.5)).graph
        }
        try Safetensors.write(model, to: dir + "/m.safetensors")
        try LayerList.write(model, to: dir + "/m.json")
        let back = try ModelLoading.load(path: dir + "/m.safetensors", architecture: dir + "/m.json")
        let (x, _) = try reference(name)
        #expect(back.predict(x, threads: 1).scalars == model.predict(x, threads: 1).scalars)
    }

    /// NPY and NPZ write every supported dtype and read it back.
    @Test func npzWritesEveryDtype() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arrays: [String: NPYArray] = [
            "u8": NPYArray(integers: [0, 7, 255], shape: [3], dtype: .uint8),
            "i32": NPYArray(integers: [-3, 9], shape: [2, 1], dtype: .int32),
            "i64": NPYArray(integers: [1 << 40, -1], shape: [2]),
            "f32": NPYArray(floats: [1.5, -2], shape: [1, 2]),
            "f64": NPYArray(doubles: [0.25, 1e300], shape: [2]),
            "b": NPYArray(integers: [1, 0, 1], shape: [3], dtype: .bool),
        ]
        try NPZ.write(arrays, to: dir + "/a.npz")
        let back = try NPZ.read(path: dir + "/a.npz")
        for (k, a) in arrays {
            #expect(back[k]?.dtype == a.dtype && back[k]?.shape == a.shape && back[k]?.bytes == a.bytes, "\(k)")
        }
    }
}
