// Depthwise 2-D convolution (one filter per channel, groups = channels): MobileNet, EfficientNet,
// ConvNeXt and MNASNet spend most of their time here.
//
// Contract: one channel plane at a time; x (ih × iw) and y (oh × ow) row-major; w (kh × kw).
// y is overwritten. Each output is one FMA chain over the taps q = (ky, kx) in increasing order,
// starting from +0, with the input at a tap outside the plane taken as 0 (so the product is
// still added, as im2col's zero does), then the bias is added once: exactly the chain that
// im2col + GEMM computes for a group of one channel, so the two paths give the same bits.
// Threads split channel planes only, never a chain.

/// Output geometry of a depthwise convolution (strides, dilations, leading pads).
public struct DepthwiseGeometry: Sendable, Equatable {
    public var ih: Int, iw: Int, kh: Int, kw: Int
    public var strideH: Int, strideW: Int, dilationH: Int, dilationW: Int
    public var padTop: Int, padLeft: Int
    public var oh: Int, ow: Int

    public init(ih: Int, iw: Int, kh: Int, kw: Int, strideH: Int, strideW: Int, dilationH: Int, dilationW: Int,
                padTop: Int, padLeft: Int, oh: Int, ow: Int) {
        (self.ih, self.iw, self.kh, self.kw) = (ih, iw, kh, kw)
        (self.strideH, self.strideW, self.dilationH, self.dilationW) = (strideH, strideW, dilationH, dilationW)
        (self.padTop, self.padLeft, self.oh, self.ow) = (padTop, padLeft, oh, ow)
    }
}

/// Floats of scratch `depthwiseConv2d` needs for one plane of geometry `g`.
public func depthwiseConv2dScratch(_ g: DepthwiseGeometry) -> Int {
    let l = DepthwiseLayout(g)
    return l.phaseSize * g.strideW + g.oh * l.rowWidth + l.phaseWidth * g.strideW
}

/// Where `depthwiseConv2d` puts the plane in its scratch: zero-padded, rows of `phaseWidth`,
/// columns split by their remainder modulo the stride into `strideW` phase planes, so that the
/// inputs of consecutive outputs at one tap are consecutive in one phase plane.
struct DepthwiseLayout {
    /// Outputs per row computed (ow rounded up to the vector length; the extra ones are dropped).
    let rowWidth: Int
    /// Rows and columns of the padded plane, columns per phase plane, floats per phase plane.
    let rows: Int, columns: Int, phaseWidth: Int, phaseSize: Int

    init(_ g: DepthwiseGeometry) {
        rowWidth = (g.ow + 7) / 8 * 8
        rows = (g.oh - 1) * g.strideH + (g.kh - 1) * g.dilationH + 1
        columns = (rowWidth - 1) * g.strideW + (g.kw - 1) * g.dilationW + 1
        phaseWidth = (columns + g.strideW - 1) / g.strideW
        phaseSize = rows * phaseWidth
    }
}

