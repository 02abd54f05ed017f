import Common
import TensorEngine

/// A set of units ranked together: the spaces (producer layers) whose units are tied to one
/// another, and its removable units (classes of tied units, in order of their first unit).
public struct StructuredGroup: Equatable, Sendable {
    public enum Kind: String, Sendable { case channel, neuron, head }
    /// The layers (producer weights, by layer name) whose units make up the group.
    public var layers: [String]
    /// Units that can be removed (not pinned by an output, a protected layer or an activation
    /// that is not pruned).
    public var units: Int
    public var kind: Kind
}

/// Why a layer's units cannot be removed.
public struct StructuredPruningError: UserFacingError, Equatable {
    public let layer: String
    public let message: String
    public var description: String { "layer \(layer): \(message)" }
}

/// What structured pruning can remove from one graph, and how to remove it.
public struct StructuredPlan {
    public let groups: [StructuredGroup]
    let units: UnitGraph
    /// Per group: its spaces, and each removable unit's class root.
    let spaces: [[Int]]
    let classes: [[Int32]]
    /// Why layers keep all their units (protected, an output, tied to a value that is not pruned).
    public let kept: [String]

    /// The group and index of each class root.
    func classIndex() -> [Int32: (group: Int, index: Int)] {
        var out: [Int32: (Int, Int)] = [:]
        for (g, cs) in classes.enumerated() { for (k, c) in cs.enumerated() { out[c] = (g, k) } }
        return out
    }

    /// Sums `value(weight, flat index)` over each unit's weights: the rows (or output columns)
    /// of every producer in the group, and for attention heads the consumers' columns too.
    func perUnit(_ graph: Graph, consumers: Bool? = nil, _ value: (String, Int, Float) -> Double) -> [[Double]] {
        let index = classIndex()
        var sums = classes.map { [Double](repeating: 0, count: $0.count) }
        func add(_ weight: String, axis: Int, labelOf: (Int) -> Int32) {
            guard case .float(let v)? = graph.initializer(weight) else { return }
            let shape = v.value.shape
            let inner = shape[(axis + 1)...].reduce(1, *), size = shape[axis]
            var target: [(group: Int, index: Int)?] = []
            for i in 0..<size {
                let l = labelOf(i)
                target.append(l >= 0 ? index[units.find(l)] : nil)
            }
            v.value.withUnsafeBufferPointer { p in
                for flat in 0..<p.count {
                    guard let (g, k) = target[(flat / inner) % size] else { continue }
                    sums[g][k] += value(weight, flat, p[flat])
                }
            }
        }
        for (g, group) in groups.enumerated() {
            for s in spaces[g] {
                let space = units.spaces[s]
                add(space.weight, axis: space.axis) { Int32(space.base + $0) }
            }
            guard consumers ?? (group.kind == .head) else { continue }
            for f in units.follows where f.consumer {
                guard let t = units.tracks[f.value], t.axes == [f.valueAxis] else { continue }
                let mine = t.labels.contains { $0 >= 0 && index[units.find($0)]?.group == g }
                if mine { add(f.tensor, axis: f.axis) { t.labels[$0] } }
            }
        }
        return sums
    }

    /// The L1 or L2 norm of each unit's weights.
    public func norms(_ graph: Graph, l1: Bool = false) -> [[Double]] {
        let sums = perUnit(graph) { _, _, w in l1 ? Double(abs(w)) : Double(w) * Double(w) }
        return l1 ? sums : sums.map { $0.map { $0.squareRoot() } }
    }

    /// The number of weights one unit has across the group's producers (its fan-in).
    public func fanIns(_ graph: Graph) -> [Int] {
        spaces.map { ss in
            ss.reduce(0) { acc, s in
                let space = units.spaces[s]
                guard case .float(let w)? = graph.initializer(space.weight) else { return acc }
                return acc + w.value.count / max(space.count, 1)
            }
        }
    }

    /// Scores of single weights (stored layout, by weight name) summed per unit.
    public func sums(_ graph: Graph, of scores: [String: [Double]]) -> [[Double]] {
        perUnit(graph, consumers: false) { name, flat, _ in scores[name]?[flat] ?? 0 }
    }

    /// The producer nodes and, per group, the producers' output channels of each unit (for
    /// relevance measured at the producers' outputs).
    public var producers: [Int] { spaces.flatMap { $0.map { units.spaces[$0].node } } }

    /// The producers' weights, in group order.
    public var producerWeights: [String] { spaces.flatMap { $0.map { units.spaces[$0].weight } } }

