// Depthwise 2-D convolution (one filter per channel, groups = channels): MobileNet, EfficientNet,
// ConvNeXt and MNASNet spend most of their time here.
//
// Contract: one channel plane at a time; x (ih × iw) and y (oh × ow) row-major; w (kh × kw).
// y is overwritten. Each output is one FMA chain over the taps q = (ky, kx) in increasing order,
// starting from +0, with the input at a tap outside the plane taken as 0 (so the product is
// still added, as im2col's zero does), then the bias is added once: exactly the chain that
// im2col + GEMM computes for a group of one channel, so the two paths give the same bits.
// Threads split channel planes only, never a chain.

import KernelsAVX512

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
    if depthwiseRowsApply(g) { return DepthwiseRowsLayout(g).floats }
    if depthwiseBlockedApply(g) { return DepthwiseBlockedLayout(g).floats }
    let l = DepthwisePhaseLayout(g)
    return l.phases * l.planeSize + l.staging
}

/// Whether `depthwiseConv2d` reads the planes in place (`depthwiseRowsAVX512`).
// NOTE: 3 × 3 at stride 1 only: 14 × 14 rows (one vector, two lanes wasted), 5 × 5 kernels and
// stride 2 ran slower in place than over the padded copy (see DepthwiseRows.swift).
func depthwiseRowsApply(_ g: DepthwiseGeometry) -> Bool {
    KernelISA.detected == .avx512 && g.dilationH == 1 && g.dilationW == 1 && g.strideH == 1 && g.strideW == 1
        && g.kh == 3 && g.kw == 3 && g.ow >= 16
}

/// Whether `depthwiseConv2d` takes sixteen planes at a time (`depthwiseBlockedAVX512`).
// NOTE: where it measured faster than the padded copy (kernel alone, one thread): 1152 × 7 × 7
// 5 × 5 162 → 79 µs, 672 × 14 × 14 5 × 5 176 → 153; past that its transposes in and out cost
// more than the padding saves (240 × 28 × 28 5 × 5 209 → 304, 480 × 14 × 14 3 × 3 73 → 75).
func depthwiseBlockedApply(_ g: DepthwiseGeometry) -> Bool {
    KernelISA.detected == .avx512 && g.padTop >= 0 && g.padLeft >= 0 && !depthwiseRowsApply(g)
        && (g.oh * g.ow <= 64 || g.kh * g.kw >= 25 && g.oh * g.ow <= 196)
}

extension DepthwiseBlockedLayout {
    init(_ g: DepthwiseGeometry) {
        self.init(oh: g.oh, ow: g.ow, kh: g.kh, kw: g.kw, strideH: g.strideH, strideW: g.strideW,
                  dilationH: g.dilationH, dilationW: g.dilationW)
    }
}

extension DepthwiseRowsLayout {
    init(_ g: DepthwiseGeometry) {
        self.init(iw: g.iw, padLeft: g.padLeft, ow: g.ow)
    }
}

/// Where `depthwiseConv2d` puts the plane in its scratch: zero-padded and split by the
/// remainders of its rows and columns modulo the strides into strideH · strideW phase planes
/// of `rows` × `width`, so that at every tap output (oy, ox) reads row oy + r, column ox + c of
/// one phase plane (r, c fixed by the tap). Over the flat index o = oy · width + ox the outputs
/// are then one run of consecutive vectors, as if of stride 1; the `width − ow` outputs past
/// each row's end are computed and dropped. Slack of zeros after each plane feeds the last
/// vector's dropped lanes.
struct DepthwisePhaseLayout {
    /// Columns and rows of a phase plane, floats per phase plane (slack included), phase planes.
    let width: Int, rows: Int, planeSize: Int, phases: Int
    /// Outputs computed (oh · width) and the floats they are computed into (flat rounded up to
    /// a multiple of 16: whole vectors of either length).
    let flat: Int, staging: Int

    init(_ g: DepthwiseGeometry) {
        width = g.ow + (g.kw - 1) * g.dilationW / g.strideW
        rows = g.oh + (g.kh - 1) * g.dilationH / g.strideH
        flat = g.oh * width
        let lanes = (flat + 15) / 16 * 16
        planeSize = rows * width + (lanes - flat) + (g.kw - 1) * g.dilationW / g.strideW
        phases = g.strideH * g.strideW
        staging = lanes
    }
}

