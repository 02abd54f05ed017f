// Ops that read or write elements at computed positions: GatherElements, GatherND and
// ScatterND. Each turns its indices into an index map over the data (negative indices count
// from the end, out-of-range ones are errors naming the index), so the gathers share the
// movement ops' `gatherElements` and its backward.

extension OpContext {
    /// An index along a dimension of size `n`, negative counting from the end.
    func position(_ i: Int64, size n: Int, what: String) throws -> Int {
        let p = i < 0 ? Int(i) + n : Int(i)
        guard p >= 0 && p < n else { throw fail("\(what) \(i) is out of range for a dimension of size \(n)") }
        return p
    }

    /// GatherElements(data, indices, axis): out[i…] = data[i… with i_axis = indices[i…]].
    func gatherElementsOp() throws -> Value {
        let data = try value(0), idx = try ints(1)
        let s = data.shape
        let ax = try axis(try int("axis", 0), rank: s.count)
        guard idx.shape.count == s.count else { throw fail("indices \(idx.shape) must have the rank of data \(s)") }
        let st = stridesOf(s)
        // Offset of every index position with its axis coordinate set to 0, then the index.
        let base = strideWalk(idx.shape, strides: (0..<s.count).map { $0 == ax ? 0 : st[$0] }, offset: 0)
        let map = try (0..<base.count).map { i in base[i] + (try position(idx.data[i], size: s[ax], what: "index")) * st[ax] }
        return gatherElements(data, map: map, shape: idx.shape)
    }

    /// The data offsets GatherND and ScatterND address: for indices (…, k) with `batchDims`
    /// leading batch dimensions, the offset of each addressed slice and the slice's size.
    func ndSlices(dataShape s: [Int], indices idx: IntTensor, batchDims b: Int) throws -> (offsets: [Int], slice: Int) {
        guard let k = idx.shape.last, idx.shape.count >= b + 1, b + k <= s.count, b >= 0 else {
            throw fail("indices \(idx.shape) do not address data \(s) with batch_dims \(b)")
        }
        guard Array(idx.shape[..<b]) == Array(s[..<b]) else { throw fail("the batch dimensions of indices \(idx.shape) and data \(s) differ") }
        let st = stridesOf(s)
        let slice = s[(b + k)...].reduce(1, *)
        let tuples = idx.shape.dropLast().reduce(1, *)
        let perBatch = tuples / max(s[..<b].reduce(1, *), 1)
        let batchSize = s[b...].reduce(1, *)
        var offsets: [Int] = []
        offsets.reserveCapacity(tuples)
        for t in 0..<tuples {
            var off = (perBatch > 0 ? t / perBatch : 0) * batchSize
            for j in 0..<k { off += try position(idx.data[t * k + j], size: s[b + j], what: "index") * st[b + j] }
            offsets.append(off)
        }
        return (offsets, slice)
    }

    /// GatherND(data, indices, batch_dims): the slices of data the last axis of indices names.
    func gatherND() throws -> Value {
        let data = try value(0), idx = try ints(1)
        let b = try int("batch_dims", 0)
        let (offsets, slice) = try ndSlices(dataShape: data.shape, indices: idx, batchDims: b)
        let k = idx.shape.last ?? 0
        let outShape = Array(idx.shape.dropLast()) + Array(data.shape[(b + k)...])
        _ = try checkedCount(outShape)
        var map: [Int] = []
        map.reserveCapacity(offsets.count * slice)
        for off in offsets { for j in 0..<slice { map.append(off + j) } }
        return gatherElements(data, map: map, shape: outShape)
    }

    /// ScatterND(data, indices, updates, reduction): data with the addressed slices replaced by
    /// (or, with `reduction` add/mul/max/min, combined with) updates, in index order. The
    /// gradient flows for reduction none (to the data not overwritten, and to the updates) and
    /// add (to both in full); the other reductions carry none.
    func scatterND() throws -> Value {
        let data = try value(0), idx = try ints(1), updates = try value(2)
        let reduction = try string("reduction", "none")
        guard ["none", "add", "mul", "max", "min"].contains(reduction) else { throw fail("reduction '\(reduction)' (allowed: none, add, mul, max, min)") }
        let (offsets, slice) = try ndSlices(dataShape: data.shape, indices: idx, batchDims: 0)
        guard updates.shape.reduce(1, *) == offsets.count * slice else {
            throw fail("updates \(updates.shape) do not fit \(offsets.count) slices of \(slice) values")
        }
        func combine<T: Comparable & Numeric>(_ old: T, _ new: T) -> T {
            switch reduction {
            case "add": return old + new
            case "mul": return old * new
            case "max": return max(old, new)
            case "min": return min(old, new)
            default: return new
            }
        }
        switch (data, updates) {
        case (.float(let d), .float(let u)):
            var out = d.value.scalars
            let us = u.value.scalars
            for (t, off) in offsets.enumerated() { for j in 0..<slice { out[off + j] = combine(out[off + j], us[t * slice + j]) } }
            let y = Tensor(shape: d.value.shape, scalars: out)
            guard reduction == "none" || reduction == "add" else { return .constant(y) }
            var overwritten = [Bool](repeating: false, count: out.count)
            if reduction == "none" { for off in offsets { for j in 0..<slice { overwritten[off + j] = true } } }
            return emit(y, parents: [d, u]) { dy in
                let g = dy.scalars
                if d.requiresGrad { d.accumulateGrad { gd in for i in 0..<g.count where !overwritten[i] { gd[i] += g[i] } } }
                if u.requiresGrad {
                    u.accumulateGrad { gu in for (t, off) in offsets.enumerated() { for j in 0..<slice { gu[t * slice + j] += g[off + j] } } }
                }
            }
        case (.int64(let d), .int64(let u)):
            var out = d.data
            for (t, off) in offsets.enumerated() { for j in 0..<slice { out[off + j] = combine(out[off + j], u.data[t * slice + j]) } }
            return .int64(IntTensor(shape: d.shape, data: out))
        default:
            throw fail("data and updates must have the same element type, found \(data.dtype.rawValue) and \(updates.dtype.rawValue)")
        }
    }
}