    /// Per-unit totals of values measured per producer output channel (in `producers` order).
    public func sums(perProducerChannel values: [[Double]]) -> [[Double]] {
        let index = classIndex()
        var sums = classes.map { [Double](repeating: 0, count: $0.count) }
        var next = 0
        for ss in spaces {
            for s in ss {
                let space = units.spaces[s]
                for (i, v) in values[next].enumerated() where i < space.count {
                    if let (g, k) = index[units.find(Int32(space.base + i))] { sums[g][k] += v }
                }
                next += 1
            }
        }
        return sums
    }

    // MARK: shrinking

    /// The graph with only the `keep` units of each group: every tensor that follows them sliced,
    /// shape constants rewritten, and every value's shape checked.
    public func shrink(_ graph: Graph, keep: [[Int]]) throws -> Graph {
        let kept = try KeptPositions(self, keep: keep)
        var inits: [String: TensorData] = [:]
        for (name, data) in graph.initializerData { inits[name] = data }
        var order = graph.initializerNames
        // Tensors, axis by axis. A tensor read by several nodes that keep different positions
        // (an initializer shared by two layers) gets a copy per variant.
        var nodes = graph.nodes
        var readers: [String: [Int: [Int: [Int]]]] = [:]
        var tensorOrder: [String] = []
        for f in units.follows {
            guard let idx = try kept.indices(f.value, f.valueAxis) else { continue }
            if readers[f.tensor] == nil { tensorOrder.append(f.tensor) }
            if let other = readers[f.tensor]?[f.reader]?[f.axis], other != idx {
                throw StructuredPruningError(layer: StructuredPruning.layerName(f.tensor),
                                             message: "'\(f.tensor)' is read along axis \(f.axis) by values that lose different units; protect the layer to keep it")
            }
            readers[f.tensor, default: [:]][f.reader, default: [:]][f.axis] = idx
        }
        for name in tensorOrder {
            var byReader = readers[name]!
            for (i, n) in graph.nodes.enumerated() where byReader[i] == nil && n.inputs.contains(name) { byReader[i] = [:] }
            var variants: [(axes: [Int: [Int]], name: String)] = []
            let original = inits[name]!
            for reader in byReader.keys.sorted() {
                let axes = byReader[reader]!
                let variant: String
                if let v = variants.first(where: { $0.axes == axes }) {
                    variant = v.name
                } else {
                    var data = original
                    for (axis, idx) in axes.sorted(by: { $0.key < $1.key }) { data = Self.take(data, axis: axis, idx) }
                    variant = variants.isEmpty ? name : "\(name)_\(variants.count)"
                    if variant != name { order.append(variant) }
                    inits[variant] = data
                    variants.append((axes, variant))
                }
                for k in nodes[reader].inputs.indices where nodes[reader].inputs[k] == name { nodes[reader].inputs[k] = variant }
            }
        }
        // Shape constants and attributes.
        func addConstant(_ base: String, _ node: Int, _ data: TensorData) -> String {
            var name = "\(base)_\(graph.nodes[node].name)"
            while inits[name] != nil { name += "_" }
            inits[name] = data
            order.append(name)
            return name
        }
        /// Sets entries of the int vector read at `nodes[i].inputs[pos]` (entries -1 and 0 stay).
        func rewriteVector(_ i: Int, _ pos: Int, _ updates: [Int: Int]) {
            guard !updates.isEmpty else { return }
            let name = nodes[i].inputs[pos]
            if case .int64(var t)? = inits[name] {
                for (k, v) in updates where k < t.data.count && t.data[k] > 0 { t.data[k] = Int64(v) }
                if case .int64(let old)? = inits[name], old != t { nodes[i].inputs[pos] = addConstant(name, i, .int64(t)) }
            } else if let c = units.producerOf[name], nodes[c].opType == "Concat" {
                var offset = 0
                for (k, piece) in nodes[c].inputs.enumerated() {
                    let length = units.shape(piece).first ?? 1
                    let local = updates.filter { $0.key >= offset && $0.key < offset + length }
                    if !local.isEmpty { rewriteVector(c, k, Dictionary(uniqueKeysWithValues: local.map { ($0.key - offset, $0.value) })) }
                    offset += length
                }
            }
        }
        for i in units.rewrites.sorted() {
            let n = graph.nodes[i]
            let out = n.outputs[0]
            switch n.opType {
            case "Reshape", "Expand":
                let old = units.shape(out), new = try kept.shape(out)
                var updates: [Int: Int] = [:]
                for k in old.indices where old[k] != new[k] { updates[k] = new[k] }
                rewriteVector(i, 1, updates)
            case "Conv":
                guard case .float(let w)? = inits[n.inputs[1]] else { continue }
                let channels = try kept.shape(n.inputs[0])[1]
                nodes[i].attributes["group"] = .int(channels / max(w.shape[1], 1))
            case "Split":
                let s = units.shape(n.inputs[0])
                var axis = units.intAttribute(n, "axis", 0)
                if axis < 0 { axis += s.count }
                let sizes = try n.outputs.filter { !$0.isEmpty }.map { try kept.shape($0)[axis] }
                nodes[i].attributes["num_outputs"] = nil
                let data = TensorData.int64(IntTensor(shape: [sizes.count], data: sizes.map { Int64($0) }))
                if graph.opset >= 13 {
                    let name = addConstant("split", i, data)
                    if nodes[i].inputs.count > 1 { nodes[i].inputs[1] = name } else { nodes[i].inputs.append(name) }
                } else {
                    nodes[i].attributes["split"] = .ints(sizes)
                }
            case "Slice":
                try rewriteSlice(i, n, &nodes, kept: kept, addConstant: addConstant)
            case "Gather":
                let s = units.shape(n.inputs[0])
                var axis = units.intAttribute(n, "axis", 0)
                if axis < 0 { axis += s.count }
                guard let idx = try kept.indices(n.inputs[0], axis), case .int64(let t)? = inits[n.inputs[1]] else { continue }
                let newIndex = Dictionary(uniqueKeysWithValues: idx.enumerated().map { ($0.element, $0.offset) })
                let mapped = t.data.compactMap { v -> Int64? in newIndex[Int(v) < 0 ? Int(v) + s[axis] : Int(v)].map { Int64($0) } }
                guard t.shape.isEmpty ? mapped.count == 1 : true else {
                    throw StructuredPruningError(layer: n.name, message: "Gather node '\(n.name)' reads a position that pruning removes")
                }
                let data = IntTensor(shape: t.shape.isEmpty ? [] : [mapped.count], data: mapped)
                if data != t { nodes[i].inputs[1] = addConstant(n.inputs[1], i, .int64(data)) }
            default:
                break
            }
        }
        // A Gather of every element in order becomes the Reshape it is, to the new shape.
        for i in units.reshapingGathers.sorted() {
            let n = graph.nodes[i]
            var target = try kept.shape(n.outputs[0])
            if !target.isEmpty { target[0] = -1 }
            let shapeName = addConstant("\(n.name)_shape", i, .int64(IntTensor(shape: [target.count], data: target.map { Int64($0) })))
            nodes[i] = Node(name: n.name, opType: "Reshape", inputs: [n.inputs[0], shapeName], outputs: n.outputs)
        }
        let used = Set(nodes.flatMap(\.inputs))
        let shrunk = graph.rebuilt(nodes: nodes, initializers: order.filter { used.contains($0) }.map { ($0, inits[$0]!) })
        try kept.check(shrunk, graph: graph)
        return shrunk
    }

