import Kernels

// The Reduce ops, CumSum and ArgMax. Each output sums (or compares) its inputs in increasing
// index order on one thread, so results are bit-identical for any thread count.

extension OpContext {
    /// The reduced axes (sorted) from the `axes` input (opset ≥ 13 for ReduceSum, ≥ 18 for
    /// the others) or attribute; nil means "all axes" and [] with noop means identity.
    func reductionAxes(rank: Int) throws -> [Int]? {
        let fromInput = node.opType == "ReduceSum" ? graph.opset >= 13 : graph.opset >= 18
        let raw = try fromInput ? optionalInts(1) : ints("axes")
        guard let raw, !raw.isEmpty else {
            return try int("noop_with_empty_axes", 0) == 1 ? [] : nil
        }
        return try Set(raw.map { try axis($0, rank: rank) }).sorted()
    }

    func reduce() throws -> Value {
        if case .float = try value(0) {} else { return try reduceIntegers() }
        let x = try float(0)
        let s = x.value.shape
        let keep = try int("keepdims", 1) == 1
        guard let axesOpt = try reductionAxes(rank: s.count) else { return try reduceOver(x, axes: Array(0..<s.count), keep: keep) }
        if axesOpt.isEmpty { return emit(x.value, parents: [x]) { dy in dy.withUnsafeBufferPointer { x.addGrad($0) } } }
        return try reduceOver(x, axes: axesOpt, keep: keep)
    }

