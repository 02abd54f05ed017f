import Kernels

// ReduceSum, ReduceMean, ReduceMax and ArgMax. Each output sums (or compares) its inputs in
// increasing index order on one thread, so results are bit-identical for any thread count.

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
        // Output index of every input element; accumulation runs in input order.
        let outStrides = stridesOf(keptShape)
        let st = (0..<s.count).map { axes.contains($0) ? 0 : outStrides[$0] }
        let target = strideWalk(s, strides: st, offset: 0)
        let outCount = keptShape.reduce(1, *)
        let n = s.reduce(1, *) / max(outCount, 1)
        var y = Tensor(zeros: outShape)
        let op = node.opType
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                if op == "ReduceMax" {
                    for i in 0..<outCount { yp[i] = -.infinity }
                    for i in 0..<target.count { yp[target[i]] = max(yp[target[i]], xp[i]) }
                } else {
                    for i in 0..<target.count { yp[target[i]] += xp[i] }
                    if op == "ReduceMean" {
                        let inv = n > 0 ? 1 / Float(n) : .nan
                        for i in 0..<outCount { yp[i] *= inv }
                    }
                }
            }
        }
        let yv = y
        return emit(y, parents: [x]) { dy in
            x.value.withUnsafeBufferPointer { xp in
                yv.withUnsafeBufferPointer { yp in
                    dy.withUnsafeBufferPointer { dp in
                        x.accumulateGrad { g in
                            let scale: Float = op == "ReduceMean" ? 1 / Float(max(n, 1)) : 1
                            if op == "ReduceMax" {
                                var taken = [Bool](repeating: false, count: outCount)
                                for i in 0..<target.count where !taken[target[i]] && xp[i] == yp[target[i]] {
                                    taken[target[i]] = true
                                    g[i] += dp[target[i]]
                                }
                            } else {
                                for i in 0..<target.count { g[i] += dp[target[i]] * scale }
                            }
                        }
                    }
                }
            }
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
