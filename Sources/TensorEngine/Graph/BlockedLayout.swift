import Kernels

// Inference of depthwise-separable networks (MobileNet, EfficientNet) with activations in
// blocks of sixteen channels (NCHW16c, `Kernels.Blocked16`), as ONNX Runtime's NCHWc
// transformer does on x86. A graph with a depthwise Conv gets a second graph for inference
// (no tape): its depthwise Convs, the pointwise Convs around them, their Clip, ReLU and SiLU,
// the Adds and Muls between them, their squeeze-and-excitation means and the elementwise
// activations run on blocked values; a reorder brings a value into blocks where the first such
// op reads it and one takes it out where any other op does (the stem Conv, the classifier).
// The graph outputs are the original graph's. Training, and graphs without a depthwise Conv,
// run as before.
// NOTE: in NCHW, MobileNetV2 at batch 1 spent 2.2 ms in depthwise Convs (ONNX Runtime 1.1) and
// its pointwise Convs with few input channels ran at 26-35 GMAC/s: the depthwise kernel works
// plane by plane over a padded copy, and a 1 × 1 Conv is a GEMM that packs its input first.
// In blocks a pointwise Conv's input is already a GEMM panel and a depthwise Conv is one vector
// chain per pixel.
// Padded channels (past a count that is not a multiple of sixteen) hold zeros or an
// activation of zero (finite); every Conv reads them with zero weights and the reorder out
// drops them.

/// A graph's blocked form for inference and what its packed weights came from.
final class BlockedPlan {
    let graph: Graph
    /// The weights (and biases) packed into `graph`'s blocked Convs, with their versions.
    private let sources: [(variable: Variable, version: Int)]

    private init(graph: Graph, sources: [(variable: Variable, version: Int)]) {
        self.graph = graph
        self.sources = sources
    }

    /// Whether every packed weight is as it was packed.
    var isCurrent: Bool { sources.allSatisfy { $0.variable.version == $0.version } }

    /// Op types of the blocked graph's own nodes (`OpRegistry.blocked`): not ONNX ops, and not
    /// accepted in a model file.
    static let reorderIn = "prunecheck.ReorderIn16", reorderOut = "prunecheck.ReorderOut16", conv = "prunecheck.Conv16"
    static let mean = "prunecheck.Mean16", mul = "prunecheck.Mul16"

