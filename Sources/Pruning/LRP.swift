import TensorEngine

/// Layer-wise relevance propagation (Yeom et al. 2021, as in the authors' reference code):
/// relevance starts at the true class's logit, R = f(x) ⊙ onehot(y), and flows back node by
/// node. Linear and Conv layers use the z⁺ rule with V = max(W, 0) and no bias:
/// z = V·a + 1e-9, s = R / z, R_in = a ⊙ (Vᵀ·s). Pooling uses the z rule on its own forward
/// (max pooling routes everything to the winner). Activations, Dropout, BatchNormalization
/// and Identity pass relevance unchanged; Flatten and Reshape reshape it. A unit's relevance
/// is the relevance at its layer's output summed over positions and calibration examples.
public enum LRP {
    static let passThrough: Set<String> = ["Relu", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Dropout", "Identity", "BatchNormalization"]
    static let reshaping: Set<String> = ["Flatten", "Reshape", "Squeeze", "Unsqueeze"]
    static let zRule: Set<String> = ["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"]
    static let zPlusRule: Set<String> = ["Gemm", "Conv"]

    /// Summed relevance of every output unit (dimension 1) of the nodes `producers`.
    public static func unitRelevance(_ model: Graph, producers: [Int], batches: [LabeledData], threads: Int) throws -> [[Double]] {
        var sums: [[Double]] = producers.map { _ in [] }
        let wanted = Set(producers.map { model.nodes[$0].outputs[0] })
        for batch in batches {
            let relevance = try propagate(model, batch: batch, keep: wanted, threads: threads)
            for (k, p) in producers.enumerated() {
                guard let r = relevance[model.nodes[p].outputs[0]] else {
                    throw StructuredPruningError(layer: model.nodes[p].name, message: "no relevance reaches it from the output")
                }
                let units = r.shape[1], inner = r.count / max(r.shape[0] * units, 1)
                if sums[k].isEmpty { sums[k] = [Double](repeating: 0, count: units) }
                r.withUnsafeBufferPointer { p in
                    for n in 0..<r.shape[0] { for u in 0..<units { for q in 0..<inner { sums[k][u] += Double(p[(n * units + u) * inner + q]) } } }
                }
            }
        }
        return sums
    }

    /// Relevance of every value named in `keep` for one batch.
    static func propagate(_ model: Graph, batch: LabeledData, keep: Set<String>, threads: Int) throws -> [String: Tensor] {
        let names = Set(model.nodes.flatMap(\.outputs) + model.nodes.map { $0.inputs.first ?? "" }).subtracting([""])
        let values = try model.capture(batch.inputs, names.union([model.inputs[0].name]), threads: threads)
        guard let output = model.outputs.first, let logits = values[output], logits.shape.count == 2 else {
            throw StructuredPruningError(layer: "(graph)", message: "lrp needs a (batch, classes) output")
        }
        let classes = logits.shape[1]
        var start = [Float](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { p in
            for (n, label) in batch.labels.enumerated() { start[n * classes + Int(label)] = p[n * classes + Int(label)] }
        }
        var relevance: [String: Tensor] = [output: Tensor(shape: logits.shape, scalars: start)]
        var out: [String: Tensor] = [:]
        for node in model.nodes.reversed() {
            guard let r = relevance[node.outputs[0]] else { continue }
            if keep.contains(node.outputs[0]) { out[node.outputs[0]] = r }
            let inputName = node.inputs[0]
            guard let a = values[inputName] else {
                throw StructuredPruningError(layer: node.name, message: "lrp cannot find the input '\(inputName)' of \(node.opType) node '\(node.name)'")
            }
            let rIn: Tensor
            if passThrough.contains(node.opType) {
                rIn = r
            } else if reshaping.contains(node.opType) {
                rIn = r.reshaped(a.shape)
            } else if zPlusRule.contains(node.opType) || zRule.contains(node.opType) {
                rIn = try ruleStep(model, node: node, a: a, r: r, threads: threads)
            } else {
                throw StructuredPruningError(layer: node.name, message: "lrp cannot propagate relevance through \(node.opType) node '\(node.name)'")
            }
            if let existing = relevance[inputName] {
                relevance[inputName] = Tensor(shape: a.shape, scalars: zip(existing.scalars, rIn.scalars).map { $0 + $1 })
            } else {
                relevance[inputName] = rIn
            }
        }
        return out
    }

    /// One z / z⁺ step through `node` as a one-node graph: z = node(a), s = R / (z ± 1e-9),
    /// c = ∂(z·s)/∂a by the node's own backward, R_in = a ⊙ c.
    static func ruleStep(_ model: Graph, node: Node, a: Tensor, r: Tensor, threads: Int) throws -> Tensor {
        var inits: [(String, TensorData)] = []
        for name in node.inputs.dropFirst() where !name.isEmpty {
            guard case .float(let v)? = model.initializer(name) else {
                throw StructuredPruningError(layer: node.name, message: "lrp needs the weights of '\(node.name)' as initializers")
            }
            // Pooling has no float initializers; for Gemm and Conv: V = max(W, 0), bias 0.
            let isWeight = name == node.inputs[1]
            inits.append((name, .float(Tensor(shape: v.value.shape, scalars: v.value.scalars.map { isWeight ? max($0, 0) : 0 }))))
        }
        let inputName = node.inputs[0]
        let g = Graph(nodes: [node], inputs: [GraphInput(name: inputName, dtype: .float32, shape: a.shape)], outputs: [node.outputs[0]],
                      initializers: inits, opset: model.opset)
        let x = Variable(a, requiresGrad: true)
        let tape = Tape()
        guard case .float(let z) = try g.run([.float(x)], tape: tape, threads: threads)[0] else {
            throw StructuredPruningError(layer: node.name, message: "lrp: the output of '\(node.name)' is not float")
        }
        let s = Tensor(shape: z.value.shape, scalars: zip(r.scalars, z.value.scalars).map { rv, zv in rv / (zv >= 0 ? zv + 1e-9 : zv - 1e-9) })
        tape.backward(from: z, seed: s)
        let c = x.grad ?? Tensor(zeros: a.shape)
        return Tensor(shape: a.shape, scalars: zip(a.scalars, c.scalars).map { $0 * $1 })
    }
}
