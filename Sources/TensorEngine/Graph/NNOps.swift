import Kernels

// Gemm, MatMul, Conv, pooling, normalization and Dropout.
//
// Accumulation order: products go through `gemm` (one FMA chain per output in increasing k,
// threads split M and N only); every other reduction here runs in increasing index order on
// one thread. So results are bit-identical for any thread count.

/// The window of a Conv or pool over the spatial dimensions: for every output position and
/// kernel offset, the input offset it reads, -1 inside the padding, -2 past the padded end
/// (only in ceil mode).
// NOTE: a class: a Conv or pool reads its node's cached geometry on every call, and as a
// struct of eight arrays each read retained and released all eight (7 % of the MNIST-1D CNN
// at batch 1, perf).
final class WindowGeometry {
    let inSpatial: [Int]
    let kernel: [Int]
    let outSpatial: [Int]
    let table: [Int]
    var kernelCount: Int { kernel.reduce(1, *) }
    var outCount: Int { outSpatial.reduce(1, *) }
    var inCount: Int { inSpatial.reduce(1, *) }
    /// The table as runs, kernel offset by kernel offset (q increasing): each run is four values
    /// in `runs`, (q, out, in, count, step) without q: output positions out + i (i < count) read
    /// input in + i·step at offset q; `runStart[q]` is the first run of offset q. `padded[q]`:
    /// some output position reads padding at q. A window over a row is one run per output row
    /// instead of one lookup per value.
    let runStart: [Int], runs: [Int], padded: [Bool]
    /// For a 2-D window without padding: output (oy, ox) at kernel offset q reads input
    /// oy·rowStep + ox·colStep + offsets[q]. Nil otherwise.
    let affine: (rowStep: Int, colStep: Int, offsets: [Int])?
    /// A Conv's choice of kernel over this window (`OpContext.directConvPads`) for a group count
    /// and reduction length, once worked out: the node's attributes do not change, and at
    /// batch 1 reading them (five dictionary lookups) was a visible part of a small Conv.
    var directConv: (group: Int, reduction: Int, pads: (Int, Int)?)?

    init(inSpatial: [Int], kernel: [Int], outSpatial: [Int], table: [Int]) {
        self.inSpatial = inSpatial
        self.kernel = kernel
        self.outSpatial = outSpatial
        self.table = table
        let kq = kernel.reduce(1, *), p = outSpatial.reduce(1, *)
        var start = [0], runs: [Int] = []
        var padded = [Bool](repeating: false, count: kq)
        for q in 0..<kq {
            var pp = 0
            while pp < p {
                let t = table[pp * kq + q]
                if t < 0 { padded[q] = true; pp += 1; continue }
                var len = 1, step = 1
                if pp + 1 < p, table[(pp + 1) * kq + q] > t {
                    step = table[(pp + 1) * kq + q] - t
                    while pp + len < p && table[(pp + len) * kq + q] == t + len * step { len += 1 }
                }
                runs += [pp, t, len, step]
                pp += len
            }
            start.append(runs.count / 4)
        }
        (runStart, self.runs, self.padded) = (start, runs, padded)
        affine = WindowGeometry.affineForm(outSpatial: outSpatial, kernelCount: kq, table: table)
        // Strided runs (stride > 1) copy value by value anyway; then `im2col` walks the table
        // offset by offset instead, without the runs' per-run cost and the padded rows' fills.
        // (A run is (out, in, count, step); runs of one value have step 1.)
        if Swift.stride(from: 3, to: runs.count, by: 4).contains(where: { runs[$0] != 1 }) {
            var byOffset = [Int32](repeating: -1, count: kq * p)
            for pp in 0..<p { for q in 0..<kq { byOffset[q * p + pp] = Int32(table[pp * kq + q]) } }
            tableByOffset = byOffset
        } else {
            tableByOffset = []
        }
    }

    /// For windows with strided runs: the table by kernel offset, input position of output pp
    /// at offset q at [q·P + pp] (−1 for padding). Empty otherwise.
    // NOTE: the MNIST-1D CNN's stride-2 convolutions spent 44 % of batch-64 inference in
    // im2col (perf), most of it per run (about ten values each) and in zero fills.
    let tableByOffset: [Int32]

    static func affineForm(outSpatial: [Int], kernelCount kq: Int, table: [Int]) -> (rowStep: Int, colStep: Int, offsets: [Int])? {
        guard outSpatial.count == 2, outSpatial[0] > 0, outSpatial[1] > 0, kq > 0 else { return nil }
        let (oh, ow) = (outSpatial[0], outSpatial[1])
        let offsets = Array(table[0..<kq])
        let colStep = ow > 1 ? table[kq] - table[0] : 1, rowStep = oh > 1 ? table[ow * kq] - table[0] : 0
        guard colStep > 0, rowStep >= 0, offsets.allSatisfy({ $0 >= 0 }) else { return nil }
        for oy in 0..<oh {
            for ox in 0..<ow {
                let base = oy * rowStep + ox * colStep, at = (oy * ow + ox) * kq
                for q in 0..<kq where table[at + q] != base + offsets[q] { return nil }
            }
        }
        return (rowStep, colStep, offsets)
    }

    /// Calls `body(q, out, in, count, step)` for every run, kernel offset by kernel offset, each
    /// offset's runs in increasing output position.
    @inline(__always)
    func forEachRun(_ body: (_ q: Int, _ out: Int, _ input: Int, _ count: Int, _ step: Int) -> Void) {
        runStart.withUnsafeBufferPointer { start in
            runs.withUnsafeBufferPointer { runs in
                for q in 0..<(start.count - 1) {
                    var r = start[q] * 4
                    let end = start[q + 1] * 4
                    while r < end {
                        body(q, runs[r], runs[r + 1], runs[r + 2], runs[r + 3])
                        r += 4
                    }
                }
            }
        }
    }

    func im2col(_ src: UnsafePointer<Float>, channels: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
        let kq = kernelCount, p = outCount, inP = inCount
        if !tableByOffset.isEmpty {
            tableByOffset.withUnsafeBufferPointer { t in
                for c in 0..<channels {
                    let plane = src + c * inP
                    for q in 0..<kq {
                        let d = cols + (c * kq + q) * ld, row = t.baseAddress! + q * p
                        for pp in 0..<p {
                            let i = Int(row[pp])
                            d[pp] = i >= 0 ? plane[i] : 0
                        }
                    }
                }
            }
            return
        }
        for c in 0..<channels {
            let plane = src + c * inP
            for q in 0..<kq where padded[q] { (cols + (c * kq + q) * ld).update(repeating: 0, count: p) }
            forEachRun { q, out, input, count, step in
                    let d = cols + (c * kq + q) * ld + out, s = plane + input
                    if step == 1 {
                        // Runs are rows of a few dozen values: the vectorizer's prologue and
                        // epilogue cost more than `copyFloats`' overlapping last vector.
                        copyFloats(d, s, count: count)
                    } else {
                        for i in 0..<count { d[i] = s[i * step] }
                    }
            }
        }
    }

