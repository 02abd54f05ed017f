import Common
import TensorEngine

/// The units a tracked value's axes carry: for each position of the product of `axes`
/// (row-major, in axis order) the unit it belongs to (`UnitGraph.none`: no unit, always kept).
struct Track: Equatable {
    var axes: [Int]
    var sizes: [Int]
    var labels: [Int32]

    init(axes: [Int], sizes: [Int], labels: [Int32]) {
        self.axes = axes
        self.sizes = sizes
        self.labels = labels
    }

    init(axes: [Int], sizes: [Int], fill: Int32) {
        self.init(axes: axes, sizes: sizes, labels: [Int32](repeating: fill, count: sizes.reduce(1, *)))
    }

    var strides: [Int] {
        var s = [Int](repeating: 1, count: sizes.count)
        for k in stride(from: sizes.count - 2, through: 0, by: -1) { s[k] = s[k + 1] * sizes[k + 1] }
        return s
    }
}

/// Calls `body` with every multi-index of `sizes` (row-major) and its flat index.
@inline(__always) func forEachIndex(_ sizes: [Int], _ body: ([Int], Int) -> Void) {
    let n = sizes.reduce(1, *)
    guard n > 0 else { return }
    var idx = [Int](repeating: 0, count: sizes.count)
    for flat in 0..<n {
        body(idx, flat)
        var k = sizes.count - 1
        while k >= 0 { idx[k] += 1; if idx[k] < sizes[k] { break }; idx[k] = 0; k -= 1 }
    }
}

/// The dependency graph of structured pruning (after Torch-Pruning's DepGraph, over ONNX).
///
/// Every Conv, Linear Gemm and MatMul with a constant weight starts a *space*: one unit per
/// output channel or feature. A forward pass over the graph labels each position of every
/// value's tracked axes with the unit it carries, through reshapes, transposes, concatenations,
/// splits, slices and gathers (which move positions) and through elementwise ops, matrix
/// products of two activations, reductions and grouped convolutions (which *unite* the units
/// meeting at one position: they must go together). A unit that meets a position that cannot
/// go (a graph output, a protected layer, an activation that is not pruned) is pinned.
/// The classes of united units are what pruning removes; the spaces they connect form groups.
///
/// Tensors follow values axis by axis: a weight's input channels follow its input's channel
/// axis, a bias or a per-channel constant follows the axis it is broadcast along. Shrinking
/// keeps, on every axis, the positions whose unit survives, then rewrites the shape constants
/// (Reshape, Expand, Split, Slice, Gather, Conv `group`) and checks every value's shape.
final class UnitGraph {
    static let unset: Int32 = -2
    static let none: Int32 = -1

    struct Space {
        enum Kind { case conv, linear, embedding }
        var node: Int
        var weight: String
        /// The weight's axis along which the units lie.
        var axis: Int
        var kind: Kind
        var base: Int
        var count: Int
    }

    /// A tensor's axis that keeps the positions a value's axis keeps.
    struct Follow: Equatable {
        var tensor: String
        var axis: Int
        var value: String
        var valueAxis: Int
        /// The weight reads the value's units (a contraction): its columns go with them.
        var consumer: Bool
        /// The node that reads the tensor.
        var reader: Int
    }

    let graph: Graph
    let shapes: [String: [Int]]
    /// Integer values of one run (shape arithmetic, computed indices).
    let integers: [String: IntTensor]
    let feeds: [Value]
    /// Values computed from initializers alone (initializers included).
    let constants: Set<String>
    let producerOf: [String: Int]

    private(set) var parent: [Int32] = []
    private var pinned: [Bool] = []
    private var attention: [Bool] = []
    /// Units on a residual stream (two pruned values added): a width, pruned as channels.
    private var residual: [Bool] = []
    /// How many times two different units were made one (to tell a residual Add, which ties
    /// two layers' units, from GELU's x + c·x³).
    private var merges = 0
    private var blocked: [String?] = []
    private(set) var unitSpace: [Int32] = []
    private(set) var spaces: [Space] = []
    private var spaceParent: [Int] = []
    private(set) var tracks: [String: Track] = [:]
    /// Tracked values in the order they were first reached (dictionaries have no stable order).
    private var trackOrder: [String] = []
    private(set) var follows: [Follow] = []
    /// Nodes whose shape constants or attributes may need rewriting.
    private(set) var rewrites: Set<Int> = []
    /// Gathers of every element in order (as_strided's flatten, exported as a Gather with
    /// computed indices): followed as reshapes, and rewritten into Reshape nodes.
    private(set) var reshapingGathers: Set<Int> = []
    /// Values that must keep every position of the given axes (an activation that is not
    /// pruned is broadcast against them), with the node that requires it.
    private(set) var fullAxes: [(value: String, axes: [Int], node: Int)] = []
    /// Constant-derived values whose axes follow a tracked value's (for the shape check).
    private(set) var constantAxes: [String: [Int: (value: String, axis: Int)]] = [:]

    init(_ graph: Graph, protect: Set<String>) throws {
        self.graph = graph
        feeds = graph.sampleFeeds(batch: 2)
        (shapes, integers) = try graph.shapesAndIntegers(feeds: feeds)
        var constants = Set(graph.initializerNames)
        var producerOf: [String: Int] = [:]
        for (i, n) in graph.nodes.enumerated() {
            for o in n.outputs where !o.isEmpty { producerOf[o] = i }
            let ins = n.inputs.filter { !$0.isEmpty }
            // Shapes count as constants: a shape vector follows the values it was read from.
            if n.opType == "Shape" || n.opType == "Size" || (!ins.isEmpty && ins.allSatisfy(constants.contains)) {
                for o in n.outputs { constants.insert(o) }
            }
        }
        self.constants = constants
        self.producerOf = producerOf
        for (i, n) in graph.nodes.enumerated() {
            current = i
            try visit(i, n, protect: protect)
        }
        current = -2
        for o in graph.outputs { if let t = tracks[o] { for l in t.labels { pin(l) } } }
        makeProductSafe()
    }

