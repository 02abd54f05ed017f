import TensorEngine

/// A set of units (a Gemm's output features or a Conv's output channels) that can be removed
/// together with everything that depends on them.
public struct StructuredGroup: Equatable, Sendable {
    /// The producing node and its weight (whose rows are the units).
    public var producer: Int
    public var weight: String
    public var bias: String?
    public var units: Int
    /// BatchNormalization nodes on the path (their four per-channel tensors shrink too).
    public var norms: [Int]
    /// Consumers: node index, and how many consecutive input columns one unit feeds (1 for a
    /// Gemm right after, H·W after a Conv and a Flatten; 0 marks a Conv consumer).
    public var consumers: [(node: Int, block: Int)]
    /// Reshape nodes on the path whose constant shape holds the feature count.
    public var reshapes: [Int]

    public static func == (a: StructuredGroup, b: StructuredGroup) -> Bool {
        a.producer == b.producer && a.weight == b.weight && a.units == b.units && a.norms == b.norms
            && a.consumers.elementsEqual(b.consumers) { $0.node == $1.node && $0.block == $1.block } && a.reshapes == b.reshapes
    }
}

/// Why a layer's units cannot be removed.
public struct StructuredPruningError: Error, CustomStringConvertible, Equatable {
    public let layer: String
    public let message: String
    public var description: String { "layer \(layer): \(message)" }
}

/// Neuron (Linear output) and channel (Conv output) pruning that physically removes the units:
/// the producer's rows and bias entries, BatchNormalization statistics on the way, Reshape
/// constants, and the consumer's input columns (through Flatten). The dependency graph is
/// followed through elementwise activations, Dropout, pooling and BatchNormalization; any other
/// op on the way (a residual Add, Concat, a graph output) makes the layer unprunable, reported
/// by name.
public enum StructuredPruning {
    static let passThrough: Set<String> = ["Relu", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Dropout", "Identity",
                                            "MaxPool", "AveragePool", "BatchNormalization"]

    /// The groups of `graph` whose producer is a Gemm (`neuron`) or a Conv (`channel`).
    /// Layers named in `protect` (their weight name or node name) and the layer producing the
    /// graph's output are left out; a requested layer that cannot be followed is an error.
    public static func groups(_ graph: Graph, channel: Bool, protect: Set<String>) throws -> [StructuredGroup] {
        let shapes = try graph.valueShapes(for: Tensor(zeros: [1] + graph.inputShape))
        var consumers: [String: [Int]] = [:]
        for (i, n) in graph.nodes.enumerated() { for input in n.inputs where !input.isEmpty { consumers[input, default: []].append(i) } }
        let outputs = Set(graph.outputs)
        var out: [StructuredGroup] = []
        for (i, n) in graph.nodes.enumerated() {
            let isProducer = channel ? n.opType == "Conv" : (n.opType == "Gemm" && isLinear(n))
            guard isProducer, n.inputs.count > 1, case .float(let w)? = graph.initializer(n.inputs[1]) else { continue }
            let name = n.inputs[1]
            guard !protect.contains(name), !protect.contains(n.name), !protect.contains(layerName(name)) else { continue }
            // The output layer's units are the model's outputs: never removed.
            if n.outputs.contains(where: { outputs.contains($0) }) { continue }
            if channel, case .int(let g)? = n.attributes["group"], g != 1 {
                throw StructuredPruningError(layer: layerName(name), message: "grouped convolution (group \(g)) cannot be channel-pruned")
            }
            var group = StructuredGroup(producer: i, weight: name, bias: n.inputs.count > 2 && !n.inputs[2].isEmpty ? n.inputs[2] : nil,
                                        units: w.value.shape[0], norms: [], consumers: [], reshapes: [])
            // Walk every path from the output to a consumer that takes the units as inputs.
            var frontier = [(value: n.outputs[0], block: 1, flattened: false)]
            while let (value, block, flattened) = frontier.popLast() {
                if outputs.contains(value) {
                    throw StructuredPruningError(layer: layerName(name), message: "its units reach the graph output '\(value)' directly")
                }
                for c in consumers[value] ?? [] {
                    let cn = graph.nodes[c]
                    let position = cn.inputs.firstIndex(of: value)!
                    if passThrough.contains(cn.opType) && position == 0 {
                        if cn.opType == "BatchNormalization" {
                            guard !flattened else { throw StructuredPruningError(layer: layerName(name), message: "BatchNormalization after Flatten is not followed") }
                            group.norms.append(c)
                        }
                        frontier.append((cn.outputs[0], block, flattened))
                    } else if (cn.opType == "Flatten" || cn.opType == "Reshape") && position == 0 {
                        // (N, C, spatial…) → (N, C·spatial): each unit feeds `spatial` columns.
                        let s = shapes[value] ?? []
                        guard let o = shapes[cn.outputs[0]], o.count == 2, s.count >= 2, o[1] == s.dropFirst().reduce(1, *) else {
                            throw StructuredPruningError(layer: layerName(name), message: "\(cn.opType) node '\(cn.name)' does not flatten (batch, units, …) to (batch, features)")
                        }
                        if cn.opType == "Reshape" { group.reshapes.append(c) }
                        frontier.append((cn.outputs[0], flattened ? block : s.dropFirst(2).reduce(1, *), true))
                    } else if cn.opType == "Gemm" && position == 0 && isLinear(cn) {
                        group.consumers.append((c, block))
                    } else if cn.opType == "Conv" && position == 0 && !flattened {
                        if case .int(let g)? = cn.attributes["group"], g != 1 {
                            throw StructuredPruningError(layer: layerName(name), message: "it feeds grouped convolution '\(cn.name)'")
                        }
                        group.consumers.append((c, 0))
                    } else {
                        throw StructuredPruningError(layer: layerName(name), message: "cannot follow its units through \(cn.opType) node '\(cn.name)'; protect the layer to keep it")
                    }
                }
            }
            guard !group.consumers.isEmpty else {
                throw StructuredPruningError(layer: layerName(name), message: "its units reach no Gemm or Conv")
            }
            out.append(group)
        }
        return out
    }