    /// The adjoint of `im2col` (with ld = P): dst[c·inCount + table[pp·kq + q]] +=
    /// cols[(c·kq + q)·P + pp], in increasing (c, q, pp), the order of the per-value loop (each
    /// input receives at most one value per q, so its sum runs in increasing q either way).
    func col2imAdd(_ cols: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let kq = kernelCount, p = outCount, inP = inCount
        for c in 0..<channels {
            let plane = dst + c * inP
            forEachRun { q, out, input, count, step in
                let s = cols + (c * kq + q) * p + out, d = plane + input
                for i in 0..<count { d[i * step] += s[i] }
            }
        }
    }
}

extension OpContext {
    func window(inSpatial: [Int], kernel: [Int], ceil: Bool) throws -> WindowGeometry {
        if let cached = graph.windows[index], cached.spatial == inSpatial, cached.geometry.kernel == kernel { return cached.geometry }
        let geometry = try computeWindow(inSpatial: inSpatial, kernel: kernel, ceil: ceil)
        graph.windows[index] = (inSpatial, geometry)
        return geometry
    }

    func computeWindow(inSpatial: [Int], kernel: [Int], ceil: Bool) throws -> WindowGeometry {
        let d = inSpatial.count
        let strides = try ints("strides") ?? [Int](repeating: 1, count: d)
        let dilations = try ints("dilations") ?? [Int](repeating: 1, count: d)
        guard strides.count == d, dilations.count == d, kernel.count == d else {
            throw fail("kernel \(kernel), strides \(strides) and dilations \(dilations) must each have \(d) values")
        }
        guard strides.allSatisfy({ $0 > 0 }), dilations.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }) else {
            throw fail("kernel, strides and dilations must be positive")
        }
        let autoPad = try string("auto_pad", "NOTSET")
        var begin = [Int](repeating: 0, count: d), end = begin, out = begin
        for i in 0..<d {
            let eff = (kernel[i] - 1) * dilations[i] + 1
            switch autoPad {
            case "NOTSET":
                let pads = try ints("pads") ?? [Int](repeating: 0, count: 2 * d)
                guard pads.count == 2 * d, pads.allSatisfy({ $0 >= 0 }) else { throw fail("pads \(pads) must have \(2 * d) non-negative values") }
                begin[i] = pads[i]; end[i] = pads[i + d]
                let span = inSpatial[i] + begin[i] + end[i] - eff
                guard span >= 0 else { throw fail("kernel \(kernel) (dilated) is larger than the padded input \(inSpatial)") }
                if ceil {
                    out[i] = (span + strides[i] - 1) / strides[i] + 1
                    // The last window must start inside the input or the leading padding.
                    if (out[i] - 1) * strides[i] >= inSpatial[i] + begin[i] { out[i] -= 1 }
                } else {
                    out[i] = span / strides[i] + 1
                }
            case "VALID":
                guard inSpatial[i] >= eff else { throw fail("kernel \(kernel) is larger than the input \(inSpatial)") }
                out[i] = (inSpatial[i] - eff) / strides[i] + 1
            case "SAME_UPPER", "SAME_LOWER":
                out[i] = (inSpatial[i] + strides[i] - 1) / strides[i]
                let total = max(0, (out[i] - 1) * strides[i] + eff - inSpatial[i])
                begin[i] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
                end[i] = total - begin[i]
            default:
                throw fail("auto_pad '\(autoPad)' (allowed: NOTSET, VALID, SAME_UPPER, SAME_LOWER)")
            }
        }
        let kCount = kernel.reduce(1, *), oCount = out.reduce(1, *)
        var table = [Int](repeating: 0, count: oCount * kCount)
        let inStrides = stridesOf(inSpatial)
        var o = [Int](repeating: 0, count: d)
        var q = [Int](repeating: 0, count: d)
        for p in 0..<oCount {
            for i in 0..<d { q[i] = 0 }
            for kq in 0..<kCount {
                var off = 0, code = 0
                for i in 0..<d {
                    let pos = o[i] * strides[i] - begin[i] + q[i] * dilations[i]
                    if pos < 0 || pos >= inSpatial[i] {
                        code = min(code, pos >= inSpatial[i] + end[i] ? -2 : -1)
                    } else {
                        off += pos * inStrides[i]
                    }
                }
                table[p * kCount + kq] = code < 0 ? code : off
                var i = d - 1
                while i >= 0 { q[i] += 1; if q[i] < kernel[i] { break }; q[i] = 0; i -= 1 }
            }
            var i = d - 1
            while i >= 0 { o[i] += 1; if o[i] < out[i] { break }; o[i] = 0; i -= 1 }
        }
        return WindowGeometry(inSpatial: inSpatial, kernel: kernel, outSpatial: out, table: table)
    }

    // MARK: Gemm and MatMul

    func gemmOp() throws -> Value {
        if let cache = graph.linearCaches[index] {
            let x = try float(0), w = try float(1)
            let b = has(2) ? try float(2) : nil
            let s = x.value.shape
            guard s.count == 2, s[1] == w.value.shape[1] else {
                throw fail("input of shape \(s) does not fit the weight \(w.value.shape) (transB = 1)")
            }
            if tape == nil {
                return graph.linearInference(node: index, x: x, w: w, bias: b, cache: cache, threads: threads, relu: fuseRelu)
            }
            // `linear`, with the output and backward step of the last run when reusable.
            var y = outputBuffer(rows: s[0], cols: w.value.shape[0])
            linearForward(x.value, w.value, b?.value, into: &y, threads: threads)
            if let kept = reuse(y) { return kept }
            let (batch, inF, outF, nThreads) = (s[0], s[1], w.value.shape[0], threads)
            return emitKept(y) { dy in
                linearBackward(x: x, weight: w, bias: b, dy: dy, batch: batch, inF: inF, outF: outF, threads: nThreads)
            }
        }
        let a = try float(0), b = try float(1)
        let transA = try int("transA", 0) == 1, transB = try int("transB", 0) == 1
        let alpha = try float("alpha", 1), beta = try float("beta", 1)
        let sa = a.value.shape, sb = b.value.shape
        guard sa.count == 2, sb.count == 2 else { throw fail("A \(sa) and B \(sb) must be 2-D") }
        let m = transA ? sa[1] : sa[0], k = transA ? sa[0] : sa[1]
        let kb = transB ? sb[1] : sb[0], n = transB ? sb[0] : sb[1]
        guard k == kb else { throw fail("A \(sa) (transA \(transA ? 1 : 0)) and B \(sb) (transB \(transB ? 1 : 0)) do not multiply") }
        let c = has(2) ? try float(2) : nil
        var cIndex: [Int] = []
        if let c {
            guard let bs = broadcastShape(c.value.shape, [m, n]), bs == [m, n] else { throw fail("C \(c.value.shape) does not broadcast to [\(m), \(n)]") }
            cIndex = broadcastSourceIndex(c.value.shape, to: [m, n])
        }
        var y = outputBuffer(rows: m, cols: n)   // gemm writes every element
        a.value.withUnsafeBufferPointer { ap in
            b.value.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    gemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: sa[1], transposeA: transA,
                         b: bp.baseAddress!, ldb: sb[1], transposeB: transB,
                         c: yp.baseAddress!, ldc: n, accumulate: false, threads: threads)
                    if alpha != 1 { for i in 0..<yp.count { yp[i] *= alpha } }
                    if let c {
                        c.value.withUnsafeBufferPointer { cp in for i in 0..<yp.count { yp[i] += beta * cp[cIndex[i]] } }
                    }
                    if fuseRelu { reluForward(yp.baseAddress!, count: yp.count, out: yp.baseAddress!) }
                }
            }
        }
        if let kept = reuse(y) { return kept }
        let nThreads = self.threads
        return emitKept(y) { dy in
            dy.withUnsafeBufferPointer { dp in
                if a.requiresGrad {
                    // d(opA) = alpha · dY · opBᵀ  (m × k), added to A in its stored layout.
                    var t = [Float](repeating: 0, count: m * k)
                    b.value.withUnsafeBufferPointer { bp in
                        gemm(m: m, n: k, k: n, a: dp.baseAddress!, lda: n, transposeA: false,
                             b: bp.baseAddress!, ldb: sb[1], transposeB: !transB,
                             c: &t, ldc: k, accumulate: false, threads: nThreads)
                    }
                    a.accumulateGrad { g in
                        for i in 0..<m { for j in 0..<k { g[transA ? j * m + i : i * k + j] += alpha * t[i * k + j] } }
                    }
                }
                if b.requiresGrad {
                    // d(opB) = alpha · opAᵀ · dY  (k × n).
                    var t = [Float](repeating: 0, count: k * n)
                    a.value.withUnsafeBufferPointer { ap in
                        gemm(m: k, n: n, k: m, a: ap.baseAddress!, lda: sa[1], transposeA: !transA,
                             b: dp.baseAddress!, ldb: n, transposeB: false,
                             c: &t, ldc: n, accumulate: false, threads: nThreads)
                    }
                    b.accumulateGrad { g in
                        for i in 0..<k { for j in 0..<n { g[transB ? j * k + i : i * n + j] += alpha * t[i * n + j] } }
                    }
                }
                if let c, c.requiresGrad {
                    c.accumulateGrad { g in for i in 0..<(m * n) { g[cIndex[i]] += beta * dp[i] } }
                }
            }
        }
    }

    func matMul() throws -> Value {
        let a = try float(0), b = try float(1)
        var sa = a.value.shape, sb = b.value.shape
        guard !sa.isEmpty, !sb.isEmpty else { throw fail("inputs must have at least one dimension") }
        let aVector = sa.count == 1, bVector = sb.count == 1
        if aVector { sa = [1] + sa }
        if bVector { sb = sb + [1] }
        let m = sa[sa.count - 2], k = sa[sa.count - 1], kb = sb[sb.count - 2], n = sb[sb.count - 1]
        guard k == kb else { throw fail("shapes \(a.value.shape) and \(b.value.shape) do not multiply") }
        let batchA = Array(sa.dropLast(2)), batchB = Array(sb.dropLast(2))
        guard let batch = broadcastShape(batchA, batchB) else { throw fail("batch dimensions \(batchA) and \(batchB) do not broadcast") }
        let ia = broadcastSourceIndex(batchA, to: batch), ib = broadcastSourceIndex(batchB, to: batch)
        let count = batch.reduce(1, *)
        var outShape = batch + [m, n]
        if aVector { outShape.remove(at: outShape.count - 2) }
        if bVector { outShape.removeLast() }
        var y = Tensor(zeros: outShape)
        a.value.withUnsafeBufferPointer { ap in
            b.value.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    for t in 0..<count {
                        gemm(m: m, n: n, k: k, a: ap.baseAddress! + ia[t] * m * k, lda: k, transposeA: false,
                             b: bp.baseAddress! + ib[t] * k * n, ldb: n, transposeB: false,
                             c: yp.baseAddress! + t * m * n, ldc: n, accumulate: false, threads: threads)
                    }
                }
            }
        }
        let nThreads = self.threads
        return emit(y, parents: [a, b]) { dy in
            dy.withUnsafeBufferPointer { dp in
                for t in 0..<count {
                    if a.requiresGrad {
                        b.value.withUnsafeBufferPointer { bp in
                            a.accumulateGrad { g in
                                gemm(m: m, n: k, k: n, a: dp.baseAddress! + t * m * n, lda: n, transposeA: false,
                                     b: bp.baseAddress! + ib[t] * k * n, ldb: n, transposeB: true,
                                     c: g + ia[t] * m * k, ldc: k, accumulate: true, threads: nThreads)
                            }
                        }
                    }
                    if b.requiresGrad {
                        a.value.withUnsafeBufferPointer { ap in
                            b.accumulateGrad { g in
                                gemm(m: k, n: n, k: m, a: ap.baseAddress! + ia[t] * m * k, lda: k, transposeA: true,
                                     b: dp.baseAddress! + t * m * n, ldb: n, transposeB: false,
                                     c: g + ib[t] * k * n, ldc: n, accumulate: true, threads: nThreads)
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: Conv

    /// The top and left padding when this Conv takes the direct kernel (`conv2dDirect`): 2-D,
    /// one group, stride and dilation 1, explicit pads, and either a reduction (input channels
    /// × kernel) of at most 32 and at least 8 output columns, or, with AVX-512, rows of at most
    /// 16 outputs (one vector each) and a reduction of at most 256. Else nil (im2col + GEMM).
    /// Both paths give the same bits, so the choice may depend on the CPU.
    // NOTE: LeNet-5's conv1 (1 channel, 5×5, pads 2) at batch 64 took 560–680 µs through
    // im2col + GEMM (a 6-row GEMM with K = 25 fills neither its tiles nor its pipeline).
    // LeNet-5's conv2 (6 channels, 5×5, 10 columns), interleaved three times with im2col +
    // GEMM: 609–703 → 470–535 µs at batch 64, 12.9–15.3 → 10.9–11.0 µs at batch 1.
    func directConvPads(_ geo: WindowGeometry, group: Int, reduction: Int) throws -> (Int, Int)? {
        if let known = geo.directConv, known.group == group, known.reduction == reduction { return known.pads }
        let outSpatial = geo.outSpatial
        let narrowRows = KernelISA.detected == .avx512 && outSpatial.count == 2 && outSpatial[1] <= 16 && reduction <= 256
        var pads: (Int, Int)? = nil
        if geo.inSpatial.count == 2, group == 1, (reduction <= 32 && outSpatial[1] >= 8) || narrowRows,
           try string("auto_pad", "NOTSET") == "NOTSET",
           (try ints("strides") ?? [1, 1]) == [1, 1], (try ints("dilations") ?? [1, 1]) == [1, 1] {
            let p = try ints("pads") ?? [0, 0, 0, 0]
            if p.count == 4 { pads = (p[0], p[1]) }
        }
        geo.directConv = (group, reduction, pads)
        return pads
    }

    /// The direct kernel over the samples, split across threads, then the bias.
    func convDirect(x: Tensor, weight: Variable, bias: Tensor?, into y: inout Tensor, cin: Int, cout: Int, spatial: [Int], kernel: [Int],
                    outSpatial: [Int], padTop: Int, padLeft: Int) {
        let batch = x.shape[0], (ih, iw) = (spatial[0], spatial[1]), (kh, kw) = (kernel[0], kernel[1]), (oh, ow) = (outSpatial[0], outSpatial[1])
        let scratchSize = conv2dDirectScratch(cin: cin, kh: kh, kw: kw, oh: oh, ow: ow)
        let weightsSize = conv2dDirectPackedWeights(cin: cin, cout: cout, kh: kh, kw: kw)
        // NOTE: one sample is about cout·oh·ow·cin·kh·kw multiply-adds; 256K pay for a helper.
        let workers = max(1, min(threads, batch, batch * cout * oh * ow * cin * kh * kw / 262_144))
        // One padded input per worker.
        if graph.scratchColumns[index].count < max(1, workers * scratchSize) {
            graph.scratchColumns[index] = [Float](repeating: 0, count: max(1, workers * scratchSize))
        }
        // NOTE: packing LeNet-5's conv2 weights (2,400 values, eight channels side by side) was
        // 8 % of its batch-1 inference (perf); they are packed again only when they change.
        if graph.packedConvWeights[index].map({ $0.weight !== weight || $0.version != weight.version }) ?? true {
            let packed = weight.value.withUnsafeBufferPointer { wp in
                [Float](unsafeUninitializedCapacity: weightsSize) { buffer, initialized in
                    conv2dDirectPackWeights(wp.baseAddress!, cin: cin, cout: cout, kh: kh, kw: kw, into: buffer.baseAddress!)
                    initialized = weightsSize
                }
            }
            graph.packedConvWeights[index] = (weight, weight.version, packed)
        }
        let packedWeights = graph.packedConvWeights[index]!.packed
        let graph = self.graph, index = self.index
        let biasValues = bias?.scalars
        let inSize = cin * ih * iw, outSize = cout * oh * ow, p = oh * ow
        x.withUnsafeBufferPointer { xp in
            packedWeights.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    graph.scratchColumns[index].withUnsafeMutableBufferPointer { sp in
                        let xa = Int(bitPattern: xp.baseAddress!), ya = Int(bitPattern: yp.baseAddress!)
                        let wa = Int(bitPattern: wp.baseAddress!), sa = Int(bitPattern: sp.baseAddress!)
                        parallelFor(workers, threads: workers) { worker in
                            let xp = UnsafePointer<Float>(bitPattern: xa)!, yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
                            let packed = UnsafePointer<Float>(bitPattern: wa)!
                            let scratch = UnsafeMutablePointer<Float>(bitPattern: sa)! + worker * scratchSize
                            for n in (batch * worker / workers)..<(batch * (worker + 1) / workers) {
                                let out = yp + n * outSize
                                conv2dDirect(x: xp + n * inSize, cin: cin, ih: ih, iw: iw, packedWeights: packed, cout: cout, kh: kh, kw: kw,
                                             padTop: padTop, padLeft: padLeft, oh: oh, ow: ow, y: out, scratch: scratch)
                                if let biasValues {
                                    for m in 0..<cout {
                                        let row = out + m * p, bm = biasValues[m]
                                        for pp in 0..<p { row[pp] += bm }
                                    }
                                }
                                if fuseRelu { reluForward(out, count: outSize, out: out) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Inference of a one-group Conv as Yᵀ (samples·P × Cout) = rows (samples·P × K) · Wᵀ,
    /// where row (n, p) holds the window of output position p of sample n (zeros for padding),
    /// and Wᵀ is packed once per weight version. Each output is one FMA chain over K = (c, q)
    /// in increasing order, then the bias: the im2col path's chain with the operands of each
    /// product swapped, which gives the same bits. Threads split the rows.
    // NOTE: for convolutions whose im2col product is narrow (a batch of one, a few output
    // positions), such as cnn_mnist1d's at batch 1 (Cout 25, P 19, 10 and 5): there the
    // 8×32-tiled GEMM ran 25 rows of weights against 5–19 columns, and packed the weights on
    // every call.
    func convRows(x: Tensor, weight: Variable, bias: Tensor?, into y: inout Tensor, geo: WindowGeometry, cin: Int, cout: Int) {
        let batch = x.shape[0], kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount, kk = cin * kq
        let m = batch * p
        if graph.convRowsWeights[index].map({ $0.weight !== weight || $0.version != weight.version }) ?? true {
            let packed = weight.value.withUnsafeBufferPointer { PackedB(b: $0.baseAddress!, ldb: kk, transposeB: true, k: kk, n: cout) }
            graph.convRowsWeights[index] = (weight, weight.version, packed)
        }
        let packed = graph.convRowsWeights[index]!.packed
        if graph.scratchColumns[index].count < m * (kk + cout) {
            graph.scratchColumns[index] = [Float](repeating: 0, count: m * (kk + cout))
        }
        let table = geo.table
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                graph.scratchColumns[index].withUnsafeMutableBufferPointer { sp in
                    let rows = sp.baseAddress!, yt = rows + m * kk
                    table.withUnsafeBufferPointer { tp in
                        for n in 0..<batch {
                            for pp in 0..<p {
                                let row = rows + (n * p + pp) * kk, window = tp.baseAddress! + pp * kq
                                for c in 0..<cin {
                                    let plane = xp.baseAddress! + (n * cin + c) * inP, dst = row + c * kq
                                    for q in 0..<kq {
                                        let t = window[q]
                                        dst[q] = t >= 0 ? plane[t] : 0
                                    }
                                }
                            }
                        }
                    }
                    gemm(m: m, a: rows, lda: kk, transposeA: false, packed: packed, c: yt, ldc: cout, accumulate: false, threads: threads)
                    // Yᵀ back to (n, Cout, P), plus the bias.
                    let biasValues = bias?.scalars
                    for n in 0..<batch {
                        for o in 0..<cout {
                            let out = yp.baseAddress! + (n * cout + o) * p, src = yt + n * p * cout + o
                            if let biasValues {
                                let bo = biasValues[o]
                                for pp in 0..<p { out[pp] = src[pp * cout] + bo }
                            } else {
                                for pp in 0..<p { out[pp] = src[pp * cout] }
                            }
                        }
                    }
                    if fuseRelu { reluForward(yp.baseAddress!, count: batch * cout * p, out: yp.baseAddress!) }
                }
            }
        }
    }

    /// The im2col path's layout: whether it computes over full input rows (`wide`, see `conv`),
    /// the columns per sample, and the samples per chunk.
    func im2colChunks(geo: WindowGeometry, batch: Int) -> (wide: Bool, perSample: Int, samples: Int) {
        let iw = geo.inSpatial.last ?? 1, ow = geo.outSpatial.last ?? 1
        let wide = geo.affine.map { $0.colStep == 1 && $0.rowStep == iw && ow < iw } ?? false
        let perSample = wide ? (geo.outSpatial[0] - 1) * iw + ow : geo.outCount
        return (wide, perSample, max(1, min(batch, (wide ? 512 : 256) / perSample)))
    }

    /// Whether `convRows` suits this Conv better than the im2col path: when the latter's
    /// product (rows of weights against a chunk of columns) is narrower than one 32-wide tile,
    /// and the rows path runs fewer 8×32 GEMM tiles (both run the same reduction per tile).
    // NOTE: a plain tile count also chose the rows path for cnn_mnist1d's conv1 and conv2 at
    // batch 64 (152 against 160 and 80 against 96 tiles), where per-node profiles measured it
    // slower (57–75 against 48–49 µs, 124–152 against 110–122): it makes two more passes over
    // its rows (packing them, transposing the result) that the tile count leaves out.
    func convRowsIsNarrower(geo: WindowGeometry, batch: Int, cout: Int) -> Bool {
        let (_, perSample, nb) = im2colChunks(geo: geo, batch: batch)
        guard nb * perSample < 32 else { return false }
        let chunks = (batch + nb - 1) / nb
        return ((batch * geo.outCount + 7) / 8) * ((cout + 31) / 32) < chunks * ((cout + 7) / 8)
    }

    func conv() throws -> Value {
        let x = try float(0), w = try float(1)
        let b = has(2) ? try float(2) : nil
        let sx = x.value.shape, sw = w.value.shape
        guard sx.count >= 3, sw.count == sx.count else { throw fail("input \(sx) and weight \(sw) must have the same rank ≥ 3") }
        let group = try int("group", 1)
        let batch = sx[0], cin = sx[1], cout = sw[0]
        guard group > 0, cin % group == 0, cout % group == 0, sw[1] == cin / group else {
            throw fail("weight \(sw) does not fit input \(sx) with group \(group)")
        }
        if let b, b.value.shape.count != 1 || b.value.shape[0] != cout { throw fail("bias \(b.value.shape) must be [\(cout)]") }
        // NOTE: the window this node computed last time, when the input and kernel sizes are the
        // same, without building them as arrays (it checked kernel_shape then); at batch 1 the
        // arrays and attribute lookups were a visible part of a small Conv.
        let geo: WindowGeometry
        if let cached = graph.windows[index], cached.spatial.elementsEqual(sx[2...]), cached.geometry.kernel.elementsEqual(sw[2...]) {
            geo = cached.geometry
        } else {
            let kernel = Array(sw[2...])
            if let ks = try ints("kernel_shape"), ks != kernel { throw fail("kernel_shape \(ks) differs from the weight's \(kernel)") }
            geo = try window(inSpatial: Array(sx[2...]), kernel: kernel, ceil: false)
        }
        let inSpatial = geo.inSpatial, kernel = geo.kernel
        let cg = cin / group, mg = cout / group
        let kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount
        let kk = cg * kq
        var y = outputBuffer(n: batch, c: cout, spatial: geo.outSpatial)   // every output is written below
        // Forward, per group and chunk of `nb` samples: Y (Mg × nb·P) = W (Mg × K) · cols (K × nb·P),
        // cols built from the window's runs (contiguous copies for stride-1 windows). Samples are
        // chunked so the GEMM's columns fill its 16-wide panels even when P is small; with one
        // sample per chunk the GEMM writes the output rows directly, otherwise a scratch block
        // is copied out. Each output is one FMA chain over K = (c, q) in increasing order, then
        // the bias, whatever the chunking; chunks are split across threads (never K), so results
        // are bit-identical for any thread count.
        if let (padTop, padLeft) = try directConvPads(geo, group: group, reduction: kk) {
            convDirect(x: x.value, weight: w, bias: b?.value, into: &y, cin: cin, cout: cout, spatial: inSpatial, kernel: kernel,
                       outSpatial: geo.outSpatial, padTop: padTop, padLeft: padLeft)
        } else if tape == nil, group == 1, convRowsIsNarrower(geo: geo, batch: batch, cout: cout) {
            convRows(x: x.value, weight: w, bias: b?.value, into: &y, geo: geo, cin: cin, cout: cout)
        } else {
            // A window of stride 1 without padding (conv2 of LeNet-5) computes each sample over
            // the input's full row width: column oy·iw + ox reads input offset q + oy·iw + ox, so
            // each (channel, q) row of the columns is one contiguous slice of the input plane
            // instead of oh runs of ow values. The ox ≥ ow columns are computed and dropped
            // (iw/ow more multiply-adds: 1.4× for LeNet-5's conv2, whose im2col runs cost more
            // than its GEMM). Every kept output has the same chain as before.
            let iw = geo.inSpatial.last ?? 1, ow = geo.outSpatial.last ?? 1
            let (wide, perSample, nb) = im2colChunks(geo: geo, batch: batch)
            let offsets = wide ? geo.affine!.offsets : []
            let chunks = (batch + nb - 1) / nb
            let perChunk = kk * nb * perSample * mg * group
            let workers = max(1, min(threads, chunks, chunks * perChunk / 262_144))
            let colsSize = kk * nb * perSample, outSize = nb > 1 || wide ? mg * nb * perSample : 0
            if graph.scratchColumns[index].count < workers * (colsSize + outSize) {
                graph.scratchColumns[index] = [Float](repeating: 0, count: workers * (colsSize + outSize))
            }
            let graph = self.graph, index = self.index
            let gemmThreads = workers == 1 ? threads : 1
            x.value.withUnsafeBufferPointer { xp in
                w.value.withUnsafeBufferPointer { wp in
                    y.withUnsafeMutableBufferPointer { yp in
                        graph.scratchColumns[index].withUnsafeMutableBufferPointer { ct in
                            let xa = Int(bitPattern: xp.baseAddress!), wa = Int(bitPattern: wp.baseAddress!)
                            let ya = Int(bitPattern: yp.baseAddress!), ca = Int(bitPattern: ct.baseAddress!)
                            let biasValues = b?.value.scalars
                            parallelFor(workers, threads: workers) { worker in  // a literal: no heap context (see `gemm`)
                                let xp = UnsafePointer<Float>(bitPattern: xa)!, wp = UnsafePointer<Float>(bitPattern: wa)!
                                let yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
                                let cols = UnsafeMutablePointer<Float>(bitPattern: ca)! + worker * (colsSize + outSize)
                                let out = cols + colsSize
                                for chunk in (chunks * worker / workers)..<(chunks * (worker + 1) / workers) {
                                    let n0 = chunk * nb, count = min(nb, batch - n0), ld = count * perSample
                                    for g in 0..<group {
                                        for s in 0..<count {
                                            let plane = xp + ((n0 + s) * cin + g * cg) * inP
                                            if wide {
                                                for c in 0..<cg {
                                                    for q in 0..<kq {
                                                        copyFloats(cols + (c * kq + q) * ld + s * perSample, plane + c * inP + offsets[q], count: perSample)
                                                    }
                                                }
                                            } else {
                                                geo.im2col(plane, channels: cg, into: cols + s * p, ld: ld)
                                            }
                                        }
                                        let direct = count == 1 && !wide
                                        gemm(m: mg, n: ld, k: kk, a: wp + g * mg * kk, lda: kk, transposeA: false,
                                             b: cols, ldb: ld, transposeB: false,
                                             c: direct ? yp + (n0 * cout + g * mg) * p : out, ldc: ld, accumulate: false, threads: gemmThreads)
                                        if wide {
                                            let oh = geo.outSpatial[0]
                                            for s in 0..<count {
                                                for m in 0..<mg {
                                                    let dst = yp + ((n0 + s) * cout + g * mg + m) * p, src = out + m * ld + s * perSample
                                                    for oy in 0..<oh { copyFloats(dst + oy * ow, src + oy * iw, count: ow) }
                                                }
                                            }
                                        } else if !direct {
                                            for s in 0..<count {
                                                for m in 0..<mg {
                                                    (yp + ((n0 + s) * cout + g * mg + m) * p).update(from: out + m * ld + s * p, count: p)
                                                }
                                            }
                                        }
                                    }
                                    if let biasValues {
                                        for n in n0..<(n0 + count) {
                                            for m in 0..<cout {
                                                let row = yp + (n * cout + m) * p, bm = biasValues[m]
                                                for pp in 0..<p { row[pp] += bm }
                                            }
                                        }
                                    }
                                    if fuseRelu { reluForward(yp + n0 * cout * p, count: count * cout * p, out: yp + n0 * cout * p) }
                                }
                            }
                        }
                    }
                }
            }
        }
        // NOTE: at inference, no parents list and no backward closure: its context is a heap
        // allocation and a retain per captured value, made before `emit` could drop it.
        if tape == nil { return inferenceValue(y, requiresGrad: x.requiresGrad || w.requiresGrad || b?.requiresGrad == true) }
        if let kept = reuse(y) { return kept }
        let nThreads = self.threads
        // The columns of one sample and their gradient: made on first use, then kept with the
        // step (a kept step runs again every training run).
        let scratch = ScratchPair(count: kk * p)
        return emitKept(y) { dy in
            dy.withUnsafeBufferPointer { dp in
                x.value.withUnsafeBufferPointer { xp in
                    w.value.withUnsafeBufferPointer { wp in
                        for n in 0..<batch {
                            for g in 0..<group {
                                let dyg = dp.baseAddress! + (n * cout + g * mg) * p
                                if w.requiresGrad {
                                    scratch.withFirst { cp in
                                        geo.im2col(xp.baseAddress! + (n * cin + g * cg) * inP, channels: cg, into: cp.baseAddress!, ld: p)
                                        w.accumulateGrad { gw in
                                            gemm(m: mg, n: kk, k: p, a: dyg, lda: p, transposeA: false,
                                                 b: cp.baseAddress!, ldb: p, transposeB: true,
                                                 c: gw + g * mg * kk, ldc: kk, accumulate: true, threads: nThreads)
                                        }
                                    }
                                }
                                if x.requiresGrad {
                                    scratch.withSecond { dc in
                                        gemm(m: kk, n: p, k: mg, a: wp.baseAddress! + g * mg * kk, lda: kk, transposeA: true,
                                             b: dyg, ldb: p, transposeB: false,
                                             c: dc.baseAddress!, ldc: p, accumulate: false, threads: nThreads)
                                        x.accumulateGrad { gx in
                                            geo.col2imAdd(dc.baseAddress!, channels: cg, into: gx + (n * cin + g * cg) * inP)
                                        }
                                    }
                                }
                            }
                            if let b, b.requiresGrad {
                                b.accumulateGrad { gb in
                                    for m in 0..<cout {
                                        let row = dp.baseAddress! + (n * cout + m) * p
                                        for pp in 0..<p { gb[m] += row[pp] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: pooling

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
        let shortRuns = geo.runs.count / 4 * 8 > kq * p && planes >= 8
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

    // MARK: normalization and dropout

    func batchNorm() throws -> Value {
        let x = try float(0), scale = try float(1), bias = try float(2), mean = try float(3), variance = try float(4)
        let sx = x.value.shape
        guard sx.count >= 2 else { throw fail("input \(sx) must be (N, C, …)") }
        let c = sx[1]
        for (name, v) in [("scale", scale), ("B", bias), ("input_mean", mean), ("input_var", variance)] where v.value.shape != [c] {
            throw fail("\(name) has shape \(v.value.shape), expected [\(c)]")
        }
        let eps = try float("epsilon", 1e-5), momentum = try float("momentum", 0.9)
        let trainingMode = try graph.training || int("training_mode", 0) == 1
        let n = sx[0], inner = sx[2...].reduce(1, *)
        let count = n * inner
        var mu = mean.value.scalars, vr = variance.value.scalars
        if trainingMode {
            // Batch statistics in Double, in index order; running statistics updated as ONNX
            // (and PyTorch with momentum 1 − m) define it, with the unbiased variance.
            x.value.withUnsafeBufferPointer { xp in
                for ch in 0..<c {
                    var s = 0.0, s2 = 0.0
                    for b in 0..<n { let row = xp.baseAddress! + (b * c + ch) * inner; for i in 0..<inner { s += Double(row[i]) } }
                    let m = s / Double(max(count, 1))
                    for b in 0..<n { let row = xp.baseAddress! + (b * c + ch) * inner; for i in 0..<inner { let d = Double(row[i]) - m; s2 += d * d } }
                    mu[ch] = Float(m)
                    vr[ch] = Float(s2 / Double(max(count, 1)))
                    let unbiased = Float(s2 / Double(max(count - 1, 1)))
                    mean.update { $0[ch] = $0[ch] * momentum + mu[ch] * (1 - momentum) }
                    variance.update { $0[ch] = $0[ch] * momentum + unbiased * (1 - momentum) }
                }
            }
        }
        let invStd = (0..<c).map { 1 / (vr[$0] + eps).squareRoot() }
        var y = Tensor(zeros: sx)
        let sc = scale.value.scalars, bs = bias.value.scalars
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for b in 0..<n {
                    for ch in 0..<c {
                        let off = (b * c + ch) * inner
                        let k = invStd[ch] * sc[ch], m = mu[ch], sh = bs[ch]
                        for i in 0..<inner { yp[off + i] = (xp[off + i] - m) * k + sh }
                    }
                }
            }
        }
        return emit(y, parents: [x, scale, bias]) { dy in
            dy.withUnsafeBufferPointer { dp in
                x.value.withUnsafeBufferPointer { xp in
                    var sumDy = [Float](repeating: 0, count: c), sumDyXhat = sumDy
                    for b in 0..<n {
                        for ch in 0..<c {
                            let off = (b * c + ch) * inner
                            for i in 0..<inner {
                                sumDy[ch] += dp[off + i]
                                sumDyXhat[ch] += dp[off + i] * (xp[off + i] - mu[ch]) * invStd[ch]
                            }
                        }
                    }
                    if scale.requiresGrad { scale.accumulateGrad { g in for ch in 0..<c { g[ch] += sumDyXhat[ch] } } }
                    if bias.requiresGrad { bias.accumulateGrad { g in for ch in 0..<c { g[ch] += sumDy[ch] } } }
                    if x.requiresGrad {
                        x.accumulateGrad { g in
                            for b in 0..<n {
                                for ch in 0..<c {
                                    let off = (b * c + ch) * inner
                                    let k = sc[ch] * invStd[ch]
                                    for i in 0..<inner {
                                        if trainingMode {
                                            let xhat = (xp[off + i] - mu[ch]) * invStd[ch]
                                            let cnt = Float(count)
                                            g[off + i] += k * (dp[off + i] - sumDy[ch] / cnt - xhat * sumDyXhat[ch] / cnt)
                                        } else {
                                            g[off + i] += k * dp[off + i]
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    func layerNorm() throws -> [Value] {
        let x = try float(0), scale = try float(1)
        let bias = has(2) ? try float(2) : nil
        let sx = x.value.shape
        let ax = try axis(try int("axis", -1), rank: sx.count)
        let eps = try float("epsilon", 1e-5)
        let normShape = Array(sx[ax...])
        let outer = sx[..<ax].reduce(1, *), inner = normShape.reduce(1, *)
        guard let bsS = broadcastShape(scale.value.shape, normShape), bsS == normShape else {
            throw fail("Scale \(scale.value.shape) does not broadcast to the normalized shape \(normShape)")
        }
        let si = broadcastSourceIndex(scale.value.shape, to: normShape)
        var bi: [Int] = []
        if let bias {
            guard let bsB = broadcastShape(bias.value.shape, normShape), bsB == normShape else {
                throw fail("B \(bias.value.shape) does not broadcast to the normalized shape \(normShape)")
            }
            bi = broadcastSourceIndex(bias.value.shape, to: normShape)
        }
        var mean = [Float](repeating: 0, count: outer), inv = mean
        // The shift of each normalized position, gathered once (0 without B).
        let shift: [Float] = bias.map { b in bi.map { b.value.scalars[$0] } } ?? [Float](repeating: 0, count: inner)
        var y = Tensor(zeros: sx)
        x.value.withUnsafeBufferPointer { xp in
            scale.value.withUnsafeBufferPointer { sp in
                y.withUnsafeMutableBufferPointer { yp in
                    for o in 0..<outer {
                        let row = xp.baseAddress! + o * inner
                        var s = 0.0
                        for i in 0..<inner { s += Double(row[i]) }
                        let m = s / Double(inner)
                        var s2 = 0.0
                        for i in 0..<inner { let d = Double(row[i]) - m; s2 += d * d }
                        mean[o] = Float(m)
                        inv[o] = Float(1 / (s2 / Double(inner) + Double(eps)).squareRoot())
                        for i in 0..<inner { yp[o * inner + i] = (row[i] - mean[o]) * inv[o] * sp[si[i]] + shift[i] }
                    }
                }
            }
        }
        var parents = [x, scale]
        if let bias { parents.append(bias) }
        let out = emit(y, parents: parents) { dy in
            dy.withUnsafeBufferPointer { dp in
                x.value.withUnsafeBufferPointer { xp in
                    scale.value.withUnsafeBufferPointer { sp in
                        for o in 0..<outer {
                            let row = xp.baseAddress! + o * inner, d = dp.baseAddress! + o * inner
                            if scale.requiresGrad {
                                scale.accumulateGrad { g in for i in 0..<inner { g[si[i]] += d[i] * (row[i] - mean[o]) * inv[o] } }
                            }
                            if let bias, bias.requiresGrad { bias.accumulateGrad { g in for i in 0..<inner { g[bi[i]] += d[i] } } }
                            if x.requiresGrad {
                                var a: Float = 0, b: Float = 0
                                for i in 0..<inner {
                                    let dxhat = d[i] * sp[si[i]]
                                    a += dxhat
                                    b += dxhat * (row[i] - mean[o]) * inv[o]
                                }
                                let nn = Float(inner)
                                x.accumulateGrad { g in
                                    for i in 0..<inner {
                                        let xhat = (row[i] - mean[o]) * inv[o]
                                        g[o * inner + i] += inv[o] * (d[i] * sp[si[i]] - a / nn - xhat * b / nn)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        var statShape = sx
        for i in ax..<sx.count { statShape[i] = 1 }
        return [out, .constant(Tensor(shape: statShape, scalars: mean)), .constant(Tensor(shape: statShape, scalars: inv))]
    }

    func dropout() throws -> [Value] {
        let x = try float(0)
        var ratio: Float = 0.5
        if graph.opset >= 12 { ratio = try optionalScalar(1) ?? 0.5 } else { ratio = try float("ratio", 0.5) }
        var training = graph.training
        if graph.opset >= 12, has(2) {
            guard case .bool(let t) = try value(2), t.data.count == 1 else { throw fail("training_mode must be a bool scalar") }
            training = t.data[0] != 0
        }
        guard ratio >= 0 && ratio < 1 else { throw fail("ratio \(ratio) must be in [0, 1)") }
        let n = x.value.count
        if !training || ratio == 0 {
            let out = emit(x.value, parents: [x]) { dy in dy.withUnsafeBufferPointer { x.addGrad($0) } }
            return [out, .bool(IntTensor(shape: x.value.shape, data: [Int64](repeating: 1, count: n)))]
        }
        // Training: a Philox stream per (seed, call), so masks are the same on every run.
        var rng = Philox(seed: graph.dropoutSeed, stream: graph.dropoutCounter)
        graph.dropoutCounter += 1
        var mask = [Float](repeating: 0, count: n)
        let keep = 1 / (1 - ratio)
        for i in 0..<n where rng.nextUnitFloat() >= ratio { mask[i] = keep }
        var y = x.value
        y.withUnsafeMutableBufferPointer { p in for i in 0..<n { p[i] *= mask[i] } }
        let out = emit(y, parents: [x]) { dy in
            dy.withUnsafeBufferPointer { dp in x.accumulateGrad { g in for i in 0..<n { g[i] += dp[i] * mask[i] } } }
        }
        return [out, .bool(IntTensor(shape: x.value.shape, data: mask.map { $0 != 0 ? 1 : 0 }))]
    }
}

/// dst[i] = src[i] for i < count, eight at a time with the last eight overlapping: the copies
/// of a convolution's columns and outputs are a few dozen values, where a `memmove` call costs
/// more than the copy (13 % of LeNet-5 at batch 64 went to such calls).
@inline(__always)
func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    guard count >= 8 else {
        for i in 0..<count { dst[i] = src[i] }
        return
    }
    var i = 0
    while true {
        let at = min(i, count - 8)
        UnsafeMutableRawPointer(dst + at).storeBytes(of: UnsafeRawPointer(src + at).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        if at == count - 8 { return }
        i += 8
    }
}

/// Inference of a Linear layer: writes y (rows × out, every element) = x · Wᵀ + b, through the
/// CSR kernel when the weight is sparse enough for the batch, else the prepacked GEMM (both
/// equal the plain GEMM bit for bit).
func linearInfer(_ x: Tensor, weight: Variable, bias: Variable?, cache: LinearCache, threads: Int, relu: Bool = false,
                 into y: inout Tensor) {
    let outF = weight.value.shape[0]
    let rows = x.shape[0]
    precondition(y.shape.count == 2 && y.shape[0] == rows && y.shape[1] == outF,
                 "linear output \(y.shape) for input \(x.shape) and weight \(weight.value.shape)")
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
            linearInfer(xp.baseAddress!, rows: rows, weight: weight, bias: bias, cache: cache, threads: threads, relu: relu,
                        into: yp.baseAddress!)
        }
    }
}

/// `linearInfer` on raw buffers: x is (rows × in), y (rows × out) is overwritten; the caller
/// has checked the shapes.
func linearInfer(_ x: UnsafePointer<Float>, rows: Int, weight: Variable, bias: Variable?, cache: LinearCache, threads: Int,
                 relu: Bool, into y: UnsafeMutablePointer<Float>) {
    let forms = cache.forms(for: weight)
    let outF = forms.outFeatures, inF = forms.inFeatures
    if let csr = forms.sparse, rows < 8 || forms.density <= LinearCache.sparseBatchDensityThreshold {
        csrLinearForward(csr, x: x, batch: rows, y: y, threads: threads)
    } else {
        let packed: PackedB
        if let p = forms.packed {
            packed = p
        } else {
            packed = weight.value.withUnsafeBufferPointer { PackedB(b: $0.baseAddress!, ldb: inF, transposeB: true, k: inF, n: outF) }
            forms.packed = packed
        }
        gemm(m: rows, a: x, lda: inF, transposeA: false, packed: packed, c: y, ldc: outF, accumulate: false, threads: threads)
    }
    if let b = bias?.value {
        b.withUnsafeBufferPointer {
            if relu {
                addRowVectorRelu($0.baseAddress!, rows: rows, cols: outF, out: y)
            } else {
                addRowVector($0.baseAddress!, rows: rows, cols: outF, out: y)
            }
        }
    } else if relu {
        reluForward(y, count: rows * outF, out: y)
    }
}

/// Two scratch arrays of `count` floats that a kept backward closure reuses from one training
/// run to the next, each made on its first use.
final class ScratchPair {
    let count: Int
    private var first: [Float] = [], second: [Float] = []

    init(count: Int) { self.count = count }

    func withFirst<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        if first.count != count { first = [Float](repeating: 0, count: count) }
        return first.withUnsafeMutableBufferPointer { body($0) }
    }

    func withSecond<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        if second.count != count { second = [Float](repeating: 0, count: count) }
        return second.withUnsafeMutableBufferPointer { body($0) }
    }
}

/// An array of indices that a kept backward closure reads and each training run refills (a
/// max pool's argmax).
final class IndexBox {
    var values: [Int] = []

    /// The array, left empty here (so the caller's copy is the only one and writes in place).
    func take() -> [Int] {
        let v = values
        values = []
        return v
    }
}
