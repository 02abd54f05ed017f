// What a layer sees: intermediate values and the rows a Linear or Conv multiplies by its
// weight. Calibration-based pruning (Wanda, SparseGPT, OBS, LRP) reads these.

extension Graph {
    /// Runs the graph on `x` (no tape) and returns the float values named in `names`.
    public func capture(_ x: Tensor, _ names: Set<String>, threads: Int) throws -> [String: Tensor] {
        try capture([.float(Variable(x))], names, threads: threads)
    }

    /// The float values named `names` of one run on `feeds` (one per graph input).
    public func capture(_ feeds: [Value], _ names: Set<String>, threads: Int) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, value) in try values(for: feeds, threads: threads) where names.contains(name) {
            if case .float(let v) = value { out[name] = v.value }
        }
        return out
    }

    /// The rows node `index` multiplies by its weight, for its input `x`, in the weight's
    /// column order: a Linear Gemm's input as (B, in); a MatMul's as (rows, in) over every
    /// leading dimension; a Conv's receptive field at every output
    /// position as (B·P, C·Πk), zeros in the padding. Throws for other ops and grouped Conv.
    public func layerRows(node index: Int, input x: Tensor) throws -> Tensor {
        let node = nodes[index]
        let ctx = OpContext(graph: self, index: index, op: ops[index], inputs: [.float(Variable(x))], tape: nil, threads: 1)
        switch node.opType {
        case "Gemm":
            guard LinearCache.applies(to: node, graph: self) else { throw ctx.fail("only a Linear Gemm (transB = 1, alpha = beta = 1) has input rows") }
            return x.reshaped([x.shape[0], x.count / max(x.shape[0], 1)])
        case "MatMul":
            // x (…, in) · W (in, out): every position of every example is a row.
            guard case .float(let w)? = initializer(node.inputs[1]), w.value.shape.count == 2 else {
                throw ctx.fail("only a MatMul by a matrix initializer has input rows")
            }
            let k = w.value.shape[0]
            guard x.shape.last == k else { throw ctx.fail("input \(x.shape) does not fit weight \(w.value.shape)") }
            return x.reshaped([x.count / max(k, 1), k])
        case "Conv":
            guard case .float(let w)? = initializer(node.inputs[1]) else { throw ctx.fail("the weight is not an initializer") }
            guard try ctx.int("group", 1) == 1 else { throw ctx.fail("grouped convolution has no single row layout") }
            let sx = x.shape, sw = w.value.shape
            guard sx.count == sw.count, sx[1] == sw[1] else { throw ctx.fail("input \(sx) does not fit weight \(sw)") }
            let geo = try ctx.computeWindow(inSpatial: Array(sx[2...]), kernel: Array(sw[2...]), ceil: false)
            let batch = sx[0], cin = sx[1], kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount
            let width = cin * kq
            var rows = [Float](repeating: 0, count: batch * p * width)
            x.withUnsafeBufferPointer { xp in
                for n in 0..<batch {
                    for pp in 0..<p {
                        let row = (n * p + pp) * width
                        for c in 0..<cin {
                            let src = (n * cin + c) * inP
                            for q in 0..<kq {
                                let t = geo.table[pp * kq + q]
                                if t >= 0 { rows[row + c * kq + q] = xp[src + t] }
                            }
                        }
                    }
                }
            }
            return Tensor(shape: [batch * p, width], scalars: rows)
        default:
            throw ctx.fail("has no weight rows (only Linear Gemm, MatMul by a matrix and Conv)")
        }
    }
}

extension Graph {
    /// Whether weight `name` is stored inputs first, (in, out): the second input of a MatMul,
    /// or of a Gemm without transB. Pruning sees every weight as (outputs, inputs), a row per
    /// output unit: such a weight is transposed into that view and back.
    public func storesInputsFirst(_ name: String) -> Bool {
        guard case .float(let v)? = initializer(name), v.value.shape.count == 2 else { return false }
        return nodes.contains { n in
            n.inputs.count > 1 && n.inputs[1] == name
                && (n.opType == "MatMul" || (n.opType == "Gemm" && (n.attributes["transB"].flatMap { if case .int(let t) = $0 { return t } else { return nil } } ?? 0) == 0))
        }
    }
}
