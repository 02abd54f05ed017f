import Common
import Foundation
import Testing
@testable import Kernels
@testable import TensorEngine

/// Inference in blocks of sixteen channels (`BlockedPlan`): the blocked graph's outputs against
/// the same graph run node by node in NCHW, on depthwise-separable graphs with channel counts
/// that are not multiples of sixteen, odd sizes, asymmetric pads, strides, epilogues,
/// squeeze-and-excitation, residual Adds and readers outside the blocked ops.
@Suite struct BlockedLayoutTests {
    /// Builds a graph node by node with seeded weights.
    final class Builder {
        var nodes: [Node] = [], inits: [(String, TensorData)] = []
        var rng = Philox(seed: 7)
        var count = 0
        let opset: Int
        init(opset: Int) { self.opset = opset }

        func name(_ p: String) -> String { count += 1; return "\(p)\(count)" }
        func constant(_ shape: [Int], scale: Float = 0.3) -> String {
            let n = name("c")
            inits.append((n, .float(Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }))))
            return n
        }
        func scalar(_ v: Float) -> String {
            let n = name("s")
            inits.append((n, .float(Tensor(shape: [], scalars: [v]))))
            return n
        }
        @discardableResult
        func node(_ op: String, _ inputs: [String], _ attributes: [String: Attribute] = [:]) -> String {
            let y = name("v")
            nodes.append(Node(name: name("n"), opType: op, inputs: inputs, outputs: [y], attributes: attributes))
            return y
        }
        func conv(_ x: String, cin: Int, cout: Int, kernel: [Int], strides: [Int] = [1, 1], pads: [Int] = [0, 0, 0, 0],
                  group: Int = 1, bias: Bool = true) -> String {
            let w = constant([cout, cin / group] + kernel)
            let inputs = bias ? [x, w, constant([cout])] : [x, w]
            return node("Conv", inputs, ["kernel_shape": .ints(kernel), "strides": .ints(strides), "pads": .ints(pads),
                                         "group": .int(group), "dilations": .ints([1, 1])])
        }
        func depthwise(_ x: String, channels c: Int, kernel: [Int], strides: [Int] = [1, 1], pads: [Int], bias: Bool = true) -> String {
            conv(x, cin: c, cout: c, kernel: kernel, strides: strides, pads: pads, group: c, bias: bias)
        }
        func silu(_ x: String) -> String { node("Mul", [x, node("Sigmoid", [x])]) }
        func relu6(_ x: String) -> String { node("Clip", [x, scalar(0), scalar(6)]) }
        func meanPixels(_ x: String) -> String {
            if opset >= 18 {
                let axes = name("axes")
                inits.append((axes, .int64(IntTensor(shape: [2], data: [-1, -2]))))
                return node("ReduceMean", [x, axes], ["keepdims": .int(1)])
            }
            return node("ReduceMean", [x], ["axes": .ints([2, 3]), "keepdims": .int(1)])
        }
        func graph(input: String, channels: Int, outputs: [String]) -> Graph {
            Graph(nodes: nodes, inputs: [GraphInput(name: input, dtype: .float32, shape: [nil, channels, nil, nil])],
                  outputs: outputs, initializers: inits, opset: opset)
        }
        /// The graph twice: as inference runs it, and with the blocked layout off.
        func graphs(input: String, channels: Int, outputs: [String]) -> (blocked: Graph, plain: Graph) {
            let plain = graph(input: input, channels: channels, outputs: outputs)
            plain.usesBlockedLayout = false
            return (graph(input: input, channels: channels, outputs: outputs), plain)
        }
    }

    /// A MobileNet/EfficientNet-like graph on 20 input channels (see the suite's comment).
    static func separable(opset: Int) -> Graph {
        let b = Builder(opset: opset)
        // Stem: an ordinary Conv (stays in NCHW) with a ReLU.
        let stem = b.node("Relu", [b.conv("x", cin: 20, cout: 24, kernel: [3, 3], pads: [1, 1, 1, 1])])
        // Inverted residual with ReLU6.
        let d1 = b.relu6(b.depthwise(stem, channels: 24, kernel: [3, 3], pads: [1, 1, 1, 1]))
        let p1 = b.silu(b.conv(d1, cin: 24, cout: 40, kernel: [1, 1]))
        // Squeeze and excitation.
        let se = b.conv(b.silu(b.conv(b.meanPixels(p1), cin: 40, cout: 10, kernel: [1, 1])), cin: 10, cout: 40, kernel: [1, 1])
        let scaled = b.node("Mul", [b.node("Sigmoid", [se]), p1])
        // 5 × 5 at stride 2 with asymmetric pads, no bias; a 1 × 3 window at strides (1, 2).
        let d2 = b.depthwise(scaled, channels: 40, kernel: [5, 5], strides: [2, 2], pads: [2, 1, 2, 3], bias: false)
        let d3 = b.node("Relu", [b.depthwise(d2, channels: 40, kernel: [1, 3], strides: [1, 2], pads: [0, 1, 0, 1])])
        // 5 × 5 at stride 1 (its rows of taps shared by neighbouring outputs).
        let d4 = b.silu(b.depthwise(d3, channels: 40, kernel: [5, 5], pads: [2, 2, 2, 2]))
        let t = b.conv(d4, cin: 40, cout: 20, kernel: [1, 1], bias: false)
        // Residual: t + pw(dw(t)).
        let u = b.conv(b.relu6(b.depthwise(t, channels: 20, kernel: [3, 3], pads: [1, 1, 1, 1])), cin: 20, cout: 20, kernel: [1, 1])
        let v = b.node("Add", [t, u])
        // A reader outside the blocked ops (a 3 × 3 Conv), and a graph output in blocks (v).
        let side = b.conv(v, cin: 20, cout: 8, kernel: [3, 3], pads: [1, 1, 1, 1])
        // A 3 × 3 padded on one side only, then the pool.
        let w = b.depthwise(b.node("HardSwish", [v]), channels: 20, kernel: [3, 3], pads: [1, 0, 1, 2])
        let pooled = b.node("GlobalAveragePool", [w])
        return b.graph(input: "x", channels: 20, outputs: [pooled, v, side])
    }

    static func outputs(_ g: Graph, _ x: Tensor, threads: Int) throws -> [Tensor] {
        try g.run([.float(Variable(x))], threads: threads).map { v -> Tensor in
            guard case .float(let t) = v else { fatalError() }
            return t.value
        }
    }

    static func expectClose(_ a: [Tensor], _ b: [Tensor], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.count == b.count, sourceLocation: sourceLocation)
        for (x, y) in zip(a, b) {
            #expect(x.shape == y.shape, sourceLocation: sourceLocation)
            let scale = y.scalars.map(abs).max() ?? 0
            let diff = zip(x.scalars, y.scalars).map { abs($0 - $1) }.max() ?? 0
            #expect(diff <= 2e-6 * scale + 1e-7, "max difference \(diff) on values up to \(scale)", sourceLocation: sourceLocation)
        }
    }

    static func isPlanned(_ g: Graph) -> Bool { if case .plan = g.blockedState { return true } else { return false } }

    @Test(arguments: [(13, [2, 20, 17, 17]), (18, [1, 20, 9, 12]), (13, [3, 20, 2, 3]), (18, [1, 20, 1, 1])])
    func matchesTheGraphInNCHW(opset: Int, shape: [Int]) throws {
        let blocked = Self.separable(opset: opset), plain = Self.separable(opset: opset)
        plain.usesBlockedLayout = false
        let x = spreadTensor(shape, seed: UInt64(shape.reduce(0, +)))
        let want = try Self.outputs(plain, x, threads: 1)
        let one = try Self.outputs(blocked, x, threads: 1), two = try Self.outputs(blocked, x, threads: 2)
        #expect(Self.isPlanned(blocked) == Blocked16.available)
        #expect(!Self.isPlanned(plain))
        Self.expectClose(one, want)
        // Same bits for any thread count, and run after run.
        #expect(one == two)
        #expect(try Self.outputs(blocked, x, threads: 1) == one)
    }

    /// Pointwise Convs with more than four output blocks (groups of four blocks: 150 outputs
    /// are 4 + 4 + 2 blocks): threads take a chunk of pixels with every group when the batch
    /// gives them items enough, else one group of a chunk. Same bits either way.
    @Test(arguments: [[8, 20, 5, 5], [1, 20, 9, 9], [5, 20, 3, 7]])
    func wideProjectionsSplitTheSameAtAnyThreadCount(shape: [Int]) throws {
        func make() -> Graph {
            let b = Builder(opset: 13)
            let d1 = b.relu6(b.depthwise("x", channels: 20, kernel: [3, 3], pads: [1, 1, 1, 1]))
            let wide = b.relu6(b.conv(d1, cin: 20, cout: 150, kernel: [1, 1]))
            let d2 = b.depthwise(wide, channels: 150, kernel: [3, 3], pads: [1, 1, 1, 1])
            return b.graph(input: "x", channels: 20, outputs: [b.conv(d2, cin: 150, cout: 70, kernel: [1, 1])])
        }
        let blocked = make(), plain = make()
        plain.usesBlockedLayout = false
        let x = spreadTensor(shape, seed: UInt64(shape.reduce(0, +)))
        let one = try Self.outputs(blocked, x, threads: 1)
        #expect(Self.isPlanned(blocked) == Blocked16.available)
        Self.expectClose(one, try Self.outputs(plain, x, threads: 1))
        for threads in [2, 3] { #expect(try Self.outputs(blocked, x, threads: threads) == one, "threads \(threads)") }
    }

    @Test func followsWeightsChangedInPlace() throws {
        let blocked = Self.separable(opset: 13), plain = Self.separable(opset: 13)
        plain.usesBlockedLayout = false
        let x = spreadTensor([1, 20, 8, 8], seed: 3)
        let before = try Self.outputs(blocked, x, threads: 1)
        // A depthwise and a pointwise weight, and the stem's (shared with the blocked graph).
        for g in [blocked, plain] {
            let weights = g.initializerNames.compactMap { name -> Variable? in
                if case .float(let w)? = g.initializer(name), w.value.shape.count == 4 { return w } else { return nil }
            }
            #expect(weights.count > 3)
            for w in weights.prefix(3) { w.update { p in for i in p.indices { p[i] = -p[i] * 1.5 } } }
        }
        let after = try Self.outputs(blocked, x, threads: 1)
        Self.expectClose(after, try Self.outputs(plain, x, threads: 1))
        #expect(after != before)
    }

    @Test func trainingRunsTheGraphAsWritten() throws {
        let g = Self.separable(opset: 13)
        let x = spreadTensor([1, 20, 6, 6], seed: 5)
        _ = try g.run([.float(Variable(x))], tape: Tape(), threads: 1)
        #expect(!Self.isPlanned(g))
    }

    /// Pads wider than the input: every output pixel of the 5 × 5 window is an edge pixel.
    @Test func edgesOnly() throws {
        let b = Builder(opset: 13)
        let y = b.conv(b.depthwise("x", channels: 17, kernel: [5, 5], pads: [3, 4, 2, 3]), cin: 17, cout: 33, kernel: [1, 1])
        let (blocked, plain) = b.graphs(input: "x", channels: 17, outputs: [y])
        let x = spreadTensor([2, 17, 2, 3], seed: 9)
        Self.expectClose(try Self.outputs(blocked, x, threads: 2), try Self.outputs(plain, x, threads: 1))
        #expect(Self.isPlanned(blocked) == Blocked16.available)
    }

    /// Stems of few input channels straight from NCHW into blocks (three output blocks: a pair
    /// and one; asymmetric pads; stride 2), then depthwise-separable layers.
    @Test(arguments: [[1, 3, 19, 23], [2, 2, 5, 4]])
    func stemsWriteBlocks(shape: [Int]) throws {
        let b = Builder(opset: 13)
        let cin = shape[1]
        let stem = b.silu(b.conv("x", cin: cin, cout: 40, kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1]))
        let d = b.relu6(b.depthwise(stem, channels: 40, kernel: [3, 3], pads: [1, 1, 1, 1]))
        let other = b.conv("x", cin: cin, cout: 17, kernel: [5, 3], pads: [2, 1, 0, 2], bias: false)
        let e = b.conv(b.depthwise(other, channels: 17, kernel: [3, 3], pads: [1, 1, 1, 1]), cin: 17, cout: 8, kernel: [1, 1])
        let (blocked, plain) = b.graphs(input: "x", channels: cin, outputs: [b.conv(d, cin: 40, cout: 24, kernel: [1, 1]), e])
        let x = spreadTensor(shape, seed: 11)
        let one = try Self.outputs(blocked, x, threads: 1)
        Self.expectClose(one, try Self.outputs(plain, x, threads: 1))
        #expect(one == (try Self.outputs(blocked, x, threads: 2)))
        #expect(Self.isPlanned(blocked) == Blocked16.available)
        if case .plan(let p) = blocked.blockedState {
            #expect(p.graph.nodes.filter { $0.opType == BlockedPlan.conv }.count == 6)
            #expect(!p.graph.nodes.contains { $0.opType == BlockedPlan.reorderIn })
        }
    }

    /// Values named as the blocked graph would name its own ("x#16" for x in blocks, here a
    /// second input) keep their meaning.
    @Test func namesOfTheModelStayItsOwn() throws {
        let b = Builder(opset: 13)
        let y = b.conv(b.depthwise("x", channels: 5, kernel: [3, 3], pads: [1, 1, 1, 1]), cin: 5, cout: 7, kernel: [1, 1])
        let z = b.node("Add", [y, "x#16"])
        b.nodes[b.nodes.count - 1].name = "x#in"
        func graph() -> Graph {
            Graph(nodes: b.nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 5, nil, nil]),
                                           GraphInput(name: "x#16", dtype: .float32, shape: [nil, 7, nil, nil])],
                  outputs: [z], initializers: b.inits, opset: 13)
        }
        let blocked = graph(), plain = graph()
        plain.usesBlockedLayout = false
        let feeds: [Value] = [.float(Variable(spreadTensor([1, 5, 6, 7], seed: 13))), .float(Variable(spreadTensor([1, 7, 6, 7], seed: 14)))]
        func out(_ g: Graph) throws -> [Tensor] {
            try g.run(feeds, threads: 1).map { v -> Tensor in if case .float(let t) = v { return t.value } else { fatalError() } }
        }
        Self.expectClose(try out(blocked), try out(plain))
        #expect(Self.isPlanned(blocked) == Blocked16.available)
    }

    /// A depthwise Conv given more channels than its weights have fails as in NCHW, though the
    /// channels fill the same number of blocks.
    @Test func channelMismatchIsAnError() throws {
        let b = Builder(opset: 13)
        let y = b.conv(b.depthwise("x", channels: 20, kernel: [3, 3], pads: [1, 1, 1, 1]), cin: 20, cout: 4, kernel: [1, 1])
        let (blocked, plain) = b.graphs(input: "x", channels: 24, outputs: [y])
        let x = spreadTensor([1, 24, 5, 5], seed: 15)
        #expect(throws: GraphError.self) { try Self.outputs(plain, x, threads: 1) }
        #expect(throws: GraphError.self) { try Self.outputs(blocked, x, threads: 1) }
    }

    /// An empty Conv (no input or output channels, as structured pruning can leave) stays with
    /// the general path.
    @Test func emptyConvsAreNotBlocked() {
        func form(_ shape: [Int], group: Int = 1) -> ConvForm? {
            let w = Tensor(shape: shape, scalars: [Float](repeating: 0.5, count: shape.reduce(1, *)))
            let node = Node(name: "c", opType: "Conv", inputs: ["x", "w"], outputs: ["y"], attributes: ["group": .int(group)])
            return ConvForm(node, initializers: ["w": .float(Variable(w))])
        }
        #expect(form([6, 0, 1, 1]) == nil)
        #expect(form([0, 6, 1, 1]) == nil)
        #expect(form([6, 4, 1, 1])?.depthwise == false)
        #expect(form([6, 1, 3, 3], group: 6)?.depthwise == true)
        #expect(form([6, 2, 3, 3], group: 3) == nil)
    }

    /// The reorders alone, over channel and pixel counts around sixteen.
    @Test func reordersRoundTrip() throws {
        guard Blocked16.available else { return }
        for (c, hw) in [(1, 1), (16, 16), (17, 15), (33, 49), (5, 200), (48, 17)] {
            let x = spreadTensor([2, c, hw], seed: UInt64(c * 1000 + hw))
            var blocked = [Float](repeating: .nan, count: 2 * Blocked16.blocks(c) * hw * 16)
            var back = [Float](repeating: .nan, count: 2 * c * hw)
            x.withUnsafeBufferPointer { xp in
                blocked.withUnsafeMutableBufferPointer { Blocked16.toBlocked(xp.baseAddress!, batch: 2, channels: c, pixels: hw, $0.baseAddress!, threads: 2) }
            }
            for n in 0..<2 {
                for ch in 0..<(Blocked16.blocks(c) * 16) {
                    for p in 0..<hw {
                        let got = blocked[((n * Blocked16.blocks(c) + ch / 16) * hw + p) * 16 + ch % 16]
                        #expect(got == (ch < c ? x.scalars[(n * c + ch) * hw + p] : 0))
                    }
                }
            }
            blocked.withUnsafeBufferPointer { bp in
                back.withUnsafeMutableBufferPointer { Blocked16.fromBlocked(bp.baseAddress!, batch: 2, channels: c, pixels: hw, $0.baseAddress!, threads: 1) }
            }
            #expect(back == x.scalars)
        }
    }
}