    // MARK: units

    func find(_ u: Int32) -> Int32 {
        var u = u
        while parent[Int(u)] != u { parent[Int(u)] = parent[Int(parent[Int(u)])]; u = parent[Int(u)] }
        return u
    }

    func spaceRoot(_ s: Int) -> Int {
        var s = s
        while spaceParent[s] != s { spaceParent[s] = spaceParent[spaceParent[s]]; s = spaceParent[s] }
        return s
    }

    func isPinned(_ u: Int32) -> Bool { pinned[Int(find(u))] }
    func isAttention(_ u: Int32) -> Bool { attention[Int(find(u))] }
    func isResidual(_ u: Int32) -> Bool { residual[Int(find(u))] }
    func blockedReason(_ u: Int32) -> String? { blocked[Int(find(u))] }

    func pin(_ u: Int32) {
        guard u >= 0 else { return }
        let s = Int(unitSpace[Int(u)])
        if pinReason[s] == nil {
            if current >= 0 && current < graph.nodes.count {
                let n = graph.nodes[current]
                pinReason[s] = "its units meet a value that is not pruned at \(n.opType) node '\(n.name)'"
            } else if current == -2 {
                pinReason[s] = "its units reach a graph output"
            }
        }
        pinned[Int(find(u))] = true
    }
    /// The node being visited (-2: after the pass), for the reasons units are kept.
    private var current = -1
    /// Per space: why its first pinned unit must stay.
    private(set) var pinReason: [String?] = []

    func block(_ u: Int32, _ why: String) {
        guard u >= 0 else { return }
        let r = Int(find(u))
        if blocked[r] == nil { blocked[r] = why }
    }

    /// The two labels made one unit; a unit meeting a position without one is pinned.
    @discardableResult func unite(_ a: Int32, _ b: Int32) -> Int32 {
        if a == Self.unset { return b }
        if b == Self.unset { return a }
        if a == Self.none { pin(b); return Self.none }
        if b == Self.none { pin(a); return Self.none }
        let ra = find(a), rb = find(b)
        if ra == rb { return ra }
        merges += 1
        let (root, child) = ra < rb ? (Int(ra), Int(rb)) : (Int(rb), Int(ra))
        parent[child] = Int32(root)
        pinned[root] = pinned[root] || pinned[child]
        attention[root] = attention[root] || attention[child]
        residual[root] = residual[root] || residual[child]
        if blocked[root] == nil { blocked[root] = blocked[child] }
        let (sa, sb) = (spaceRoot(Int(unitSpace[root])), spaceRoot(Int(unitSpace[child])))
        if sa != sb { spaceParent[max(sa, sb)] = min(sa, sb) }
        return Int32(root)
    }

    private func newSpace(node: Int, weight: String, axis: Int, kind: Space.Kind, count: Int, protected: Bool) -> Int {
        let base = parent.count
        let s = spaces.count
        spaces.append(Space(node: node, weight: weight, axis: axis, kind: kind, base: base, count: count))
        spaceParent.append(s)
        pinReason.append(protected ? "it is protected" : nil)
        for u in 0..<count {
            parent.append(Int32(base + u))
            pinned.append(protected)
            attention.append(false)
            residual.append(false)
            blocked.append(nil)
            unitSpace.append(Int32(s))
        }
        return base
    }

    // MARK: tracks

    func shape(_ v: String) -> [Int] { shapes[v] ?? [] }

    /// Unites `src`'s labels into `out`: src's k-th tracked axis lands on out's axis
    /// `map[k]` shifted by `offset[k]` (nil: the src axis is free, all its positions meet each
    /// out position). Out axes src does not map are broadcast. Positions outside src's range are left.
    func combine(_ out: inout Track, _ src: Track, map: [Int?], offset: [Int]? = nil) {
        let outStrides = out.strides
        var fixedSlots: [(k: Int, j: Int)] = []
        for (k, m) in map.enumerated() { if let m, let j = out.axes.firstIndex(of: m) { fixedSlots.append((k, j)) } }
        let fixedOut = Set(fixedSlots.map(\.j))
        let freeOut = out.axes.indices.filter { !fixedOut.contains($0) }
        let freeSizes = freeOut.map { out.sizes[$0] }
        forEachIndex(src.sizes) { si, sflat in
            var base = 0
            for (k, j) in fixedSlots {
                let i = si[k] + (offset?[k] ?? 0)
                if i < 0 || i >= out.sizes[j] { return }
                base += i * outStrides[j]
            }
            let label = src.labels[sflat]
            forEachIndex(freeSizes) { fi, _ in
                var o = base
                for (q, j) in freeOut.enumerated() { o += fi[q] * outStrides[j] }
                out.labels[o] = unite(out.labels[o], label)
            }
        }
    }

    func finish(_ t: Track) -> Track {
        var t = t
        for k in t.labels.indices where t.labels[k] == Self.unset { t.labels[k] = Self.none }
        return t
    }

