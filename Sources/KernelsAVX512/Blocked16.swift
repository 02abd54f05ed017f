// Activations in blocks of sixteen channels (NCHW16c), AVX-512: per sample, channel 16b + l of
// pixel p at (b · pixels + p) · 16 + l, channels past the tensor's count zero (or what an
// activation makes of zero: finite). Depthwise-separable convolutions run in this layout
// (`Kernels.Blocked16`): a pointwise Conv is then a product whose left operand is already in
// panels (each pixel's sixteen channels of a block side by side), and a depthwise Conv one
// vector chain per pixel over the taps, with no transposes.
//
// Activation `mode` bits as `epilogueRowsAVX512`'s: 1 ReLU, 2 Clip to [lo, hi], 4 SiLU.

/// Rows j < n of `r` to dst + j · 16.
@inline(__always)
func storeRows(_ r: Rows16, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
    store16(dst, r.0)
    if n > 1 { store16(dst + 16, r.1) }
    if n > 2 { store16(dst + 32, r.2) }
    if n > 3 { store16(dst + 48, r.3) }
    if n > 4 { store16(dst + 64, r.4) }
    if n > 5 { store16(dst + 80, r.5) }
    if n > 6 { store16(dst + 96, r.6) }
    if n > 7 { store16(dst + 112, r.7) }
    if n > 8 { store16(dst + 128, r.8) }
    if n > 9 { store16(dst + 144, r.9) }
    if n > 10 { store16(dst + 160, r.10) }
    if n > 11 { store16(dst + 176, r.11) }
    if n > 12 { store16(dst + 192, r.12) }
    if n > 13 { store16(dst + 208, r.13) }
    if n > 14 { store16(dst + 224, r.14) }
    if n > 15 { store16(dst + 240, r.15) }
}

/// Row k of `r` (k < 16).
@inline(__always)
func row(_ r: Rows16, _ k: Int) -> V16 {
    withUnsafeBytes(of: r) { $0.load(fromByteOffset: k &* 64, as: V16.self) }
}

/// Channel blocks `blocks` of one sample: `channels` planes of `pixels` floats at x (NCHW) into
/// blocks of sixteen channels at y, lanes past `channels` zero.
@inline(never)
public func toBlocked16AVX512(_ x: UnsafePointer<Float>, channels c: Int, pixels hw: Int, _ y: UnsafeMutablePointer<Float>,
                              blocks: Range<Int>) {
    for b in blocks {
        let rows = min(16, c &- b &* 16), src = x + b &* 16 &* hw, dst = y + b &* hw &* 16
        if hw < 16 {
            storeRows(transposed16(rowsOfPlanes(src, stride: hw, planes: rows, lanes: hw)), hw, dst)
            continue
        }
        var p = 0
        while p < hw {
            // (A last partial block overlaps the one before: the same values again.)
            let start = min(p, hw &- 16)
            transpose16(src + start, stride: hw, rows: rows, lanes: 16, to: dst + start &* 16)
            p &+= 16
        }
    }
}

/// Channel blocks `blocks` of one sample back: blocks of sixteen channels at x into the first
/// `channels` planes of `pixels` floats at y (NCHW).
@inline(never)
public func fromBlocked16AVX512(_ x: UnsafePointer<Float>, channels c: Int, pixels hw: Int, _ y: UnsafeMutablePointer<Float>,
                                blocks: Range<Int>) {
    for b in blocks {
        let rows = min(16, c &- b &* 16), src = x + b &* hw &* 16, dst = y + b &* 16 &* hw
        if hw < 16 || rows < 16 {
            var p = 0
            while p < hw {
                let n = min(16, hw &- p)
                let r = transposed16(rowsOfPlanes(src + p &* 16, stride: 16, planes: n, lanes: 16))
                for k in 0..<rows { storeLanes(dst + (k &* hw &+ p), row(r, k), n) }
                p &+= 16
            }
            continue
        }
        var p = 0
        while p < hw {
            let start = min(p, hw &- 16)
            transpose16(src + start &* 16, stride: 16, rows: 16, lanes: 16, to: dst + start, stride: hw)
            p &+= 16
        }
    }
}

@_transparent
func activate(_ v: V16, mode: Int, lo: V16, hi: V16) -> V16 {
    var v = v
    if mode & 1 != 0 { v = V16().replacing(with: v, where: v .> 0) }
    if mode & 2 != 0 {
        let m = v.replacing(with: lo, where: lo .>= v)
        v = m.replacing(with: hi, where: hi .< m)
    }
    return v
}

/// A pointwise Conv over pixels p0 ..< p1 of one sample for one group of nb (1 … 4) output
/// blocks: y[b][p] = act(Σ over input channels i in order of x[i / 16][p][i % 16] · w[i][16b …],
/// then + bias[16b …]). x: `inBlocks` blocks of `pixels` pixels; w: per input channel (padded to
/// whole blocks) 16 · nb floats; y: the group's first block, blocks `pixels` · 16 floats apart.
/// Each output lane is one FMA chain from +0 over the input channels in increasing order, then
/// the bias: the same bits for any split of pixels or groups.
@inline(never)
public func pointwise16AVX512(x: UnsafePointer<Float>, inBlocks: Int, pixels hw: Int, p0: Int, p1: Int,
                              w: UnsafePointer<Float>, nb: Int, bias: UnsafePointer<Float>?,
                              y: UnsafeMutablePointer<Float>, mode: Int, lo: Float, hi: Float) {
    let ps = hw &* 16
    switch nb {
    case 4: pointwiseSpan(4, x, inBlocks: inBlocks, planeStride: ps, p0: p0, p1: p1, w, y, bias: bias, mode: mode, lo: lo, hi: hi)
    case 3: pointwiseSpan(3, x, inBlocks: inBlocks, planeStride: ps, p0: p0, p1: p1, w, y, bias: bias, mode: mode, lo: lo, hi: hi)
    case 2: pointwiseSpan(2, x, inBlocks: inBlocks, planeStride: ps, p0: p0, p1: p1, w, y, bias: bias, mode: mode, lo: lo, hi: hi)
    default: pointwiseSpan(1, x, inBlocks: inBlocks, planeStride: ps, p0: p0, p1: p1, w, y, bias: bias, mode: mode, lo: lo, hi: hi)
    }
    if mode & 4 != 0 {
        for b in 0..<nb { siluForwardAVX512(y + (b &* hw &* 16 &+ p0 &* 16), count: (p1 &- p0) &* 16) }
    }
}

