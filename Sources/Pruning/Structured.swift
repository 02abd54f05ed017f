import Common
import TensorEngine

/// A set of units (Gemm output features or Conv output channels) that are removed together
/// with everything that depends on them. Producers whose outputs meet in a residual Add (or
/// any elementwise op of two of them) share their units and form one group.
public struct StructuredGroup: Equatable, Sendable {
    /// A layer whose weight rows are the units.
    public struct Member: Equatable, Sendable {
        public var producer: Int
        public var weight: String
        public var bias: String?
    }
    public var members: [Member]
    public var units: Int
    /// BatchNormalization nodes on the paths (their four per-channel tensors shrink too).
    public var norms: [Int]
    /// Consumers: node index, and how many consecutive input columns one unit feeds (1 for a
    /// Gemm right after, H·W after a Conv and a Flatten; 0 marks a Conv consumer).
    public var consumers: [(node: Int, block: Int)]
    /// Reshape nodes on the paths whose constant shape holds the feature count.
    public var reshapes: [Int]

    /// The first member's node, weight and bias (the only ones of an uncoupled group).
    public var producer: Int { members[0].producer }
    public var weight: String { members[0].weight }
    public var bias: String? { members[0].bias }

    public static func == (a: StructuredGroup, b: StructuredGroup) -> Bool {
        a.members == b.members && a.units == b.units && a.norms == b.norms
            && a.consumers.elementsEqual(b.consumers) { $0.node == $1.node && $0.block == $1.block } && a.reshapes == b.reshapes
    }
}

/// Why a layer's units cannot be removed.
public struct StructuredPruningError: UserFacingError, Equatable {
    public let layer: String
    public let message: String
    public var description: String { "layer \(layer): \(message)" }
}

/// Neuron (Linear output) and channel (Conv output) pruning that physically removes the units:
/// the producers' rows and bias entries, BatchNormalization statistics on the way, Reshape
/// constants, and the consumers' input columns (through Flatten). Units are followed through
/// elementwise activations, Dropout, pooling, BatchNormalization, elementwise ops with a scalar
/// constant (GELU's Div, Add and Mul), and elementwise ops of two values that carry units:
/// there the producers are coupled (a residual Add) and pruned as one group. Anything else on
/// the way (Concat, a graph output, a per-channel constant) makes the group unprunable,
/// reported by layer and op.
public enum StructuredPruning {
    static let passThrough: Set<String> = ["Relu", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Dropout", "Identity", "Erf", "Abs", "Neg",
                                            "Sqrt", "Exp", "Reciprocal", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                                            "BatchNormalization"]
    static let elementwise: Set<String> = ["Add", "Sub", "Mul", "Div"]