    /// The blocked form of `g`, or nil when it has no depthwise Conv to run in blocks (or the
    /// CPU has no AVX-512).
    static func make(for g: Graph) -> BlockedPlan? {
        guard Blocked16.available, !g.training else { return nil }
        let nodes = g.nodes, inits = g.initializers
        var readers: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() { for name in n.inputs where !name.isEmpty { readers[name, default: []].append(i) } }

        let convs = nodes.map { ConvForm($0, initializers: inits) }
        /// The node whose output a fused Conv's epilogue ends at, and that output.
        func fusedEnd(_ i: Int) -> Int {
            if g.reluFused[i] { return i + 1 }
            switch g.convEpilogues[i] {
            case .clip?: return i + 1
            case .silu?: return i + 2
            case nil: return i
            }
        }
        func activation(_ i: Int) -> Blocked16.Activation {
            if g.reluFused[i] { return .relu }
            switch g.convEpilogues[i] {
            case .clip(let lo, let hi)?: return .clip(lo, hi)
            case .silu?: return .silu
            case nil: return .none
            }
        }

        var out: [Node] = []
        var blockedName: [String: String] = [:], channels: [String: Int] = [:]
        var plain = Set(g.inputs.map(\.name)).union(inits.keys)
        var packed: [(String, TensorData)] = [], sources: [(variable: Variable, version: Int)] = []
        var skip = Set<Int>()
        var depthwiseCount = 0

        // Names the blocked graph adds: never one the graph has (or one added before).
        var taken = Set(inits.keys).union(g.inputs.map(\.name))
        for n in nodes { taken.formUnion(n.inputs); taken.formUnion(n.outputs); taken.insert(n.name) }
        func fresh(_ base: String) -> String {
            var name = base
            while taken.contains(name) { name += "'" }
            taken.insert(name)
            return name
        }

        func plainName(_ name: String) -> String {
            if name.isEmpty || plain.contains(name) { return name }
            guard let b = blockedName[name], let c = channels[name] else { return name }  // produced later: the graph reports it
            out.append(Node(name: fresh(name + "#out"), opType: reorderOut, inputs: [b], outputs: [name], attributes: ["channels": .int(c)]))
            plain.insert(name)
            return name
        }
        func blocked(_ name: String, channels c: Int) -> String {
            if let b = blockedName[name] { return b }
            let b = fresh(name + "#16")
            out.append(Node(name: fresh(name + "#in"), opType: reorderIn, inputs: [plainName(name)], outputs: [b],
                            attributes: ["channels": .int(c)]))
            blockedName[name] = b
            channels[name] = c
            return b
        }
        func isBlocked(_ name: String) -> Bool { blockedName[name] != nil }
        func setBlocked(_ name: String, channels c: Int) -> String {
            let b = fresh(name + "#16")
            blockedName[name] = b
            channels[name] = c
            return b
        }
        /// Whether the value feeds a depthwise Conv that will run in blocks.
        func feedsDepthwise(_ name: String) -> Bool {
            readers[name, default: []].contains { convs[$0]?.depthwise == true && nodes[$0].inputs.first == name }
        }

        for (i, n) in nodes.enumerated() where !skip.contains(i) {
            if let c = convs[i] {
                let end = fusedEnd(i), y = nodes[end].outputs.first ?? ""
                let input = n.inputs[0]
                let fits = channels[input].map { $0 == c.cin } ?? true
                let direct = c.kind == .direct && feedsDepthwise(y)  // reads NCHW
                if fits && (c.depthwise || direct || (c.kind == .pointwise && (isBlocked(input) || feedsDepthwise(y)))) && !y.isEmpty {
                    let x = direct ? plainName(input) : blocked(input, channels: c.cin)
                    let w = fresh(n.name + "#w16"), b = fresh(n.name + "#b16")
                    let weights: [Float] = c.weight.value.withUnsafeBufferPointer { p in
                        switch c.kind {
                        case .depthwise: return Blocked16.packDepthwise(p.baseAddress!, channels: c.cout, taps: c.kh * c.kw)
                        case .pointwise: return Blocked16.packPointwise(p.baseAddress!, cout: c.cout, cin: c.cin)
                        case .direct: return Blocked16.packDirect(p.baseAddress!, cout: c.cout, cin: c.cin, taps: c.kh * c.kw)
                        }
                    }
                    packed.append((w, .float(Tensor(shape: [weights.count], scalars: weights))))
                    sources.append((c.weight, c.weight.version))
                    var inputs = [x, w]
                    if let bias = c.bias {
                        let padded = Blocked16.padBias(bias.value.scalars)
                        packed.append((b, .float(Tensor(shape: [padded.count], scalars: padded))))
                        sources.append((bias, bias.version))
                        inputs.append(b)
                    }
                    let a = activation(i)
                    var attributes: [String: Attribute] = [
                        "kind": .int(c.kind.rawValue), "cin": .int(c.cin), "cout": .int(c.cout),
                        "mode": .int(a.mode), "lo": .float(a.lo), "hi": .float(a.hi),
                    ]
                    if c.kind != .pointwise {
                        attributes["geometry"] = .ints([c.kh, c.kw, c.strides.0, c.strides.1, c.pads.0, c.pads.1, c.pads.2, c.pads.3])
                    }
                    if c.depthwise { depthwiseCount += 1 }
                    out.append(Node(name: n.name, opType: conv, inputs: inputs, outputs: [setBlocked(y, channels: c.cout)],
                                    attributes: attributes))
                    for k in i...end { skip.insert(k) }
                    continue
                }
            }
            let first = n.inputs.first ?? ""
            switch n.opType {
            case "Add", "Mul":
                if n.inputs.count == 2, n.outputs.count == 1, isBlocked(n.inputs[0]), isBlocked(n.inputs[1]),
                   let ca = channels[n.inputs[0]], channels[n.inputs[1]] == ca {
                    let (a, b) = (n.inputs[0], n.inputs[1])
                    out.append(Node(name: n.name, opType: n.opType == "Add" ? "Add" : mul, inputs: [blockedName[a]!, blockedName[b]!],
                                    outputs: [setBlocked(n.outputs[0], channels: ca)]))
                    continue
                }
            case "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish":
                if n.outputs.count == 1, isBlocked(first), let c = channels[first], n.inputs.dropFirst().allSatisfy({ $0.isEmpty || inits[$0] != nil }) {
                    out.append(Node(name: n.name, opType: n.opType, inputs: [blockedName[first]!] + n.inputs.dropFirst(),
                                    outputs: [setBlocked(n.outputs[0], channels: c)], attributes: n.attributes))
                    continue
                }
            case "ReduceMean", "GlobalAveragePool":
                if n.outputs.count == 1, isBlocked(first), let c = channels[first], meansPixels(n, opset: g.opset, initializers: inits) {
                    out.append(Node(name: n.name, opType: mean, inputs: [blockedName[first]!], outputs: [setBlocked(n.outputs[0], channels: c)]))
                    continue
                }
            default:
                break
            }
            var copy = n
            copy.inputs = n.inputs.map(plainName)
            out.append(copy)
            plain.formUnion(n.outputs)
        }
        guard depthwiseCount > 0 else { return nil }
        for name in g.outputs { _ = plainName(name) }

        var used = Set<String>()
        for n in out { used.formUnion(n.inputs) }
        var initializers: [(String, TensorData)] = []
        for name in g.initializerNames where used.contains(name) {
            if case .float(let v)? = inits[name] { initializers.append((name, .float(v.value))) }
            else if case .int64(let t)? = inits[name] { initializers.append((name, .int64(t))) }
            else if case .bool(let t)? = inits[name] { initializers.append((name, .bool(t))) }
        }
        let blockedGraph = Graph(nodes: out, inputs: g.inputs, outputs: g.outputs, initializers: initializers + packed,
                                 opset: g.opset, blockedOps: true)
        // The same Variables as the original graph, so a change in place reaches both.
        for (name, _) in initializers { if let v = inits[name] { blockedGraph.share(name, v) } }
        return BlockedPlan(graph: blockedGraph, sources: sources)
    }

