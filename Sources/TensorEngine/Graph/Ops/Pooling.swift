import Kernels

// MaxPool, AveragePool and their global forms: forward and backward.
//
// Every reduction runs in increasing index order on one thread's share of planes, so results
// are bit-identical for any thread count.

extension OpContext {
    func pool() throws -> NodeOutputs {
        let x = try float(0)
        let sx = x.value.shape
        guard sx.count >= 3 else { throw fail("input \(sx) must be (N, C, spatial…)") }
        let global = node.opType.hasPrefix("Global")
        let isMax = node.opType.hasSuffix("MaxPool")
        let geo: WindowGeometry
        if let cached = graph.windows[index], cached.spatial.elementsEqual(sx[2...]) {
            // The rest of the window (kernel, strides, pads; or, global, the input size itself)
            // is the node's, so the same input size gives the same window.
            geo = cached.geometry
        } else {
            let spatial = Array(sx[2...])
            if global {
                let kq = spatial.reduce(1, *)
                geo = WindowGeometry(inSpatial: spatial, kernel: spatial, outSpatial: spatial.map { _ in 1 }, table: Array(0..<kq))
                graph.windows[index] = (spatial, geo)
            } else {
                guard let kernel = try ints("kernel_shape") else { throw fail("attribute kernel_shape is required") }
                guard kernel.count == spatial.count else { throw fail("kernel_shape \(kernel) does not fit input \(sx)") }
                geo = try window(inSpatial: spatial, kernel: kernel, ceil: try int("ceil_mode", 0) == 1)
            }
        }
        let includePad = try int("count_include_pad", 0) == 1
        let planes = sx[0] * sx[1], kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount
        let table = geo.table
        var y = outputBuffer(n: sx[0], c: sx[1], spatial: geo.outSpatial)   // every plane is filled below
        // The argmax (input offset per output) only serves the backward pass and the Indices
        // output; inference skips it.
        let needArgmax = isMax && ((tape != nil && x.requiresGrad) || node.outputs.count > 1)
        // A kept step's argmax: this run fills the same array, which its closure reads.
        let argmaxBox = needArgmax && node.outputs.count == 1 && tape != nil ? (reusable?.state as? IndexBox) ?? IndexBox() : nil
        var argmax = argmaxBox?.take() ?? []
        if needArgmax && argmax.count == planes * p {
            argmax.withUnsafeMutableBufferPointer { $0.update(repeating: -1) }
        } else if needArgmax {
            argmax = [Int](repeating: -1, count: planes * p)
        }
        var divisors = [Float](repeating: 0, count: isMax ? 0 : p)
        if !isMax {
            for pp in 0..<p {
                var c = 0
                for q in 0..<kq { let t = table[pp * kq + q]; if t >= 0 || (includePad && t == -1) { c += 1 } }
                divisors[pp] = Float(c)
            }
        }
        // Kernel offset by kernel offset over the window's runs, so every output still sees its
        // inputs in increasing q: max keeps the first of equal values and the first NaN, and an
        // average sums in increasing q, exactly as a per-output loop would.
        // Planes are independent, so they are split across threads.
        let workers = max(1, min(threads, planes, planes * p * kq / 32_768))
        // 2-D windows without padding go output row by output row (`pooledRows`). The others:
        // eight planes at a time when runs average under eight outputs and there are eight
        // planes to fill the lanes, else plane by plane, a vector per eight outputs and a masked
        // one for the rest. (Measured on LeNet-5 at batch 64 before `pooledRows` took its
        // windows: runs of 14, 540 → 395 µs plane by plane; runs of 5, 188 µs eight planes at a
        // time against 415 plane by plane, where a run's bookkeeping outweighs its one vector.)
        let shortRuns = geo.windowRuns.runs.count / 4 * 8 > kq * p && planes >= 8
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                argmax.withUnsafeMutableBufferPointer { argmax in
                divisors.withUnsafeBufferPointer { divisors in
                let xa = Int(bitPattern: xp.baseAddress), ya = Int(bitPattern: yp.baseAddress), aa = Int(bitPattern: argmax.baseAddress)
                parallelFor(workers, threads: workers) { worker in
                let xp = UnsafePointer<Float>(bitPattern: xa)!, yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
                let lo = planes * worker / workers, hi = planes * (worker + 1) / workers
                if !needArgmax, let affine = geo.affine, affine.colStep <= 2, geo.outSpatial[1] >= 4 {
                    pooledRows(xp, yp, planes: lo..<hi, inCount: inP, outSpatial: geo.outSpatial, affine: affine, isMax: isMax)
                    return
                }
                if !needArgmax && shortRuns {
                    // Runs shorter than a vector: eight planes at a time, output by output, one
                    // lane per plane; the same combine in the same q order.
                    table.withUnsafeBufferPointer { table in
                        var plane = lo
                        while plane < hi {
                            let lanes = min(8, hi - plane)
                            for pp in 0..<p {
                                var acc = SIMD8<Float>(repeating: isMax ? -.infinity : 0)
                                for q in 0..<kq {
                                    let t = table[pp * kq + q]
                                    guard t >= 0 else { continue }
                                    // Missing lanes (fewer than 8 planes left) repeat the last
                                    // plane: a fixed 8-lane gather, whose extra lanes are not stored.
                                    // (Inserting a variable number of lanes went through memory:
                                    // LeNet-5's pool1 at batch 1, 6 planes, took 14 µs.)
                                    var v = SIMD8<Float>(repeating: 0)
                                    if lanes == 8 {
                                        for j in 0..<8 { v[j] = xp[(plane + j) * inP + t] }
                                    } else {
                                        for j in 0..<8 { v[j] = xp[(plane + min(j, lanes - 1)) * inP + t] }
                                    }
                                    acc = isMax ? acc.replacing(with: v, where: (v .> acc) .| ((v .!= v) .& (acc .== acc))) : acc + v
                                }
                                for j in 0..<lanes { yp[(plane + j) * p + pp] = isMax ? acc[j] : acc[j] / divisors[pp] }
                            }
                            plane += lanes
                        }
                    }
                    return
                }
                for plane in lo..<hi {
                    let src = xp + plane * inP, dst = yp + plane * p
                    if isMax {
                        dst.update(repeating: -.infinity, count: p)
                        if needArgmax {
                            let at = UnsafeMutablePointer<Int>(bitPattern: aa)! + plane * p
                            geo.forEachRun { _, out, input, count, step in
                                for i in 0..<count {
                                    let v = src[input + i * step], o = out + i
                                    if at[o] < 0 || v > dst[o] || (v.isNaN && !dst[o].isNaN) { dst[o] = v; at[o] = input + i * step }
                                }
                            }
                        } else {
                            // Without the argmax, -inf as the start gives the same values: a
                            // first input of -inf leaves -inf, and a NaN replaces anything else.
                            geo.forEachRun { _, out, input, count, step in
                                // v wins when greater, or when it is the first NaN.
                                stridedRun(dst + out, src + input, count: count, step: step, available: inP - input, outAvailable: p - out) { cur, v in
                                    cur.replacing(with: v, where: (v .> cur) .| ((v .!= v) .& (cur .== cur)))
                                }
                            }
                        }
                    } else {
                        dst.update(repeating: 0, count: p)
                        geo.forEachRun { _, out, input, count, step in
                            stridedRun(dst + out, src + input, count: count, step: step, available: inP - input, outAvailable: p - out) { $0 + $1 }
                        }
                        for pp in 0..<p { dst[pp] /= divisors[pp] }
                    }
                }
                }
                }
                }
            }
        }
        // At inference, no backward closure (see `conv`). It captures copies of the arrays: a
        // variable that an escaping closure captures lives in a heap box, made on every call.
        // A kept step's closure reads the argmax from its box instead, which each run refills.
        if tape != nil && node.outputs.count == 1 {
            argmaxBox?.values = argmax
            if let kept = reuse(y) { return NodeOutputs(kept) }
            return NodeOutputs(emitKept(y, state: argmaxBox) { [divisors] dy in
                (argmaxBox?.values ?? []).withUnsafeBufferPointer { argmax in
                    Self.poolBackward(dy, into: x, planes: planes, p: p, inP: inP, kq: kq, isMax: isMax, argmax: argmax,
                                      divisors: divisors, table: table)
                }
            })
        }
        let out = tape == nil ? inferenceValue(y, requiresGrad: x.requiresGrad) : emit(y, parents: [x]) { [argmax, divisors] dy in
            argmax.withUnsafeBufferPointer { argmax in
                Self.poolBackward(dy, into: x, planes: planes, p: p, inP: inP, kq: kq, isMax: isMax, argmax: argmax,
                                  divisors: divisors, table: table)
            }
        }
        guard isMax, node.outputs.count > 1 else { return NodeOutputs(out) }
        // Indices into the flattened input; storage_order 1 numbers the spatial positions
        // column-major (the last spatial axis varies slowest).
        let columnMajor = try int("storage_order", 0) == 1
        let spatial = geo.inSpatial
        let inStrides = stridesOf(spatial)
        let colStrides = spatial.indices.map { d in spatial[..<d].reduce(1, *) }
        func spatialIndex(_ off: Int) -> Int {
            guard columnMajor else { return off }
            var rest = off, out = 0
            for d in spatial.indices { out += (rest / inStrides[d]) * colStrides[d]; rest %= inStrides[d] }
            return out
        }
        let indices = (0..<(planes * p)).map { i -> Int64 in Int64(argmax[i] < 0 ? -1 : (i / p) * inP + spatialIndex(argmax[i])) }
        return NodeOutputs(all: [out, .int64(IntTensor(shape: y.shape, data: indices))])
    }

    /// A pool's backward step: ∂loss/∂y to each max's input (`argmax`: its input offset per
    /// output, -1 for none), or shared evenly over each window's inputs (average).
    static func poolBackward(_ dy: Tensor, into x: Variable, planes: Int, p: Int, inP: Int, kq: Int, isMax: Bool,
                             argmax: UnsafeBufferPointer<Int>, divisors: [Float], table: [Int]) {
        dy.withUnsafeBufferPointer { dp in
            x.accumulateGrad { g in
                for plane in 0..<planes {
                    let dst = g + plane * inP
                    for pp in 0..<p {
                        let d = dp[plane * p + pp]
                        if isMax {
                            let at = argmax[plane * p + pp]
                            if at >= 0 { dst[at] += d }
                        } else {
                            let share = d / divisors[pp]
                            for q in 0..<kq { let t = table[pp * kq + q]; if t >= 0 { dst[t] += share } }
                        }
                    }
                }
            }
        }
    }

    /// 2-D pooling without padding, output row by output row: eight outputs of a row at a time
    /// in one vector, every kernel offset combined into it in increasing q (max: the greater
    /// value or the first NaN wins, from -inf; average: the sum from 0, then divided by the
    /// kernel's size, as every window is whole), then stored once. The same combine in the same
    /// order as the runs, so the same bits; but each output is loaded and stored once rather
    /// than once per kernel offset, and no load waits on an overlapping store.
    func pooledRows(_ xp: UnsafePointer<Float>, _ yp: UnsafeMutablePointer<Float>, planes: Range<Int>, inCount inP: Int,
                    outSpatial: [Int], affine: (rowStep: Int, colStep: Int, offsets: [Int]), isMax: Bool) {
        typealias V = SIMD8<Float>
        let (oh, ow) = (outSpatial[0], outSpatial[1]), p = oh * ow
        let kq = affine.offsets.count, colStep = affine.colStep
        let reach = (affine.offsets.max() ?? 0) + 8 * colStep
        let divisor = V(repeating: Float(kq))
        @inline(__always) func combine(_ acc: V, _ v: V) -> V {
            isMax ? acc.replacing(with: v, where: (v .> acc) .| ((v .!= v) .& (acc .== acc))) : acc + v
        }
        affine.offsets.withUnsafeBufferPointer { offsets in
            for plane in planes {
                let src = xp + plane * inP, dst = yp + plane * p
                for oy in 0..<oh {
                    var ox = 0
                    while ox < ow {
                        let n = min(8, ow - ox), base = oy * affine.rowStep + ox * colStep
                        var acc = V(repeating: isMax ? -.infinity : 0)
                        if base + reach <= inP {
                            // Lanes past n read later inputs of the plane; they are not kept.
                            @inline(__always) func input(_ q: Int) -> V {
                                let at = src + base + offsets[q]
                                return colStep == 1 ? UnsafeRawPointer(at).loadUnaligned(as: V.self)
                                    : UnsafeRawPointer(at).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                            }
                            if isMax {
                                // NOTE: the max keeps the first greatest value (or first NaN) of
                                // any bracketing that keeps q's order, so pairs are combined
                                // first: half the dependent steps (a 2×2 window's four were a
                                // chain of compare-and-blends, and the pool latency-bound). The
                                // -inf start is dropped: combining it with x₀ gives x₀'s bits.
                                var q = min(2, kq)
                                acc = kq > 1 ? combine(input(0), input(1)) : input(0)
                                while q + 1 < kq { acc = combine(acc, combine(input(q), input(q + 1))); q += 2 }
                                if q < kq { acc = combine(acc, input(q)) }
                            } else {
                                for q in 0..<kq { acc = combine(acc, input(q)) }
                            }
                        } else {
                            for q in 0..<kq {
                                var v = V(repeating: 0)
                                for j in 0..<n { v[j] = src[base + offsets[q] + j * colStep] }
                                acc = combine(acc, v)
                            }
                        }
                        if !isMax { acc = acc / divisor }
                        let out = oy * ow + ox
                        if out + 8 <= p {
                            // Lanes past n land on this plane's next outputs, written later.
                            UnsafeMutableRawPointer(dst + out).storeBytes(of: acc, as: V.self)
                        } else {
                            for j in 0..<n { dst[out + j] = acc[j] }
                        }
                        ox += 8
                    }
                }
            }
        }
    }

    /// d[i] = combine(d[i], s[i·step]) for i < count, lane-wise, eight outputs at a time: loaded
    /// as vectors for steps 1 and 2 (a pooling window's usual strides), gathered lane by lane
    /// otherwise. `available` is how many floats from s on may be read, `outAvailable` how many
    /// from d on belong to this plane (and so to this thread). Always vectors, never a
    /// compare-and-branch per value: which input wins a max is data, and the mispredicted
    /// branches cost a scalar loop 2.5 ns per value here.
    @inline(__always)
    func stridedRun(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, count: Int, step: Int, available: Int,
                    outAvailable: Int, _ combine: (SIMD8<Float>, SIMD8<Float>) -> SIMD8<Float>) {
        var i = 0
        if step == 1 {
            while i + 8 <= count {
                let v = UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<Float>.self)
                let cur = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(d + i).storeBytes(of: combine(cur, v), as: SIMD8<Float>.self)
                i += 8
            }
        } else if step == 2 {
            while i + 8 <= count && 2 * i + 16 <= available {
                let v = UnsafeRawPointer(s + 2 * i).loadUnaligned(as: SIMD16<Float>.self).evenHalf
                let cur = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(d + i).storeBytes(of: combine(cur, v), as: SIMD8<Float>.self)
                i += 8
            }
        }
        // A last part of fewer than eight: one vector whose lanes past the run keep d's values
        // (they are later outputs of the same plane, or values already written). Gathering it
        // lane by lane took most of LeNet-5's pooling (runs of 14 and 5).
        if i < count && i + 8 <= outAvailable && (step == 1 ? i + 8 <= available : step == 2 && 2 * i + 16 <= available) {
            let v = step == 1 ? UnsafeRawPointer(s + i).loadUnaligned(as: SIMD8<Float>.self)
                : UnsafeRawPointer(s + 2 * i).loadUnaligned(as: SIMD16<Float>.self).evenHalf
            let cur = UnsafeRawPointer(d + i).loadUnaligned(as: SIMD8<Float>.self)
            let past = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<Int32>(repeating: Int32(count - i))
            UnsafeMutableRawPointer(d + i).storeBytes(of: combine(cur, v).replacing(with: cur, where: past), as: SIMD8<Float>.self)
            return
        }
        while i < count {
            let n = min(8, count - i)
            var v = SIMD8<Float>(repeating: 0), cur = v
            for j in 0..<n { v[j] = s[(i + j) * step]; cur[j] = d[i + j] }
            let r = combine(cur, v)
            for j in 0..<n { d[i + j] = r[j] }
            i += n
        }
    }
}