    private func rewriteSlice(_ i: Int, _ n: Node, _ nodes: inout [Node], kept: KeptPositions,
                              addConstant: (String, Int, TensorData) -> String) throws {
        let s = units.shape(n.inputs[0])
        guard n.inputs.count >= 3, case .int64(var starts)? = units.graph.initializer(n.inputs[1]),
              case .int64(var ends)? = units.graph.initializer(n.inputs[2]) else {
            throw StructuredPruningError(layer: n.name, message: "Slice node '\(n.name)' (opset < 10 attributes) cuts an axis that loses units")
        }
        let axes = units.ints(n, attribute: "axes", input: 3) ?? Array(0..<starts.data.count)
        let steps = units.ints(n, attribute: "steps", input: 4) ?? [Int](repeating: 1, count: axes.count)
        var changed = false
        for (k, a0) in axes.enumerated() {
            let a = a0 < 0 ? a0 + s.count : a0
            guard let idx = try kept.indices(n.inputs[0], a) else { continue }
            guard steps[k] == 1 else { throw StructuredPruningError(layer: n.name, message: "Slice node '\(n.name)' steps through an axis that loses units") }
            let dim = s[a]
            let st = min(max(Int(starts.data[k]) < 0 ? Int(starts.data[k]) + dim : Int(starts.data[k]), 0), dim)
            let en = min(max(Int(ends.data[k]) < 0 ? Int(ends.data[k]) + dim : Int(ends.data[k]), 0), dim)
            starts.data[k] = Int64(idx.filter { $0 < st }.count)
            ends.data[k] = Int64(idx.filter { $0 < en }.count)
            changed = true
        }
        guard changed else { return }
        nodes[i].inputs[1] = addConstant(n.inputs[1], i, .int64(starts))
        nodes[i].inputs[2] = addConstant(n.inputs[2], i, .int64(ends))
    }