    /// Whether a ReduceMean or GlobalAveragePool averages a rank-4 value over its two pixel
    /// axes and keeps them.
    private static func meansPixels(_ n: Node, opset: Int, initializers: [String: Value]) -> Bool {
        if n.opType == "GlobalAveragePool" { return true }
        if case .int(let k)? = n.attributes["keepdims"], k != 1 { return false }
        var axes: [Int]? = nil
        if case .ints(let a)? = n.attributes["axes"] { axes = a }
        if opset >= 18, n.inputs.count > 1, case .int64(let t)? = initializers[n.inputs[1]] { axes = t.data.map { Int($0) } }
        guard let axes else { return false }
        return Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3] && axes.count == 2
    }
}

/// A Conv the blocked graph can run: 2-D, constant weights (and bias), no dilation, explicit
/// pads; depthwise (one group per channel, any window) or pointwise (1 × 1, stride 1, no pads).
struct ConvForm {
    let weight: Variable, bias: Variable?
    let cin: Int, cout: Int, kh: Int, kw: Int
    let strides: (Int, Int), pads: (Int, Int, Int, Int)
    let kind: Kind
    enum Kind: Int { case pointwise = 0, depthwise = 1, direct = 2 }
    var depthwise: Bool { kind == .depthwise }
    /// Input channels up to which a Conv that is neither depthwise nor pointwise runs in blocks
    /// (from NCHW: a network's stem, whose output a reorder would otherwise take into blocks).
    static let directChannels = 4

