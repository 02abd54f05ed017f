import Foundation
import Kernels

// Attention at inference, block by block: scores = Q · K, the elementwise steps on them (a mask
// Add, a scale Mul or Div), Softmax along the last axis, NaNs replaced by a constant (exporters
// write Where(IsNaN(p), 0, p) after a masked Softmax), and P · V, for a block of rows of one
// head at a time while its scores are in cache. The unfused graph wrote each of those tensors
// out and read it back: at batch 8 a ViT layer's scores are 8 × 4 × 65 × 65 floats, MiniLM's
// IsNaN and Where alone took 0.5 ms a run.
//
// Bits: every step is the op's own arithmetic on the same values. The GEMMs' chains per output do
// not depend on how rows are blocked (Kernels/Gemm.swift), a Softmax row's chain not on which
// rows it runs with (`softmaxRows`), and the elementwise steps are one IEEE operation each, so
// the output is the unfused graph's bit for bit, for any thread count.

/// A chain from a MatMul's scores to the MatMul of their Softmax by V (`Graph.attentionChains`).
struct AttentionChain {
    enum Op { case add, sub, mul, div }
    /// Whether graphs fuse attention chains unless told otherwise (PRUNECHECK_ATTENTION=0: no).
    static let fusedByDefault = ProcessInfo.processInfo.environment["PRUNECHECK_ATTENTION"] != "0"

    /// An elementwise step on the scores: scores ∘ operand (or operand ∘ scores when
    /// `!scoresFirst`), the operand broadcasting to the scores' shape.
    struct Step { let op: Op; let operand: Int; let scoresFirst: Bool }

    /// The slots of Q, K, V and of the output.
    let q: Int, k: Int, v: Int, output: Int
    let steps: [Step]
    /// The Softmax node (its axis is checked per run).
    let softmax: Int
    /// The slot of the value that replaces NaN probabilities (-1: no IsNaN and Where).
    let nanFill: Int
    /// The nodes after the first MatMul that a fused run stands for, the P · V MatMul last.
    let members: [Int]

    /// Per node: the chain that starts at it. A MatMul with no packed weight or epilogue, whose
    /// output only the next step of the chain reads: Add, Sub, Mul or Div with one other float
    /// operand, then a Softmax, then either the MatMul of its output by V or IsNaN of it and
    /// Where(IsNaN, c, p) read by that MatMul (as its first input). No intermediate is a graph
    /// output or has another reader, and the other operands (the mask, c, V) exist before the
    /// first MatMul: inputs, initializers or outputs of earlier nodes.
    static func find(nodes: [Node], outputs: Set<String>, slotOf: [String: Int], packs: [MatMulPack?],
                     epilogues: [MatMulEpilogue?]) -> [AttentionChain?] {
        var producer: [String: Int] = [:]
        var readers: [String: [Int]] = [:]
        for (i, n) in nodes.enumerated() {
            for o in n.outputs where !o.isEmpty { producer[o] = i }
            for x in Set(n.inputs) where !x.isEmpty { readers[x, default: []].append(i) }
        }
        /// Whether `name` has a value before node `i` runs.
        func ready(_ name: String, before i: Int) -> Bool { !name.isEmpty && (producer[name].map { $0 < i } ?? true) }
        /// The one node reading `name` (once), when `name` is no graph output.
        func onlyReader(_ name: String) -> Int? {
            guard !outputs.contains(name), let r = readers[name], r.count == 1, nodes[r[0]].inputs.filter({ $0 == name }).count == 1 else { return nil }
            return r[0]
        }
        func isPlainMatMul(_ i: Int) -> Bool {
            let n = nodes[i]
            return n.opType == "MatMul" && n.inputs.count == 2 && n.outputs.count == 1 && !n.outputs[0].isEmpty && packs[i] == nil && epilogues[i] == nil
        }
        return nodes.indices.map { i -> AttentionChain? in
            guard isPlainMatMul(i), nodes[i].inputs.allSatisfy({ !$0.isEmpty }) else { return nil }
            var current = nodes[i].outputs[0]
            var steps: [Step] = [], members: [Int] = []
            var softmax = -1
            while softmax < 0 {
                guard let r = onlyReader(current) else { return nil }
                let n = nodes[r]
                guard n.outputs.count == 1, !n.outputs[0].isEmpty else { return nil }
                members.append(r)
                switch n.opType {
                case "Softmax":
                    softmax = r
                case "Add", "Sub", "Mul", "Div":
                    guard n.inputs.count == 2 else { return nil }
                    let first = n.inputs[0] == current
                    let operand = first ? n.inputs[1] : n.inputs[0]
                    guard ready(operand, before: i), let slot = slotOf[operand] else { return nil }
                    let op: Op = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div][n.opType]!
                    steps.append(Step(op: op, operand: slot, scoresFirst: first))
                default:
                    return nil
                }
                current = n.outputs[0]
            }
            // The probabilities: read by the P · V MatMul, or by IsNaN and the Where that reads it.
            guard !outputs.contains(current), let pReaders = readers[current] else { return nil }
            var nanFill = -1
            if pReaders.count == 2 {
                let (isNaN, whereNode) = nodes[pReaders[0]].opType == "IsNaN" ? (pReaders[0], pReaders[1]) : (pReaders[1], pReaders[0])
                let nanNode = nodes[isNaN], w = nodes[whereNode]
                guard nanNode.opType == "IsNaN", w.opType == "Where", nanNode.inputs == [current], nanNode.outputs.count == 1,
                      onlyReader(nanNode.outputs[0]) == whereNode, w.inputs.count == 3, w.outputs.count == 1, !w.outputs[0].isEmpty,
                      w.inputs[0] == nanNode.outputs[0], w.inputs[2] == current, w.inputs[1] != current,
                      ready(w.inputs[1], before: i), let fill = slotOf[w.inputs[1]] else { return nil }
                members += [isNaN, whereNode]
                nanFill = fill
                current = w.outputs[0]
            } else if pReaders.count != 1 {
                return nil
            }
            guard let last = onlyReader(current), isPlainMatMul(last), nodes[last].inputs[0] == current,
                  ready(nodes[last].inputs[1], before: i) else { return nil }
            members.append(last)
            let slot = { (name: String) in slotOf[name]! }
            return AttentionChain(q: slot(nodes[i].inputs[0]), k: slot(nodes[i].inputs[1]), v: slot(nodes[last].inputs[1]),
                                  output: slot(nodes[last].outputs[0]), steps: steps, softmax: softmax, nanFill: nanFill, members: members)
        }
    }
}

