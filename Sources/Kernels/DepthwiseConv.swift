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
    depthwisePad(x, geometry: g, layout: l, scratch: scratch)
    let out = scratch + l.phaseSize * s
    let taps = g.kh * g.kw
    let chunks = l.rowWidth / 8, jobs = g.oh * chunks
    withUnsafeTemporaryAllocation(of: Int.self, capacity: taps) { offsets in
        depthwiseTapOffsets(g, layout: l, into: offsets.baseAddress!)
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

/// Where tap q's input for output (0, 0) is in `depthwisePad`'s scratch, for every tap.
// NOTE: without a division per tap: a few of them per plane were most of a 7 × 7 plane's time.
@inline(__always)
func depthwiseTapOffsets(_ g: DepthwiseGeometry, layout l: DepthwiseLayout, into offsets: UnsafeMutablePointer<Int>) {
    var q = 0
    for ky in 0..<g.kh {
        var phase = 0, index = 0  // of padded column kx · dilationW
        for _ in 0..<g.kw {
            offsets[q] = phase * l.phaseSize + ky * g.dilationH * l.phaseWidth + index
            q += 1
            phase += g.dilationW
            while phase >= g.strideW { phase -= g.strideW; index += 1 }
        }
    }
}

/// Copies plane `x` into the start of `scratch` zero-padded and split by column phase (see
/// `DepthwiseLayout`); the `l.phaseWidth · strideW` floats after the phase planes and the
/// `oh · rowWidth` output rows are its staging row.
@inline(__always)
func depthwisePad(_ x: UnsafePointer<Float>, geometry g: DepthwiseGeometry, layout l: DepthwiseLayout, scratch: UnsafeMutablePointer<Float>) {
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

// MARK: - Backward

// Contract of `depthwiseConv2dBackward`, per channel plane, each gradient added (+=) to what the
// pointer holds:
// - db += Σ of eight lane sums: lane l adds dy at the columns ox ≡ l (mod 8), rows then columns
//   in order, from +0; the lanes are then added 0 through 7.
// - dw[q] += the same over the products dy(o) · x(input of o at tap q) (x = 0 in the padding),
//   each lane one FMA chain.
// - dx(i) += one FMA chain from +0 over the taps in decreasing order of the products
//   w[q] · dy(o) of the outputs o that read i at q (the transposed convolution).
// Products with a zero (padding, the columns past ow, the holes between strided outputs) are
// added too; they change no bit, since a chain from +0 is never −0. Threads split channels,
// never a chain, so the bits do not depend on them.

/// The transposed convolution that gives dx: dy spread out by the strides (holes of zeros),
/// the kernel flipped, stride 1, padding the rest of the kernel's reach.
func depthwiseTransposedGeometry(_ g: DepthwiseGeometry) -> DepthwiseGeometry {
    DepthwiseGeometry(ih: (g.oh - 1) * g.strideH + 1, iw: (g.ow - 1) * g.strideW + 1, kh: g.kh, kw: g.kw,
                      strideH: 1, strideW: 1, dilationH: g.dilationH, dilationW: g.dilationW,
                      padTop: (g.kh - 1) * g.dilationH - g.padTop, padLeft: (g.kw - 1) * g.dilationW - g.padLeft, oh: g.ih, ow: g.iw)
}

/// Whether `depthwiseConv2dBackward` takes geometry `g`: leading pads within the kernel's reach
/// (beyond it a window starts past every input it reads; the GEMM path takes those).
public func depthwiseConv2dBackwardApplies(_ g: DepthwiseGeometry) -> Bool {
    g.padTop >= 0 && g.padLeft >= 0 && g.padTop <= (g.kh - 1) * g.dilationH && g.padLeft <= (g.kw - 1) * g.dilationW
}

/// Floats of scratch `depthwiseConv2dBackward` needs for one plane of geometry `g`.
public func depthwiseConv2dBackwardScratch(_ g: DepthwiseGeometry) -> Int {
    let t = depthwiseTransposedGeometry(g)
    let spread = g.strideH == 1 && g.strideW == 1 ? 0 : t.ih * t.iw
    return depthwiseConv2dScratch(g) + depthwiseConv2dScratch(t) + spread + g.ih * g.iw + g.kh * g.kw
}

/// The gradients of one channel plane of a depthwise convolution (see the contract above); any
/// of `dw`, `db`, `dx` may be nil. `scratch` holds `depthwiseConv2dBackwardScratch(g)` floats.
/// Requires `depthwiseConv2dBackwardApplies(g)`.
public func depthwiseConv2dBackward(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>, geometry g: DepthwiseGeometry,
                                    dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?,
                                    scratch: UnsafeMutablePointer<Float>) {
    let taps = g.kh * g.kw
    if dw != nil || db != nil {
        let l = DepthwiseLayout(g)
        let chunks = l.rowWidth / 8
        // dy in rows of rowWidth, zeros past ow, where the forward kernel keeps its outputs.
        let dyRows = scratch + l.phaseSize * g.strideW
        if dw != nil { depthwisePad(x, geometry: g, layout: l, scratch: scratch) }
        for oy in 0..<g.oh {
            shortCopy(dyRows + oy * l.rowWidth, from: dy + oy * g.ow, count: g.ow)
            shortFill(dyRows + oy * l.rowWidth + g.ow, count: l.rowWidth - g.ow)
        }
        if let db {
            var a = SIMD8<Float>()
            for i in 0..<(g.oh * chunks) { a += UnsafeRawPointer(dyRows + 8 * i).loadUnaligned(as: SIMD8<Float>.self) }
            db.pointee += laneSum(a)
        }
        if let dw {
            withUnsafeTemporaryAllocation(of: Int.self, capacity: taps) { offsets in
                depthwiseTapOffsets(g, layout: l, into: offsets.baseAddress!)
                // Taps in groups of at most eight, as even as can be (nine: five and four), each
                // with its own accumulator: one load of dy feeds the group's FMAs. A short group
                // repeats its last tap and drops it.
                let groups = (taps + 7) / 8, perGroup = (taps + groups - 1) / groups
                for q0 in stride(from: 0, to: taps, by: perGroup) {
                    let count = min(perGroup, taps - q0)
                    @inline(__always) func offset(_ j: Int) -> Int { offsets[q0 + min(j, count - 1)] }
                    let o0 = offset(0), o1 = offset(1), o2 = offset(2), o3 = offset(3), o4 = offset(4), o5 = offset(5), o6 = offset(6), o7 = offset(7)
                    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                    var a4 = SIMD8<Float>(), a5 = SIMD8<Float>(), a6 = SIMD8<Float>(), a7 = SIMD8<Float>()
                    for oy in 0..<g.oh {
                        let xs = UnsafeRawPointer(scratch + oy * g.strideH * l.phaseWidth), ds = UnsafeRawPointer(dyRows + oy * l.rowWidth)
                        for cx in 0..<chunks {
                            let d = ds.loadUnaligned(fromByteOffset: 32 * cx, as: SIMD8<Float>.self), xc = xs + 32 * cx
                            a0 = a0.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o0, as: SIMD8<Float>.self))
                            a1 = a1.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o1, as: SIMD8<Float>.self))
                            a2 = a2.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o2, as: SIMD8<Float>.self))
                            a3 = a3.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o3, as: SIMD8<Float>.self))
                            a4 = a4.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o4, as: SIMD8<Float>.self))
                            a5 = a5.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o5, as: SIMD8<Float>.self))
                            a6 = a6.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o6, as: SIMD8<Float>.self))
                            a7 = a7.addingProduct(d, xc.loadUnaligned(fromByteOffset: 4 * o7, as: SIMD8<Float>.self))
                        }
                    }
                    // (No array of the eight: that was a heap allocation per group and plane.)
                    dw[q0] += laneSum(a0)
                    if count > 1 { dw[q0 + 1] += laneSum(a1) }
                    if count > 2 { dw[q0 + 2] += laneSum(a2) }
                    if count > 3 { dw[q0 + 3] += laneSum(a3) }
                    if count > 4 { dw[q0 + 4] += laneSum(a4) }
                    if count > 5 { dw[q0 + 5] += laneSum(a5) }
                    if count > 6 { dw[q0 + 6] += laneSum(a6) }
                    if count > 7 { dw[q0 + 7] += laneSum(a7) }
                }
            }
        }
    }
    guard let dx else { return }
    // dx through the forward kernel: the transposed convolution over dy spread out by the
    // strides, with the kernel flipped (its taps in decreasing order).
    let t = depthwiseTransposedGeometry(g)
    let forwardScratch = scratch + depthwiseConv2dScratch(g)
    let spread = forwardScratch + depthwiseConv2dScratch(t)
    let spreadCount = g.strideH == 1 && g.strideW == 1 ? 0 : t.ih * t.iw
    let sum = spread + spreadCount, flipped = sum + g.ih * g.iw
    for q in 0..<taps { flipped[q] = w[taps - 1 - q] }
    var source = dy
    if spreadCount > 0 {
        shortFill(spread, count: spreadCount)
        for oy in 0..<g.oh {
            let row = spread + oy * g.strideH * t.iw
            for ox in 0..<g.ow { row[ox * g.strideW] = dy[oy * g.ow + ox] }
        }
        source = UnsafePointer(spread)
    }
    depthwiseConv2d(source, weights: flipped, bias: nil, geometry: t, y: sum, scratch: forwardScratch)
    for i in 0..<(g.ih * g.iw) { dx[i] += sum[i] }
}