/// Pixels p0 ..< p1 of `pointwise16AVX512` for nb (1 … 4) output blocks, 24 / nb pixels at a
/// time (24 accumulators: nb weight loads and 24 / nb broadcasts a step).
// NOTE: transparent (inlined before optimization): as `@inline(__always)` functions, the tiles
// of all four nb stayed calls (the caller was too large for the inliner) and ran with their
// accumulators in memory, at a third of the speed.
@_transparent
func pointwiseSpan(_ nb: Int, _ x: UnsafePointer<Float>, inBlocks: Int, planeStride ps: Int, p0: Int, p1: Int,
                   _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?,
                   mode: Int, lo: Float, hi: Float) {
    // Tiles of 24 / nb pixels, the rest in tiles of a half, a quarter, an eighth of that and
    // one (few constant tiles: each one is a large function once inlined).
    let most = 24 / nb
    var p = p0
    while p < p1 {
        let r = p1 &- p
        let n = r >= most ? most : r >= most / 2 ? most / 2 : r >= most / 4 ? most / 4 : r >= most / 8 ? max(most / 8, 1) : 1
        let xp = x + p &* 16, yp = y + p &* 16
        @_transparent func tile(_ n: Int) {
            pointwiseTile(n, nb, xp, inBlocks: inBlocks, planeStride: ps, w, yp, bias: bias, mode: mode, lo: lo, hi: hi)
        }
        if n == most { tile(most) }
        else if n == most / 2 { tile(most / 2) }
        else if n == most / 4 { tile(most / 4) }
        else if n == most / 8 && most >= 8 { tile(most / 8) }
        else { tile(1) }
        p &+= n
    }
}