/// One channel plane; `scratch` holds `depthwiseConv2dScratch(g)` floats. The plane is first
/// copied into the scratch with its padding as zeros (see `DepthwiseLayout`); then eight rows of
/// eight outputs at a time are computed in vector registers over the taps in order, and written
/// once with the bias. Lane-wise FMA from +0 over the same taps, padding products
/// included: the reference's chain.
// NOTE: taps outermost over a plane accumulator (a load and store of every output per tap) ran
// MobileNetV2's depthwise layers at 1.1-5.9 GMAC/s (7.0 of its 18.5 ms at batch 1, one thread).
public func depthwiseConv2d(_ x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias: Float?, geometry g: DepthwiseGeometry,
                            y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    let l = DepthwiseLayout(g)
    let s = g.strideW
    // The padded plane, by phase: padded column c = ix + padLeft goes to phase c % s, index c / s.
    // A padded row is built whole first (zeros, the row, zeros), then dealt to the phases.
    let padded = scratch + l.phaseSize * s + g.oh * l.rowWidth
    let wide = l.phaseWidth * s
    for r in 0..<l.rows {
        let iy = r - g.padTop
        guard iy >= 0 && iy < g.ih else {
            for phase in 0..<s { shortFill(scratch + phase * l.phaseSize + r * l.phaseWidth, count: l.phaseWidth) }
            continue
        }
        let src = x + iy * g.iw
        let rowStart = s == 1 ? scratch + r * l.phaseWidth : padded
        // Padded columns c in 0..<wide: input column c − padLeft where it is inside the row.
        let lo = min(wide, max(0, g.padLeft)), hi = max(lo, min(wide, g.iw + g.padLeft))
        shortFill(rowStart, count: lo)
        shortCopy(rowStart + lo, from: src + (lo - g.padLeft), count: hi - lo)
        shortFill(rowStart + hi, count: wide - hi)
        guard s > 1 else { continue }
        if s == 2 {
            let even = scratch + r * l.phaseWidth, odd = even + l.phaseSize
            var j = 0
            while j + 8 <= l.phaseWidth {
                let v = UnsafeRawPointer(padded + 2 * j).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(even + j).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(odd + j).storeBytes(of: v.oddHalf, as: SIMD8<Float>.self)
                j += 8
            }
            while j < l.phaseWidth {
                even[j] = padded[2 * j]
                odd[j] = padded[2 * j + 1]
                j += 1
            }
        } else {
            for phase in 0..<s {
                let dst = scratch + phase * l.phaseSize + r * l.phaseWidth
                for j in 0..<l.phaseWidth { dst[j] = padded[j * s + phase] }
            }
        }
    }
    let out = scratch + l.phaseSize * s
    let taps = g.kh * g.kw
    let chunks = l.rowWidth / 8, jobs = g.oh * chunks
    withUnsafeTemporaryAllocation(of: Int.self, capacity: taps) { offsets in
        // Where tap q's input for output (0, 0) is in the scratch.
        // (Without a division per tap: a few of them per plane were most of a 7 × 7 plane's time.)
        var q = 0
        for ky in 0..<g.kh {
            var phase = 0, index = 0  // of padded column kx · dilationW
            for _ in 0..<g.kw {
                offsets[q] = phase * l.phaseSize + ky * g.dilationH * l.phaseWidth + index
                q += 1
                phase += g.dilationW
                while phase >= s { phase -= s; index += 1 }
            }
        }
        // Jobs of eight outputs (row oy, columns 8·cx…), eight jobs at a time: eight independent
        // chains keep the FMA units busy where one row's chains would wait on each other (one
        // chain at a time ran 7 × 7 planes at 2.5 GMAC/s).
        var job = 0, oy = 0, cx = 0
        @inline(__always) func next() -> (UnsafePointer<Float>, UnsafeMutablePointer<Float>) {
            let r = (UnsafePointer(scratch + oy * g.strideH * l.phaseWidth + cx * 8), out + oy * l.rowWidth + cx * 8)
            cx += 1
            if cx == chunks { cx = 0; oy += 1 }
            return r
        }
        // The last group repeats its last job where fewer than eight are left (the same values
        // written twice): eight chains side by side take about as long as one.
        while job < jobs {
            let n = jobs - job
            let (s0, d0) = next()
            let (s1, d1) = n > 1 ? next() : (s0, d0), (s2, d2) = n > 2 ? next() : (s1, d1), (s3, d3) = n > 3 ? next() : (s2, d2)
            let (s4, d4) = n > 4 ? next() : (s3, d3), (s5, d5) = n > 5 ? next() : (s4, d4), (s6, d6) = n > 6 ? next() : (s5, d5)
            let (s7, d7) = n > 7 ? next() : (s6, d6)
            var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
            var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
            for q in 0..<taps {
                let o = offsets[q]
                let wv = SIMD8<Float>(repeating: w[q])
                a0 = a0.addingProduct(wv, UnsafeRawPointer(s0 + o).loadUnaligned(as: SIMD8<Float>.self))
                a1 = a1.addingProduct(wv, UnsafeRawPointer(s1 + o).loadUnaligned(as: SIMD8<Float>.self))
                a2 = a2.addingProduct(wv, UnsafeRawPointer(s2 + o).loadUnaligned(as: SIMD8<Float>.self))
                a3 = a3.addingProduct(wv, UnsafeRawPointer(s3 + o).loadUnaligned(as: SIMD8<Float>.self))
                a4 = a4.addingProduct(wv, UnsafeRawPointer(s4 + o).loadUnaligned(as: SIMD8<Float>.self))
                a5 = a5.addingProduct(wv, UnsafeRawPointer(s5 + o).loadUnaligned(as: SIMD8<Float>.self))
                a6 = a6.addingProduct(wv, UnsafeRawPointer(s6 + o).loadUnaligned(as: SIMD8<Float>.self))
                a7 = a7.addingProduct(wv, UnsafeRawPointer(s7 + o).loadUnaligned(as: SIMD8<Float>.self))
            }
            UnsafeMutableRawPointer(d0).storeBytes(of: a0, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d1).storeBytes(of: a1, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d2).storeBytes(of: a2, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d3).storeBytes(of: a3, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d4).storeBytes(of: a4, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d5).storeBytes(of: a5, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d6).storeBytes(of: a6, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(d7).storeBytes(of: a7, as: SIMD8<Float>.self)
            job += 8
        }
    }
    for oy in 0..<g.oh {
        let src = out + oy * l.rowWidth, dst = y + oy * g.ow
        if let bias {
            for i in 0..<g.ow { dst[i] = src[i] + bias }
        } else {
            shortCopy(dst, from: src, count: g.ow)
        }
    }
}

/// Zeros `count` floats, eight at a time: the rows here are short (a few to a hundred floats),
/// where a call to memset per row cost more than the row.
@inline(__always)
public func shortFill(_ p: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i + 8 <= count {
        UnsafeMutableRawPointer(p + i).storeBytes(of: SIMD8<Float>(), as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { p[i] = 0; i += 1 }
}

/// Copies `count` floats, eight at a time (see `shortFill`).
@inline(__always)
public func shortCopy(_ p: UnsafeMutablePointer<Float>, from q: UnsafePointer<Float>, count: Int) {
    var i = 0
    while i + 8 <= count {
        UnsafeMutableRawPointer(p + i).storeBytes(of: UnsafeRawPointer(q + i).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { p[i] = q[i]; i += 1 }
}

/// The reference twin: one output at a time, straight from the definition.
public func depthwiseConv2dReference(_ x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias: Float?, geometry g: DepthwiseGeometry,
                                     y: UnsafeMutablePointer<Float>) {
    for oy in 0..<g.oh {
        for ox in 0..<g.ow {
            var acc: Float = 0
            for ky in 0..<g.kh {
                for kx in 0..<g.kw {
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH, ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                    let v: Float = iy >= 0 && iy < g.ih && ix >= 0 && ix < g.iw ? x[iy * g.iw + ix] : 0
                    acc = acc.addingProduct(w[ky * g.kw + kx], v)
                }
            }
            y[oy * g.ow + ox] = bias.map { acc + $0 } ?? acc
        }
    }
}