/// Lanes 0 through 7 added in order.
@inline(__always)
func laneSum(_ a: SIMD8<Float>) -> Float {
    var t = a[0]
    for l in 1..<8 { t += a[l] }
    return t
}

/// The reference twin of `depthwiseConv2dBackward`: each gradient straight from its definition,
/// in the contract's order.
public func depthwiseConv2dBackwardReference(x: UnsafePointer<Float>, dy: UnsafePointer<Float>, weights w: UnsafePointer<Float>, geometry g: DepthwiseGeometry,
                                             dw: UnsafeMutablePointer<Float>?, db: UnsafeMutablePointer<Float>?, dx: UnsafeMutablePointer<Float>?) {
    func laneTotal(_ term: (Int, Int) -> Float, fused: Bool) -> Float {
        var lanes = [Float](repeating: 0, count: 8)
        for oy in 0..<g.oh {
            for ox in 0..<g.ow {
                lanes[ox % 8] = fused ? lanes[ox % 8].addingProduct(dy[oy * g.ow + ox], term(oy, ox)) : lanes[ox % 8] + dy[oy * g.ow + ox]
            }
        }
        var t = lanes[0]
        for l in 1..<8 { t += lanes[l] }
        return t
    }
    if let db { db.pointee += laneTotal({ _, _ in 1 }, fused: false) }
    if let dw {
        for ky in 0..<g.kh {
            for kx in 0..<g.kw {
                dw[ky * g.kw + kx] += laneTotal({ oy, ox in
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH, ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                    return iy >= 0 && iy < g.ih && ix >= 0 && ix < g.iw ? x[iy * g.iw + ix] : 0
                }, fused: true)
            }
        }
    }
    if let dx {
        for iy in 0..<g.ih {
            for ix in 0..<g.iw {
                var acc: Float = 0
                for q in stride(from: g.kh * g.kw - 1, through: 0, by: -1) {
                    let ky = q / g.kw, kx = q % g.kw
                    let ry = iy + g.padTop - ky * g.dilationH, rx = ix + g.padLeft - kx * g.dilationW
                    guard ry >= 0, rx >= 0, ry % g.strideH == 0, rx % g.strideW == 0 else { continue }
                    let oy = ry / g.strideH, ox = rx / g.strideW
                    guard oy < g.oh, ox < g.ow else { continue }
                    acc = acc.addingProduct(w[q], dy[oy * g.ow + ox])
                }
                dx[iy * g.iw + ix] += acc
            }
        }
    }
}