/// One channel plane; `scratch` holds `depthwiseConv2dScratch(g)` floats (see the planes'
/// version below).
public func depthwiseConv2d(_ x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias: Float?, geometry g: DepthwiseGeometry,
                            y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    withUnsafePointer(to: bias ?? 0) { b in
        depthwiseConv2d(x, planes: 0..<1, channels: 1, weights: w, bias: bias == nil ? nil : b, geometry: g, y: y, scratch: scratch) { _, _ in }
    }
}

/// The planes `planes` of x (N · C planes of ih × iw, plane p of channel p mod `channels`) into
/// the same planes of y, with weights (C × kh × kw) and bias (C) or nil; `finish` is called on
/// runs of output planes once they are written (the fused activation), each value once.
/// `scratch` holds `depthwiseConv2dScratch(g)` floats.
///
/// 3 × 3 planes at stride 1 with rows of sixteen or more are read in place on AVX-512
/// (`depthwiseRowsAVX512`, the same chains); other planes of up to 64 outputs (196 with 5 × 5
/// kernels) go sixteen channels at a time (`depthwiseBlockedAVX512`, the same chains). Every other plane is copied into the scratch
/// zero-padded, by phase (see `DepthwisePhaseLayout`; the
/// zeros are the same for every plane, so they are written once per call); then all its
/// outputs are computed as vectors over the flat index (`depthwiseFlatVectors`, sixteen lanes
/// on AVX-512, eight on AVX2) and copied out row by row with the bias. Lane-wise FMA from +0
/// over the same taps, padding products included: the reference's chain.
// NOTE: eight-output jobs per row and plane (rows of ow rounded up to 8, eight lanes on every
// ISA, zeros and a scalar copy-out per plane) ran 7 × 7 planes at 2.8 GMAC/s and 14 × 14 at
// 5.2 (156 ns a 7 × 7 plane): MobileNetV2's depthwise layers took 4.4 of its 12.4 ms at batch 1.
public func depthwiseConv2d(_ x: UnsafePointer<Float>, planes: Range<Int>, channels: Int, weights w: UnsafePointer<Float>,
                            bias: UnsafePointer<Float>?, geometry g: DepthwiseGeometry, y: UnsafeMutablePointer<Float>,
                            scratch: UnsafeMutablePointer<Float>, finish: (UnsafeMutablePointer<Float>, Int) -> Void) {
    let taps = g.kh * g.kw, inP = g.ih * g.iw, outP = g.oh * g.ow
    if depthwiseRowsApply(g) {
        // Straight from the planes (`depthwiseRowsAVX512`): no copies in or out.
        let lo = x + planes.lowerBound * inP, hi = x + planes.upperBound * inP
        let layout = DepthwiseRowsLayout(g)
        depthwiseRowsZeros(scratch, layout: layout)
        var finished = planes.lowerBound
        for plane in planes {
            let c = plane % channels
            depthwiseRowsAVX512(x: x + plane * inP, ih: g.ih, iw: g.iw, padTop: g.padTop, padLeft: g.padLeft, oh: g.oh, ow: g.ow,
                                weights: w + c * taps, bias: bias.map { $0[c] }, y: y + plane * outP, lo: lo, hi: hi, layout: layout,
                                scratch: scratch)
            finishRuns(after: plane, of: planes, planeSize: outP, y: y, finished: &finished, finish)
        }
        return
    }
    if depthwiseBlockedApply(g) {
        // Sixteen planes of one sample at a time (`depthwiseBlockedAVX512`).
        let layout = DepthwiseBlockedLayout(g)
        depthwiseBlockedZeros(scratch, layout: layout)
        var finished = planes.lowerBound, plane = planes.lowerBound
        while plane < planes.upperBound {
            let c = plane % channels
            let count = min(16, planes.upperBound - plane, channels - c)
            depthwiseBlockedAVX512(x: x + plane * inP, inP: inP, ih: g.ih, iw: g.iw, count: count, kh: g.kh, kw: g.kw,
                                   strideH: g.strideH, strideW: g.strideW, dilationH: g.dilationH, dilationW: g.dilationW,
                                   padTop: g.padTop, padLeft: g.padLeft, oh: g.oh, ow: g.ow, weights: w + c * taps,
                                   bias: bias.map { $0 + c }, y: y + plane * outP, outP: outP, layout: layout, scratch: scratch)
            plane += count
            finishRuns(after: plane - 1, of: planes, planeSize: outP, y: y, finished: &finished, finish)
        }
        return
    }
    let l = DepthwisePhaseLayout(g)
    let out = scratch + l.phases * l.planeSize
    let sH = g.strideH, sW = g.strideW, wide = l.width * sW
    // Padded columns lo..<hi of a row hold input columns lo − padLeft…; the rest are zeros.
    let lo = min(wide, max(0, g.padLeft)), hi = max(lo, min(wide, g.iw + g.padLeft))
    shortFill(scratch, count: l.phases * l.planeSize)
    let wideAVX = KernelISA.detected == .avx512
    withUnsafeTemporaryAllocation(of: Int.self, capacity: taps + 2 * sW + 2 * sH) { buffer in
        let offsets = buffer.baseAddress!, columns = offsets + taps, rows = columns + 2 * sW
        // Row phase a's rows i in rows[2a]..<rows[2a + 1] read input row i · sH + a − padTop.
        for a in 0..<sH {
            rows[2 * a] = min(l.rows, max(0, (g.padTop - a + sH - 1) / sH))
            rows[2 * a + 1] = max(rows[2 * a], min(l.rows, (g.ih + g.padTop - a + sH - 1) / sH))
        }
        // Phase c's columns j in columns[2c]..<columns[2c + 1] read input column j · sW + c − padLeft.
        for c in 0..<sW {
            columns[2 * c] = min(l.width, max(0, (g.padLeft - c + sW - 1) / sW))
            columns[2 * c + 1] = max(columns[2 * c], min(l.width, (g.iw + g.padLeft - c + sW - 1) / sW))
        }
        var q = 0
        for ky in 0..<g.kh {
            let ry = ky * g.dilationH
            for kx in 0..<g.kw {
                let rx = kx * g.dilationW
                offsets[q] = ((ry % sH) * sW + rx % sW) * l.planeSize + ry / sH * l.width + rx / sW
                q += 1
            }
        }
        var finished = planes.lowerBound
        for plane in planes {
            let c = plane % channels
            let xp = x + plane * inP, yp = y + plane * outP
            // The plane's rows into the phase planes (rows outside the input stay zero).
            for a in 0..<sH {
                let phaseRow = scratch + a * sW * l.planeSize
                var i = rows[2 &* a]
                while i < rows[2 &* a &+ 1] {
                    let iy: Int = i &* sH &+ a &- g.padTop
                    let base = phaseRow + i &* l.width
                    if sW == 1 {
                        copyRun(base + lo, from: xp + (iy &* g.iw &+ lo &- g.padLeft), count: hi - lo)
                    } else {
                        dealPhases(xp + iy &* g.iw, count: g.iw, padLeft: g.padLeft, into: base, phaseSize: l.planeSize, stride: sW, columns: columns)
                    }
                    i += 1
                }
            }
            if wideAVX {
                depthwiseFlatVectorsAVX512(planes: scratch, offsets: offsets, taps: taps, weights: w + c * taps, count: (l.flat + 15) / 16, out: out)
            } else {
                depthwiseFlatVectors(SIMD8<Float>.self, planes: scratch, offsets: offsets, taps: taps, weights: w + c * taps,
                                     count: (l.flat + 7) / 8, out: out)
            }
            // Rows out with the bias.
            if let bias {
                let b = bias[c]
                for oy in 0..<g.oh { copyRun(yp + oy &* g.ow, from: out + oy &* l.width, count: g.ow, adding: b) }
            } else {
                for oy in 0..<g.oh { copyRun(yp + oy &* g.ow, from: out + oy &* l.width, count: g.ow) }
            }
            finishRuns(after: plane, of: planes, planeSize: outP, y: y, finished: &finished, finish)
        }
    }
}

