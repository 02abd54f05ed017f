import Common
import TensorEngine

/// A part of a graph that can be removed while every shape stays valid: a residual branch
/// (y = x + f(x) becomes y = x), or a layer whose output has its input's shape, with the
/// elementwise ops right after it (y = act(W·x) becomes y = x).
public struct RemovableBlock: Equatable, Sendable {
    /// The Add node (residual) or the layer's node: the name printed and protected.
    public var name: String
    /// The nodes removed, in graph order.
    public var nodes: [Int]
    /// The value that takes the removed output's place, and the removed output.
    public var input: String
    public var output: String
    /// The parameters inside the block (what ranks it).
    public var weights: [String]
}

/// `granularity: layer`: whole blocks removed, ranked by the recipe's criterion.
public enum BlockPruning {
    static let elementwise: Set<String> = ["Relu", "LeakyRelu", "Gelu", "Sigmoid", "Tanh", "Dropout", "Identity", "BatchNormalization"]

    /// Every removable block of `graph`. A layer inside a residual branch counts only as part
    /// of that branch; blocks that hold a protected layer (weight, layer or node name) are left
    /// out.
    public static func blocks(_ graph: Graph, protect: Set<String>) throws -> [RemovableBlock] {
        let shapes = try graph.valueShapes()
        let outputs = Set(graph.outputs)
        var producer: [String: Int] = [:]
        var consumers: [String: [Int]] = [:]
        for (i, n) in graph.nodes.enumerated() {
            for o in n.outputs where !o.isEmpty { producer[o] = i }
            for v in n.inputs where !v.isEmpty { consumers[v, default: []].append(i) }
        }
        func isConstant(_ v: String) -> Bool { graph.initializer(v) != nil || producer[v].map { graph.nodes[$0].opType == "Constant" } == true }
        func floatWeights(_ nodes: [Int]) -> [String] {
            var seen = Set<String>(), out: [String] = []
            for i in nodes { for v in graph.nodes[i].inputs.dropFirst() where !v.isEmpty {
                if case .float? = graph.initializer(v), seen.insert(v).inserted { out.append(v) }
            } }
            return out
        }
        var found: [RemovableBlock] = []
        // Residual branches: Add(x, f(x)) where f's nodes are used by nothing outside it.
        for (a, n) in graph.nodes.enumerated() where n.opType == "Add" && n.inputs.count == 2 && !outputs.contains(n.outputs[0]) {
            guard !isConstant(n.inputs[0]), !isConstant(n.inputs[1]), shapes[n.inputs[0]] == shapes[n.inputs[1]] else { continue }
            for (skip, branch) in [(n.inputs[0], n.inputs[1]), (n.inputs[1], n.inputs[0])] {
                var set = Set<Int>(), stack = [branch], valid = true
                while let v = stack.popLast(), valid {
                    if v == skip || isConstant(v) { continue }
                    guard let p = producer[v] else { valid = false; break }   // a graph input other than x
                    if set.insert(p).inserted { stack += graph.nodes[p].inputs.filter { !$0.isEmpty } }
                }
                guard valid, !set.isEmpty else { continue }
                // Nothing inside may feed anything outside but the Add.
                let escapes = set.contains { i in graph.nodes[i].outputs.contains { o in
                    outputs.contains(o) || (consumers[o] ?? []).contains { !set.contains($0) && $0 != a }
                } }
                guard !escapes else { continue }
                let nodes = (set.sorted()) + [a]
                found.append(RemovableBlock(name: n.name, nodes: nodes, input: skip, output: n.outputs[0], weights: floatWeights(nodes)))
                break
            }
        }
        // Layers whose output keeps the input's shape, with their elementwise tail.
        let inResidual = Set(found.flatMap(\.nodes))
        for (i, n) in graph.nodes.enumerated() where (n.opType == "Gemm" || n.opType == "Conv") && !inResidual.contains(i) {
            guard n.inputs.count > 1, case .float? = graph.initializer(n.inputs[1]), let inShape = shapes[n.inputs[0]] else { continue }
            var nodes = [i], end = n.outputs[0]
            while let c = consumers[end], c.count == 1, elementwise.contains(graph.nodes[c[0]].opType), graph.nodes[c[0]].inputs.first == end,
                  !inResidual.contains(c[0]) {
                nodes.append(c[0])
                end = graph.nodes[c[0]].outputs[0]
            }
            guard shapes[end] == inShape, !outputs.contains(end), !nodes.contains(where: { graph.nodes[$0].outputs.contains { outputs.contains($0) } }) else { continue }
            // Only the last value may leave the block.
            let escapes = nodes.dropLast().contains { k in graph.nodes[k].outputs.contains { o in (consumers[o] ?? []).contains { !nodes.contains($0) } } }
            guard !escapes else { continue }
            found.append(RemovableBlock(name: n.name, nodes: nodes, input: n.inputs[0], output: end, weights: floatWeights(nodes)))
        }
        found.sort { $0.nodes[0] < $1.nodes[0] }
        return found.filter { b in
            !b.nodes.contains { protect.contains(graph.nodes[$0].name) } && !b.weights.contains { protect.contains($0) || protect.contains(StructuredPruning.layerName($0)) }
        }
    }