/// n pixels × nb output blocks of `pointwise16AVX512` (constants once inlined; n ≤ 24 / nb).
/// Accumulator c{j}_{b}: pixel j, output block b.
@_transparent
func pointwiseTile(_ n: Int, _ nb: Int, _ x: UnsafePointer<Float>, inBlocks: Int, planeStride ps: Int,
                   _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                   bias: UnsafePointer<Float>?, mode: Int, lo: Float, hi: Float) {
    var c0_0 = V16(), c0_1 = V16(), c0_2 = V16(), c0_3 = V16()
    var c1_0 = V16(), c1_1 = V16(), c1_2 = V16(), c1_3 = V16()
    var c2_0 = V16(), c2_1 = V16(), c2_2 = V16(), c2_3 = V16()
    var c3_0 = V16(), c3_1 = V16(), c3_2 = V16(), c3_3 = V16()
    var c4_0 = V16(), c4_1 = V16(), c4_2 = V16(), c4_3 = V16()
    var c5_0 = V16(), c5_1 = V16(), c5_2 = V16(), c5_3 = V16()
    var c6_0 = V16(), c6_1 = V16(), c6_2 = V16()
    var c7_0 = V16(), c7_1 = V16(), c7_2 = V16()
    var c8_0 = V16(), c8_1 = V16(), c9_0 = V16(), c9_1 = V16(), c10_0 = V16(), c10_1 = V16(), c11_0 = V16(), c11_1 = V16()
    var c12_0 = V16(), c13_0 = V16(), c14_0 = V16(), c15_0 = V16(), c16_0 = V16(), c17_0 = V16()
    var c18_0 = V16(), c19_0 = V16(), c20_0 = V16(), c21_0 = V16(), c22_0 = V16(), c23_0 = V16()
    var wp = w
    for ib in 0..<inBlocks {
        let xp = x + ib &* ps
        for k in 0..<16 {
            let w0 = load16(wp), w1 = nb > 1 ? load16(wp + 16) : V16()
            let w2 = nb > 2 ? load16(wp + 32) : V16(), w3 = nb > 3 ? load16(wp + 48) : V16()
            if n > 0 { let a = V16(repeating: xp[0 &+ k]); c0_0 = c0_0.addingProduct(a, w0); if nb > 1 { c0_1 = c0_1.addingProduct(a, w1) }; if nb > 2 { c0_2 = c0_2.addingProduct(a, w2) }; if nb > 3 { c0_3 = c0_3.addingProduct(a, w3) } }
            if n > 1 { let a = V16(repeating: xp[16 &+ k]); c1_0 = c1_0.addingProduct(a, w0); if nb > 1 { c1_1 = c1_1.addingProduct(a, w1) }; if nb > 2 { c1_2 = c1_2.addingProduct(a, w2) }; if nb > 3 { c1_3 = c1_3.addingProduct(a, w3) } }
            if n > 2 { let a = V16(repeating: xp[32 &+ k]); c2_0 = c2_0.addingProduct(a, w0); if nb > 1 { c2_1 = c2_1.addingProduct(a, w1) }; if nb > 2 { c2_2 = c2_2.addingProduct(a, w2) }; if nb > 3 { c2_3 = c2_3.addingProduct(a, w3) } }
            if n > 3 { let a = V16(repeating: xp[48 &+ k]); c3_0 = c3_0.addingProduct(a, w0); if nb > 1 { c3_1 = c3_1.addingProduct(a, w1) }; if nb > 2 { c3_2 = c3_2.addingProduct(a, w2) }; if nb > 3 { c3_3 = c3_3.addingProduct(a, w3) } }
            if n > 4 { let a = V16(repeating: xp[64 &+ k]); c4_0 = c4_0.addingProduct(a, w0); if nb > 1 { c4_1 = c4_1.addingProduct(a, w1) }; if nb > 2 { c4_2 = c4_2.addingProduct(a, w2) }; if nb > 3 { c4_3 = c4_3.addingProduct(a, w3) } }
            if n > 5 { let a = V16(repeating: xp[80 &+ k]); c5_0 = c5_0.addingProduct(a, w0); if nb > 1 { c5_1 = c5_1.addingProduct(a, w1) }; if nb > 2 { c5_2 = c5_2.addingProduct(a, w2) }; if nb > 3 { c5_3 = c5_3.addingProduct(a, w3) } }
            if n > 6 { let a = V16(repeating: xp[96 &+ k]); c6_0 = c6_0.addingProduct(a, w0); if nb > 1 { c6_1 = c6_1.addingProduct(a, w1) }; if nb > 2 { c6_2 = c6_2.addingProduct(a, w2) } }
            if n > 7 { let a = V16(repeating: xp[112 &+ k]); c7_0 = c7_0.addingProduct(a, w0); if nb > 1 { c7_1 = c7_1.addingProduct(a, w1) }; if nb > 2 { c7_2 = c7_2.addingProduct(a, w2) } }
            if n > 8 { let a = V16(repeating: xp[128 &+ k]); c8_0 = c8_0.addingProduct(a, w0); if nb > 1 { c8_1 = c8_1.addingProduct(a, w1) } }
            if n > 9 { let a = V16(repeating: xp[144 &+ k]); c9_0 = c9_0.addingProduct(a, w0); if nb > 1 { c9_1 = c9_1.addingProduct(a, w1) } }
            if n > 10 { let a = V16(repeating: xp[160 &+ k]); c10_0 = c10_0.addingProduct(a, w0); if nb > 1 { c10_1 = c10_1.addingProduct(a, w1) } }
            if n > 11 { let a = V16(repeating: xp[176 &+ k]); c11_0 = c11_0.addingProduct(a, w0); if nb > 1 { c11_1 = c11_1.addingProduct(a, w1) } }
            if n > 12 { let a = V16(repeating: xp[192 &+ k]); c12_0 = c12_0.addingProduct(a, w0) }
            if n > 13 { let a = V16(repeating: xp[208 &+ k]); c13_0 = c13_0.addingProduct(a, w0) }
            if n > 14 { let a = V16(repeating: xp[224 &+ k]); c14_0 = c14_0.addingProduct(a, w0) }
            if n > 15 { let a = V16(repeating: xp[240 &+ k]); c15_0 = c15_0.addingProduct(a, w0) }
            if n > 16 { let a = V16(repeating: xp[256 &+ k]); c16_0 = c16_0.addingProduct(a, w0) }
            if n > 17 { let a = V16(repeating: xp[272 &+ k]); c17_0 = c17_0.addingProduct(a, w0) }
            if n > 18 { let a = V16(repeating: xp[288 &+ k]); c18_0 = c18_0.addingProduct(a, w0) }
            if n > 19 { let a = V16(repeating: xp[304 &+ k]); c19_0 = c19_0.addingProduct(a, w0) }
            if n > 20 { let a = V16(repeating: xp[320 &+ k]); c20_0 = c20_0.addingProduct(a, w0) }
            if n > 21 { let a = V16(repeating: xp[336 &+ k]); c21_0 = c21_0.addingProduct(a, w0) }
            if n > 22 { let a = V16(repeating: xp[352 &+ k]); c22_0 = c22_0.addingProduct(a, w0) }
            if n > 23 { let a = V16(repeating: xp[368 &+ k]); c23_0 = c23_0.addingProduct(a, w0) }
            wp += nb &* 16
        }
    }
    let l = V16(repeating: lo), h = V16(repeating: hi)
    if n > 0 { putTile(c0_0, y + 0, bias, 0, mode, l, h); if nb > 1 { putTile(c0_1, y + (1 &* ps &+ 0), bias, 1, mode, l, h) }; if nb > 2 { putTile(c0_2, y + (2 &* ps &+ 0), bias, 2, mode, l, h) }; if nb > 3 { putTile(c0_3, y + (3 &* ps &+ 0), bias, 3, mode, l, h) } }
    if n > 1 { putTile(c1_0, y + 16, bias, 0, mode, l, h); if nb > 1 { putTile(c1_1, y + (1 &* ps &+ 16), bias, 1, mode, l, h) }; if nb > 2 { putTile(c1_2, y + (2 &* ps &+ 16), bias, 2, mode, l, h) }; if nb > 3 { putTile(c1_3, y + (3 &* ps &+ 16), bias, 3, mode, l, h) } }
    if n > 2 { putTile(c2_0, y + 32, bias, 0, mode, l, h); if nb > 1 { putTile(c2_1, y + (1 &* ps &+ 32), bias, 1, mode, l, h) }; if nb > 2 { putTile(c2_2, y + (2 &* ps &+ 32), bias, 2, mode, l, h) }; if nb > 3 { putTile(c2_3, y + (3 &* ps &+ 32), bias, 3, mode, l, h) } }
    if n > 3 { putTile(c3_0, y + 48, bias, 0, mode, l, h); if nb > 1 { putTile(c3_1, y + (1 &* ps &+ 48), bias, 1, mode, l, h) }; if nb > 2 { putTile(c3_2, y + (2 &* ps &+ 48), bias, 2, mode, l, h) }; if nb > 3 { putTile(c3_3, y + (3 &* ps &+ 48), bias, 3, mode, l, h) } }
    if n > 4 { putTile(c4_0, y + 64, bias, 0, mode, l, h); if nb > 1 { putTile(c4_1, y + (1 &* ps &+ 64), bias, 1, mode, l, h) }; if nb > 2 { putTile(c4_2, y + (2 &* ps &+ 64), bias, 2, mode, l, h) }; if nb > 3 { putTile(c4_3, y + (3 &* ps &+ 64), bias, 3, mode, l, h) } }
    if n > 5 { putTile(c5_0, y + 80, bias, 0, mode, l, h); if nb > 1 { putTile(c5_1, y + (1 &* ps &+ 80), bias, 1, mode, l, h) }; if nb > 2 { putTile(c5_2, y + (2 &* ps &+ 80), bias, 2, mode, l, h) }; if nb > 3 { putTile(c5_3, y + (3 &* ps &+ 80), bias, 3, mode, l, h) } }
    if n > 6 { putTile(c6_0, y + 96, bias, 0, mode, l, h); if nb > 1 { putTile(c6_1, y + (1 &* ps &+ 96), bias, 1, mode, l, h) }; if nb > 2 { putTile(c6_2, y + (2 &* ps &+ 96), bias, 2, mode, l, h) } }
    if n > 7 { putTile(c7_0, y + 112, bias, 0, mode, l, h); if nb > 1 { putTile(c7_1, y + (1 &* ps &+ 112), bias, 1, mode, l, h) }; if nb > 2 { putTile(c7_2, y + (2 &* ps &+ 112), bias, 2, mode, l, h) } }
    if n > 8 { putTile(c8_0, y + 128, bias, 0, mode, l, h); if nb > 1 { putTile(c8_1, y + (1 &* ps &+ 128), bias, 1, mode, l, h) } }
    if n > 9 { putTile(c9_0, y + 144, bias, 0, mode, l, h); if nb > 1 { putTile(c9_1, y + (1 &* ps &+ 144), bias, 1, mode, l, h) } }
    if n > 10 { putTile(c10_0, y + 160, bias, 0, mode, l, h); if nb > 1 { putTile(c10_1, y + (1 &* ps &+ 160), bias, 1, mode, l, h) } }
    if n > 11 { putTile(c11_0, y + 176, bias, 0, mode, l, h); if nb > 1 { putTile(c11_1, y + (1 &* ps &+ 176), bias, 1, mode, l, h) } }
    if n > 12 { putTile(c12_0, y + 192, bias, 0, mode, l, h) }
    if n > 13 { putTile(c13_0, y + 208, bias, 0, mode, l, h) }
    if n > 14 { putTile(c14_0, y + 224, bias, 0, mode, l, h) }
    if n > 15 { putTile(c15_0, y + 240, bias, 0, mode, l, h) }
    if n > 16 { putTile(c16_0, y + 256, bias, 0, mode, l, h) }
    if n > 17 { putTile(c17_0, y + 272, bias, 0, mode, l, h) }
    if n > 18 { putTile(c18_0, y + 288, bias, 0, mode, l, h) }
    if n > 19 { putTile(c19_0, y + 304, bias, 0, mode, l, h) }
    if n > 20 { putTile(c20_0, y + 320, bias, 0, mode, l, h) }
    if n > 21 { putTile(c21_0, y + 336, bias, 0, mode, l, h) }
    if n > 22 { putTile(c22_0, y + 352, bias, 0, mode, l, h) }
    if n > 23 { putTile(c23_0, y + 368, bias, 0, mode, l, h) }
}

