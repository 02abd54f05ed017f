import Kernels

// The window of a Conv or pool over its input: which input offset each output position reads
// at each kernel offset. Convolution.swift and Pooling.swift use it.

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
    /// The table as runs, for im2col, col2im and pooling (`Kernels.WindowRuns`).
    let windowRuns: WindowRuns
    /// For a 2-D window without padding: output (oy, ox) at kernel offset q reads input
    /// oy·rowStep + ox·colStep + offsets[q]. Nil otherwise.
    let affine: (rowStep: Int, colStep: Int, offsets: [Int])?
    /// A Conv's choice of kernel over this window (`OpContext.directConvPads`) for a group count
    /// and reduction length, once worked out: the node's attributes do not change, and at
    /// batch 1 reading them (five dictionary lookups) was a visible part of a small Conv.
    var directConv: (group: Int, reduction: Int, pads: (Int, Int)?)?
    /// Strides, dilations and leading pads per spatial dimension (Conv windows).
    var strides: [Int] = [], dilations: [Int] = [], padBegin: [Int] = []

    /// A 2-D 1 × 1 window that reads every input position once (no padding, output = input):
    /// its im2col columns are the input's own rows.
    var isPointwise: Bool {
        inSpatial.count == 2 && kernelCount == 1 && outSpatial == inSpatial && padBegin.allSatisfy { $0 == 0 }
    }

    /// The 2-D window as `Kernels.depthwiseConv2d` takes it; nil for other ranks.
    var depthwise: DepthwiseGeometry? {
        guard inSpatial.count == 2, padBegin.count == 2, strides.count == 2, dilations.count == 2 else { return nil }
        return DepthwiseGeometry(ih: inSpatial[0], iw: inSpatial[1], kh: kernel[0], kw: kernel[1],
                                 strideH: strides[0], strideW: strides[1], dilationH: dilations[0], dilationW: dilations[1],
                                 padTop: padBegin[0], padLeft: padBegin[1], oh: outSpatial[0], ow: outSpatial[1])
    }

    init(inSpatial: [Int], kernel: [Int], outSpatial: [Int], table: [Int]) {
        self.inSpatial = inSpatial
        self.kernel = kernel
        self.outSpatial = outSpatial
        self.table = table
        let kq = kernel.reduce(1, *), p = outSpatial.reduce(1, *)
        windowRuns = WindowRuns(table: table, kernelCount: kq, outCount: p, inCount: inSpatial.reduce(1, *))
        affine = WindowGeometry.affineForm(outSpatial: outSpatial, kernelCount: kq, table: table)
    }

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

    /// See `WindowRuns.forEachRun`.
    @inline(__always)
    func forEachRun(_ body: (_ q: Int, _ out: Int, _ input: Int, _ count: Int, _ step: Int) -> Void) { windowRuns.forEachRun(body) }

    /// See `WindowRuns.im2col`.
    func im2col(_ src: UnsafePointer<Float>, channels: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
        windowRuns.im2col(src, channels: channels, into: cols, ld: ld)
    }

    /// The im2col columns of output rows oy0..<oy1 of a 2-D window: row c·kq + q of `cols`
    /// (`ld` apart) holds, for each output (oy, ox) in order, the input at tap q of channel c, 0
    /// outside the plane: the same values as `im2col`'s columns of those outputs.
    func im2colRows(_ src: UnsafePointer<Float>, channels: Int, rows oy0: Int, _ oy1: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
        let (ih, iw) = (inSpatial[0], inSpatial[1]), (kh, kw) = (kernel[0], kernel[1])
        let (sh, sw) = (strides[0], strides[1]), (dh, dw) = (dilations[0], dilations[1])
        let (pt, pl) = (padBegin[0], padBegin[1]), ow = outSpatial[1]
        for c in 0..<channels {
            let plane = src + c * ih * iw
            for ky in 0..<kh {
                for kx in 0..<kw {
                    let row = cols + ((c * kh + ky) * kw + kx) * ld
                    // Outputs whose input column ox·sw + shift is inside the row: lo..<hi.
                    let shift = kx * dw - pl
                    let lo = shift >= 0 ? 0 : min(ow, (-shift + sw - 1) / sw)
                    let hi = max(lo, min(ow, iw - shift <= 0 ? 0 : (iw - shift + sw - 1) / sw))
                    for oy in oy0..<oy1 {
                        let dst = row + (oy - oy0) * ow
                        let iy = oy * sh - pt + ky * dh
                        // NOTE: rows are short (7-112 floats): a memcpy and two memsets per
                        // row were a fifth of a 3 × 3 layer's time at 56 × 56.
                        guard iy >= 0 && iy < ih else { shortFill(dst, count: ow); continue }
                        shortFill(dst, count: lo)
                        let line = plane + iy * iw + shift
                        if sw == 1 {
                            shortCopy(dst + lo, from: line + lo, count: hi - lo)
                        } else if sw == 2 {
                            // Eight outputs from sixteen inputs while they lie inside the row.
                            var ox = lo
                            while ox + 8 <= hi && (ox + 8) * 2 + shift <= iw {
                                let v = UnsafeRawPointer(line + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
                                UnsafeMutableRawPointer(dst + ox).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                                ox += 8
                            }
                            while ox < hi { dst[ox] = line[2 * ox]; ox += 1 }
                        } else {
                            for ox in lo..<hi { dst[ox] = line[ox * sw] }
                        }
                        shortFill(dst + hi, count: ow - hi)
                    }
                }
            }
        }
    }

    /// See `WindowRuns.col2imAdd`.
    func col2imAdd(_ cols: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        windowRuns.col2imAdd(cols, channels: channels, into: dst)
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
        // Sizes no real model has, and whose arithmetic would overflow: refused, not trapped.
        let limit = 1 << 24
        guard (strides + dilations + kernel + (try ints("pads") ?? [])).allSatisfy({ $0 <= limit }) else {
            throw fail("kernel, strides, dilations or pads beyond \(limit): a broken or hostile model")
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
        // The table of window offsets: 8 bytes for every output position and tap.
        _ = try checkedCount(out + kernel)
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
        let geometry = WindowGeometry(inSpatial: inSpatial, kernel: kernel, outSpatial: out, table: table)
        (geometry.strides, geometry.dilations, geometry.padBegin) = (strides, dilations, begin)
        return geometry
    }
}