    /// The graph without `removed`: every use of a block's output reads its input instead;
    /// initializers no longer used are dropped.
    public static func remove(_ graph: Graph, _ removed: [RemovableBlock]) -> Graph {
        var replace: [String: String] = [:]
        for b in removed { replace[b.output] = b.input }
        func resolve(_ v: String) -> String { var v = v; while let r = replace[v] { v = r }; return v }
        let gone = Set(removed.flatMap(\.nodes))
        let nodes = graph.nodes.enumerated().filter { !gone.contains($0.offset) }.map { _, n -> Node in
            var n = n
            n.inputs = n.inputs.map { $0.isEmpty ? $0 : resolve($0) }
            return n
        }
        let used = Set(nodes.flatMap(\.inputs))
        return Graph(nodes: nodes, inputs: graph.inputs, outputs: graph.outputs.map(resolve),
                     initializers: graph.initializerData.filter { used.contains($0.0) }, opset: graph.opset)
    }

    /// Removes round(sparsity · blocks) blocks with the lowest scores: RMS of their weights
    /// (`magnitude`), mean (∂L/∂w · w)² over calibration batches (`taylor`), or seeded random
    /// scores. Returns the smaller graph and the blocks removed.
    static func prune(_ model: Graph, recipe: PruneRecipe, sparsity: Double, context: PruningContext) throws -> (Graph, [RemovableBlock]) {
        let blocks = try blocks(model, protect: Set(recipe.protect))
        guard !blocks.isEmpty else {
            throw StructuredPruningError(layer: "(graph)", message: "no block can be removed: granularity layer removes residual branches and layers whose output keeps their input's shape, and the model has none (or all are protected)")
        }
        let scores: [Double]
        switch recipe.method {
        case .magnitude:
            scores = blocks.map { b in
                var sq = 0.0, n = 0
                for w in b.weights { if case .float(let v)? = model.initializer(w) { for x in v.value.scalars { sq += Double(x) * Double(x) }; n += v.value.count } }
                return n == 0 ? 0 : (sq / Double(n)).squareRoot()
            }
        case .random:
            var rng = Philox(seed: context.seed, stream: 17)
            scores = blocks.map { _ in Double(rng.nextUnitFloat()) }
        case .taylor:
            let names = blocks.flatMap(\.weights)
            let per = try Criteria.scores(.taylor, model: model, layers: names, calibration: context.calibration, seed: context.seed, threads: context.threads)
            let byName = Dictionary(uniqueKeysWithValues: per.map { ($0.name, $0.scores) })
            scores = blocks.map { b in
                let all = b.weights.flatMap { byName[$0] ?? [] }
                return all.isEmpty ? 0 : all.reduce(0, +) / Double(all.count)
            }
        default:
            preconditionFailure("the recipe check refuses \(recipe.method.rawValue) for granularity layer")
        }
        let count = Int((sparsity * Double(blocks.count)).rounded())
        let order = blocks.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : $0 < $1 }
        let removed = order.prefix(count).sorted().map { blocks[$0] }
        return (remove(model, removed), removed)
    }
}