/// v + bias[16b …] (when given), activated, stored at p.
@_transparent
func putTile(_ v: V16, _ p: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>?, _ b: Int, _ mode: Int, _ lo: V16, _ hi: V16) {
    var v = v
    if let bias { v += load16(bias + b &* 16) }
    store16(p, activate(v, mode: mode, lo: lo, hi: hi))
}

/// A depthwise Conv's output rows `rows` of one channel block: x the block's ih × iw pixels,
/// w its taps (kh × kw, sixteen floats each), y its oh × ow pixels. Per output pixel one vector
/// chain from +0 over the taps inside the input in increasing order (taps over the padding are
/// skipped), then the bias, then the activation.
@inline(never)
public func depthwise16AVX512(x: UnsafePointer<Float>, ih: Int, iw: Int, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              kh: Int, kw: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int,
                              oh: Int, ow: Int, rows: Range<Int>, y: UnsafeMutablePointer<Float>,
                              mode: Int, lo: Float, hi: Float) {
    let b = bias.map { load16($0) } ?? V16()
    let hasBias = bias != nil
    // Columns whose taps all fall inside the input: ox in inner.
    let innerLo = min(ow, (padLeft + strideW - 1) / strideW)
    let innerHi = iw - kw + padLeft >= 0 ? max(innerLo, min(ow, (iw - kw + padLeft) / strideW + 1)) : innerLo
    let l = V16(repeating: lo), h = V16(repeating: hi)
    let dH = iw &* 16, step = strideW &* 16
    for oy in rows {
        let iy0 = oy &* strideH &- padTop
        let ky0 = max(0, -iy0), ky1 = min(kh, ih &- iy0)
        let out = y + oy &* ow &* 16
        @inline(__always) func edge(_ ox: Int) {
            let ix0 = ox &* strideW &- padLeft
            let kx0 = max(0, -ix0), kx1 = min(kw, iw &- ix0)
            var a = V16()
            if ky0 < ky1 && kx0 < kx1 {
                for ky in ky0..<ky1 {
                    let s = x + ((iy0 &+ ky) &* iw &+ ix0) &* 16, wr = w + ky &* kw &* 16
                    for kx in kx0..<kx1 { a = a.addingProduct(load16(wr + kx &* 16), load16(s + kx &* 16)) }
                }
            }
            if hasBias { a += b }
            store16(out + ox &* 16, activate(a, mode: mode, lo: l, hi: h))
        }
        for ox in 0..<innerLo { edge(ox) }
        var ox = innerLo
        while ox < innerHi {
            let n = min(8, innerHi &- ox)
            let ix0 = ox &* strideW &- padLeft
            let src = x + ((iy0 &+ ky0) &* iw &+ ix0) &* 16, wt = w + ky0 &* kw &* 16
            let dst = out + ox &* 16, rowsK = ky1 &- ky0
            if strideW <= 2 && (kw == 3 || kw == 5) {
                depthwiseTilesRow(n, kw, strideW, src, wt, rows: rowsK, dH: dH, bias: b, hasBias: hasBias, mode: mode, lo: l, hi: h, dst)
            } else {
                depthwiseTiles(n, src, wt, rows: rowsK, kw: kw, dH: dH, step: step, bias: b, hasBias: hasBias, mode: mode, lo: l, hi: h, dst)
            }
            ox &+= n
        }
        for ox in innerHi..<ow { edge(ox) }
        if mode & 4 != 0 { siluForwardAVX512(out, count: ow &* 16) }
    }
}

