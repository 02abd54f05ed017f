import Kernels

// BatchNormalization and LayerNormalization: forward and backward.
//
// Every reduction runs in increasing index order on one thread, so results are bit-identical
// for any thread count.

extension OpContext {
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
        var meanRows = [Float](repeating: 0, count: outer), invRows = meanRows
        // The scale and shift of each normalized position, gathered once (shift 0 without B).
        let gathered: [Float] = scale.value.withUnsafeBufferPointer { sp in si.map { sp[$0] } }
        let shift: [Float] = bias.map { b in bi.map { b.value.scalars[$0] } } ?? [Float](repeating: 0, count: inner)
        // Every row is written below.
        // NOTE: a zeroed new tensor per call (the ViT's 520 × 192 at batch 8) cost the fill and,
        // for large ones, fresh pages.
        var y = outputBuffer(sx)
        let threads = self.threads
        x.value.withUnsafeBufferPointer { xp in
            gathered.withUnsafeBufferPointer { sp in
                shift.withUnsafeBufferPointer { hp in
                    y.withUnsafeMutableBufferPointer { yp in
                        meanRows.withUnsafeMutableBufferPointer { mp in
                            invRows.withUnsafeMutableBufferPointer { ip in
                                let x0 = xp.baseAddress!, y0 = yp.baseAddress!, s0 = sp.baseAddress!, h0 = hp.baseAddress!
                                let m0 = mp.baseAddress!, i0 = ip.baseAddress!
                                // Rows split across threads (each row's sums are its own).
                                parallelRanges(outer, threads: threads, grain: max(1, 8_192 / max(inner, 1))) { rows in
                                    for o in rows {
                                        let (mean, inv) = layerNormStatistics(x0 + o * inner, count: inner, epsilon: eps)
                                        m0[o] = mean
                                        i0[o] = inv
                                        layerNormRow(x0 + o * inner, count: inner, mean: mean, inv: inv, scale: s0, shift: h0, out: y0 + o * inner)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        // (Constants for the backward closure: captured vars are boxed, every read a check.)
        let mean = meanRows, inv = invRows
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
}

/// The mean and 1 / √(variance + ε) of a row, both summed in Double in eight lanes (lane l the
/// values i ≡ l mod 8 in order, then the lanes in order, then the tail in order).
// NOTE: one Double chain per sum (the two passes of 192 values, a chain's latency per value)
// made ViT's nine LayerNorm nodes 341 µs at batch 1 against ONNX Runtime's 168.
@inline(__always)
func layerNormStatistics(_ row: UnsafePointer<Float>, count n: Int, epsilon: Float) -> (Float, Float) {
    typealias D = SIMD8<Double>
    @inline(__always) func load(_ i: Int) -> D { D(UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)) }
    @inline(__always) func total(_ lanes: D) -> Double {
        var t = lanes[0]
        for l in 1..<8 { t += lanes[l] }
        return t
    }
    let whole = n / 8 * 8
    var acc = D()
    var i = 0
    while i < whole { acc += load(i); i += 8 }
    var s = total(acc)
    while i < n { s += Double(row[i]); i += 1 }
    let m = s / Double(n)
    let mv = D(repeating: m)
    acc = D()
    i = 0
    while i < whole { let d = load(i) - mv; acc += d * d; i += 8 }
    var s2 = total(acc)
    while i < n { let d = Double(row[i]) - m; s2 += d * d; i += 1 }
    return (Float(m), Float(1 / (s2 / Double(n) + Double(epsilon)).squareRoot()))
}

/// out[i] = (x[i] − mean) · inv · scale[i] + shift[i], sixteen lanes at a time.
@inline(__always)
func layerNormRow(_ x: UnsafePointer<Float>, count n: Int, mean: Float, inv: Float, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
                  out: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    @inline(__always) func load(_ p: UnsafePointer<Float>, _ i: Int) -> V { UnsafeRawPointer(p + i).loadUnaligned(as: V.self) }
    let mv = V(repeating: mean), iv = V(repeating: inv)
    var i = 0
    while i + 16 <= n {
        UnsafeMutableRawPointer(out + i).storeBytes(of: (load(x, i) - mv) * iv * load(scale, i) + load(shift, i), as: V.self)
        i += 16
    }
    while i < n { out[i] = (x[i] - mean) * inv * scale[i] + shift[i]; i += 1 }
}