    /// The masked equivalent of `shrink`: the consumers' columns of removed units set to zero
    /// in place (what removing the units' activations does).
    public func zeroOut(_ graph: Graph, keep: [[Int]]) throws {
        let kept = try KeptPositions(self, keep: keep)
        for f in units.follows where f.consumer {
            guard let idx = try kept.indices(f.value, f.valueAxis), case .float(let v)? = graph.initializer(f.tensor) else { continue }
            let shape = v.value.shape
            let alive = Set(idx)
            let inner = shape[(f.axis + 1)...].reduce(1, *), size = shape[f.axis]
            v.update { p in for flat in 0..<p.count where !alive.contains((flat / inner) % size) { p[flat] = 0 } }
        }
    }

    /// `data` with only positions `idx` of `axis`.
    static func take(_ data: TensorData, axis: Int, _ idx: [Int]) -> TensorData {
        func gather<T>(_ values: [T], _ shape: [Int]) -> ([T], [Int]) {
            let outer = shape[..<axis].reduce(1, *), inner = shape[(axis + 1)...].reduce(1, *), size = shape[axis]
            var out: [T] = []
            out.reserveCapacity(outer * idx.count * inner)
            for o in 0..<outer { for i in idx { out.append(contentsOf: values[((o * size + i) * inner)..<((o * size + i + 1) * inner)]) } }
            var s = shape
            s[axis] = idx.count
            return (out, s)
        }
        switch data {
        case .float(let t):
            let (v, s) = gather(t.scalars, t.shape)
            return .float(Tensor(shape: s, scalars: v))
        case .int64(let t):
            let (v, s) = gather(t.data, t.shape)
            return .int64(IntTensor(shape: s, data: v))
        case .bool(let t):
            let (v, s) = gather(t.data, t.shape)
            return .bool(IntTensor(shape: s, data: v))
        }
    }
}

/// Which positions of each tracked value survive a choice of units.
final class KeptPositions {
    let plan: StructuredPlan
    let dead: Set<Int32>
    /// Per tracked value, the positions each of its tracked axes keeps (nil: all), computed
    /// in one pass over its labels the first time the value is asked for.
    private var cache: [String: [[Int]?]] = [:]

    init(_ plan: StructuredPlan, keep: [[Int]]) throws {
        self.plan = plan
        var dead = Set<Int32>()
        for (g, cs) in plan.classes.enumerated() {
            let k = Set(keep[g])
            for (i, c) in cs.enumerated() where !k.contains(i) { dead.insert(c) }
        }
        self.dead = dead
        // Every constraint of a value that is not pruned, checked once.
        for (value, axes, node) in plan.units.fullAxes {
            for a in axes where try indices(value, a) != nil {
                let n = plan.units.graph.nodes[node]
                throw StructuredPruningError(layer: n.name, message: "\(n.opType) node '\(n.name)' combines the pruned units with a value that is not pruned along axis \(a); protect the layer to keep it")
            }
        }
    }

    func isDead(_ l: Int32) -> Bool { l >= 0 && dead.contains(plan.units.find(l)) }

    /// The positions of `value`'s `axis` that stay (nil: all of them).
    func indices(_ value: String, _ axis: Int) throws -> [Int]? {
        let units = plan.units
        if let (v, a) = units.constantAxes[value]?[axis] { return try indices(v, a) }
        guard let t = units.tracks[value], let k = t.axes.firstIndex(of: axis) else { return nil }
        if let kept = cache[value] { return kept[k] }
        let strides = t.strides
        var perAxis = t.axes.indices.map { [Bool](repeating: false, count: t.sizes[$0]) }
        var count = 0
        for (p, l) in t.labels.enumerated() where !isDead(l) {
            count += 1
            for q in t.axes.indices { perAxis[q][(p / strides[q]) % t.sizes[q]] = true }
        }
        let product = perAxis.reduce(1) { $0 * $1.filter { $0 }.count }
        guard product == count else {
            let n = units.producerOf[value].map { units.graph.nodes[$0].name } ?? value
            throw StructuredPruningError(layer: n, message: "the units removed from '\(value)' do not form whole rows and columns of its axes \(t.axes)")
        }
        let kept = perAxis.map { alive in alive.allSatisfy { $0 } ? nil : alive.indices.filter { alive[$0] } }
        cache[value] = kept
        return kept[k]
    }