/// `depthwiseTile` for n (1 … 8) pixels, each n a constant tile.
@inline(never)
func depthwiseTiles(_ n: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, rows: Int, kw: Int, dH: Int, step: Int,
                    bias: V16, hasBias: Bool, mode: Int, lo: V16, hi: V16, _ dst: UnsafeMutablePointer<Float>) {
    switch n {
    case 8: depthwiseTile(8, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 7: depthwiseTile(7, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 6: depthwiseTile(6, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 5: depthwiseTile(5, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 4: depthwiseTile(4, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 3: depthwiseTile(3, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    case 2: depthwiseTile(2, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    default: depthwiseTile(1, src, wt, rows: rows, kw: kw, dH: dH, step: step, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
    }
}

/// `depthwiseTileRow` for n (1 … 8) pixels, kw = 3 or 5 and stride 1 or 2, each a constant tile.
@inline(never)
func depthwiseTilesRow(_ n: Int, _ kw: Int, _ stride: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, rows: Int,
                       dH: Int, bias: V16, hasBias: Bool, mode: Int, lo: V16, hi: V16, _ dst: UnsafeMutablePointer<Float>) {
    @_transparent func tiles(_ kw: Int, _ stride: Int) {
        switch n {
        case 8: depthwiseTileRow(8, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 7: depthwiseTileRow(7, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 6: depthwiseTileRow(6, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 5: depthwiseTileRow(5, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 4: depthwiseTileRow(4, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 3: depthwiseTileRow(3, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        case 2: depthwiseTileRow(2, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        default: depthwiseTileRow(1, kw, stride, src, wt, rows: rows, dH: dH, bias: bias, hasBias: hasBias, mode: mode, lo: lo, hi: hi, dst)
        }
    }
    switch (kw, stride) {
    case (5, 1): tiles(5, 1)
    case (5, _): tiles(5, 2)
    case (_, 1): tiles(3, 1)
    default: tiles(3, 2)
    }
}

/// n (1 … 8, a constant once inlined) output pixels `step` floats apart whose taps all lie in the
/// input: `rows` rows of kw taps from src (rows dH floats apart), weights from wt.
@_transparent
func depthwiseTile(_ n: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, rows: Int, kw: Int, dH: Int, step: Int,
                   bias: V16, hasBias: Bool, mode: Int, lo: V16, hi: V16, _ dst: UnsafeMutablePointer<Float>) {
    let a = tapChains(n, src, wt, rows: rows, kw: kw, dH: dH, dW: 16, step: step)
    storeTile8(n, a, bias: hasBias ? bias : nil, mode: mode, lo: lo, hi: hi, dst)
}

/// `depthwiseTile` for kw = 3 or 5 taps a row at stride 1 or 2 (constants once inlined): each
/// input pixel is loaded once for the outputs whose window holds it, the row's weights stay in
/// registers; per output the taps still go in increasing order.
@_transparent
func depthwiseTileRow(_ n: Int, _ kw: Int, _ stride: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, rows: Int,
                      dH: Int, bias: V16, hasBias: Bool, mode: Int, lo: V16, hi: V16, _ dst: UnsafeMutablePointer<Float>) {
    var a0 = V16(), a1 = V16(), a2 = V16(), a3 = V16(), a4 = V16(), a5 = V16(), a6 = V16(), a7 = V16()
    var q = wt
    let last = stride &* (n &- 1) &+ kw  // input pixels the tile reads in a row
    for ky in 0..<max(rows, 0) {
        let s = src + ky &* dH
        let w0 = load16(q), w1 = load16(q + 16), w2 = load16(q + 32)
        let w3 = kw > 3 ? load16(q + 48) : V16(), w4 = kw > 4 ? load16(q + 64) : V16()
        q += kw &* 16
        var x: V16
        if 0 < last {
            x = load16(s + 0)
            if stride == 1 { a0 = a0.addingProduct(w0, x) }
            if stride == 2 { a0 = a0.addingProduct(w0, x) }
        }
        if 1 < last {
            x = load16(s + 16)
            if stride == 1 { a0 = a0.addingProduct(w1, x) }
            if stride == 1 && n > 1 { a1 = a1.addingProduct(w0, x) }
            if stride == 2 { a0 = a0.addingProduct(w1, x) }
        }
        if 2 < last {
            x = load16(s + 32)
            if stride == 1 { a0 = a0.addingProduct(w2, x) }
            if stride == 1 && n > 1 { a1 = a1.addingProduct(w1, x) }
            if stride == 1 && n > 2 { a2 = a2.addingProduct(w0, x) }
            if stride == 2 { a0 = a0.addingProduct(w2, x) }
            if stride == 2 && n > 1 { a1 = a1.addingProduct(w0, x) }
        }
        if 3 < last {
            x = load16(s + 48)
            if stride == 1 && kw > 3 { a0 = a0.addingProduct(w3, x) }
            if stride == 1 && n > 1 { a1 = a1.addingProduct(w2, x) }
            if stride == 1 && n > 2 { a2 = a2.addingProduct(w1, x) }
            if stride == 1 && n > 3 { a3 = a3.addingProduct(w0, x) }
            if stride == 2 && kw > 3 { a0 = a0.addingProduct(w3, x) }
            if stride == 2 && n > 1 { a1 = a1.addingProduct(w1, x) }
        }
        if 4 < last {
            x = load16(s + 64)
            if stride == 1 && kw > 4 { a0 = a0.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 1 { a1 = a1.addingProduct(w3, x) }
            if stride == 1 && n > 2 { a2 = a2.addingProduct(w2, x) }
            if stride == 1 && n > 3 { a3 = a3.addingProduct(w1, x) }
            if stride == 1 && n > 4 { a4 = a4.addingProduct(w0, x) }
            if stride == 2 && kw > 4 { a0 = a0.addingProduct(w4, x) }
            if stride == 2 && n > 1 { a1 = a1.addingProduct(w2, x) }
            if stride == 2 && n > 2 { a2 = a2.addingProduct(w0, x) }
        }
        if 5 < last {
            x = load16(s + 80)
            if stride == 1 && kw > 4 && n > 1 { a1 = a1.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 2 { a2 = a2.addingProduct(w3, x) }
            if stride == 1 && n > 3 { a3 = a3.addingProduct(w2, x) }
            if stride == 1 && n > 4 { a4 = a4.addingProduct(w1, x) }
            if stride == 1 && n > 5 { a5 = a5.addingProduct(w0, x) }
            if stride == 2 && kw > 3 && n > 1 { a1 = a1.addingProduct(w3, x) }
            if stride == 2 && n > 2 { a2 = a2.addingProduct(w1, x) }
        }
        if 6 < last {
            x = load16(s + 96)
            if stride == 1 && kw > 4 && n > 2 { a2 = a2.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 3 { a3 = a3.addingProduct(w3, x) }
            if stride == 1 && n > 4 { a4 = a4.addingProduct(w2, x) }
            if stride == 1 && n > 5 { a5 = a5.addingProduct(w1, x) }
            if stride == 1 && n > 6 { a6 = a6.addingProduct(w0, x) }
            if stride == 2 && kw > 4 && n > 1 { a1 = a1.addingProduct(w4, x) }
            if stride == 2 && n > 2 { a2 = a2.addingProduct(w2, x) }
            if stride == 2 && n > 3 { a3 = a3.addingProduct(w0, x) }
        }
        if 7 < last {
            x = load16(s + 112)
            if stride == 1 && kw > 4 && n > 3 { a3 = a3.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 4 { a4 = a4.addingProduct(w3, x) }
            if stride == 1 && n > 5 { a5 = a5.addingProduct(w2, x) }
            if stride == 1 && n > 6 { a6 = a6.addingProduct(w1, x) }
            if stride == 1 && n > 7 { a7 = a7.addingProduct(w0, x) }
            if stride == 2 && kw > 3 && n > 2 { a2 = a2.addingProduct(w3, x) }
            if stride == 2 && n > 3 { a3 = a3.addingProduct(w1, x) }
        }
        if 8 < last {
            x = load16(s + 128)
            if stride == 1 && kw > 4 && n > 4 { a4 = a4.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 5 { a5 = a5.addingProduct(w3, x) }
            if stride == 1 && n > 6 { a6 = a6.addingProduct(w2, x) }
            if stride == 1 && n > 7 { a7 = a7.addingProduct(w1, x) }
            if stride == 2 && kw > 4 && n > 2 { a2 = a2.addingProduct(w4, x) }
            if stride == 2 && n > 3 { a3 = a3.addingProduct(w2, x) }
            if stride == 2 && n > 4 { a4 = a4.addingProduct(w0, x) }
        }
        if 9 < last {
            x = load16(s + 144)
            if stride == 1 && kw > 4 && n > 5 { a5 = a5.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 6 { a6 = a6.addingProduct(w3, x) }
            if stride == 1 && n > 7 { a7 = a7.addingProduct(w2, x) }
            if stride == 2 && kw > 3 && n > 3 { a3 = a3.addingProduct(w3, x) }
            if stride == 2 && n > 4 { a4 = a4.addingProduct(w1, x) }
        }
        if 10 < last {
            x = load16(s + 160)
            if stride == 1 && kw > 4 && n > 6 { a6 = a6.addingProduct(w4, x) }
            if stride == 1 && kw > 3 && n > 7 { a7 = a7.addingProduct(w3, x) }
            if stride == 2 && kw > 4 && n > 3 { a3 = a3.addingProduct(w4, x) }
            if stride == 2 && n > 4 { a4 = a4.addingProduct(w2, x) }
            if stride == 2 && n > 5 { a5 = a5.addingProduct(w0, x) }
        }
        if 11 < last {
            x = load16(s + 176)
            if stride == 1 && kw > 4 && n > 7 { a7 = a7.addingProduct(w4, x) }
            if stride == 2 && kw > 3 && n > 4 { a4 = a4.addingProduct(w3, x) }
            if stride == 2 && n > 5 { a5 = a5.addingProduct(w1, x) }
        }
        if 12 < last {
            x = load16(s + 192)
            if stride == 2 && kw > 4 && n > 4 { a4 = a4.addingProduct(w4, x) }
            if stride == 2 && n > 5 { a5 = a5.addingProduct(w2, x) }
            if stride == 2 && n > 6 { a6 = a6.addingProduct(w0, x) }
        }
        if 13 < last {
            x = load16(s + 208)
            if stride == 2 && kw > 3 && n > 5 { a5 = a5.addingProduct(w3, x) }
            if stride == 2 && n > 6 { a6 = a6.addingProduct(w1, x) }
        }
        if 14 < last {
            x = load16(s + 224)
            if stride == 2 && kw > 4 && n > 5 { a5 = a5.addingProduct(w4, x) }
            if stride == 2 && n > 6 { a6 = a6.addingProduct(w2, x) }
            if stride == 2 && n > 7 { a7 = a7.addingProduct(w0, x) }
        }
        if 15 < last {
            x = load16(s + 240)
            if stride == 2 && kw > 3 && n > 6 { a6 = a6.addingProduct(w3, x) }
            if stride == 2 && n > 7 { a7 = a7.addingProduct(w1, x) }
        }
        if 16 < last {
            x = load16(s + 256)
            if stride == 2 && kw > 4 && n > 6 { a6 = a6.addingProduct(w4, x) }
            if stride == 2 && n > 7 { a7 = a7.addingProduct(w2, x) }
        }
        if 17 < last {
            x = load16(s + 272)
            if stride == 2 && kw > 3 && n > 7 { a7 = a7.addingProduct(w3, x) }
        }
        if 18 < last {
            x = load16(s + 288)
            if stride == 2 && kw > 4 && n > 7 { a7 = a7.addingProduct(w4, x) }
        }
    }
    storeTile8(n, (a0, a1, a2, a3, a4, a5, a6, a7), bias: hasBias ? bias : nil, mode: mode, lo: lo, hi: hi, dst)
}

/// The first n of eight output pixels: + bias (when given), activated, stored sixteen floats
/// apart from dst.
@_transparent
func storeTile8(_ n: Int, _ a: (V16, V16, V16, V16, V16, V16, V16, V16), bias: V16?, mode: Int, lo: V16, hi: V16,
                _ dst: UnsafeMutablePointer<Float>) {
    var a = a
    if let bias { a = (a.0 + bias, a.1 + bias, a.2 + bias, a.3 + bias, a.4 + bias, a.5 + bias, a.6 + bias, a.7 + bias) }
    store16(dst, activate(a.0, mode: mode, lo: lo, hi: hi))
    if n > 1 { store16(dst + 16, activate(a.1, mode: mode, lo: lo, hi: hi)) }
    if n > 2 { store16(dst + 32, activate(a.2, mode: mode, lo: lo, hi: hi)) }
    if n > 3 { store16(dst + 48, activate(a.3, mode: mode, lo: lo, hi: hi)) }
    if n > 4 { store16(dst + 64, activate(a.4, mode: mode, lo: lo, hi: hi)) }
    if n > 5 { store16(dst + 80, activate(a.5, mode: mode, lo: lo, hi: hi)) }
    if n > 6 { store16(dst + 96, activate(a.6, mode: mode, lo: lo, hi: hi)) }
    if n > 7 { store16(dst + 112, activate(a.7, mode: mode, lo: lo, hi: hi)) }
}

/// A Conv of few input channels (a network's stem) from NCHW into blocks: output rows `rows` of
/// output blocks ob0 ..< ob0 + nb (nb 1 or 2) of one sample. x: cin planes of ih × iw; w: per
/// output block, per input channel, the kh × kw taps, sixteen floats each; y: the sample's
/// blocks (oh × ow pixels each). Per output lane one FMA chain from +0 over the input channels,
/// then the rows and columns of taps inside the input, in order; then the bias and activation.
@inline(never)
public func directBlocked16AVX512(x: UnsafePointer<Float>, cin: Int, ih: Int, iw: Int, w: UnsafePointer<Float>,
                                  bias: UnsafePointer<Float>?, kh: Int, kw: Int, strideH: Int, strideW: Int,
                                  padTop: Int, padLeft: Int, oh: Int, ow: Int, ob0: Int, nb: Int, rows: Range<Int>,
                                  y: UnsafeMutablePointer<Float>, mode: Int, lo: Float, hi: Float) {
    let taps = kh &* kw, blockW = cin &* taps &* 16, ps = oh &* ow &* 16
    let innerLo = min(ow, (padLeft + strideW - 1) / strideW)
    let innerHi = iw - kw + padLeft >= 0 ? max(innerLo, min(ow, (iw - kw + padLeft) / strideW + 1)) : innerLo
    let wb = w + ob0 &* blockW, yb = y + ob0 &* ps, bb = bias.map { $0 + ob0 &* 16 }
    for oy in rows {
        let iy0 = oy &* strideH &- padTop
        let ky0 = max(0, -iy0), ky1 = min(kh, ih &- iy0)
        var ox = 0
        while ox < ow {
            let inner = ox >= innerLo && ox < innerHi
            let n = inner ? min(8, innerHi &- ox) : 1
            let ix0 = ox &* strideW &- padLeft
            let kx0 = inner ? 0 : max(0, -ix0), kx1 = inner ? kw : min(kw, iw &- ix0)
            let dst = yb + (oy &* ow &+ ox) &* 16
            @_transparent func tile(_ n: Int, _ nb: Int) {
                directTile(n, nb, x, cin: cin, ih: ih, iw: iw, wb, taps: taps, blockW: blockW, kw: kw, iy0: iy0, ky0: ky0, ky1: ky1,
                           ix0: ix0, kx0: kx0, kx1: kx1, sw: strideW, dst, ps: ps, bias: bb, mode: mode, lo: lo, hi: hi)
            }
            @_transparent func tiles(_ nb: Int) {
                switch n {
                case 8: tile(8, nb)
                case 7: tile(7, nb)
                case 6: tile(6, nb)
                case 5: tile(5, nb)
                case 4: tile(4, nb)
                case 3: tile(3, nb)
                case 2: tile(2, nb)
                default: tile(1, nb)
                }
            }
            if nb == 2 { tiles(2) } else { tiles(1) }
            ox &+= n
        }
        if mode & 4 != 0 {
            for b in 0..<nb { siluForwardAVX512(yb + (b &* ps &+ oy &* ow &* 16), count: ow &* 16) }
        }
    }
}

/// n (1 … 8) output pixels × nb (1, 2) output blocks of `directBlocked16AVX512` (constants once
/// inlined), strideW input columns apart: taps ky0 ..< ky1, kx0 ..< kx1 of every input channel.
@_transparent
func directTile(_ n: Int, _ nb: Int, _ x: UnsafePointer<Float>, cin: Int, ih: Int, iw: Int, _ w: UnsafePointer<Float>,
                taps: Int, blockW: Int, kw: Int, iy0: Int, ky0: Int, ky1: Int, ix0: Int, kx0: Int, kx1: Int, sw: Int,
                _ y: UnsafeMutablePointer<Float>, ps: Int, bias: UnsafePointer<Float>?, mode: Int, lo: Float, hi: Float) {
    var c0_0 = V16(), c0_1 = V16()
    var c1_0 = V16(), c1_1 = V16()
    var c2_0 = V16(), c2_1 = V16()
    var c3_0 = V16(), c3_1 = V16()
    var c4_0 = V16(), c4_1 = V16()
    var c5_0 = V16(), c5_1 = V16()
    var c6_0 = V16(), c6_1 = V16()
    var c7_0 = V16(), c7_1 = V16()
    for ci in 0..<cin {
        for ky in ky0..<max(ky0, ky1) {
            let xr0 = x + ((ci &* ih &+ iy0 &+ ky) &* iw &+ ix0)
            let wr = w + ((ci &* taps) &+ ky &* kw) &* 16
            for kx in kx0..<max(kx0, kx1) {
                let xr = xr0 + kx
                let w0 = load16(wr + kx &* 16), w1 = nb > 1 ? load16(wr + (blockW &+ kx &* 16)) : V16()
                    do { let a = V16(repeating: xr[0 &* sw]); c0_0 = c0_0.addingProduct(a, w0); if nb > 1 { c0_1 = c0_1.addingProduct(a, w1) } }
                    if n > 1 { let a = V16(repeating: xr[1 &* sw]); c1_0 = c1_0.addingProduct(a, w0); if nb > 1 { c1_1 = c1_1.addingProduct(a, w1) } }
                    if n > 2 { let a = V16(repeating: xr[2 &* sw]); c2_0 = c2_0.addingProduct(a, w0); if nb > 1 { c2_1 = c2_1.addingProduct(a, w1) } }
                    if n > 3 { let a = V16(repeating: xr[3 &* sw]); c3_0 = c3_0.addingProduct(a, w0); if nb > 1 { c3_1 = c3_1.addingProduct(a, w1) } }
                    if n > 4 { let a = V16(repeating: xr[4 &* sw]); c4_0 = c4_0.addingProduct(a, w0); if nb > 1 { c4_1 = c4_1.addingProduct(a, w1) } }
                    if n > 5 { let a = V16(repeating: xr[5 &* sw]); c5_0 = c5_0.addingProduct(a, w0); if nb > 1 { c5_1 = c5_1.addingProduct(a, w1) } }
                    if n > 6 { let a = V16(repeating: xr[6 &* sw]); c6_0 = c6_0.addingProduct(a, w0); if nb > 1 { c6_1 = c6_1.addingProduct(a, w1) } }
                    if n > 7 { let a = V16(repeating: xr[7 &* sw]); c7_0 = c7_0.addingProduct(a, w0); if nb > 1 { c7_1 = c7_1.addingProduct(a, w1) } }
            }
        }
    }
    let l = V16(repeating: lo), h = V16(repeating: hi)
    putTile(c0_0, y + 0, bias, 0, mode, l, h); if nb > 1 { putTile(c0_1, y + (ps &+ 0), bias, 1, mode, l, h) }
    if n > 1 { putTile(c1_0, y + 16, bias, 0, mode, l, h); if nb > 1 { putTile(c1_1, y + (ps &+ 16), bias, 1, mode, l, h) } }
    if n > 2 { putTile(c2_0, y + 32, bias, 0, mode, l, h); if nb > 1 { putTile(c2_1, y + (ps &+ 32), bias, 1, mode, l, h) } }
    if n > 3 { putTile(c3_0, y + 48, bias, 0, mode, l, h); if nb > 1 { putTile(c3_1, y + (ps &+ 48), bias, 1, mode, l, h) } }
    if n > 4 { putTile(c4_0, y + 64, bias, 0, mode, l, h); if nb > 1 { putTile(c4_1, y + (ps &+ 64), bias, 1, mode, l, h) } }
    if n > 5 { putTile(c5_0, y + 80, bias, 0, mode, l, h); if nb > 1 { putTile(c5_1, y + (ps &+ 80), bias, 1, mode, l, h) } }
    if n > 6 { putTile(c6_0, y + 96, bias, 0, mode, l, h); if nb > 1 { putTile(c6_1, y + (ps &+ 96), bias, 1, mode, l, h) } }
    if n > 7 { putTile(c7_0, y + 112, bias, 0, mode, l, h); if nb > 1 { putTile(c7_1, y + (ps &+ 112), bias, 1, mode, l, h) } }
}

/// Means of `planes` blocks of `pixels` pixels at x (sixteen floats a pixel) into y (sixteen
/// floats a block): four chains over the pixels by p mod 4, added as (0 + 1) + (2 + 3), divided
/// by the pixel count.
@inline(never)
public func meanBlocked16AVX512(_ x: UnsafePointer<Float>, pixels hw: Int, planes: Range<Int>, _ y: UnsafeMutablePointer<Float>) {
    let d = V16(repeating: Float(hw))
    for b in planes {
        let src = x + b &* hw &* 16
        var s0 = V16(), s1 = V16(), s2 = V16(), s3 = V16()
        var p = 0
        while p &+ 4 <= hw {
            s0 += load16(src + p &* 16); s1 += load16(src + (p &+ 1) &* 16)
            s2 += load16(src + (p &+ 2) &* 16); s3 += load16(src + (p &+ 3) &* 16)
            p &+= 4
        }
        if p < hw { s0 += load16(src + p &* 16) }
        if p &+ 1 < hw { s1 += load16(src + (p &+ 1) &* 16) }
        if p &+ 2 < hw { s2 += load16(src + (p &+ 2) &* 16) }
        store16(y + b &* 16, ((s0 + s1) + (s2 + s3)) / d)
    }
}

/// y[b][p] = x[b][p] · s[b] for blocks `planes` of `pixels` pixels (s: sixteen floats a block).
@inline(never)
public func scaleBlocked16AVX512(_ x: UnsafePointer<Float>, _ s: UnsafePointer<Float>, pixels hw: Int, planes: Range<Int>,
                                 _ y: UnsafeMutablePointer<Float>) {
    for b in planes {
        let v = load16(s + b &* 16), src = x + b &* hw &* 16, dst = y + b &* hw &* 16
        for p in 0..<hw { store16(dst + p &* 16, load16(src + p &* 16) * v) }
    }
}
