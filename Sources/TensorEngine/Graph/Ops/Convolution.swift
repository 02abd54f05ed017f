import Kernels

// Conv: the direct kernel, the rows path and im2col + GEMM forward; the backward pass.
//
// Accumulation order: products go through `gemm` or the direct kernel (one FMA chain per output
// in increasing (c, q), threads split samples or chunks only, never the reduction); the bias is
// added after the chain. So results are bit-identical for any thread count.

extension OpContext {
    /// The top and left padding when this Conv takes the direct kernel (`conv2dDirect`): 2-D,
    /// one group, stride and dilation 1, explicit pads, and either a reduction (input channels
    /// × kernel) of at most 32 and at least 8 output columns, or, with AVX-512, rows of at most
    /// 16 outputs (one vector each) and a reduction of at most 256. Else nil (im2col + GEMM).
    /// Both paths give the same bits, so the choice may depend on the CPU.
    // NOTE: LeNet-5's conv1 (1 channel, 5×5, pads 2) at batch 64 took 560–680 µs through
    // im2col + GEMM (a 6-row GEMM with K = 25 fills neither its tiles nor its pipeline).
    // LeNet-5's conv2 (6 channels, 5×5, 10 columns), interleaved three times with im2col +
    // GEMM: 609–703 → 470–535 µs at batch 64, 12.9–15.3 → 10.9–11.0 µs at batch 1.
    func directConvPads(_ geo: WindowGeometry, group: Int, reduction: Int, outChannels: Int) throws -> (Int, Int)? {
        if let known = geo.directConv, known.group == group, known.reduction == reduction { return known.pads }
        let outSpatial = geo.outSpatial
        let narrowRows = KernelISA.detected == .avx512 && outSpatial.count == 2 && outSpatial[1] <= 16 && reduction <= 256
        var pads: (Int, Int)? = nil
        // NOTE: a pointwise (1 × 1) Conv with rows of at most 16 outputs or at most 16 output
        // channels runs faster as a GEMM over the input's rows (MobileNetV2, batch 1: 960 × 160
        // at 7 × 7 365 → 278 µs, 16 × 32 at 112 × 112 341 → 171 µs); with wide rows and more
        // channels the direct kernel is faster (96 × 16 at 112 × 112: 816 against 1622 µs).
        let pointwiseGemm = geo.kernelCount == 1 && (outSpatial.count != 2 || outSpatial[1] <= 16 || outChannels <= 16)
        if geo.inSpatial.count == 2, group == 1, !pointwiseGemm, (reduction <= 32 && outSpatial[1] >= 8) || narrowRows,
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
        // With fewer samples than threads (batch 1), the workers split each sample's blocks of
        // eight output channels instead, each padding the input into its own scratch.
        // NOTE: at batch 1 with two threads MobileNetV2's and EfficientNet-B0's pointwise layers
        // of 16-32 input channels ran here on one thread.
        let blocks = (cout + 7) / 8
        let work = batch * cout * oh * ow * cin * kh * kw / 262_144
        let splitsChannels = batch < threads && blocks > 1 && work >= 2
        let workers = splitsChannels ? max(1, min(threads, blocks, work)) : max(1, min(threads, batch, work))
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
        let graph = self.graph, index = self.index, relu = fuseRelu, epilogue = self.epilogue
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
                            if splitsChannels {
                                let b0 = blocks * worker / workers, b1 = blocks * (worker + 1) / workers
                                let m0 = b0 * 8, m1 = min(cout, b1 * 8)
                                for n in 0..<batch {
                                    let out = yp + n * outSize
                                    conv2dDirect(x: xp + n * inSize, cin: cin, ih: ih, iw: iw, packedWeights: packed, cout: cout, kh: kh, kw: kw,
                                                 padTop: padTop, padLeft: padLeft, oh: oh, ow: ow, y: out, scratch: scratch, blocks: b0..<b1)
                                    if let biasValues {
                                        biasValues.withUnsafeBufferPointer {
                                            addChannelBias($0.baseAddress! + m0, samples: 1, channels: m1 - m0, plane: p, out: out + m0 * p)
                                        }
                                    }
                                    OpContext.finish(out + m0 * p, count: (m1 - m0) * p, relu: relu, epilogue: epilogue)
                                }
                                return
                            }
                            for n in (batch * worker / workers)..<(batch * (worker + 1) / workers) {
                                let out = yp + n * outSize
                                conv2dDirect(x: xp + n * inSize, cin: cin, ih: ih, iw: iw, packedWeights: packed, cout: cout, kh: kh, kw: kw,
                                             padTop: padTop, padLeft: padLeft, oh: oh, ow: ow, y: out, scratch: scratch)
                                if let biasValues {
                                    biasValues.withUnsafeBufferPointer { addChannelBias($0.baseAddress!, samples: 1, channels: cout, plane: p, out: out) }
                                }
                                OpContext.finish(out, count: outSize, relu: relu, epilogue: epilogue)
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
                    OpContext.finish(yp.baseAddress!, count: batch * cout * p, relu: fuseRelu, epilogue: epilogue)
                }
            }
        }
    }

    /// Rows per band for bands of about `at` rows (at least one) over `rows`: as many bands as
    /// that takes, of equal height but the last.
    static func evenBands(rows: Int, at: Int) -> Int {
        let bands = (rows + max(1, at) - 1) / max(1, at)
        return (rows + bands - 1) / bands
    }

    /// The im2col path's layout: whether it computes over full input rows (`wide`, see `conv`),
    /// the columns per sample, and the samples per chunk.
    func im2colChunks(geo: WindowGeometry, batch: Int) -> (wide: Bool, perSample: Int, samples: Int) {
        let iw = geo.inSpatial.last ?? 1, ow = geo.outSpatial.last ?? 1
        let wide = geo.affine.map { $0.colStep == 1 && $0.rowStep == iw && ow < iw } ?? false
        let perSample = wide ? (geo.outSpatial[0] - 1) * iw + ow : geo.outCount
        // A pointwise Conv of a panel's width or more runs one sample per GEMM (straight on the
        // input's rows, bias and activation in the GEMM's epilogue).
        // NOTE: chunked (five 7 × 7 samples a GEMM), it copied the inputs in and the outputs out
        // and ran the bias and activation as passes: MobileNetV2 at batch 8 83.3-84.5 → 81.4-82.0
        // ms one thread, 44.7-45.2 → 41.6-42.6 two.
        if geo.isPointwise && perSample >= 32 { return (wide, perSample, 1) }
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
        let kk = cin / group * geo.kernelCount, p = geo.outCount
        var y = outputBuffer(n: batch, c: cout, spatial: geo.outSpatial)   // every output is written below
        if group > 1, group == cin, cout == cin, geo.depthwise != nil {
            convDepthwise(x: x.value, weight: w.value, bias: b?.value, into: &y, geo: geo)
        } else if group == 1, cin >= OpContext.winogradMinChannels, cout >= OpContext.winogradMinChannels,
                  let wg = geo.depthwise, winogradApplies(wg) {
            convWinograd(x: x.value, weight: w, bias: b?.value, into: &y, geometry: wg, cin: cin, cout: cout)
        } else if let (padTop, padLeft) = try directConvPads(geo, group: group, reduction: kk, outChannels: cout) {
            convDirect(x: x.value, weight: w, bias: b?.value, into: &y, cin: cin, cout: cout, spatial: inSpatial, kernel: kernel,
                       outSpatial: geo.outSpatial, padTop: padTop, padLeft: padLeft)
        } else if tape == nil, group == 1, convRowsIsNarrower(geo: geo, batch: batch, cout: cout) {
            convRows(x: x.value, weight: w, bias: b?.value, into: &y, geo: geo, cin: cin, cout: cout)
        } else {
            let packedA = tape == nil && group == 1 && KernelISA.detected == .avx512 ? packedConvWeights(w, rows: cout, k: kk) : nil
            convIm2col(x: x.value, weight: w.value, bias: b?.value, into: &y, geo: geo, group: group, packedA: packedA)
        }
        // NOTE: at inference, no parents list and no backward closure: its context is a heap
        // allocation and a retain per captured value, made before `emit` could drop it.
        if tape == nil { return inferenceValue(y, requiresGrad: x.requiresGrad || w.requiresGrad || b?.requiresGrad == true) }
        if let kept = reuse(y) { return kept }
        let nThreads = self.threads
        // The columns of one sample and their gradient: made on first use, then kept with the
        // step (a kept step runs again every training run).
        let scratch = ScratchPair(count: kk * p), chunks = graph.backwardChunks
        return emitKept(y) { dy in
            OpContext.convBackward(dy: dy, x: x, weight: w, bias: b, geo: geo, group: group, scratch: scratch, chunks: chunks, threads: nThreads)
        }
    }

    /// Adds to x's gradient the Conv of dy (batch × cout × oh × ow) by the weights flipped in
    /// both spatial axes and transposed (cin × cout × 3 × 3), over geometry `gt` (dy's plane in,
    /// x's plane out), by `winogradConv2d`. Deterministic for any thread count, as the forward.
    static func winogradInputGradient(dy: Tensor, x: Variable, weight: Tensor, geometry gt: DepthwiseGeometry, batch: Int, cin: Int, cout: Int,
                                      threads: Int) {
        let count = winogradWeightCount(cin: cout, cout: cin)
        let u = weight.withUnsafeBufferPointer { wp in
            [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                winogradWeights(wp.baseAddress!, cin: cout, cout: cin, into: buffer.baseAddress!, transposedFlipped: true, threads: threads)
                initialized = count
            }
        }
        // Neither needs zeros: the kernel writes every output, and of its scratch reads only what
        // it wrote or spare lanes whose results it drops (its twin test fills both with NaN).
        let scratchCount = winogradConv2dScratch(gt, cin: cout, cout: cin, batch: batch, workers: threads)
        var scratch = [Float](unsafeUninitializedCapacity: scratchCount) { $1 = scratchCount }
        var dx = [Float](unsafeUninitializedCapacity: batch * cin * gt.oh * gt.ow) { $1 = $0.count }
        dy.withUnsafeBufferPointer { dp in
            u.withUnsafeBufferPointer { up in
                dx.withUnsafeMutableBufferPointer { xp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        winogradConv2d(x: dp.baseAddress!, batch: batch, cin: cout, weights: up.baseAddress!, cout: cin, bias: nil,
                                       geometry: gt, y: xp.baseAddress!, scratch: sp.baseAddress!, threads: threads) { _, _ in }
                    }
                }
            }
        }
        x.accumulateGrad { gx in
            dx.withUnsafeBufferPointer { d in
                for i in 0..<d.count { gx[i] = gx[i] + d[i] }
            }
        }
    }

    /// Input and output channels from which a 3 × 3 Conv of stride 1 takes Winograd's
    /// F(2 × 2, 3 × 3) (`convWinograd`, and `winogradInputGradient` in its backward).
    static let winogradMinChannels = 16

    /// A 3 × 3 Conv of stride 1 by Winograd's F(2 × 2, 3 × 3) (`Kernels.winogradConv2d`), at
    /// inference and in training (whose backward takes its input gradient the same way,
    /// `winogradInputGradient`): 2.25 × fewer multiply-adds than im2col + GEMM, whose bits
    /// it does not reproduce (another order of the same sums), so it is chosen by the Conv's
    /// geometry alone: the same path, and bits, on every machine and thread count. The weights'
    /// transform is kept until they change (16/9 of their size).
    // NOTE: ResNet-18's 3 × 3 layers ran im2col + GEMM at 38-46 GMAC/s against this machine's
    // 58 GMAC/s peak, so no schedule of those 9 multiply-adds per tap could reach ONNX Runtime.
    func convWinograd(x: Tensor, weight: Variable, bias: Tensor?, into y: inout Tensor, geometry g: DepthwiseGeometry, cin: Int, cout: Int) {
        let batch = x.shape[0]
        let tilesMajor = winogradTilesMajor(g, batch: batch)
        if graph.winogradWeights[index].map({ $0.weight !== weight || $0.version != weight.version || ($0.packed != nil) != tilesMajor }) ?? true {
            graph.winogradWeights[index] = nil
            let count = winogradWeightCount(cin: cin, cout: cout)
            let u = weight.value.withUnsafeBufferPointer { wp in
                [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    winogradWeights(wp.baseAddress!, cin: cin, cout: cout, into: buffer.baseAddress!, threads: self.threads)
                    initialized = count
                }
            }
            let packed = tilesMajor ? u.withUnsafeBufferPointer { winogradPackWeights($0.baseAddress!, cin: cin, cout: cout) } : nil
            graph.winogradWeights[index] = (weight, weight.version, packed == nil ? u : [], packed)
        }
        let (u, packed) = (graph.winogradWeights[index]!.u, graph.winogradWeights[index]!.packed)
        let scratchSize = winogradConv2dScratch(g, cin: cin, cout: cout, batch: batch, workers: threads)
        if graph.scratchColumns[index].count < scratchSize {
            graph.scratchColumns[index] = [Float](repeating: 0, count: scratchSize)
        }
        let relu = fuseRelu, epilogue = self.epilogue, threads = self.threads
        let biasValues = bias?.scalars
        x.withUnsafeBufferPointer { xp in
            u.withUnsafeBufferPointer { up in
                y.withUnsafeMutableBufferPointer { yp in
                    graph.scratchColumns[index].withUnsafeMutableBufferPointer { sp in
                        let (yb, sb) = (yp.baseAddress!, sp.baseAddress!)
                        func run(_ bp: UnsafePointer<Float>?) {
                            winogradConv2d(x: xp.baseAddress!, batch: batch, cin: cin, weights: up.baseAddress, packed: packed, cout: cout, bias: bp,
                                           geometry: g, y: yb, scratch: sb, threads: threads) { p, count in
                                OpContext.finish(p, count: count, relu: relu, epilogue: epilogue)
                            }
                        }
                        if let biasValues { biasValues.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                    }
                }
            }
        }
    }

    /// Inference of a depthwise 2-D Conv (groups = input channels = output channels) with the
    /// direct kernel (`Kernels.depthwiseConv2d`), channel planes split across threads; the same
    /// bits as im2col + GEMM.
    // NOTE: im2col + GEMM ran each channel as a 1 × kq by kq × P product, one group at a time on
    // one thread: MobileNetV2 2.7-4.9× and EfficientNet-B0 9.8-25× ONNX Runtime's time.
    func convDepthwise(x: Tensor, weight: Tensor, bias: Tensor?, into y: inout Tensor, geo: WindowGeometry) {
        let planes = x.shape[0] * x.shape[1], channels = x.shape[1]
        let g = geo.depthwise!
        let outP = g.oh * g.ow, kq = g.kh * g.kw
        // NOTE: a plane is about outP · kq multiply-adds; 64K pay for a helper thread.
        let workers = max(1, min(threads, planes, planes * outP * kq / 65_536))
        let scratchSize = depthwiseConv2dScratch(g)
        if graph.scratchColumns[index].count < workers * scratchSize {
            graph.scratchColumns[index] = [Float](repeating: 0, count: workers * scratchSize)
        }
        let graph = self.graph, index = self.index, relu = fuseRelu, epilogue = self.epilogue
        let biasValues = bias?.scalars ?? []
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    biasValues.withUnsafeBufferPointer { bp in
                        graph.scratchColumns[index].withUnsafeMutableBufferPointer { sp in
                            let xa = Int(bitPattern: xp.baseAddress!), wa = Int(bitPattern: wp.baseAddress!)
                            let ya = Int(bitPattern: yp.baseAddress!), sa = Int(bitPattern: sp.baseAddress!)
                            let ba = bias == nil ? 0 : Int(bitPattern: bp.baseAddress!)
                            parallelFor(workers, threads: workers) { worker in
                                let scratch = UnsafeMutablePointer<Float>(bitPattern: sa)! + worker * scratchSize
                                depthwiseConv2d(UnsafePointer(bitPattern: xa)!, planes: (planes * worker / workers)..<(planes * (worker + 1) / workers),
                                                channels: channels, weights: UnsafePointer(bitPattern: wa)!, bias: UnsafePointer(bitPattern: ba),
                                                geometry: g, y: UnsafeMutablePointer(bitPattern: ya)!, scratch: scratch) { out, count in
                                    OpContext.finish(out, count: count, relu: relu, epilogue: epilogue)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A one-group Conv's weights (rows × k) prepacked for its GEMM, packed again only when
    /// they change.
    func packedConvWeights(_ weight: Variable, rows: Int, k: Int) -> PackedA {
        if let cached = graph.convPackedA[index], cached.weight === weight, cached.version == weight.version { return cached.packed }
        let packed = weight.value.withUnsafeBufferPointer { PackedA(a: $0.baseAddress!, lda: k, m: rows, k: k) }
        graph.convPackedA[index] = (weight, weight.version, packed)
        return packed
    }

    /// Conv forward through im2col + GEMM: x (N, Cin, spatial…), weight (Cout, Cin/group,
    /// kernel…), bias (Cout) or nil; writes every element of y (N, Cout, outSpatial…), with the
    /// fused ReLU, Clip or SiLU (`OpContext.finish`).
    ///
    /// Per group and chunk of `nb` samples: Y (Mg × nb·P) = W (Mg × K) · cols (K × nb·P), cols
    /// built from the window's runs (contiguous copies for stride-1 windows). Samples are
    /// chunked so the GEMM's columns fill its 16-wide panels even when P is small; with one
    /// sample per chunk the GEMM writes the output rows directly, otherwise a scratch block is
    /// copied out. Each output is one FMA chain over K = (c, q) in increasing order, then the
    /// bias, whatever the chunking; chunks are split across threads (never K), so results are
    /// bit-identical for any thread count.
    func convIm2col(x: Tensor, weight: Tensor, bias: Tensor?, into y: inout Tensor, geo: WindowGeometry, group: Int, packedA: PackedA? = nil) {
        let batch = x.shape[0], cin = x.shape[1], cout = weight.shape[0]
        let cg = cin / group, mg = cout / group
        let kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount
        let kk = cg * kq
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
        // A sample's columns larger than L2 (ResNet-18's first layers: 576 × 3136 floats, 7 MB)
        // are built and multiplied a band of output rows at a time, about 128K floats of
        // columns each: written, packed and read while in cache. The GEMM's chain per output does
        // not depend on the columns it is given, so the bits are the same.
        // NOTE: whole, the columns went out to memory and back twice: ResNet-18's 3 × 3 layers at
        // 56 × 56 ran at 33 GMAC/s against 38-54 for the same GEMM alone.
        // A pointwise Conv (1 × 1, stride 1, no padding) multiplies the input's rows in place
        // and takes bands whenever a sample is one chunk, so that its bias and fused activation
        // run while each band of output is in cache.
        // NOTE: MobileNetV2's pointwise layers took 1.5-2× their GEMM's time: a copy of the input,
        // then a pass for the bias and one for the ReLU6 over outputs of up to 4.8 MB.
        // Wherever the GEMM writes into y (bands, or a chunk of one sample), the bias and the
        // fused activation are its epilogue, applied to each group of rows in cache on the GEMM's
        // threads (`GemmEpilogue`). A pointwise Conv is one band per sample (with fewer samples
        // than threads, the GEMM's threads split it); other bands are of equal height.
        // NOTE: EfficientNet-B0's 672 × 112 layers at 14 × 14 went as bands of 13 and 1 rows, one
        // per thread (448 µs on one thread, 392 on two), and their SiLU ran on one thread.
        let pointwise = geo.isPointwise
        let bandRows: Int? = geo.inSpatial.count == 2 && !wide && nb == 1 && (kk * p > 262_144 || pointwise)
            ? (pointwise ? geo.outSpatial[0] : Self.evenBands(rows: geo.outSpatial[0], at: 131_072 / max(1, max(kk, mg) * geo.outSpatial[1])))
            : nil
        // With bands and fewer samples than threads, the workers split the bands (each band's
        // GEMM on one thread) rather than each band's GEMM (a barrier and shared packing per band).
        let bands = bandRows.map { (geo.outSpatial[0] + $0 - 1) / $0 } ?? 1
        let splitBands = bandRows != nil && chunks < threads && bands > 1
        let items = splitBands ? chunks * group * bands : chunks
        let workers = max(1, min(threads, items, chunks * perChunk / 262_144))
        let colsSize = bandRows.map { kk * $0 * geo.outSpatial[1] } ?? kk * nb * perSample
        let outSize = bandRows == nil && (nb > 1 || wide) ? mg * nb * perSample : 0
        if graph.scratchColumns[index].count < workers * (colsSize + outSize) {
            graph.scratchColumns[index] = [Float](repeating: 0, count: workers * (colsSize + outSize))
        }
        let graph = self.graph, index = self.index, relu = fuseRelu, epilogue = self.epilogue
        let gemmThreads = workers == 1 ? threads : 1
        x.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    graph.scratchColumns[index].withUnsafeMutableBufferPointer { ct in
                        let xa = Int(bitPattern: xp.baseAddress!), wa = Int(bitPattern: wp.baseAddress!)
                        let ya = Int(bitPattern: yp.baseAddress!), ca = Int(bitPattern: ct.baseAddress!)
                        let biasValues = bias?.scalars
                        // (biasValues lives until the workers are done: its storage is read through this.)
                        let biasAddress = biasValues?.withUnsafeBufferPointer { $0.baseAddress.map { Int(bitPattern: $0) } } ?? 0
                        let activation = GemmEpilogue.Activation(epilogue)
                        parallelFor(workers, threads: workers) { worker in  // a literal: no heap context (see `gemm`)
                            let xp = UnsafePointer<Float>(bitPattern: xa)!, wp = UnsafePointer<Float>(bitPattern: wa)!
                            let yp = UnsafeMutablePointer<Float>(bitPattern: ya)!
                            let cols = UnsafeMutablePointer<Float>(bitPattern: ca)! + worker * (colsSize + outSize)
                            let out = cols + colsSize
                            if let bandRows {
                                // One sample per chunk: a band of output rows at a time, straight
                                // into y (see `bandRows`).
                                let oh = geo.outSpatial[0], ow = geo.outSpatial[1]
                                let mine = (items * worker / workers)..<(items * (worker + 1) / workers)
                                // (sample, group, band) in order; a worker's share of them.
                                for item in (splitBands ? mine : (mine.lowerBound * group * bands)..<(mine.upperBound * group * bands)) {
                                    let n = item / (group * bands), g = item / bands % group, oy0 = item % bands * bandRows
                                    let plane = xp + (n * cin + g * cg) * inP
                                    let oy1 = min(oh, oy0 + bandRows), ld = (oy1 - oy0) * ow
                                    // A pointwise Conv's columns are the input's own rows.
                                    if !pointwise { geo.im2colRows(plane, channels: cg, rows: oy0, oy1, into: cols, ld: ld) }
                                    let out = yp + (n * cout + g * mg) * p + oy0 * ow
                                    let bias = UnsafePointer<Float>(bitPattern: biasAddress).map { $0 + g * mg }
                                    gemm(m: mg, n: ld, k: kk, a: wp + g * mg * kk, lda: kk, transposeA: false,
                                         b: pointwise ? plane + oy0 * ow : UnsafePointer(cols), ldb: pointwise ? p : ld, transposeB: false,
                                         c: out, ldc: p, accumulate: false, threads: gemmThreads, packedA: packedA,
                                         epilogue: GemmEpilogue(bias: bias, relu: relu, activation: activation))
                                }
                                return
                            }
                            for chunk in (chunks * worker / workers)..<(chunks * (worker + 1) / workers) {
                                let n0 = chunk * nb, count = min(nb, batch - n0), ld = count * perSample
                                // One sample, not over full rows: the GEMM writes into y (and finishes it).
                                let direct = count == 1 && !wide
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
                                    // Written into y, the GEMM finishes its outputs itself.
                                    let bias = UnsafePointer<Float>(bitPattern: biasAddress).map { $0 + g * mg }
                                    gemm(m: mg, n: ld, k: kk, a: wp + g * mg * kk, lda: kk, transposeA: false,
                                         b: cols, ldb: ld, transposeB: false,
                                         c: direct ? yp + (n0 * cout + g * mg) * p : out, ldc: ld, accumulate: false, threads: gemmThreads,
                                         packedA: packedA, epilogue: direct ? GemmEpilogue(bias: bias, relu: relu, activation: activation) : .none)
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
                                if direct { continue }
                                if let bias = UnsafePointer<Float>(bitPattern: biasAddress) {
                                    addChannelBias(bias, samples: count, channels: cout, plane: p, out: yp + n0 * cout * p)
                                }
                                OpContext.finish(yp + n0 * cout * p, count: count * cout * p, relu: relu, epilogue: epilogue)
                            }
                        }
                        withExtendedLifetime(biasValues) {}
                    }
                }
            }
        }
    }

    /// Conv backward: given dy (N, Cout, outSpatial…), adds ∂loss/∂weight, ∂loss/∂x and
    /// ∂loss/∂bias into the gradients of those that require one. Per sample and group, the
    /// weight gradient is dY · colsᵀ and the input gradient col2im(Wᵀ · dY), through `gemm`
    /// (accumulating in increasing sample order), so the bits do not depend on the thread count.
    /// `scratch` holds one sample's columns and their gradient (K × P each).
    static func convBackward(dy: Tensor, x: Variable, weight w: Variable, bias b: Variable?, geo: WindowGeometry, group: Int,
                             scratch: ScratchPair, chunks: ChunkScratch, threads nThreads: Int) {
        let batch = x.value.shape[0], cin = x.value.shape[1], cout = w.value.shape[0]
        let cg = cin / group, mg = cout / group
        let kq = geo.kernelCount, p = geo.outCount, inP = geo.inCount
        let kk = cg * kq
        if group > 1, group == cin, cout == cin, let g = geo.depthwise, depthwiseConv2dBackwardApplies(g) {
            depthwiseBackward(dy: dy, x: x, weight: w, bias: b, geometry: g, threads: nThreads)
            return
        }
        // The input gradient of a 3 × 3 Conv of stride 1 (pads up to 2) is the 3 × 3 Conv of dy by
        // the kernels flipped and transposed: by Winograd, like the forward pass, whole batch.
        var inputGradientDone = false
        if x.requiresGrad, group == 1, cin >= winogradMinChannels, cout >= winogradMinChannels, let g = geo.depthwise, winogradApplies(g),
           g.padTop <= 2, g.padLeft <= 2 {
            let gt = DepthwiseGeometry(ih: g.oh, iw: g.ow, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                       padTop: 2 - g.padTop, padLeft: 2 - g.padLeft, oh: g.ih, ow: g.iw)
            OpContext.winogradInputGradient(dy: dy, x: x, weight: w.value, geometry: gt, batch: batch, cin: cin, cout: cout, threads: nThreads)
            inputGradientDone = true
        }
        // The weight gradient of a few samples at once when one sample's columns are short (deep
        // layers: 49 positions at 7 × 7): one GEMM over the chunk's (sample, position) pairs in
        // order is the per-sample products' chain continued sample after sample, so the same bits.
        // NOTE: per sample, ResNet-18's 7 × 7 layers ran GEMMs of K = 49.
        let chunk = group == 1 && w.requiresGrad ? max(1, min(batch, 2_097_152 / max(kk * p, 1))) : 1
        if chunk > 1 {
            dy.withUnsafeBufferPointer { dp in
                x.value.withUnsafeBufferPointer { xp in
                    chunks.with(wideCount: kk * chunk * p, rowsCount: cout * chunk * p) { cols, rows in
                        var n0 = 0
                        while n0 < batch {
                            let count = min(chunk, batch - n0), ld = count * p
                            for s in 0..<count {
                                geo.im2col(xp.baseAddress! + (n0 + s) * cin * inP, channels: cin, into: cols + s * p, ld: ld)
                                for o in 0..<cout { copyFloats(rows + o * ld + s * p, dp.baseAddress! + ((n0 + s) * cout + o) * p, count: p) }
                            }
                            w.accumulateGrad { gw in
                                gemm(m: cout, n: kk, k: ld, a: rows, lda: ld, transposeA: false, b: cols, ldb: ld, transposeB: true,
                                     c: gw, ldc: kk, accumulate: true, threads: nThreads)
                            }
                            n0 += count
                        }
                    }
                }
            }
        }
        dy.withUnsafeBufferPointer { dp in
            x.value.withUnsafeBufferPointer { xp in
                w.value.withUnsafeBufferPointer { wp in
                    for n in 0..<batch {
                        for g in 0..<group {
                            let dyg = dp.baseAddress! + (n * cout + g * mg) * p
                            if w.requiresGrad, chunk == 1 {
                                scratch.withFirst { cp in
                                    geo.im2col(xp.baseAddress! + (n * cin + g * cg) * inP, channels: cg, into: cp.baseAddress!, ld: p)
                                    w.accumulateGrad { gw in
                                        gemm(m: mg, n: kk, k: p, a: dyg, lda: p, transposeA: false,
                                             b: cp.baseAddress!, ldb: p, transposeB: true,
                                             c: gw + g * mg * kk, ldc: kk, accumulate: true, threads: nThreads)
                                    }
                                }
                            }
                            if x.requiresGrad, !inputGradientDone {
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


    /// The gradients of a depthwise 2-D Conv with `Kernels.depthwiseConv2dBackward`, channels
    /// split across threads (each channel's weight, bias and input gradients on one thread, the
    /// samples in order), so the bits do not depend on the thread count.
    // NOTE: through im2col + GEMM each channel of each sample was a 1 × 9 by 9 × P product and
    // its transpose, packed and run on one thread: with the boxed Clip bounds, most of
    // MobileNetV2's training step, and two threads bought nothing.
    static func depthwiseBackward(dy: Tensor, x: Variable, weight w: Variable, bias b: Variable?, geometry g: DepthwiseGeometry, threads: Int) {
        let batch = x.value.shape[0], channels = x.value.shape[1]
        let inP = g.ih * g.iw, outP = g.oh * g.ow, taps = g.kh * g.kw
        let scratchSize = depthwiseConv2dBackwardScratch(g)
        // NOTE: a channel is about 3 · batch · outP · taps multiply-adds; 64K pay for a helper.
        let workers = max(1, min(threads, channels, channels * batch * outP * taps * 3 / 65_536))
        // (Uninitialized: the kernel writes all the scratch it reads.)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: workers * scratchSize) { sp in
            withGrad(w) { gw in
                withGrad(b) { gb in
                    withGrad(x) { gx in
                        dy.withUnsafeBufferPointer { dp in
                            x.value.withUnsafeBufferPointer { xp in
                                w.value.withUnsafeBufferPointer { wp in
                                    let da = Int(bitPattern: dp.baseAddress!), xa = Int(bitPattern: xp.baseAddress!)
                                    let wa = Int(bitPattern: wp.baseAddress!), sa = Int(bitPattern: sp.baseAddress!)
                                    let gwa = gw.map { Int(bitPattern: $0) }, gba = gb.map { Int(bitPattern: $0) }, gxa = gx.map { Int(bitPattern: $0) }
                                    parallelFor(workers, threads: workers) { worker in  // a literal: no heap context (see `gemm`)
                                        let dp = UnsafePointer<Float>(bitPattern: da)!, xp = UnsafePointer<Float>(bitPattern: xa)!
                                        let wp = UnsafePointer<Float>(bitPattern: wa)!
                                        let scratch = UnsafeMutablePointer<Float>(bitPattern: sa)! + worker * scratchSize
                                        let gw = gwa.flatMap { UnsafeMutablePointer<Float>(bitPattern: $0) }
                                        let gb = gba.flatMap { UnsafeMutablePointer<Float>(bitPattern: $0) }
                                        let gx = gxa.flatMap { UnsafeMutablePointer<Float>(bitPattern: $0) }
                                        for c in (channels * worker / workers)..<(channels * (worker + 1) / workers) {
                                            for n in 0..<batch {
                                                let plane = n * channels + c
                                                depthwiseConv2dBackward(x: xp + plane * inP, dy: dp + plane * outP, weights: wp + c * taps, geometry: g,
                                                                        dw: gw.map { $0 + c * taps }, db: gb.map { $0 + c }, dx: gx.map { $0 + plane * inP },
                                                                        scratch: scratch)
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
    }

    /// The gradient buffer of `v` for `body` when `v` wants one, else nil.
    static func withGrad(_ v: Variable?, _ body: (UnsafeMutablePointer<Float>?) -> Void) {
        if let v, v.requiresGrad { v.accumulateGrad { body($0) } } else { body(nil) }
    }
}