    init?(_ n: Node, initializers: [String: Value]) {
        guard n.opType == "Conv", n.inputs.count >= 2, n.outputs.count == 1, !n.inputs[0].isEmpty,
              case .float(let w)? = initializers[n.inputs[1]], w.value.shape.count == 4 else { return nil }
        let s = w.value.shape
        // (No empty Conv: one with no input channels is its bias alone, which the general path
        // computes; structured pruning can leave one.)
        guard s.allSatisfy({ $0 > 0 }) else { return nil }
        var b: Variable? = nil
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
            guard case .float(let bv)? = initializers[n.inputs[2]], bv.value.shape == [s[0]] else { return nil }
            b = bv
        }
        func ints(_ name: String, _ d: [Int]) -> [Int]? {
            guard let a = n.attributes[name] else { return d }
            if case .ints(let v) = a { return v }
            return nil
        }
        if let a = n.attributes["auto_pad"] { guard case .string(let v) = a, v == "NOTSET" else { return nil } }
        var group = 1
        if let a = n.attributes["group"] { guard case .int(let v) = a else { return nil }; group = v }
        guard let strides = ints("strides", [1, 1]), strides.count == 2, strides.allSatisfy({ $0 >= 1 }),
              let pads = ints("pads", [0, 0, 0, 0]), pads.count == 4, pads.allSatisfy({ $0 >= 0 }),
              ints("dilations", [1, 1]) == [1, 1], ints("kernel_shape", [s[2], s[3]]) == [s[2], s[3]] else { return nil }
        (weight, bias, cout, kh, kw) = (w, b, s[0], s[2], s[3])
        self.strides = (strides[0], strides[1])
        self.pads = (pads[0], pads[1], pads[2], pads[3])
        if group == s[0], s[1] == 1, group > 1 {
            kind = .depthwise
            cin = group
        } else if group == 1, kh == 1, kw == 1, strides == [1, 1], pads == [0, 0, 0, 0] {
            kind = .pointwise
            cin = s[1]
        } else if group == 1, s[1] <= ConvForm.directChannels {
            kind = .direct
            cin = s[1]
        } else {
            return nil
        }
    }
}

