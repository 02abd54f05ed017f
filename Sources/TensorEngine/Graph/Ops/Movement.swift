// Ops that move elements without arithmetic. Each computes, for every output element, the
// index of the input element it copies (or -1 for padding); one routine then applies the map
// to any element type, and its backward adds each output gradient into its source.

import Kernels

extension OpContext {
    /// Applies an index map to `v`: out[i] = v[map[i]], or `fill` where map[i] < 0.
    func gatherElements(_ v: Value, map: [Int], shape: [Int], fill: Double = 0) -> Value {
        switch v {
        case .int64(let t): return .int64(IntTensor(shape: shape, data: map.map { $0 < 0 ? Int64(fill) : t.data[$0] }))
        case .bool(let t): return .bool(IntTensor(shape: shape, data: map.map { $0 < 0 ? (fill != 0 ? 1 : 0) : t.data[$0] }))
        case .float(let x):
            var y = Tensor(zeros: shape)
            let f = Float(fill)
            x.value.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in for i in 0..<map.count { yp[i] = map[i] < 0 ? f : xp[map[i]] } }
            }
            return emit(y, parents: [x]) { dy in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { g in for i in 0..<map.count where map[i] >= 0 { g[map[i]] += dp[i] } }
                }
            }
        }
    }

    /// The same elements under another shape (Reshape, Flatten, Squeeze, Unsqueeze).
    func withShape(_ v: Value, _ shape: [Int]) -> Value {
        switch v {
        case .int64(var t): t.shape = shape; return .int64(t)
        case .bool(var t): t.shape = shape; return .bool(t)
        case .float(let x):
            guard tape != nil else { return .float(reshape(x, to: shape, tape: nil)) }
            // `reshape`, with the output Variable and backward step of the last run when reusable.
            let y = x.value.reshaped(shape)
            if let kept = reuse(y) { return kept }
            return emitKept(y, dropsValue: true) { dy in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { dx in for i in 0..<dp.count { dx[i] += dp[i] } }
                }
            }
        }
    }

    func reshapeLike() throws -> Value {
        let v = try value(0)
        let s = v.shape
        if let cached = graph.reshapes[index], cached.input == s { return withShape(v, cached.output) }
        let count = s.reduce(1, *)
        var out: [Int]
        switch node.opType {
        case "Reshape":
            let target = try ints(1).data.map { Int($0) }
            let allowZero = try int("allowzero", 0) == 1
            out = []
            var inferred: Int?
            for (i, d) in target.enumerated() {
                if d == -1 {
                    guard inferred == nil else { throw fail("shape \(target) has more than one -1") }
                    inferred = i; out.append(1)
                } else if d == 0 && !allowZero {
                    guard i < s.count else { throw fail("shape \(target) copies dimension \(i), the input has rank \(s.count)") }
                    out.append(s[i])
                } else if d < 0 {
                    throw fail("shape \(target) has a negative dimension")
                } else { out.append(d) }
            }
            if let k = inferred {
                let rest = out.enumerated().filter { $0.offset != k }.reduce(1) { $0 * $1.element }
                guard rest > 0, count % rest == 0 else { throw fail("cannot reshape \(s) to \(target)") }
                out[k] = count / rest
            }
        case "Flatten":
            let a = try int("axis", 1)
            let ax = a < 0 ? a + s.count : a
            guard ax >= 0 && ax <= s.count else { throw fail("axis \(a) is out of range for rank \(s.count)") }
            out = [s[..<ax].reduce(1, *), s[ax...].reduce(1, *)]
        case "Squeeze":
            let axes = try (graph.opset >= 13 ? optionalInts(1) : ints("axes")).map { try $0.map { try axis($0, rank: s.count) } }
            if let axes {
                for a in axes where s[a] != 1 { throw fail("cannot squeeze axis \(a) of size \(s[a]) (shape \(s))") }
                out = s.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
            } else {
                out = s.filter { $0 != 1 }
            }
        default: // Unsqueeze
            guard let raw = try (graph.opset >= 13 ? optionalInts(1) : ints("axes")) else { throw fail("needs axes") }
            let rank = s.count + raw.count
            let axes = try raw.map { try axis($0, rank: rank) }
            guard Set(axes).count == axes.count else { throw fail("axes \(raw) repeat an axis") }
            out = []
            var k = 0
            for i in 0..<rank {
                if axes.contains(i) { out.append(1) } else { out.append(s[k]); k += 1 }
            }
        }
        guard out.reduce(1, *) == count else { throw fail("cannot reshape \(s) (\(count) elements) to \(out)") }
        // The target (input 1, when there is one) must be the same on every run to be kept.
        if node.inputs.count < 2 || node.inputs[1].isEmpty || graph.initializer(node.inputs[1]) != nil {
            graph.reshapes[index] = (s, out)
        }
        return withShape(v, out)
    }

    func transpose() throws -> Value {
        let v = try value(0)
        let s = v.shape
        let perm = try ints("perm") ?? Array((0..<s.count).reversed())
        guard perm.count == s.count, Set(perm) == Set(0..<s.count) else { throw fail("perm \(perm) is not a permutation of 0..<\(s.count)") }
        let outShape = perm.map { s[$0] }
        if tape == nil, case .float(let x) = v {
            // The same move on fewer axes: size-1 axes dropped, axes that stay together merged
            // (a transformer's (1, 0, 2) at batch 1 moves nothing: the output shares the input).
            let (cs, cp) = simplifiedPermutation(shape: s, perm: perm)
            if cp.elementsEqual(cp.indices) { return withShape(v, outShape) }
            let inStrides = stridesOf(cs)
            let st = cp.map { inStrides[$0] }
            let moved = cp.map { cs[$0] }
            // NOTE: without the index map (an Int per element, then a gather): the trailing axes
            // the permutation keeps in place are copied as one block, the rest walked by strides
            // (MiniLM-L6 splits and merges heads with (0, 2, 1, 3): 8 % of its time).
            let rank = moved.count
            var k = rank
            while k > 0 && cp[k - 1] == k - 1 { k -= 1 }
            let inner = moved[k...].reduce(1, *)
            var y = outputBuffer(outShape)
            if y.count == 0 { return inferenceValue(y, requiresGrad: x.requiresGrad) }  // (no buffer to point into)
            if k == rank, rank >= 2, let q = cp.firstIndex(of: rank - 1) {
                // The input's contiguous axis lands on output axis q, not last (attention's
                // K transposed): each (q, last) plane transposed in blocks (`transposePlane`).
                // NOTE: one element at a time by strides, 10 % of ViT at batch 8; in scalar
                // 8 × 8 tiles, 1.6 ns an element (ViT's K at batch 1: 20 µs).
                let a = rank - 1, m = moved[q], l = moved[a], stepL = st[a]
                let outStrides = stridesOf(moved), stepQ = outStrides[q]
                let rest = (0..<rank).filter { $0 != a && $0 != q }
                let restShape = rest.map { moved[$0] }
                let inBases = strideWalk(restShape, strides: rest.map { st[$0] }, offset: 0)
                let outBases = strideWalk(restShape, strides: rest.map { outStrides[$0] }, offset: 0)
                // Threads take whole planes, or bands of rows when there are fewer planes.
                let workers = transposeWorkers(elements: y.count)
                let bands = inBases.count >= workers ? 1 : workers, units = inBases.count * bands
                x.value.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let xa = Int(bitPattern: xp.baseAddress!), ya = Int(bitPattern: yp.baseAddress!)
                        parallelFor(workers, threads: workers) { w in
                            for unit in (units * w / workers)..<(units * (w + 1) / workers) {
                                let plane = unit / bands, band = unit % bands
                                let i0 = l * band / bands, i1 = l * (band + 1) / bands
                                transposePlane(UnsafePointer<Float>(bitPattern: xa)! + inBases[plane] + i0 * stepL, rows: i1 - i0, cols: m,
                                               srcStride: stepL, to: UnsafeMutablePointer<Float>(bitPattern: ya)! + outBases[plane] + i0,
                                               dstStride: stepQ)
                            }
                        }
                    }
                }
                return inferenceValue(y, requiresGrad: x.requiresGrad)
            }
            // Blocks of `inner` contiguous floats; threads take equal runs of them.
            let outer = Array(moved[..<k]), outerStrides = Array(st[..<k])
            let blocks = outer.reduce(1, *)
            let workers = min(blocks, transposeWorkers(elements: y.count))
            x.value.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let xa = Int(bitPattern: xp.baseAddress!), ya = Int(bitPattern: yp.baseAddress!)
                    parallelFor(workers, threads: workers) { w in
                        let b0 = blocks * w / workers, b1 = blocks * (w + 1) / workers
                        guard b0 < b1 else { return }
                        let x = UnsafePointer<Float>(bitPattern: xa)!
                        var dst = UnsafeMutablePointer<Float>(bitPattern: ya)! + b0 * inner
                        forEachStrideOffset(outer, strides: outerStrides, offset: 0, elements: b0..<b1) { src in
                            dst.update(from: x + src, count: inner)
                            dst += inner
                        }
                    }
                }
            }
            return inferenceValue(y, requiresGrad: x.requiresGrad)
        }
        let inStrides = stridesOf(s)
        return gatherElements(v, map: strideWalk(outShape, strides: perm.map { inStrides[$0] }, offset: 0), shape: outShape)
    }

    /// Threads for a Transpose of `elements` floats: one per 32K (a copy smaller than that is
    /// done before a helper wakes).
    private func transposeWorkers(elements: Int) -> Int { max(1, min(threads, elements / 32_768)) }

    func concat() throws -> Value {
        let values = try (0..<inputs.count).map { try value($0) }
        guard let first = values.first else { throw fail("needs at least one input") }
        let rank = first.shape.count
        let ax = try axis(try int("axis", 0), rank: rank)
        for v in values {
            guard v.dtype == first.dtype else { throw fail("inputs mix \(first.dtype.rawValue) and \(v.dtype.rawValue)") }
            guard v.shape.count == rank, (0..<rank).allSatisfy({ $0 == ax || v.shape[$0] == first.shape[$0] }) else {
                throw fail("input shapes \(values.map(\.shape)) differ outside axis \(ax)")
            }
        }
        var outShape = first.shape
        outShape[ax] = values.reduce(0) { $0 + $1.shape[ax] }
        _ = try checkedCount(outShape)
        let outer = first.shape[..<ax].reduce(1, *)
        let inner = first.shape[(ax + 1)...].reduce(1, *)
        let rowOut = outShape[ax] * inner
        // Element i of input k goes to out[(i / rowK) * rowOut + start_k·inner + i % rowK].
        var starts: [Int] = [], s = 0
        for v in values { starts.append(s); s += v.shape[ax] }
        func place(_ k: Int, _ i: Int) -> Int {
            let rowK = values[k].shape[ax] * inner
            return (i / rowK) * rowOut + starts[k] * inner + i % rowK
        }
        switch first {
        case .int64, .bool:
            var data = [Int64](repeating: 0, count: outShape.reduce(1, *))
            for (k, v) in values.enumerated() {
                guard case .int64(let t) = v else {
                    if case .bool(let t) = v { for i in 0..<t.data.count { data[place(k, i)] = t.data[i] } }
                    continue
                }
                for i in 0..<t.data.count { data[place(k, i)] = t.data[i] }
            }
            let t = IntTensor(shape: outShape, data: data)
            return first.dtype == .bool ? .bool(t) : .int64(t)
        case .float:
            let vars = values.map { v -> Variable in if case .float(let x) = v { return x }; fatalError() }
            var y = outputBuffer(outShape)   // the inputs' rows fill every row
            y.withUnsafeMutableBufferPointer { yp in
                for (k, x) in vars.enumerated() {
                    let rowK = x.value.shape[ax] * inner
                    x.value.withUnsafeBufferPointer { xp in
                        for o in 0..<outer where rowK > 0 {
                            (yp.baseAddress! + o * rowOut + starts[k] * inner).update(from: xp.baseAddress! + o * rowK, count: rowK)
                        }
                    }
                }
            }
            return emit(y, parents: vars) { dy in
                dy.withUnsafeBufferPointer { dp in
                    for (k, x) in vars.enumerated() where x.requiresGrad {
                        let rowK = x.value.shape[ax] * inner
                        x.accumulateGrad { g in
                            for o in 0..<outer {
                                for i in 0..<rowK { g[o * rowK + i] += dp[o * rowOut + starts[k] * inner + i] }
                            }
                        }
                    }
                }
            }
        }
    }

    func slice() throws -> Value {
        let v = try value(0)
        let s = v.shape
        let starts: [Int], ends: [Int], axesRaw: [Int]?, steps: [Int]?
        if graph.opset >= 10 {
            starts = try ints(1).data.map { Int(clamping: $0) }
            ends = try ints(2).data.map { Int(clamping: $0) }
            axesRaw = try optionalInts(3)
            steps = try optionalInts(4)
        } else {
            starts = try ints("starts") ?? []; ends = try ints("ends") ?? []
            axesRaw = try ints("axes"); steps = nil
        }
        let axes = try (axesRaw ?? Array(0..<starts.count)).map { try axis($0, rank: s.count) }
        guard starts.count == ends.count, axes.count == starts.count, (steps?.count ?? starts.count) == starts.count else {
            throw fail("starts, ends, axes and steps must have the same length")
        }
        var begin = [Int](repeating: 0, count: s.count)
        var step = [Int](repeating: 1, count: s.count)
        var outShape = s
        for (k, a) in axes.enumerated() {
            let st = steps?[k] ?? 1
            guard st != 0 else { throw fail("step 0 on axis \(a)") }
            let dim = s[a]
            var b = starts[k], e = ends[k]
            if b < 0 { b += dim }
            if e < 0 { e += dim }
            if st > 0 {
                b = min(max(b, 0), dim); e = min(max(e, 0), dim)
                outShape[a] = e > b ? (e - b + st - 1) / st : 0
            } else {
                b = min(max(b, -1), dim - 1); e = min(max(e, -1), dim - 1)
                outShape[a] = b > e ? (b - e - st - 1) / (-st) : 0
            }
            begin[a] = b; step[a] = st
        }
        let inStrides = stridesOf(s)
        let offset = (0..<s.count).reduce(0) { $0 + begin[$1] * inStrides[$1] }
        let st = (0..<s.count).map { inStrides[$0] * step[$0] }
        return gatherElements(v, map: strideWalk(outShape, strides: st, offset: offset), shape: outShape)
    }

    func pad() throws -> Value {
        let v = try value(0)
        let s = v.shape
        let rank = s.count
        let mode = try string("mode", "constant")
        let padsRaw = try (graph.opset >= 11 ? optionalInts(1) : ints("pads")) ?? []
        var fill: Double = 0
        if graph.opset >= 11, has(2) {
            switch try value(2) {
            case .float(let c): fill = Double(c.value.scalars.first ?? 0)
            case .int64(let c), .bool(let c): fill = Double(c.data.first ?? 0)
            }
        } else if graph.opset < 11 { fill = Double(try float("value", 0)) }
        let axes = try (graph.opset >= 18 ? optionalInts(3) : nil).map { try $0.map { try axis($0, rank: rank) } } ?? Array(0..<rank)
        guard padsRaw.count == 2 * axes.count else { throw fail("pads has \(padsRaw.count) values, expected \(2 * axes.count)") }
        var before = [Int](repeating: 0, count: rank), after = before
        for (k, a) in axes.enumerated() { before[a] = padsRaw[k]; after[a] = padsRaw[k + axes.count] }
        let outShape = (0..<rank).map { s[$0] + before[$0] + after[$0] }
        guard outShape.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(padsRaw) remove more than the input \(s) has") }
        guard ["constant", "reflect", "edge", "wrap"].contains(mode) else { throw fail("mode '\(mode)' (allowed: constant, reflect, edge, wrap)") }
        if mode != "constant" {
            for a in 0..<rank where (before[a] > 0 || after[a] > 0) && s[a] == 0 { throw fail("mode \(mode) cannot pad an empty axis \(a)") }
        }
        let inStrides = stridesOf(s)
        let total = try checkedCount(outShape)
        var map = [Int](repeating: 0, count: total)
        var idx = [Int](repeating: 0, count: rank)
        for o in 0..<total {
            var src = 0, outside = false
            for d in 0..<rank {
                var i = idx[d] - before[d]
                let n = s[d]
                if i < 0 || i >= n {
                    switch mode {
                    case "constant": outside = true
                    case "edge": i = min(max(i, 0), n - 1)
                    case "wrap": i = ((i % n) + n) % n
                    default: // reflect
                        if n == 1 { i = 0 } else {
                            let period = 2 * (n - 1)
                            i = ((i % period) + period) % period
                            if i >= n { i = period - i }
                        }
                    }
                }
                src += i * inStrides[d]
            }
            map[o] = outside ? -1 : src
            var d = rank - 1
            while d >= 0 { idx[d] += 1; if idx[d] < outShape[d] { break }; idx[d] = 0; d -= 1 }
        }
        return gatherElements(v, map: map, shape: outShape, fill: fill)
    }

    func gather() throws -> Value {
        let v = try value(0)
        let indices = try ints(1)
        let s = v.shape
        let ax = try axis(try int("axis", 0), rank: s.count)
        let dim = s[ax]
        let outer = s[..<ax].reduce(1, *), inner = s[(ax + 1)...].reduce(1, *)
        let outShape = Array(s[..<ax]) + indices.shape + Array(s[(ax + 1)...])
        let total = try checkedCount(outShape)
        let idx = try indices.data.map { raw -> Int in
            let i = Int(raw) < 0 ? Int(raw) + dim : Int(raw)
            guard i >= 0 && i < dim else { throw fail("index \(raw) is out of range for axis \(ax) of size \(dim)") }
            return i
        }
        if tape == nil, case .float(let x) = v {
            // NOTE: at inference, each index's block copied whole, without the element map (a
            // ViT takes q, k and v from one tensor with three Gathers of 300K floats each), split
            // across threads; the map's array is not even reserved (800 KB a node).
            var y = outputBuffer(outShape)
            let blocks = outer * idx.count
            if total > 0 {
                x.value.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let src = xp.baseAddress!, dst = yp.baseAddress!
                        // (Threads take runs of output elements, which may start and end
                        // inside a block: a single index takes one block of it all.)
                        parallelRanges(blocks * inner, threads: threads, grain: 32_768, align: 16) { range in
                            var p = range.lowerBound
                            while p < range.upperBound {
                                let (b, offset) = p.quotientAndRemainder(dividingBy: inner)
                                let (o, k) = b.quotientAndRemainder(dividingBy: idx.count)
                                let n = min(inner - offset, range.upperBound - p)
                                (dst + p).update(from: src + (o * dim + idx[k]) * inner + offset, count: n)
                                p += n
                            }
                        }
                    }
                }
            }
            return inferenceValue(y, requiresGrad: x.requiresGrad)
        }
        var map: [Int] = []
        map.reserveCapacity(total)
        for o in 0..<outer { for i in idx { for j in 0..<inner { map.append((o * dim + i) * inner + j) } } }
        return gatherElements(v, map: map, shape: outShape)
    }

    /// Expand(input, shape): the input broadcast to the shape (NumPy rules; the shape may have
    /// ones where the input is larger, or fewer dimensions).
    func expand() throws -> Value {
        let v = try value(0)
        let target = try ints(1).data.map { Int($0) }
        guard target.allSatisfy({ $0 >= 0 }), let out = broadcastShape(v.shape, target) else {
            throw fail("input \(v.shape) does not broadcast to shape \(target)")
        }
        _ = try checkedCount(out)
        return gatherElements(v, map: broadcastSourceIndex(v.shape, to: out), shape: out)
    }

    /// Tile(input, repeats): the input repeated along each axis.
    func tile() throws -> Value {
        let v = try value(0)
        let s = v.shape
        let repeats = try ints(1).data.map { Int($0) }
        guard repeats.count == s.count, repeats.allSatisfy({ $0 >= 0 }) else { throw fail("repeats \(repeats) must be \(s.count) non-negative values") }
        let out = zip(s, repeats).map { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        let st = stridesOf(s), total = try checkedCount(out)
        var map = [Int](repeating: 0, count: total)
        var idx = [Int](repeating: 0, count: out.count)
        for o in 0..<total {
            var off = 0
            for d in 0..<out.count { off += (idx[d] % max(s[d], 1)) * st[d] }
            map[o] = off
            var d = out.count - 1
            while d >= 0 { idx[d] += 1; if idx[d] < out[d] { break }; idx[d] = 0; d -= 1 }
        }
        return gatherElements(v, map: map, shape: out)
    }

    /// Split(input, split?) along `axis` into the node's outputs: by the sizes of `split` (an
    /// input from opset 13, an attribute before), else into `num_outputs` (opset 18) or as many
    /// equal parts as there are outputs, the last one smaller when the axis does not divide.
    func split() throws -> [Value] {
        let v = try value(0)
        let s = v.shape
        let ax = try axis(try int("axis", 0), rank: s.count)
        let parts = node.outputs.count
        var sizes: [Int]
        if let given = try (graph.opset >= 13 ? optionalInts(1) : ints("split")) {
            sizes = given
        } else {
            let count = try int("num_outputs", parts)
            guard count == parts, count > 0 else { throw fail("num_outputs \(count) differs from the node's \(parts) outputs") }
            let each = (s[ax] + count - 1) / count
            sizes = (0..<count).map { min(each, max(s[ax] - $0 * each, 0)) }
        }
        guard sizes.count == parts, sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == s[ax] else {
            throw fail("split \(sizes) does not divide axis \(ax) of size \(s[ax]) into \(parts) outputs")
        }
        let outer = s[..<ax].reduce(1, *), inner = s[(ax + 1)...].reduce(1, *)
        var start = 0
        return sizes.map { size in
            var map: [Int] = []
            map.reserveCapacity(outer * size * inner)
            for o in 0..<outer { for k in start..<(start + size) { for j in 0..<inner { map.append((o * s[ax] + k) * inner + j) } } }
            var shape = s
            shape[ax] = size
            start += size
            return gatherElements(v, map: map, shape: shape)
        }
    }

    /// Trilu(input, k?): the upper (`upper` = 1) or lower triangle of the last two axes from
    /// diagonal k, zeros elsewhere.
    func trilu() throws -> Value {
        let v = try value(0)
        let s = v.shape
        guard s.count >= 2 else { throw fail("input \(s) must have at least two dimensions") }
        let k = try optionalInts(1)?.first ?? 0
        let upper = try int("upper", 1) == 1
        let rows = s[s.count - 2], cols = s[s.count - 1], total = s.reduce(1, *)
        let map = (0..<total).map { i -> Int in
            let r = (i / max(cols, 1)) % max(rows, 1), c = i % max(cols, 1)
            return (upper ? c - r >= k : c - r <= k) ? i : -1
        }
        return gatherElements(v, map: map, shape: s)
    }
}