    /// `t` without the axes its labels do not depend on (a batch axis merged with heads and
    /// split off again): those axes never lose a position.
    static func compact(_ t: Track) -> Track {
        var t = t
        var k = 0
        while k < t.axes.count {
            let strides = t.strides
            let size = t.sizes[k]
            var independent = true
            for p in t.labels.indices where (p / strides[k]) % size != 0 {
                if t.labels[p] != t.labels[p - ((p / strides[k]) % size) * strides[k]] { independent = false; break }
            }
            if independent && size > 0 {
                var labels: [Int32] = []
                labels.reserveCapacity(t.labels.count / size)
                for p in t.labels.indices where (p / strides[k]) % size == 0 { labels.append(t.labels[p]) }
                t = Track(axes: Array(t.axes[..<k] + t.axes[(k + 1)...]), sizes: Array(t.sizes[..<k] + t.sizes[(k + 1)...]), labels: labels)
            } else {
                k += 1
            }
        }
        return t
    }

    func set(_ value: String, _ t: Track?) {
        guard let t = t.map(Self.compact), !t.axes.isEmpty else { return }
        if let old = tracks[value] {
            // A value reached twice (a constant read by two pruned values): the same positions.
            guard old.axes == t.axes else { for l in old.labels + t.labels { pin(l) }; return }
            var merged = old
            for k in merged.labels.indices { merged.labels[k] = unite(merged.labels[k], t.labels[k]) }
            tracks[value] = merged
        } else {
            tracks[value] = t
            trackOrder.append(value)
        }
    }

    func pinAll(_ t: Track?) { t?.labels.forEach(pin) }

    func blockAll(_ t: Track?, _ why: String) { t?.labels.forEach { block($0, why) } }

    /// `t` (over `from`'s axes) as a track of the reshaped value: positions keep their row-major
    /// order, so dimensions that multiply to the same size correspond. Nil when the shapes do
    /// not factor into such groups.
    static func reshape(_ t: Track, from: [Int], to: [Int]) -> Track? {
        var groups: [(ins: Range<Int>, outs: Range<Int>)] = []
        var i = 0, j = 0
        while i < from.count || j < to.count {
            let (si, sj) = (i, j)
            var pi = 1, pj = 1
            if i < from.count { pi = from[i]; i += 1 }
            if j < to.count { pj = to[j]; j += 1 }
            while pi != pj {
                if pi < pj { guard i < from.count else { return nil }; pi *= from[i]; i += 1 }
                else { guard j < to.count else { return nil }; pj *= to[j]; j += 1 }
            }
            // Trailing size-1 dimensions join the group before them.
            while i < from.count, from[i] == 1, j >= to.count || to[j] != 1 { i += 1 }
            while j < to.count, to[j] == 1, i >= from.count || from[i] != 1 { j += 1 }
            groups.append((si..<i, sj..<j))
        }
        let tracked = Set(t.axes)
        let trackedGroups = groups.filter { g in g.ins.contains { tracked.contains($0) } }
        let outAxes = trackedGroups.flatMap { g in g.outs.filter { to[$0] > 1 } }
        let outSizes = outAxes.map { to[$0] }
        var out = Track(axes: outAxes, sizes: outSizes, fill: none)
        let inStrides = t.strides
        forEachIndex(outSizes) { oi, oflat in
            var src = 0
            var q = 0
            for g in trackedGroups {
                // The flat index inside the group, then its input dimensions' indices.
                var flat = 0
                for a in g.outs { flat = flat * to[a] + (to[a] > 1 ? oi[q] : 0); if to[a] > 1 { q += 1 } }
                for a in g.ins.reversed() {
                    let idx = flat % from[a]
                    flat /= from[a]
                    if let k = t.axes.firstIndex(of: a) { src += idx * inStrides[k] }
                }
            }
            out.labels[oflat] = t.labels[src]
        }
        return out
    }

    /// `t` with its axes renumbered by `perm` (output axis k is input axis perm[k]).
    static func transpose(_ t: Track, perm: [Int]) -> Track {
        let outAxes = perm.indices.filter { t.axes.contains(perm[$0]) }
        let outSizes = outAxes.map { t.sizes[t.axes.firstIndex(of: perm[$0])!] }
        var out = Track(axes: outAxes, sizes: outSizes, fill: none)
        let inStrides = t.strides
        forEachIndex(outSizes) { oi, oflat in
            var src = 0
            for (q, a) in outAxes.enumerated() { src += oi[q] * inStrides[t.axes.firstIndex(of: perm[a])!] }
            out.labels[oflat] = t.labels[src]
        }
        return out
    }

    // MARK: the pass

    func ints(_ n: Node, attribute: String, input: Int) -> [Int]? {
        if n.inputs.count > input, !n.inputs[input].isEmpty {
            if case .int64(let t)? = graph.initializer(n.inputs[input]) { return t.data.map { Int($0) } }
            return nil
        }
        switch n.attributes[attribute] {
        case .ints(let v)?: return v
        case .int(let v)?: return [v]
        default: return nil
        }
    }

    func intAttribute(_ n: Node, _ name: String, _ fallback: Int) -> Int {
        if case .int(let v)? = n.attributes[name] { return v }
        return fallback
    }