    /// A Gemm used as a Linear layer: transB = 1, weight an initializer, alpha = beta = 1.
    static func isLinear(_ n: Node) -> Bool {
        if case .int(let t)? = n.attributes["transB"], t == 1 {} else { return false }
        if case .int(let t)? = n.attributes["transA"], t != 0 { return false }
        if case .float(let a)? = n.attributes["alpha"], a != 1 { return false }
        if case .float(let b)? = n.attributes["beta"], b != 1 { return false }
        return true
    }

    /// "fc1" for "fc1.weight".
    public static func layerName(_ weight: String) -> String {
        weight.hasSuffix(".weight") ? String(weight.dropLast(7)) : weight
    }

    /// The L1 or L2 norm of each unit's weights (its row, or its output channel's filter).
    public static func norms(_ graph: Graph, _ group: StructuredGroup, l1: Bool = false) -> [Double] {
        guard case .float(let w)? = graph.initializer(group.weight) else { return [] }
        let rowLength = w.value.count / max(group.units, 1)
        return w.value.withUnsafeBufferPointer { p in
            (0..<group.units).map { u in
                var s = 0.0
                for k in 0..<rowLength { let v = Double(p[u * rowLength + k]); s += l1 ? abs(v) : v * v }
                return l1 ? s : s.squareRoot()
            }
        }
    }

    /// Units to keep per group: the `1 − sparsity` fraction with the largest score, in each
    /// layer (`.layer`) or ranked across layers by score / √(fan-in) (`.global`; at least one
    /// unit stays in every layer). Ties go to the lower index. Kept indices are sorted.
    public static func select(scores: [[Double]], fanIns: [Int], sparsity: Double, scope: PruneRecipe.Scope) -> [[Int]] {
        switch scope {
        case .layer:
            return scores.map { s in
                let remove = Int((sparsity * Double(s.count)).rounded())
                let order = s.indices.sorted { s[$0] != s[$1] ? s[$0] < s[$1] : $0 < $1 }
                return Array(order.dropFirst(min(remove, s.count - 1))).sorted()
            }
        case .global:
            var all: [(score: Double, layer: Int, unit: Int)] = []
            for (l, s) in scores.enumerated() {
                let f = Double(max(fanIns[l], 1)).squareRoot()
                for (u, v) in s.enumerated() { all.append((v / f, l, u)) }
            }
            all.sort { $0.score != $1.score ? $0.score < $1.score : ($0.layer, $0.unit) < ($1.layer, $1.unit) }
            var removeCount = Int((sparsity * Double(all.count)).rounded())
            var left = scores.map(\.count)
            var removed = scores.map { Set<Int>(minimumCapacity: $0.count) }
            for e in all where removeCount > 0 && left[e.layer] > 1 {
                removed[e.layer].insert(e.unit)
                left[e.layer] -= 1
                removeCount -= 1
            }
            return scores.indices.map { l in (0..<scores[l].count).filter { !removed[l].contains($0) } }
        }
    }