    /// The groups of `graph` whose producers are Gemms (`neuron`) or Convs (`channel`). Groups
    /// with a protected layer (weight, layer or node name) or with the layer producing the
    /// graph's output are left out; a group that cannot be followed is an error.
    public static func groups(_ graph: Graph, channel: Bool, protect: Set<String>) throws -> [StructuredGroup] {
        let shapes = try graph.valueShapes()
        let outputs = Set(graph.outputs)
        // Scalar constants: one-element initializers and Constant outputs.
        var scalars = Set(graph.initializerNames.filter { graph.initializer($0)?.shape.reduce(1, *) == 1 })
        for n in graph.nodes where n.opType == "Constant" { if let o = n.outputs.first, shapes[o]?.reduce(1, *) == 1 { scalars.insert(o) } }

        var members: [StructuredGroup.Member] = []
        var units: [Int] = []
        var parent: [Int] = []
        func find(_ i: Int) -> Int { var i = i; while parent[i] != i { i = parent[i] }; return i }
        func union(_ a: Int, _ b: Int) { let (ra, rb) = (find(a), find(b)); if ra != rb { parent[max(ra, rb)] = min(ra, rb) } }
        var skip = Set<Int>()                         // protected or output layers (by member)
        var blocked: [Int: String] = [:]              // member → why its units cannot be followed
        var norms: [Int: [Int]] = [:], consumers: [Int: [(node: Int, block: Int)]] = [:], reshapes: [Int: [Int]] = [:]
        // The space (a member) each value's dimension 1 belongs to, with its block and whether
        // it was flattened.
        var space: [String: (member: Int, block: Int, flattened: Bool)] = [:]

        for (i, n) in graph.nodes.enumerated() {
            let carried = n.inputs.enumerated().compactMap { pos, name in space[name].map { (pos: pos, name: name, s: $0) } }
            for c in carried where outputs.contains(c.name) { blocked[c.s.member] = "its units reach the graph output '\(c.name)' directly" }
            if let first = carried.first {
                let (pos, name, s) = first
                func block(_ why: String) { blocked[s.member] = why }
                if passThrough.contains(n.opType) && pos == 0 && carried.count == 1 {
                    if n.opType == "BatchNormalization" {
                        if s.flattened { block("BatchNormalization after Flatten is not followed") } else { norms[s.member, default: []].append(i) }
                    }
                    space[n.outputs[0]] = s
                } else if elementwise.contains(n.opType) && n.inputs.count == 2 {
                    if carried.count == 2 {
                        let other = carried[1].s
                        if other.block != s.block || other.flattened != s.flattened {
                            block("\(n.opType) node '\(n.name)' joins values of different layouts")
                        } else {
                            union(s.member, other.member)
                        }
                        space[n.outputs[0]] = s
                    } else if scalars.contains(n.inputs[1 - pos]) {
                        space[n.outputs[0]] = s
                    } else {
                        block("cannot follow its units through \(n.opType) node '\(n.name)' with '\(n.inputs[1 - pos])' (only scalar constants or another pruned layer's units); protect the layer to keep it")
                    }
                } else if (n.opType == "Flatten" || n.opType == "Reshape") && pos == 0 {
                    // (N, C, spatial…) → (N, C·spatial): each unit feeds `spatial` columns.
                    let sh = shapes[name] ?? []
                    if let o = shapes[n.outputs[0]], o.count == 2, sh.count >= 2, o[1] == sh.dropFirst().reduce(1, *) {
                        if n.opType == "Reshape" { reshapes[s.member, default: []].append(i) }
                        space[n.outputs[0]] = (s.member, s.flattened ? s.block : sh.dropFirst(2).reduce(1, *), true)
                    } else {
                        block("\(n.opType) node '\(n.name)' does not flatten (batch, units, …) to (batch, features)")
                    }
                } else if n.opType == "Gemm" && pos == 0 && carried.count == 1 && isLinear(n) {
                    consumers[s.member, default: []].append((i, s.block))
                } else if n.opType == "Conv" && pos == 0 && carried.count == 1 && !s.flattened {
                    if case .int(let g)? = n.attributes["group"], g != 1 { block("it feeds grouped convolution '\(n.name)'") } else {
                        consumers[s.member, default: []].append((i, 0))
                    }
                } else {
                    block("cannot follow its units through \(n.opType) node '\(n.name)'; protect the layer to keep it")
                }
                for c in carried.dropFirst() where !(elementwise.contains(n.opType) && carried.count == 2) {
                    blocked[c.s.member] = "cannot follow its units through \(n.opType) node '\(n.name)'"
                }
            }
            // A producer starts a space of its own.
            let isProducer = channel ? n.opType == "Conv" : (n.opType == "Gemm" && isLinear(n))
            guard isProducer, n.inputs.count > 1, case .float(let w)? = graph.initializer(n.inputs[1]) else { continue }
            let name = n.inputs[1]
            let m = members.count
            members.append(.init(producer: i, weight: name, bias: n.inputs.count > 2 && !n.inputs[2].isEmpty ? n.inputs[2] : nil))
            units.append(w.value.shape[0])
            parent.append(m)
            if protect.contains(name) || protect.contains(n.name) || protect.contains(layerName(name)) || n.outputs.contains(where: { outputs.contains($0) }) {
                skip.insert(m)
            }
            if channel, case .int(let g)? = n.attributes["group"], g != 1 { blocked[m] = "grouped convolution (group \(g)) cannot be channel-pruned" }
            space[n.outputs[0]] = (m, 1, false)
        }

        var out: [StructuredGroup] = []
        for root in members.indices where find(root) == root {
            let ids = members.indices.filter { find($0) == root }
            // Protected or output layers keep their whole group.
            if ids.contains(where: skip.contains) { continue }
            let name = layerName(members[root].weight)
            if let m = ids.first(where: { blocked[$0] != nil }) {
                let coupled = ids.count > 1 ? " (coupled with \(ids.map { layerName(members[$0].weight) }.joined(separator: ", ")))" : ""
                throw StructuredPruningError(layer: layerName(members[m].weight), message: blocked[m]! + coupled)
            }
            guard Set(ids.map { units[$0] }).count == 1 else {
                throw StructuredPruningError(layer: name, message: "coupled layers \(ids.map { layerName(members[$0].weight) }.joined(separator: ", ")) have different unit counts \(ids.map { units[$0] })")
            }
            let cons = ids.flatMap { consumers[$0] ?? [] }
            guard !cons.isEmpty else { throw StructuredPruningError(layer: name, message: "its units reach no Gemm or Conv") }
            out.append(StructuredGroup(members: ids.map { members[$0] }, units: units[root], norms: ids.flatMap { norms[$0] ?? [] },
                                       consumers: cons, reshapes: ids.flatMap { reshapes[$0] ?? [] }))
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

    /// The L1 or L2 norm of each unit's weights (its rows, or its output channel's filters, in
    /// every member of the group).
    public static func norms(_ graph: Graph, _ group: StructuredGroup, l1: Bool = false) -> [Double] {
        var sums = [Double](repeating: 0, count: group.units)
        for member in group.members {
            guard case .float(let w)? = graph.initializer(member.weight) else { continue }
            let rowLength = w.value.count / max(group.units, 1)
            w.value.withUnsafeBufferPointer { p in
                for u in 0..<group.units {
                    for k in 0..<rowLength { let v = Double(p[u * rowLength + k]); sums[u] += l1 ? abs(v) : v * v }
                }
            }
        }
        return l1 ? sums : sums.map { $0.squareRoot() }
    }

    /// The number of weights one unit has across the group's members (its fan-in).
    public static func fanIn(_ graph: Graph, _ group: StructuredGroup) -> Int {
        group.members.reduce(0) { acc, m in
            guard case .float(let w)? = graph.initializer(m.weight) else { return acc }
            return acc + w.value.count / max(group.units, 1)
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
            for m in group.members {
                inits[m.weight] = .float(rows(floatTensor(inits[m.weight]!), kept))
                if let b = m.bias { inits[b] = .float(rows(floatTensor(inits[b]!), kept)) }
            }
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
            for name in group.members.flatMap({ [$0.weight] + ($0.bias.map { [$0] } ?? []) }) {
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