    static let unary: Set<String> = ["Relu", "LeakyRelu", "Elu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
                                     "Softsign", "Erf", "Abs", "Neg", "Sqrt", "Exp", "Log", "Reciprocal", "Sin", "Cos", "Sign",
                                     "Floor", "Ceil", "Round", "Not", "IsNaN", "IsInf", "Identity", "Cast", "CastLike", "Dropout",
                                     "Clip"]
    static let elementwise: Set<String> = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "Equal", "Less",
                                           "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor", "Where", "PRelu"]
    static let reductions: Set<String> = ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
                                          "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax"]
    static let pools: Set<String> = ["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize"]

    private func visit(_ i: Int, _ n: Node, protect: Set<String>) throws {
        let inTracks = n.inputs.map { $0.isEmpty ? nil : tracks[$0] }
        let out = n.outputs.first ?? ""
        let what = "\(n.opType) node '\(n.name)'"
        // Constants keep nothing of their own; they follow what they meet.
        if !inTracks.contains(where: { $0 != nil }) {
            try startSpace(i, n, protect: protect)
            return
        }
        let x = inTracks[0]
        switch n.opType {
        case _ where Self.unary.contains(n.opType):
            set(out, x)
        case _ where Self.elementwise.contains(n.opType):
            join(i, n, inputs: n.inputs, output: out)
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze":
            guard let x, n.inputs[1...].allSatisfy({ tracks[$0] == nil }) else { return blockInputs(n, "\(what) reshapes with a computed shape") }
            guard let t = Self.reshape(x, from: shape(n.inputs[0]), to: shape(out)) else {
                return blockInputs(n, "\(what) regroups the units' axis in a way that cannot be followed")
            }
            set(out, t)
            if n.opType == "Reshape" { rewrites.insert(i) }
        case "Transpose":
            guard let x else { return blockInputs(n, "\(what) transposes a computed value") }
            let rank = shape(out).count
            set(out, Self.transpose(x, perm: ints(n, attribute: "perm", input: 99) ?? Array((0..<rank).reversed())))
        case "Pad":
            // Padding of axes without units (Swin pads height and width, channels last).
            let rank = shape(n.inputs[0]).count
            guard let x, let pads = ints(n, attribute: "pads", input: 1) else { return blockInputs(n, "\(what) pads with computed amounts") }
            let axes = (ints(n, attribute: "axes", input: 3) ?? Array(0..<rank)).map { $0 < 0 ? $0 + rank : $0 }
            for (k, a) in axes.enumerated() where x.axes.contains(a) && (pads[k] != 0 || pads[k + axes.count] != 0) {
                return blockInputs(n, "\(what) pads the axis that carries units")
            }
            set(out, x)
        case "Expand":
            guard let x else { return blockInputs(n, "\(what) expands to a computed shape") }
            let (inShape, outShape) = (shape(n.inputs[0]), shape(out))
            let shift = outShape.count - inShape.count
            let kept = x.axes.indices.filter { inShape[x.axes[$0]] == outShape[x.axes[$0] + shift] }
            var t = Track(axes: kept.map { x.axes[$0] + shift }, sizes: kept.map { x.sizes[$0] }, fill: Self.unset)
            combine(&t, x, map: x.axes.map { inShape[$0] == outShape[$0 + shift] ? $0 + shift : nil })
            set(out, finish(t))
            rewrites.insert(i)
        case "Concat":
            concat(i, n)
        case "Split":
            split(i, n)
        case "Slice":
            slice(i, n)
        case "Gather":
            gather(i, n)
        case "BatchNormalization", "InstanceNormalization":
            guard let x, x.axes == [1], inTracks.dropFirst().allSatisfy({ $0 == nil }) else { return blockInputs(n, "\(what) normalizes a value whose units are not on axis 1") }
            for name in n.inputs.dropFirst() where !name.isEmpty { follow(name, axis: 0, value: n.inputs[0], valueAxis: 1, node: i) }
            set(out, x)
        case "LayerNormalization":
            guard let x, inTracks.dropFirst().allSatisfy({ $0 == nil }) else { return blockInputs(n, "\(what): scale or bias carries units") }
            let rank = shape(n.inputs[0]).count
            var axis = intAttribute(n, "axis", -1)
            if axis < 0 { axis += rank }
            for name in n.inputs.dropFirst() where !name.isEmpty {
                let r = shape(name).count
                for a in x.axes where a >= axis && a - (rank - r) >= 0 && shape(name)[a - (rank - r)] > 1 {
                    follow(name, axis: a - (rank - r), value: n.inputs[0], valueAxis: a, node: i)
                }
            }
            set(out, x)
        case _ where Self.pools.contains(n.opType):
            guard let x, x.axes == [1], inTracks.dropFirst().allSatisfy({ $0 == nil }) else { return blockInputs(n, "\(what) pools a value whose units are not on axis 1") }
            set(out, x)
        case "Softmax", "LogSoftmax", "Hardmax", "CumSum":
            guard let x else { return blockInputs(n, "\(what): its axis carries units") }
            let rank = shape(n.inputs[0]).count
            var axis = n.opType == "CumSum" ? (ints(n, attribute: "axis", input: 1)?.first ?? 0) : intAttribute(n, "axis", -1)
            if axis < 0 { axis += rank }
            // Normalizing across units would change every kept value: those units stay.
            if x.axes.contains(axis) { pinAll(x) }
            set(out, x)
        case _ where Self.reductions.contains(n.opType):
            reduce(i, n)
        case "Conv":
            try conv(i, n, protect: protect)
        case "Gemm", "MatMul":
            try linear(i, n, protect: protect)
        case "Shape", "Size":
            break
        default:
            blockInputs(n, "cannot follow its units through \(what)")
        }
    }

    private func blockInputs(_ n: Node, _ why: String) {
        for name in n.inputs where !name.isEmpty { blockAll(tracks[name], why + "; protect the layer to keep it") }
    }

    /// Producers with no tracked input start a space of their own.
    private func startSpace(_ i: Int, _ n: Node, protect: Set<String>) throws {
        switch n.opType {
        case "Conv": try conv(i, n, protect: protect)
        case "Gemm", "MatMul": try linear(i, n, protect: protect)
        case "Gather":
            // An embedding table (rows looked up by token): its columns are the model's width.
            guard case .float(let table)? = graph.initializer(n.inputs[0]), table.value.shape.count == 2,
                  intAttribute(n, "axis", 0) == 0, !constants.contains(n.inputs[1]) else { return }
            outputSpace(i, n, weight: n.inputs[0], axis: 1, kind: .embedding, outAxis: shape(n.outputs[0]).count - 1, protect: protect)
        default: break
        }
    }

    private func outputSpace(_ i: Int, _ n: Node, weight: String, axis: Int, kind: Space.Kind, outAxis: Int, protect: Set<String>) {
        let out = n.outputs[0]
        let count = shape(out)[outAxis]
        let prot = protect.contains(weight) || protect.contains(n.name) || protect.contains(StructuredPruning.layerName(weight))
        let base = newSpace(node: i, weight: weight, axis: axis, kind: kind, count: count, protected: prot)
        set(out, Track(axes: [outAxis], sizes: [count], labels: (0..<count).map { Int32(base + $0) }))
        follow(weight, axis: axis, value: out, valueAxis: outAxis, node: i)
    }

    private func conv(_ i: Int, _ n: Node, protect: Set<String>) throws {
        let w = n.inputs[1]
        guard case .float(let wv)? = graph.initializer(w) else { return blockInputs(n, "Conv node '\(n.name)' has a computed weight") }
        let groups = intAttribute(n, "group", 1)
        let out = n.outputs[0]
        if n.inputs.count > 2, !n.inputs[2].isEmpty, tracks[n.inputs[2]] != nil { return blockInputs(n, "Conv node '\(n.name)' has a computed bias") }
        guard let x = tracks[n.inputs[0]] else {
            guard groups == 1 else { return }
            outputSpace(i, n, weight: w, axis: 0, kind: .conv, outAxis: 1, protect: protect)
            if n.inputs.count > 2, !n.inputs[2].isEmpty { follow(n.inputs[2], axis: 0, value: out, valueAxis: 1, node: i) }
            return
        }
        guard x.axes == [1] else { return blockInputs(n, "Conv node '\(n.name)' reads units on a spatial axis") }
        if groups == 1 {
            follow(w, axis: 1, value: n.inputs[0], valueAxis: 1, node: i, consumer: true)
            outputSpace(i, n, weight: w, axis: 0, kind: .conv, outAxis: 1, protect: protect)
        } else {
            // Grouped and depthwise convolutions lose whole groups: a group's input channels
            // are one unit with its output channels.
            let inPer = x.sizes[0] / groups, outPer = wv.value.shape[0] / groups
            var t = Track(axes: [1], sizes: [wv.value.shape[0]], fill: Self.unset)
            for g in 0..<groups {
                var label = Self.unset
                for c in 0..<inPer { label = unite(label, x.labels[g * inPer + c]) }
                for o in 0..<outPer { t.labels[g * outPer + o] = label }
            }
            set(out, finish(t))
            follow(w, axis: 0, value: out, valueAxis: 1, node: i)
            rewrites.insert(i)
        }
        if n.inputs.count > 2, !n.inputs[2].isEmpty { follow(n.inputs[2], axis: 0, value: out, valueAxis: 1, node: i) }
    }

    /// Gemm and MatMul: with a constant weight, a consumer of its input's units and the start
    /// of a space; of two activations, a contraction that unites what meets in it.
    private func linear(_ i: Int, _ n: Node, protect: Set<String>) throws {
        let (a, b, out) = (n.inputs[0], n.inputs[1], n.outputs[0])
        let (ta, tb) = (tracks[a], tracks[b])
        let outShape = shape(out), rank = outShape.count
        let transA = n.opType == "Gemm" && intAttribute(n, "transA", 0) != 0
        let transB = n.opType == "Gemm" && intAttribute(n, "transB", 0) != 0
        // A constant weight: an initializer, or one read through a Transpose (a tied embedding).
        let wShape = shape(b)
        let (wIn, wOut) = transB ? (1, 0) : (wShape.count - 2, wShape.count - 1)
        if tb == nil, !transA, wShape.count == 2, constants.contains(b),
           graph.initializer(b) != nil || (follow(b, axis: wIn, value: a, valueAxis: 0, node: i, commit: false)
                                           && follow(b, axis: wOut, value: out, valueAxis: 0, node: i, commit: false)) {
            if let ta {
                let last = shape(a).count - 1
                guard ta.axes == [last] else { return blockInputs(n, "\(n.opType) node '\(n.name)' reads units on an axis it does not contract") }
                follow(b, axis: wIn, value: a, valueAxis: last, node: i, consumer: true)
            }
            outputSpace(i, n, weight: b, axis: wOut, kind: .linear, outAxis: rank - 1, protect: protect)
            if n.opType == "Gemm", n.inputs.count > 2, !n.inputs[2].isEmpty {
                let c = n.inputs[2], cs = shape(c)
                if let last = cs.last, last > 1 { follow(c, axis: cs.count - 1, value: out, valueAxis: rank - 1, node: i) }
            }
            return
        }
        guard n.opType == "MatMul", shape(a).count >= 2, shape(b).count >= 2 else {
            return blockInputs(n, "\(n.opType) node '\(n.name)' multiplies values in a form that cannot be followed")
        }
        // Two activations (attention): batch axes meet position by position, the contracted
        // axis is summed over, so everything meeting one output position is one unit.
        let (ra, rb) = (shape(a).count, shape(b).count)
        var axes = Set<Int>()
        func outAxis(_ k: Int, of operand: Int) -> Int? {
            let r = operand == 0 ? ra : rb
            if operand == 0 && k == r - 1 { return nil }
            if operand == 1 && k == r - 2 { return nil }
            if operand == 1 && k == r - 1 { return rank - 1 }
            return k + rank - r
        }
        for (o, t) in [(0, ta), (1, tb)] { for k in t?.axes ?? [] { if let m = outAxis(k, of: o), (o == 0 ? shape(a) : shape(b))[k] == outShape[m] { axes.insert(m) } } }
        var t = Track(axes: axes.sorted(), sizes: axes.sorted().map { outShape[$0] }, fill: Self.unset)
        for (o, src) in [(0, ta), (1, tb)] {
            guard let src else {
                // The other operand is not pruned: where it spans the contracted axis, the units stay.
                continue
            }
            let s = o == 0 ? shape(a) : shape(b)
            let map = src.axes.map { k -> Int? in outAxis(k, of: o).flatMap { s[k] == outShape[$0] ? $0 : nil } }
            if t.axes.isEmpty {
                pinAll(src)
            } else {
                combine(&t, src, map: map)
            }
            for l in src.labels where l >= 0 { attention[Int(find(l))] = true }
        }
        // A contracted axis tracked on one side only cannot shrink.
        let contractedA = ra - 1, contractedB = rb - 2
        if (ta?.axes.contains(contractedA) ?? false) != (tb?.axes.contains(contractedB) ?? false) {
            if ta?.axes.contains(contractedA) ?? false { pinAll(ta) } else { pinAll(tb) }
        }
        set(out, finish(t))
    }

    /// An elementwise op (with broadcasting): tracked inputs meet position by position; an
    /// input that is not tracked follows the output where it is constant, else keeps it whole.
    private func join(_ i: Int, _ n: Node, inputs: [String], output: String) {
        let outShape = shape(output), rank = outShape.count
        var axes = Set<Int>()
        for name in inputs where !name.isEmpty {
            guard let t = tracks[name] else { continue }
            let s = shape(name)
            for a in t.axes where s[a] == outShape[a + rank - s.count] { axes.insert(a + rank - s.count) }
        }
        var t = Track(axes: axes.sorted(), sizes: axes.sorted().map { outShape[$0] }, fill: Self.unset)
        let mergesBefore = merges
        for name in inputs where !name.isEmpty {
            guard let src = tracks[name] else { continue }
            let s = shape(name), shift = rank - s.count
            combine(&t, src, map: src.axes.map { s[$0] == outShape[$0 + shift] ? $0 + shift : nil })
        }
        t = finish(t)
        if ["Add", "Sub", "Sum"].contains(n.opType), merges > mergesBefore {
            for l in t.labels where l >= 0 { residual[Int(find(l))] = true }
        }
        for name in inputs where !name.isEmpty && tracks[name] == nil {
            let s = shape(name), shift = rank - s.count
            let spanned = t.axes.filter { $0 - shift >= 0 && s[$0 - shift] > 1 }
            if spanned.isEmpty { continue }
            if constants.contains(name), spanned.allSatisfy({ follow(name, axis: $0 - shift, value: output, valueAxis: $0, node: i, commit: false) }) {
                for a in spanned { follow(name, axis: a - shift, value: output, valueAxis: a, node: i) }
            } else if spanned.count == t.axes.count {
                pinAll(t)
            } else {
                fullAxes.append((output, spanned, i))
            }
        }
        set(output, t)
    }

    private func concat(_ i: Int, _ n: Node) {
        let out = n.outputs[0], outShape = shape(out), rank = outShape.count
        var axis = intAttribute(n, "axis", 0)
        if axis < 0 { axis += rank }
        let alongUnits = n.inputs.contains { tracks[$0]?.axes.contains(axis) ?? false }
        guard alongUnits else { return join(i, n, inputs: n.inputs, output: out) }
        var axes = Set([axis])
        for name in n.inputs { for a in tracks[name]?.axes ?? [] { axes.insert(a) } }
        var t = Track(axes: axes.sorted(), sizes: axes.sorted().map { outShape[$0] }, fill: Self.unset)
        var offset = 0
        for name in n.inputs where !name.isEmpty {
            let s = shape(name)
            if let src = tracks[name] {
                // Make the input's range along the axis its own (its positions only).
                var own = Track(axes: src.axes.contains(axis) ? src.axes : (src.axes + [axis]).sorted(), sizes: [], labels: [])
                own.sizes = own.axes.map { s[$0] }
                own.labels = [Int32](repeating: Self.unset, count: own.sizes.reduce(1, *))
                combine(&own, src, map: src.axes.map { $0 })
                combine(&t, finish(own), map: own.axes.map { $0 }, offset: own.axes.map { $0 == axis ? offset : 0 })
            } else {
                // An input that is not pruned: its positions stay.
                let own = Track(axes: [axis], sizes: [s[axis]], fill: Self.none)
                combine(&t, own, map: [axis], offset: [offset])
                let spanned = axes.sorted().filter { $0 != axis && s[$0] > 1 }
                if constants.contains(name), spanned.allSatisfy({ follow(name, axis: $0, value: out, valueAxis: $0, node: i, commit: false) }) {
                    for a in spanned { follow(name, axis: a, value: out, valueAxis: a, node: i) }
                } else if !spanned.isEmpty {
                    fullAxes.append((out, spanned, i))
                }
            }
            offset += s[axis]
        }
        set(out, finish(t))
    }

    private func split(_ i: Int, _ n: Node) {
        guard let x = tracks[n.inputs[0]] else { return }
        let s = shape(n.inputs[0])
        var axis = intAttribute(n, "axis", 0)
        if axis < 0 { axis += s.count }
        var offset = 0
        for o in n.outputs where !o.isEmpty {
            let size = shape(o)[axis]
            if x.axes.contains(axis) {
                var t = Track(axes: x.axes, sizes: x.axes.map { $0 == axis ? size : s[$0] }, fill: Self.unset)
                combine(&t, x, map: x.axes.map { $0 }, offset: x.axes.map { $0 == axis ? -offset : 0 })
                set(o, finish(t))
            } else {
                set(o, x)
            }
            offset += size
        }
        if x.axes.contains(axis) { rewrites.insert(i) }
    }

    /// The positions a Slice or a Gather with constant indices keeps along `axis`.
    private func pick(_ i: Int, _ x: Track, output: String, axis: Int, positions: [Int], keepAxis: Bool) {
        let outAxes = x.axes.compactMap { a -> Int? in a == axis ? (keepAxis ? a : nil) : (a > axis && !keepAxis ? a - 1 : a) }
        let outShape = shape(output)
        var t = Track(axes: outAxes, sizes: outAxes.map { outShape[$0] }, fill: Self.none)
        let inStrides = x.strides
        forEachIndex(t.sizes) { oi, oflat in
            var src = 0
            var q = 0
            for (k, a) in x.axes.enumerated() {
                if a == axis {
                    let p = keepAxis ? positions[oi[q]] : positions[0]
                    if keepAxis { q += 1 }
                    src += p * inStrides[k]
                } else {
                    src += oi[q] * inStrides[k]
                    q += 1
                }
            }
            t.labels[oflat] = x.labels[src]
        }
        set(output, t)
        if x.axes.contains(axis) { rewrites.insert(i) }
    }

    private func slice(_ i: Int, _ n: Node) {
        guard let x = tracks[n.inputs[0]] else { return }
        let s = shape(n.inputs[0])
        guard let starts = ints(n, attribute: "starts", input: 1), let ends = ints(n, attribute: "ends", input: 2) else {
            if x.axes.isEmpty { return }
            return blockInputs(n, "Slice node '\(n.name)' slices with computed bounds")
        }
        let axesList = ints(n, attribute: "axes", input: 3) ?? Array(0..<starts.count)
        let steps = ints(n, attribute: "steps", input: 4) ?? [Int](repeating: 1, count: starts.count)
        var t = x
        var positionsByAxis: [Int: [Int]] = [:]
        for (k, a0) in axesList.enumerated() {
            let a = a0 < 0 ? a0 + s.count : a0
            let dim = s[a]
            var st = starts[k] < 0 ? starts[k] + dim : starts[k], en = ends[k] < 0 ? ends[k] + dim : ends[k]
            let step = steps[k]
            if step > 0 { st = min(max(st, 0), dim); en = min(max(en, 0), dim) } else { st = min(max(st, -1), dim - 1); en = min(max(en, -1), dim - 1) }
            positionsByAxis[a] = Array(stride(from: st, to: en, by: step))
        }
        // Apply each tracked axis's picks in turn (untracked axes do not change labels).
        for (a, positions) in positionsByAxis where t.axes.contains(a) {
            var u = Track(axes: t.axes, sizes: t.axes.map { $0 == a ? positions.count : t.sizes[t.axes.firstIndex(of: $0)!] }, fill: Self.none)
            let strides = t.strides
            forEachIndex(u.sizes) { oi, oflat in
                var src = 0
                for (k, b) in t.axes.enumerated() { src += (b == a ? positions[oi[k]] : oi[k]) * strides[k] }
                u.labels[oflat] = t.labels[src]
            }
            t = u
            rewrites.insert(i)
        }
        set(n.outputs[0], t)
    }

    private func gather(_ i: Int, _ n: Node) {
        guard let x = tracks[n.inputs[0]] else { return blockInputs(n, "Gather node '\(n.name)' gathers with computed indices") }
        if tracks[n.inputs[1]] == nil, graph.initializer(n.inputs[1]) == nil, constants.contains(n.inputs[1]),
           let idx = integers[n.inputs[1]], shape(n.inputs[0]).count == 1, intAttribute(n, "axis", 0) == 0,
           idx.data.count == shape(n.inputs[0])[0], idx.data.enumerated().allSatisfy({ Int($0.element) == $0.offset }),
           let t = Self.reshape(x, from: shape(n.inputs[0]), to: shape(n.outputs[0])) {
            // Every element, in order: a reshape.
            set(n.outputs[0], t)
            reshapingGathers.insert(i)
            return
        }
        guard tracks[n.inputs[1]] == nil, case .int64(let idx)? = graph.initializer(n.inputs[1]) else {
            return blockInputs(n, "Gather node '\(n.name)' gathers units with computed indices")
        }
        let s = shape(n.inputs[0])
        var axis = intAttribute(n, "axis", 0)
        if axis < 0 { axis += s.count }
        let positions = idx.data.map { Int($0) < 0 ? Int($0) + s[axis] : Int($0) }
        if idx.shape.isEmpty {
            pick(i, x, output: n.outputs[0], axis: axis, positions: positions, keepAxis: false)
        } else if idx.shape.count == 1 {
            pick(i, x, output: n.outputs[0], axis: axis, positions: positions, keepAxis: true)
        } else {
            blockInputs(n, "Gather node '\(n.name)' gathers with indices of rank \(idx.shape.count)")
        }
    }

    private func reduce(_ i: Int, _ n: Node) {
        guard let x = tracks[n.inputs[0]] else { return }
        let s = shape(n.inputs[0])
        let keep = n.opType == "ArgMax" ? true : intAttribute(n, "keepdims", 1) != 0
        var axes = n.opType == "ArgMax" ? [intAttribute(n, "axis", 0)] : (ints(n, attribute: "axes", input: 1) ?? Array(0..<s.count))
        if axes.isEmpty && intAttribute(n, "noop_with_empty_axes", 0) == 0 { axes = Array(0..<s.count) }
        let reduced = Set(axes.map { $0 < 0 ? $0 + s.count : $0 })
        let kept = x.axes.filter { !reduced.contains($0) }
        func outAxis(_ a: Int) -> Int { keep ? a : a - reduced.filter { $0 < a }.count }
        // Reduced over every axis with units (a norm's statistics): the result carries none.
        if kept.isEmpty { return }
        var t = Track(axes: kept.map(outAxis), sizes: kept.map { s[$0] }, fill: Self.unset)
        // What is summed into one position is one unit.
        combine(&t, x, map: x.axes.map { reduced.contains($0) ? nil : outAxis($0) })
        set(n.outputs[0], finish(t))
    }

    // MARK: follows

    /// Records that `tensor`'s `axis` keeps what `value`'s `valueAxis` keeps. A constant
    /// computed from initializers passes it back to them (through reshapes, transposes,
    /// expands, casts and elementwise ops); false when it cannot.
    @discardableResult
    func follow(_ tensor: String, axis: Int, value: String, valueAxis: Int, node: Int, consumer: Bool = false, commit: Bool = true) -> Bool {
        if graph.initializer(tensor) != nil {
            let f = Follow(tensor: tensor, axis: axis, value: value, valueAxis: valueAxis, consumer: consumer, reader: node)
            if commit && !follows.contains(f) { follows.append(f) }
            return true
        }
        guard constants.contains(tensor), let p = producerOf[tensor] else { return false }
        let n = graph.nodes[p]
        if commit { constantAxes[tensor, default: [:]][axis] = (value, valueAxis) }
        func follow(_ tensor: String, axis: Int, value: String, valueAxis: Int, node: Int) -> Bool {
            self.follow(tensor, axis: axis, value: value, valueAxis: valueAxis, node: node, commit: commit)
        }
        let outShape = shape(tensor)
        switch n.opType {
        case _ where Self.unary.contains(n.opType):
            return follow(n.inputs[0], axis: axis, value: value, valueAxis: valueAxis, node: p)
        case _ where Self.elementwise.contains(n.opType):
            var ok = true
            for name in n.inputs where !name.isEmpty {
                let s = shape(name), a = axis - (outShape.count - s.count)
                if a >= 0 && s[a] > 1 { ok = follow(name, axis: a, value: value, valueAxis: valueAxis, node: p) && ok }
            }
            return ok
        case "Expand":
            if commit { rewrites.insert(p) }
            let s = shape(n.inputs[0]), a = axis - (outShape.count - s.count)
            return a < 0 || s[a] == 1 || follow(n.inputs[0], axis: a, value: value, valueAxis: valueAxis, node: p)
        case "Transpose":
            let perm = ints(n, attribute: "perm", input: 99) ?? Array((0..<outShape.count).reversed())
            return follow(n.inputs[0], axis: perm[axis], value: value, valueAxis: valueAxis, node: p)
        case "Gather":
            // Rows looked up by constant indices (position embeddings): the other axes follow.
            var g = intAttribute(n, "axis", 0)
            let s = shape(n.inputs[0])
            if g < 0 { g += s.count }
            let r = shape(n.inputs[1]).count
            if axis < g { return follow(n.inputs[0], axis: axis, value: value, valueAxis: valueAxis, node: p) }
            if axis >= g + r { return follow(n.inputs[0], axis: axis - r + 1, value: value, valueAxis: valueAxis, node: p) }
            return false
        case "Reshape", "Squeeze", "Unsqueeze", "Flatten":
            // Only reshapes that move this axis whole: the same size, the same number of
            // elements before it.
            let s = shape(n.inputs[0])
            let before = outShape[..<axis].reduce(1, *)
            var acc = 1
            for (a, d) in s.enumerated() {
                if acc == before && d == outShape[axis] {
                    if n.opType == "Reshape" && commit { rewrites.insert(p) }
                    return follow(n.inputs[0], axis: a, value: value, valueAxis: valueAxis, node: p)
                }
                acc *= d
            }
            return false
        default:
            return false
        }
    }

    // MARK: making every class removable as a block

    /// A value with units on several axes can only lose a product of positions (whole rows,
    /// whole columns). Where a unit's positions are not whole hyperplanes, the units along the
    /// cheaper direction are united (channel shuffle: the same channel of every group).
    private func makeProductSafe() {
        var changed = true
        while changed {
            changed = false
            for name in trackOrder {
                if let t = tracks[name], t.axes.count >= 2, uniteToHyperplanes(t) { changed = true }
            }
        }
    }

    private func uniteToHyperplanes(_ t: Track) -> Bool {
        // Positions of each class.
        var byClass: [Int32: [Int]] = [:]
        for (p, l) in t.labels.enumerated() where l >= 0 && !isPinned(l) { byClass[find(l), default: []].append(p) }
        let strides = t.strides
        var changed = false
        for (_, positions) in byClass.sorted(by: { $0.key < $1.key }) {
            // The index sets the class touches on each axis.
            var touched = t.axes.indices.map { _ in Set<Int>() }
            for p in positions { for k in t.axes.indices { touched[k].insert((p / strides[k]) % t.sizes[k]) } }
            let total = t.labels.count
            // A union of whole hyperplanes along axis k: |positions| = |touched_k| · total / size_k
            // and positions are exactly those.
            var whole = false
            for k in t.axes.indices where positions.count == touched[k].count * (total / t.sizes[k]) {
                whole = positions.allSatisfy { touched[k].contains(($0 / strides[k]) % t.sizes[k]) }
                if whole { break }
            }
            if whole { continue }
            // Extend along the axis whose hyperplanes add the fewest positions.
            let k = t.axes.indices.min { touched[$0].count * (total / t.sizes[$0]) < touched[$1].count * (total / t.sizes[$1]) }!
            let first = t.labels[positions[0]]
            for (p, l) in t.labels.enumerated() where touched[k].contains((p / strides[k]) % t.sizes[k]) {
                if l < 0 || find(l) != find(first) { unite(first, l); changed = true }
            }
        }
        return changed
    }
}