/// Calls `finish` on the output planes finished..<plane + 1 once they hold 4K values or the
/// range ends, and moves `finished` past them: the activation runs while they are still in
/// L1/L2 (per plane, a 7 × 7 or 14 × 14 one paid its call and its partial vector every 49-196).
@inline(__always)
func finishRuns(after plane: Int, of planes: Range<Int>, planeSize: Int, y: UnsafeMutablePointer<Float>, finished: inout Int,
                _ finish: (UnsafeMutablePointer<Float>, Int) -> Void) {
    guard plane + 1 == planes.upperBound || (plane + 1 - finished) * planeSize >= 4096 else { return }
    finish(y + finished * planeSize, (plane + 1 - finished) * planeSize)
    finished = plane + 1
}

/// Copies `count` floats (plus `adding`, when given, to each), in vectors that may overlap (the
/// same value written twice) so that short runs take two moves: the rows here are 1 to a few
/// hundred floats.
@inline(__always)
func copyRun(_ d: UnsafeMutablePointer<Float>, from s: UnsafePointer<Float>, count n: Int, adding b: Float? = nil) {
    @inline(__always) func move<V: SIMD>(_: V.Type, _ i: Int) where V.Scalar == Float {
        let v = UnsafeRawPointer(s + i).loadUnaligned(as: V.self)
        UnsafeMutableRawPointer(d + i).storeBytes(of: b.map { v + V(repeating: $0) } ?? v, as: V.self)
    }
    if n >= 16 {
        var i = 0
        while i &+ 16 <= n { move(SIMD16<Float>.self, i); i &+= 16 }
        if i < n { move(SIMD16<Float>.self, n &- 16) }
    } else if n >= 8 {
        move(SIMD8<Float>.self, 0); move(SIMD8<Float>.self, n &- 8)
    } else if n >= 4 {
        move(SIMD4<Float>.self, 0); move(SIMD4<Float>.self, n &- 4)
    } else {
        for i in 0..<n { d[i] = b.map { s[i] + $0 } ?? s[i] }
    }
}