    func shape(_ value: String) throws -> [Int] {
        var s = plan.units.shape(value)
        for a in s.indices { if let idx = try indices(value, a) { s[a] = idx.count } }
        return s
    }

    /// Runs the shrunk graph once and compares every value's shape with what the units say.
    func check(_ shrunk: Graph, graph: Graph) throws {
        let got: [String: [Int]]
        do { got = try shrunk.valueShapes(feeds: plan.units.feeds) } catch {
            throw StructuredPruningError(layer: "(graph)", message: "the pruned graph does not run: \(error)")
        }
        for n in graph.nodes {
            for o in n.outputs where !o.isEmpty {
                guard let g = got[o], plan.units.shapes[o] != nil else { continue }
                let want = try shape(o)
                if g != want {
                    throw StructuredPruningError(layer: n.name, message: "after pruning, \(n.opType) node '\(n.name)' gives '\(o)' the shape \(g) instead of \(want): a shape it computes could not be rewritten; protect the layer to keep it")
                }
            }
        }
    }
}

/// Neuron, channel and attention-head pruning that physically removes the units: every tensor
/// that depends on them (see `UnitGraph`).
public enum StructuredPruning {
    /// What `granularity` can remove from `graph`: the groups of its kind (channel: groups with
    /// a Conv; head: groups whose units meet in attention; neuron: the other Linear groups).
    /// A group that cannot be followed is an error naming the layer and the op.
    public static func plan(_ graph: Graph, granularity: PruneRecipe.Granularity, protect: Set<String>) throws -> StructuredPlan {
        let ug = try UnitGraph(graph, protect: protect)
        // Classes: the roots of units that are not pinned, by group (the root space).
        var classesBySpace: [Int: [Int32]] = [:]
        var blockedBySpace: [Int: (Int32, String)] = [:]
        for u in 0..<ug.parent.count {
            let l = Int32(u)
            let s = ug.spaceRoot(Int(ug.unitSpace[u]))
            if ug.find(l) == l && !ug.isPinned(l) {
                classesBySpace[s, default: []].append(l)
            }
            if let why = ug.blockedReason(l), !ug.isPinned(l), blockedBySpace[s] == nil { blockedBySpace[s] = (l, why) }
        }
        var groups: [StructuredGroup] = [], spaces: [[Int]] = [], classes: [[Int32]] = []
        for root in classesBySpace.keys.sorted() {
            let members = ug.spaces.indices.filter { ug.spaceRoot($0) == root }
            let cs = classesBySpace[root]!
            // Channels: a Conv's, or a transformer's width (its embeddings' columns, a residual
            // stream); heads: units that meet in attention; neurons: the rest (MLP hidden units).
            let kinds = Set(members.map { ug.spaces[$0].kind })
            let attention = cs.contains(where: ug.isAttention)
            let stream = kinds.contains(.embedding) || cs.contains(where: ug.isResidual)
            let kind: StructuredGroup.Kind = kinds.contains(.conv) || (stream && !attention) ? .channel
                : attention ? .head : .neuron
            let wanted: StructuredGroup.Kind? = granularity == .channel ? .channel : granularity == .neuron ? .neuron : granularity == .head ? .head : nil
            guard kind == wanted else { continue }
            if let (u, why) = blockedBySpace[root] {
                throw StructuredPruningError(layer: layerName(ug.spaces[Int(ug.unitSpace[Int(u)])].weight), message: why)
            }
            groups.append(StructuredGroup(layers: members.map { layerName(ug.spaces[$0].weight) }, units: cs.count, kind: kind))
            spaces.append(members)
            classes.append(cs)
        }
        return StructuredPlan(groups: groups, units: ug, spaces: spaces, classes: classes, kept: keptReasons(ug, granularity))
    }

    /// Why the layers of `granularity`'s kind keep all their units, one line per layer.
    static func keptReasons(_ ug: UnitGraph, _ granularity: PruneRecipe.Granularity) -> [String] {
        ug.spaces.indices.compactMap { s in
            let space = ug.spaces[s]
            guard (space.kind != .linear) == (granularity == .channel), let why = ug.pinReason[s] else { return nil }
            return "\(layerName(space.weight)): \(why)"
        }
    }

    /// "fc1" for "fc1.weight".
    public static func layerName(_ weight: String) -> String {
        weight.hasSuffix(".weight") ? String(weight.dropLast(7)) : weight
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
}