extension OpContext {
    /// NCHW to blocks (`BlockedPlan.reorderIn`).
    func reorderIn16() throws -> Value {
        let x = try float(0).value, s = x.shape, c = try int("channels", 0)
        // (The Convs that read it have c input channels: blocks would hide a few more or less.)
        guard s.count == 4, s[1] == c else { throw fail("input \(s) must be (N, \(c), H, W) for the Convs that read it") }
        var y = outputBuffer([s[0], Blocked16.blocks(s[1]), s[2], s[3], 16])
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Blocked16.toBlocked(xp.baseAddress!, batch: s[0], channels: s[1], pixels: s[2] * s[3], yp.baseAddress!, threads: threads)
            }
        }
        return inferenceValue(y, requiresGrad: false)
    }

    /// Blocks back to NCHW (`BlockedPlan.reorderOut`).
    func reorderOut16() throws -> Value {
        let x = try float(0).value, s = x.shape, c = try int("channels", 0)
        guard s.count == 5, s[4] == 16, s[1] == Blocked16.blocks(c) else { throw fail("input \(s) does not hold \(c) channels in blocks") }
        var y = outputBuffer([s[0], c, s[2], s[3]])
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Blocked16.fromBlocked(xp.baseAddress!, batch: s[0], channels: c, pixels: s[2] * s[3], yp.baseAddress!, threads: threads)
            }
        }
        return inferenceValue(y, requiresGrad: false)
    }

    /// A pointwise or depthwise Conv in blocks (`BlockedPlan.conv`).
    func conv16() throws -> Value {
        let x = try float(0).value, w = try float(1).value, b = has(2) ? try float(2).value : nil
        let cin = try int("cin", 0), cout = try int("cout", 0), s = x.shape, kind = try int("kind", 0)
        if kind == ConvForm.Kind.direct.rawValue {
            guard s.count == 4, s[1] == cin else { throw fail("input \(s) does not hold \(cin) channels") }
        } else {
            guard s.count == 5, s[4] == 16, s[1] == Blocked16.blocks(cin) else { throw fail("input \(s) does not hold \(cin) channels in blocks") }
        }
        let a = Blocked16.Activation(mode: try int("mode", 0), lo: try float("lo", 0), hi: try float("hi", 0))
        let n = s[0], ih = s[2], iw = s[3]
        var y: Tensor
        if kind != ConvForm.Kind.pointwise.rawValue {
            guard let q = try ints("geometry"), q.count == 8 else { throw fail("geometry is missing") }
            let g = Blocked16.Window(kh: q[0], kw: q[1], strideH: q[2], strideW: q[3], padTop: q[4], padLeft: q[5],
                                     padBottom: q[6], padRight: q[7])
            guard let (oh, ow) = g.output(ih: ih, iw: iw) else { throw fail("the \(q[0]) × \(q[1]) window does not fit input \(s)") }
            y = outputBuffer([n, Blocked16.blocks(cout), oh, ow, 16])
            withPointers(x, w, b, &y) { xp, wp, bp, yp in
                if kind == ConvForm.Kind.direct.rawValue {
                    Blocked16.direct(xp, batch: n, cin: cin, ih: ih, iw: iw, cout: cout, weights: wp, bias: bp, geometry: g,
                                     oh: oh, ow: ow, yp, activation: a, threads: threads)
                } else {
                    Blocked16.depthwise(xp, batch: n, channels: cout, ih: ih, iw: iw, weights: wp, bias: bp, geometry: g,
                                        oh: oh, ow: ow, yp, activation: a, threads: threads)
                }
            }
        } else {
            y = outputBuffer([n, Blocked16.blocks(cout), ih, iw, 16])
            withPointers(x, w, b, &y) { xp, wp, bp, yp in
                Blocked16.pointwise(xp, batch: n, cin: cin, cout: cout, pixels: ih * iw, weights: wp, bias: bp, yp,
                                    activation: a, threads: threads)
            }
        }
        return inferenceValue(y, requiresGrad: false)
    }

    private func withPointers(_ x: Tensor, _ w: Tensor, _ b: Tensor?, _ y: inout Tensor,
                              _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>) -> Void) {
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    if let b {
                        b.withUnsafeBufferPointer { bp in body(xp.baseAddress!, wp.baseAddress!, bp.baseAddress!, yp.baseAddress!) }
                    } else {
                        body(xp.baseAddress!, wp.baseAddress!, nil, yp.baseAddress!)
                    }
                }
            }
        }
    }

    /// The mean over the pixels of blocks (`BlockedPlan.mean`), kept as a 1 × 1 plane.
    func mean16() throws -> Value {
        let x = try float(0).value, s = x.shape
        guard s.count == 5, s[4] == 16 else { throw fail("input \(s) is not in blocks") }
        var y = outputBuffer([s[0], s[1], 1, 1, 16])
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Blocked16.mean(xp.baseAddress!, planes: s[0] * s[1], pixels: s[2] * s[3], yp.baseAddress!, threads: threads)
            }
        }
        return inferenceValue(y, requiresGrad: false)
    }

    /// A product of blocked values (`BlockedPlan.mul`): of the same shape, or one a 1 × 1 plane
    /// per block (squeeze-and-excitation's scale).
    func mul16() throws -> Value {
        let a = try float(0).value, b = try float(1).value
        let sa = a.shape, sb = b.shape
        guard sa.count == 5, sb.count == 5, sa[4] == 16, sb[4] == 16, sa[0] == sb[0], sa[1] == sb[1] else {
            throw fail("inputs \(sa) and \(sb) are not blocks of the same channels")
        }
        let (x, s) = sb[2] * sb[3] == 1 && sa[2] * sa[3] != 1 ? (a, b) : (b, a)
        let sx = x.shape, ss = s.shape
        var y = outputBuffer(sx)
        if ss == sx {
            x.withUnsafeBufferPointer { xp in
                s.withUnsafeBufferPointer { sp in
                    y.withUnsafeMutableBufferPointer { yp in for i in 0..<yp.count { yp[i] = sp[i] * xp[i] } }
                }
            }
        } else {
            guard ss[2] * ss[3] == 1 else { throw fail("inputs \(sa) and \(sb) do not broadcast in blocks") }
            x.withUnsafeBufferPointer { xp in
                s.withUnsafeBufferPointer { sp in
                    y.withUnsafeMutableBufferPointer { yp in
                        Blocked16.scale(xp.baseAddress!, by: sp.baseAddress!, planes: sx[0] * sx[1], pixels: sx[2] * sx[3],
                                        yp.baseAddress!, threads: threads)
                    }
                }
            }
        }
        return inferenceValue(y, requiresGrad: false)
    }
}