    /// The graph with only the `keep` units of each group: every dependent tensor rewritten.
    public static func shrink(_ graph: Graph, groups: [StructuredGroup], keep: [[Int]]) -> Graph {
        var inits: [String: TensorData] = [:]
        for (name, data) in graph.initializerData { inits[name] = data }
        for (group, kept) in zip(groups, keep) {
            inits[group.weight] = .float(rows(floatTensor(inits[group.weight]!), kept))
            if let b = group.bias { inits[b] = .float(rows(floatTensor(inits[b]!), kept)) }
            for bn in group.norms {
                for input in graph.nodes[bn].inputs.dropFirst().prefix(4) where inits[input] != nil {
                    inits[input] = .float(rows(floatTensor(inits[input]!), kept))
                }
            }
            for r in group.reshapes {
                let shapeName = graph.nodes[r].inputs[1]
                if case .int64(var t)? = inits[shapeName], t.data.count == 2, t.data[1] > 0 {
                    let block = group.consumers.first?.block ?? 1
                    t.data[1] = Int64(kept.count * block)
                    inits[shapeName] = .int64(t)
                }
            }
            for (c, block) in group.consumers {
                let w = graph.nodes[c].inputs[1]
                let t = floatTensor(inits[w]!)
                if block == 0 {
                    // Conv consumer: keep input channels (dimension 1).
                    let outC = t.shape[0], inC = t.shape[1], k = t.shape[2...].reduce(1, *)
                    var data: [Float] = []
                    t.withUnsafeBufferPointer { p in
                        for o in 0..<outC { for c in kept { data.append(contentsOf: p[((o * inC + c) * k)..<((o * inC + c + 1) * k)]) } }
                    }
                    inits[w] = .float(Tensor(shape: [outC, kept.count] + Array(t.shape[2...]), scalars: data))
                } else {
                    let outF = t.shape[0], inF = t.shape[1]
                    let cols = kept.flatMap { u in (u * block)..<((u + 1) * block) }
                    var data: [Float] = []
                    data.reserveCapacity(outF * cols.count)
                    t.withUnsafeBufferPointer { p in for o in 0..<outF { for j in cols { data.append(p[o * inF + j]) } } }
                    inits[w] = .float(Tensor(shape: [outF, cols.count], scalars: data))
                }
            }
        }
        return graph.rebuilt(initializers: graph.initializerNames.map { ($0, inits[$0]!) })
    }

    /// The masked equivalent of `shrink`: removed units' rows, bias entries and consumer
    /// columns set to zero in place (the outputs equal the shrunk graph's).
    public static func zeroOut(_ graph: Graph, groups: [StructuredGroup], keep: [[Int]]) {
        for (group, kept) in zip(groups, keep) {
            let drop = Set(0..<group.units).subtracting(kept)
            for name in [group.weight] + (group.bias.map { [$0] } ?? []) {
                guard case .float(let v)? = graph.initializer(name) else { continue }
                let row = v.value.count / group.units
                v.update { p in for u in drop { for k in 0..<row { p[u * row + k] = 0 } } }
            }
            for (c, block) in group.consumers {
                guard case .float(let v)? = graph.initializer(graph.nodes[c].inputs[1]) else { continue }
                let s = v.value.shape
                v.update { p in
                    if block == 0 {
                        let k = s[2...].reduce(1, *)
                        for o in 0..<s[0] { for u in drop { for q in 0..<k { p[(o * s[1] + u) * k + q] = 0 } } }
                    } else {
                        for o in 0..<s[0] { for u in drop { for q in 0..<block { p[o * s[1] + u * block + q] = 0 } } }
                    }
                }
            }
        }
    }

    static func floatTensor(_ d: TensorData) -> Tensor {
        guard case .float(let t) = d else { preconditionFailure("structured pruning: \(d.dtype) tensor where a float weight was expected") }
        return t
    }

    /// The rows (outermost index) `kept` of `t`.
    static func rows(_ t: Tensor, _ kept: [Int]) -> Tensor {
        let inner = t.count / max(t.shape[0], 1)
        var data: [Float] = []
        data.reserveCapacity(kept.count * inner)
        t.withUnsafeBufferPointer { p in for u in kept { data.append(contentsOf: p[(u * inner)..<((u + 1) * inner)]) } }
        return Tensor(shape: [kept.count] + Array(t.shape.dropFirst()), scalars: data)
    }
}
