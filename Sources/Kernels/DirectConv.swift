// Direct 2-D convolution for layers whose reduction is short (few input channels × a small
// kernel, such as a first layer over a grey image), where im2col + GEMM spends its time
// copying columns and the GEMM cannot fill its tiles.
//
// Contract
//   y[m, oy, ox] = Σ_{c, ky, kx} w[m, c, ky, kx] · xp[c, oy + ky, ox + kx]
//   for one sample: x is (cin × ih × iw), w is (cout × cin × kh × kw), y is (cout × oh × ow),
//   all row-major; xp is x with `padTop`/`padLeft` zero rows/columns before and enough after
//   (oh = ih + padTop + padBottom − kh + 1, likewise ow). Stride 1, dilation 1, one group.
//   Needs ow ≥ 8 without AVX-512 (any ow with it). y is overwritten; no bias. The weights come regrouped by
//   `conv2dDirectPackWeights` (once per call, shared by every sample and thread).
// Accumulation order
//   One fused multiply-add chain per output over k = (c, ky, kx) in increasing order, from 0,
//   padding terms included: the chain of the im2col + `gemm` path (which multiplies the
//   padding's zero columns too), so both give the same bits. Eight output channels share
//   each input vector; the last vector of a row overlaps the one before it and rewrites the
//   same values.

import KernelsAVX512

/// Naive twin of `conv2dDirect`: the same chains, one output at a time.
public func conv2dDirectReference(x: UnsafePointer<Float>, cin: Int, ih: Int, iw: Int, w: UnsafePointer<Float>, cout: Int, kh: Int, kw: Int,
                                  padTop: Int, padLeft: Int, oh: Int, ow: Int, y: UnsafeMutablePointer<Float>) {
    for m in 0..<cout {
        for oy in 0..<oh {
            for ox in 0..<ow {
                var acc: Float = 0
                for c in 0..<cin {
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let iy = oy + ky - padTop, ix = ox + kx - padLeft
                            let v: Float = iy >= 0 && iy < ih && ix >= 0 && ix < iw ? x[(c * ih + iy) * iw + ix] : 0
                            acc = acc.addingProduct(v, w[((m * cin + c) * kh + ky) * kw + kx])
                        }
                    }
                }
                y[(m * oh + oy) * ow + ox] = acc
            }
        }
    }
}

/// The scratch `conv2dDirect` needs per sample in flight, in floats: the padded input, and 16
/// floats the AVX-512 block may read past it on rows narrower than its vector.
public func conv2dDirectScratch(cin: Int, kh: Int, kw: Int, oh: Int, ow: Int) -> Int {
    cin * (oh + kh - 1) * (ow + kw - 1) + 16
}

/// The size of `conv2dDirectPackWeights`'s output, in floats.
public func conv2dDirectPackedWeights(cin: Int, cout: Int, kh: Int, kw: Int) -> Int { (cout + 7) / 8 * 8 * cin * kh * kw }

/// The weights regrouped for `conv2dDirect`, once per call: wt[block][k][8], eight output
/// channels side by side (zeros past cout).
public func conv2dDirectPackWeights(_ w: UnsafePointer<Float>, cin: Int, cout: Int, kh: Int, kw: Int, into wt: UnsafeMutablePointer<Float>) {
    let kk = cin * kh * kw
    for b in 0..<((cout + 7) / 8) {
        for k in 0..<kk {
            for j in 0..<8 {
                let m = b * 8 + j
                wt[(b * kk + k) * 8 + j] = m < cout ? w[m * kk + k] : 0
            }
        }
    }
}

/// One sample, with the weights as `conv2dDirectPackWeights` left them; see the file header
/// for the contract. With `blocks`, only those blocks of eight output channels are written.
/// With AVX-512 (and `isa` not forcing the baseline), every row takes the 16-column block,
/// `conv2dDirectBlock16AVX512` (one masked vector for rows under 16); the bits are the same
/// either way.
public func conv2dDirect(x: UnsafePointer<Float>, cin: Int, ih: Int, iw: Int, packedWeights wt: UnsafePointer<Float>, cout: Int, kh: Int, kw: Int,
                         padTop: Int, padLeft: Int, oh: Int, ow: Int, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                         blocks only: Range<Int>? = nil, isa: KernelISA = .detected) {
    let wide = isa == .avx512 && KernelISA.detected == .avx512
    precondition(ow >= 8 || (wide && ow >= 1), "conv2dDirect needs at least 8 output columns without AVX-512, got \(ow)")
    typealias V = SIMD8<Float>
    let ph = oh + kh - 1, pw = ow + kw - 1, kk = cin * kh * kw
    // The zero-padded input.
    let xp = scratch
    xp.update(repeating: 0, count: cin * ph * pw)
    for c in 0..<cin {
        for iy in 0..<ih where iy + padTop < ph {
            let row = xp + (c * ph + iy + padTop) * pw + padLeft
            row.update(from: x + (c * ih + iy) * iw, count: max(0, min(iw, pw - padLeft)))
        }
    }
    // `only`: these blocks of eight output channels (threads splitting one sample's channels).
    for b in only ?? 0..<((cout + 7) / 8) {
        let wb = wt + b * kk * 8
        let channels = min(8, cout - b * 8)
        if wide {
            conv2dDirectBlock16AVX512(xp: xp, ph: ph, pw: pw, cin: cin, kh: kh, kw: kw, weights: wb, channels: channels,
                                      oh: oh, ow: ow, y: y + b * 8 * oh * ow)
            continue
        }
        for oy in 0..<oh {
            var ox = 0
            while ox < ow {
                let x0 = min(ox, ow - 8)
                var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
                var k = 0
                for c in 0..<cin {
                    for ky in 0..<kh {
                        let src = xp + (c * ph + oy + ky) * pw + x0
                        for kx in 0..<kw {
                            let v = UnsafeRawPointer(src + kx).loadUnaligned(as: V.self)
                            let wk = wb + k * 8
                            a0 = a0.addingProduct(v, wk[0]); a1 = a1.addingProduct(v, wk[1])
                            a2 = a2.addingProduct(v, wk[2]); a3 = a3.addingProduct(v, wk[3])
                            a4 = a4.addingProduct(v, wk[4]); a5 = a5.addingProduct(v, wk[5])
                            a6 = a6.addingProduct(v, wk[6]); a7 = a7.addingProduct(v, wk[7])
                            k += 1
                        }
                    }
                }
                let out = y + (b * 8 * oh + oy) * ow + x0
                let plane = oh * ow
                withUnsafeTemporaryAllocation(of: V.self, capacity: 8) { acc in
                    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7
                    for j in 0..<channels { UnsafeMutableRawPointer(out + j * plane).storeBytes(of: acc[j], as: V.self) }
                }
                ox = x0 + 8
            }
        }
    }
}