/// Deals input row `row` (`count` floats) to the `stride` phase planes: phase c's column j
/// gets input column j · stride + c − padLeft where that is inside the row (the padding's zeros
/// are already there). Row start `base`, planes `phaseSize` apart.
// NOTE: not through a padded copy of the row: each row's vector loads then waited on the
// stores just before them (no store forwarding across two stores); 14 × 14 planes at stride 2
// ran at 2 GMAC/s.
@inline(__always)
func dealPhases(_ row: UnsafePointer<Float>, count: Int, padLeft: Int, into base: UnsafeMutablePointer<Float>, phaseSize: Int,
                stride: Int, columns: UnsafePointer<Int>) {
    for c in 0..<stride {
        var j = columns[2 &* c]
        let end = columns[2 &* c &+ 1]
        let dst = base + c &* phaseSize, src = row + (c &- padLeft)
        if stride == 2 {
            // Eight columns from sixteen floats inside the row.
            while j &+ 8 <= end && 2 &* j &+ c &- padLeft &+ 16 <= count {
                let v = UnsafeRawPointer(src + 2 &* j).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(dst + j).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                j &+= 8
            }
        }
        while j < end { dst[j] = src[j &* stride]; j &+= 1 }
    }
}

/// Where the backward kernel (`depthwiseConv2dBackward`) puts a plane of x: zero-padded, rows of
/// `phaseWidth`, columns split by their remainder modulo the stride into `strideW` phase
/// planes, so that the inputs of consecutive outputs at one tap are consecutive in one phase
/// plane; dy goes in rows of `rowWidth` after them.
struct DepthwiseLayout {
    /// Outputs per row (ow rounded up to the vector length; the extra ones are zero).
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

    /// Floats of scratch the backward kernel's x and dy take for geometry `g`.
    static func scratch(_ g: DepthwiseGeometry) -> Int {
        let l = DepthwiseLayout(g)
        return l.phaseSize * g.strideW + g.oh * l.rowWidth + l.phaseWidth * g.strideW
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
    return DepthwiseLayout.scratch(g) + depthwiseConv2dScratch(t) + spread + g.ih * g.iw + g.kh * g.kw
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
    let forwardScratch = scratch + DepthwiseLayout.scratch(g)
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