extension Graph {
    /// Runs `chain` on the values in `slots`: the output of its last MatMul, written into that
    /// node's reused buffer. Nil when the values do not fit (shapes, types, the Softmax's axis):
    /// the nodes then run one by one and report what is wrong.
    func runAttention(_ chain: AttentionChain, _ slots: [Value?], threads: Int) -> Value? {
        guard case .float(let q)? = slots[chain.q], case .float(let k)? = slots[chain.k], case .float(let v)? = slots[chain.v] else { return nil }
        let sq = q.value.shape, sk = k.value.shape, sv = v.value.shape
        guard sq.count >= 2, sk.count >= 2, sv.count >= 2 else { return nil }
        let m = sq[sq.count - 2], d = sq[sq.count - 1], n = sk[sk.count - 1], dv = sv[sv.count - 1]
        guard sk[sk.count - 2] == d, sv[sv.count - 2] == n, m > 0, d > 0, n > 0, dv > 0 else { return nil }
        let batchQ = Array(sq.dropLast(2)), batchK = Array(sk.dropLast(2)), batchV = Array(sv.dropLast(2))
        guard let batch = broadcastShape(batchQ, batchK), broadcastShape(batch, batchV) == batch else { return nil }
        let scores = batch + [m, n], outShape = batch + [m, dv]
        guard AllocationLimit.count(scores, bytesPerElement: 4) != nil, AllocationLimit.count(outShape, bytesPerElement: 4) != nil else { return nil }
        let rank = scores.count
        let softmax = nodes[chain.softmax]
        guard case .int(let axisAttr)? = softmax.attributes["axis"] ?? .int(opset >= 13 ? -1 : 1),
              axisAttr == rank - 1 || axisAttr == -1 else { return nil }
        var requiresGrad = q.requiresGrad || k.requiresGrad || v.requiresGrad
        // Each step's operand: its base offset per slice and its steps along rows and columns.
        var operands: [(value: Tensor, base: [Int], row: Int, col: Int)] = []
        let count = batch.reduce(1, *)
        for step in chain.steps {
            guard case .float(let o)? = slots[step.operand], broadcastShape(scores, o.value.shape) == scores else { return nil }
            requiresGrad = requiresGrad || o.requiresGrad
            let steps = broadcastSteps(o.value.shape, rank: rank)
            let base = strideWalk(batch, strides: Array(steps.dropLast(2)), offset: 0)
            operands.append((o.value, base, steps[rank - 2], steps[rank - 1]))
        }
        var fill: Float = 0
        let fills = chain.nanFill >= 0
        if fills {
            guard case .float(let c)? = slots[chain.nanFill], c.value.count == 1, c.value.shape.count <= rank else { return nil }
            requiresGrad = requiresGrad || c.requiresGrad
            fill = c.value.scalars[0]
        }
        let ia = broadcastSourceIndex(batchQ, to: batch), ib = broadcastSourceIndex(batchK, to: batch)
        let iv = broadcastSourceIndex(batchV, to: batch)
        // Blocks of rows whose scores and probabilities fit in about 256 KB.
        let rowBlock = m * n <= 32_768 ? m : max(16, 32_768 / n / 16 * 16)
        let blocks = (m + rowBlock - 1) / rowBlock
        let items = count * blocks
        let workers = min(threads, items)
        let inner = workers > 1 ? 1 : threads
        let ops = chain.steps.map(\.op), firsts = chain.steps.map(\.scoresFirst)
        var y = outputBuffer(node: chain.members.last!, outShape)  // every element written
        q.value.withUnsafeBufferPointer { qp in
            k.value.withUnsafeBufferPointer { kp in
                v.value.withUnsafeBufferPointer { vp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let q0 = Int(bitPattern: qp.baseAddress!), k0 = Int(bitPattern: kp.baseAddress!)
                        let v0 = Int(bitPattern: vp.baseAddress!), y0 = Int(bitPattern: yp.baseAddress!)
                        parallelFor(items, threads: workers) { item in
                            let t = item / blocks, r0 = item % blocks * rowBlock, rows = min(rowBlock, m - r0)
                            withAttentionScratch(count: 2 * rows * n) { s in
                                let p = s + rows * n
                                gemm(m: rows, n: n, k: d, a: UnsafePointer<Float>(bitPattern: q0)! + ia[t] * m * d + r0 * d, lda: d, transposeA: false,
                                     b: UnsafePointer<Float>(bitPattern: k0)! + ib[t] * d * n, ldb: n, transposeB: false,
                                     c: s, ldc: n, accumulate: false, threads: inner)
                                for (j, operand) in operands.enumerated() {
                                    operand.value.withUnsafeBufferPointer { op in
                                        Self.attentionStep(ops[j], scoresFirst: firsts[j], s, rows: rows, cols: n,
                                                           operand: op.baseAddress! + operand.base[t] + r0 * operand.row,
                                                           rowStep: operand.row, colStep: operand.col)
                                    }
                                }
                                softmaxRows(s, rows: rows, cols: n, out: p)
                                if fills { for e in 0..<(rows * n) where p[e].isNaN { p[e] = fill } }
                                gemm(m: rows, n: dv, k: n, a: p, lda: n, transposeA: false,
                                     b: UnsafePointer<Float>(bitPattern: v0)! + iv[t] * n * dv, ldb: dv, transposeB: false,
                                     c: UnsafeMutablePointer<Float>(bitPattern: y0)! + t * m * dv + r0 * dv, ldc: dv,
                                     accumulate: false, threads: inner)
                            }
                        }
                    }
                }
            }
        }
        return inferenceValue(node: chain.members.last!, y, requiresGrad: requiresGrad)
    }

    /// scores ∘ operand in place over `rows` rows of `cols` scores, the operand stepping by
    /// `rowStep` and `colStep` (0 where it repeats).
    private static func attentionStep(_ op: AttentionChain.Op, scoresFirst: Bool, _ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                      operand: UnsafePointer<Float>, rowStep: Int, colStep: Int) {
        switch (op, scoresFirst) {
        case (.add, _): attentionStep(AddOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        case (.mul, _): attentionStep(MulOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        case (.sub, true): attentionStep(SubOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        case (.div, true): attentionStep(DivOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        case (.sub, false): attentionStep(ReversedSubOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        case (.div, false): attentionStep(ReversedDivOp.self, s, rows: rows, cols: cols, operand: operand, rowStep: rowStep, colStep: colStep)
        }
    }

    @inline(__always)
    private static func attentionStep<F: FloatBinaryOp>(_: F.Type, _ s: UnsafeMutablePointer<Float>, rows: Int, cols: Int,
                                                        operand: UnsafePointer<Float>, rowStep: Int, colStep: Int) {
        for r in 0..<rows {
            let row = s + r * cols, o = operand + r * rowStep
            if colStep == 1 {
                for c in 0..<cols { row[c] = F.apply(row[c], o[c]) }
            } else {
                let value = o[0]
                for c in 0..<cols { row[c] = F.apply(row[c], value) }
            }
        }
    }
}

/// b − a and b / a: a step whose operand comes first (operand − scores).
private enum ReversedSubOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { b - a } }
private enum ReversedDivOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { b / a } }