    func reduceOver(_ x: Variable, axes: [Int], keep: Bool) throws -> Value {
        let s = x.value.shape
        let keptShape = s.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outShape = keep ? keptShape : s.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        // NOTE: a mean or sum over trailing axes at inference (a global pool, squeeze-and-
        // excitation) sums each contiguous block in index order: the general path's chain,
        // without its index map (an array the size of the input per call: 30 % of
        // EfficientNet-B0's time went to its five ReduceMean nodes).
        // Axes in the middle (a mean pool over tokens: [N, T, C] over T) sum each output's
        // column of the block in order, sixteen outputs side by side: again the general path's
        // chain. NOTE: there, the index map and a switch on the op's name per element made
        // MiniLM's pooling sum 204 µs for 12K values.
        if tape == nil, node.opType == "ReduceMean" || node.opType == "ReduceSum", let first = axes.first, let last = axes.last,
           axes == Array(first...last) {
            let outCount = keptShape.reduce(1, *), n = s[first...last].reduce(1, *), inner = s[(last + 1)...].reduce(1, *)
            let outer = outCount / max(inner, 1)
            var y = outputBuffer(outShape)
            let mean = node.opType == "ReduceMean"
            x.value.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    if inner == 1 {
                        sumBlocks(xp.baseAddress!, blocks: outCount, length: n, out: yp.baseAddress!, threads: threads)
                    } else {
                        for o in 0..<outer { sumColumns(xp.baseAddress! + o * n * inner, rows: n, columns: inner, out: yp.baseAddress! + o * inner) }
                    }
                    if mean { for o in 0..<outCount { yp[o] = yp[o] * (n > 0 ? 1 / Float(n) : .nan) } }
                }
            }
            return inferenceValue(y, requiresGrad: x.requiresGrad)
        }
        // Output index of every input element; accumulation runs in input order.
        let outStrides = stridesOf(keptShape)
        let st = (0..<s.count).map { axes.contains($0) ? 0 : outStrides[$0] }
        let target = strideWalk(s, strides: st, offset: 0)
        let outCount = keptShape.reduce(1, *)
        let n = s.reduce(1, *) / max(outCount, 1)
        var y = Tensor(zeros: outShape)
        let op = node.opType
        let xv = x.value.scalars
        // LogSumExp subtracts each group's maximum before exponentiating (no overflow).
        var groupMax = [Float](repeating: -.infinity, count: op == "ReduceLogSumExp" ? outCount : 0)
        if op == "ReduceLogSumExp" { for i in 0..<target.count { groupMax[target[i]] = max(groupMax[target[i]], xv[i]) } }
        y.withUnsafeMutableBufferPointer { yp in
            switch op {
            case "ReduceMax", "ReduceMin":
                let isMax = op == "ReduceMax"
                for i in 0..<outCount { yp[i] = isMax ? -.infinity : .infinity }
                for i in 0..<target.count { yp[target[i]] = isMax ? max(yp[target[i]], xv[i]) : min(yp[target[i]], xv[i]) }
            case "ReduceProd":
                for i in 0..<outCount { yp[i] = 1 }
                for i in 0..<target.count { yp[target[i]] *= xv[i] }
            default:
                for i in 0..<target.count {
                    let v = xv[i]
                    switch op {
                    case "ReduceL1": yp[target[i]] += abs(v)
                    case "ReduceL2", "ReduceSumSquare": yp[target[i]] += v * v
                    case "ReduceLogSumExp":
                        let m = groupMax[target[i]]
                        yp[target[i]] += m.isInfinite ? (v == m ? 1 : 0) : expf32(v - m)
                    default: yp[target[i]] += v
                    }
                }
                for i in 0..<outCount {
                    switch op {
                    case "ReduceMean": yp[i] *= n > 0 ? 1 / Float(n) : .nan
                    case "ReduceL2": yp[i] = yp[i].squareRoot()
                    case "ReduceLogSum": yp[i] = Float(log64(Double(yp[i])))
                    case "ReduceLogSumExp": yp[i] = groupMax[i].isInfinite ? groupMax[i] : groupMax[i] + Float(log64(Double(yp[i])))
                    default: break
                    }
                }
            }
        }
        let yv = y.scalars
        return emit(y, parents: [x]) { dy in
            dy.withUnsafeBufferPointer { dp in
                x.accumulateGrad { g in
                    switch op {
                    case "ReduceMax", "ReduceMin":
                        var taken = [Bool](repeating: false, count: outCount)
                        for i in 0..<target.count where !taken[target[i]] && xv[i] == yv[target[i]] {
                            taken[target[i]] = true
                            g[i] += dp[target[i]]
                        }
                    default:
                        for i in 0..<target.count {
                            let t = target[i], v = xv[i], d = dp[t]
                            switch op {
                            case "ReduceMean": g[i] += d * (1 / Float(max(n, 1)))
                            case "ReduceL1": g[i] += v > 0 ? d : v < 0 ? -d : 0
                            case "ReduceL2": g[i] += yv[t] > 0 ? d * v / yv[t] : 0
                            case "ReduceSumSquare": g[i] += d * 2 * v
                            case "ReduceLogSum": g[i] += d / Float(exp64(Double(yv[t])))
                            case "ReduceLogSumExp": g[i] += d * Float(exp64(Double(v - yv[t])))
                            case "ReduceProd":
                                // The product of the group's other elements (y / x when x ≠ 0).
                                if v != 0 { g[i] += d * yv[t] / v } else {
                                    var p: Float = 1
                                    for j in 0..<target.count where target[j] == t && j != i { p *= xv[j] }
                                    g[i] += d * p
                                }
                            default: g[i] += d
                            }
                        }
                    }
                }
            }
        }
    }

    /// ReduceSum, ReduceProd, ReduceMax and ReduceMin of int64 or bool inputs (no gradient;
    /// a bool result for bool Max and Min, as ONNX's opset 20).
    func reduceIntegers() throws -> Value {
        let v = try value(0)
        let t: IntTensor, isBool: Bool
        switch v {
        case .int64(let x): (t, isBool) = (x, false)
        case .bool(let x): (t, isBool) = (x, true)
        case .float: preconditionFailure("float reductions go through reduceOver")
        }
        let op = node.opType
        guard ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin"].contains(op), !isBool || op == "ReduceMax" || op == "ReduceMin" else {
            throw fail("input 0 ('\(node.inputs[0])') must be float32 for \(op), found \(v.dtype.rawValue)")
        }
        let s = t.shape
        let keep = try int("keepdims", 1) == 1
        let axes = try reductionAxes(rank: s.count).map { $0.isEmpty ? [] : $0 } ?? Array(0..<s.count)
        if axes.isEmpty, try reductionAxes(rank: s.count) != nil { return v }
        let keptShape = s.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
        let outShape = keep ? keptShape : s.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
        let outStrides = stridesOf(keptShape)
        let target = strideWalk(s, strides: (0..<s.count).map { axes.contains($0) ? 0 : outStrides[$0] }, offset: 0)
        let initial: Int64 = op == "ReduceMax" ? (isBool ? 0 : .min) : op == "ReduceMin" ? (isBool ? 1 : .max) : op == "ReduceProd" ? 1 : 0
        var out = [Int64](repeating: initial, count: keptShape.reduce(1, *))
        for i in 0..<target.count {
            let x = t.data[i], o = target[i]
            switch op {
            case "ReduceMax": out[o] = max(out[o], x)
            case "ReduceMin": out[o] = min(out[o], x)
            case "ReduceProd": out[o] = out[o] &* x
            default: out[o] = out[o] &+ x
            }
        }
        let result = IntTensor(shape: outShape, data: out)
        return isBool ? .bool(result) : .int64(result)
    }

    /// CumSum(x, axis): running sums along the axis, `exclusive` (each element's sum before it)
    /// and `reverse` (from the end), in float32 or int64. The gradient is the running sum of the
    /// output gradient in the other direction.
    func cumSum() throws -> Value {
        let v = try value(0)
        guard let a = try ints(1).data.first else { throw fail("axis must be a scalar") }
        let s = v.shape
        let ax = try axis(Int(a), rank: s.count)
        let exclusive = try int("exclusive", 0) == 1, reverse = try int("reverse", 0) == 1
        let outer = s[..<ax].reduce(1, *), n = s[ax], inner = s[(ax + 1)...].reduce(1, *)
        func scan<T: AdditiveArithmetic>(_ x: [T], reverse: Bool) -> [T] {
            var y = [T](repeating: .zero, count: x.count)
            for o in 0..<outer {
                for j in 0..<inner {
                    var acc = T.zero
                    for step in 0..<n {
                        let k = reverse ? n - 1 - step : step, i = (o * n + k) * inner + j
                        if exclusive { y[i] = acc; acc += x[i] } else { acc += x[i]; y[i] = acc }
                    }
                }
            }
            return y
        }
        switch v {
        case .int64(let t): return .int64(IntTensor(shape: s, data: scan(t.data, reverse: reverse)))
        case .float(let x):
            let y = Tensor(shape: s, scalars: scan(x.value.scalars, reverse: reverse))
            return emit(y, parents: [x]) { dy in
                let g = scan(dy.scalars, reverse: !reverse)
                x.accumulateGrad { d in for i in 0..<g.count { d[i] += g[i] } }
            }
        case .bool: throw fail("input must be float32 or int64")
        }
    }

    func argMax() throws -> Value {
        let x = try float(0)
        let s = x.value.shape
        let ax = try axis(try int("axis", 0), rank: s.count)
        let keep = try int("keepdims", 1) == 1
        let last = try int("select_last_index", 0) == 1
        let outer = s[..<ax].reduce(1, *), n = s[ax], inner = s[(ax + 1)...].reduce(1, *)
        var out = [Int64](repeating: 0, count: outer * inner)
        x.value.withUnsafeBufferPointer { xp in
            for o in 0..<outer {
                for j in 0..<inner {
                    var best = 0
                    var bv = -Float.infinity
                    for k in 0..<n {
                        let v = xp[(o * n + k) * inner + j]
                        if k == 0 || v > bv || (last && v == bv) || (v.isNaN && !bv.isNaN) { bv = v; best = k }
                    }
                    out[o * inner + j] = Int64(best)
                }
            }
        }
        var shape = s
        if keep { shape[ax] = 1 } else { shape.remove(at: ax) }
        return .int64(IntTensor(shape: shape, data: out))
    }
}
