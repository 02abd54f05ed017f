// The forward depthwise kernel (`Kernels.depthwiseConv2d`) sixteen channel planes at a time,
// one channel a lane (AVX-512): the planes are transposed into a zero-padded block of pixels of
// sixteen channels, each output pixel's sixteen chains run as one vector over the taps, and the
// outputs are transposed back. Lane by lane the chain is the flat kernel's: from +0 over the
// taps q in increasing order, fma(w[q], the padded input at the tap), the padding's zeros
// included; then the bias added once. So the bits are the same.
//
// Scratch (`DepthwiseBlockedLayout.floats`): the padded input block (rows × columns pixels of
// sixteen floats; only the input's pixels are written per group, the zeros around them once per
// call), the output block (oh · ow pixels), the weights transposed (taps × sixteen), and slack
// to align the first to 64 bytes.

/// Where `depthwiseBlockedAVX512` keeps its blocks in the scratch.
public struct DepthwiseBlockedLayout: Sendable {
    /// Padded rows and columns (the pixels any tap of any output reads).
    public let rows: Int, columns: Int
    /// Float offsets (after aligning the scratch) of the output block, the weights and a
    /// transposed block of sixteen pixels.
    public let output: Int, weights: Int, transposed: Int
    /// Floats of scratch needed.
    public let floats: Int

    public init(oh: Int, ow: Int, kh: Int, kw: Int, strideH: Int, strideW: Int, dilationH: Int, dilationW: Int) {
        rows = (oh - 1) * strideH + (kh - 1) * dilationH + 1
        columns = (ow - 1) * strideW + (kw - 1) * dilationW + 1
        output = rows * columns * 16
        // The output block has room for a last partial group of sixteen pixels.
        weights = output + (oh * ow + 15) / 16 * 256
        // The weights rounded up to whole 16 × 16 transposes, then one transpose's block.
        transposed = weights + (kh * kw + 15) / 16 * 256
        floats = transposed + 256 + 16
    }
}

/// The padded input block of `layout` set to zeros (once per call: groups write only the input's
/// pixels). `scratch` as given to `depthwiseBlockedAVX512`.
public func depthwiseBlockedZeros(_ scratch: UnsafeMutablePointer<Float>, layout l: DepthwiseBlockedLayout) {
    aligned64(scratch).update(repeating: 0, count: l.output)
}

/// Output planes of `count` (1 … 16) consecutive input planes x + k · inP (k < count), ih × iw
/// each, into y + k · outP (oh × ow), with weights w + k · taps (kh × kw) and bias[k] (or none),
/// as `Kernels.depthwiseConv2d` (see the file's comment). `scratch` holds `layout.floats` and
/// its padded block was zeroed by `depthwiseBlockedZeros` for this geometry.
@inline(never)
public func depthwiseBlockedAVX512(x: UnsafePointer<Float>, inP: Int, ih: Int, iw: Int, count: Int,
                                   kh: Int, kw: Int, strideH: Int, strideW: Int, dilationH: Int, dilationW: Int,
                                   padTop: Int, padLeft: Int, oh: Int, ow: Int,
                                   weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                                   y: UnsafeMutablePointer<Float>, outP: Int,
                                   layout l: DepthwiseBlockedLayout, scratch: UnsafeMutablePointer<Float>) {
    let block = aligned64(scratch), out = block + l.output, wt = block + l.weights, tmp = block + l.transposed
    let taps = kh * kw
    // Weights, tap by tap, one channel a lane (lanes past `count` zero).
    // (Past sixteen taps the last block overlaps the one before: the same values again.)
    var q0 = 0
    while q0 < taps {
        let start = taps >= 16 ? min(q0, taps &- 16) : q0
        transpose16(w + start, stride: taps, rows: count, lanes: min(16, taps &- start), to: wt + start &* 16)
        q0 &+= 16
    }
    var b = V16()
    if let bias { b = loadLanes(bias, count) }

    // In: sixteen pixels at a time over the flat plane, transposed; pixel (iy, ix) to padded
    // (iy + padTop, ix + padLeft) when the block has it.
    let inFlat = ih &* iw
    var f = 0, iy = 0, ix = 0
    while f < inFlat {
        let n = min(16, inFlat &- f)
        // A last partial block of a plane of sixteen or more pixels overlaps the one before
        // (whole vectors); its first 16 − n pixels are not stored again.
        let back = n < 16 && inFlat >= 16 ? 16 &- n : 0
        transpose16(x + (f &- back), stride: inP, rows: count, lanes: n &+ back, to: tmp)
        for j in back..<(back &+ n) {
            let py = iy &+ padTop, px = ix &+ padLeft
            if py < l.rows && px < l.columns { store16(block + (py &* l.columns &+ px) &* 16, load16(tmp + j &* 16)) }
            ix &+= 1
            if ix == iw { ix = 0; iy &+= 1 }
        }
        f &+= n
    }

    // Multiply-adds: up to eight output pixels of a row at a time.
    let hasBias = bias != nil
    let dH = dilationH &* l.columns &* 16, dW = dilationW &* 16, step = strideW &* 16
    for oy in 0..<oh {
        var ox = 0
        while ox < ow {
            let n = min(8, ow &- ox)
            let src = UnsafePointer(block + ((oy &* strideH) &* l.columns &+ ox &* strideW) &* 16)
            let dst = out + (oy &* ow &+ ox) &* 16
            // (n a constant in each call, so each tile keeps only its own accumulators.)
            @inline(__always) func tile(_ n: Int) {
                pixelTile(n, src, wt, kh: kh, kw: kw, dH: dH, dW: dW, step: step, bias: b, hasBias: hasBias, dst)
            }
            switch n {
            case 8: tile(8)
            case 7: tile(7)
            case 6: tile(6)
            case 5: tile(5)
            case 4: tile(4)
            case 3: tile(3)
            case 2: tile(2)
            default: tile(1)
            }
            ox &+= n
        }
    }

    // Out: sixteen pixels at a time, transposed back into the planes.
    let outFlat = oh &* ow
    f = 0
    while f < outFlat {
        let n = min(16, outFlat &- f)
        if count == 16 && outFlat >= 16 {
            // (A last partial block overlaps the one before: the same values again.)
            let start = min(f, outFlat &- 16)
            transpose16(out + start &* 16, stride: 16, rows: 16, lanes: 16, to: y + start, stride: outP)
        } else {
            transpose16(out + f &* 16, stride: 16, rows: 16, lanes: 16, to: tmp)
            for k in 0..<count { storeLanes(y + (k &* outP &+ f), load16(tmp + k &* 16), n) }
        }
        f &+= n
    }
}

/// `n` (1 … 8, a constant once inlined) output pixels `step` floats apart in the padded block
/// from `src`: per pixel one vector chain over the taps (rows dH floats apart, columns dW), then
/// the bias; stored at `dst`, sixteen floats a pixel.
@inline(__always)
func pixelTile(_ n: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, kh: Int, kw: Int, dH: Int, dW: Int, step: Int,
               bias: V16, hasBias: Bool, _ dst: UnsafeMutablePointer<Float>) {
    storeTile8(n, tapChains(n, src, wt, rows: kh, kw: kw, dH: dH, dW: dW, step: step), bias: hasBias ? bias : nil, mode: 0,
               lo: V16(), hi: V16(), dst)
}

/// Per output pixel k < n (1 … 8, a constant once inlined), `step` floats apart from src: one
/// vector chain from +0 over `rows` rows of kw taps (rows dH floats apart, taps dW), in order,
/// with the taps' weights from wt (sixteen floats each, in the same order). Lanes of pixels
/// past n are zero.
@_transparent
func tapChains(_ n: Int, _ src: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, rows: Int, kw: Int, dH: Int, dW: Int,
               step: Int) -> (V16, V16, V16, V16, V16, V16, V16, V16) {
    var a0 = V16(), a1 = V16(), a2 = V16(), a3 = V16(), a4 = V16(), a5 = V16(), a6 = V16(), a7 = V16()
    var q = wt
    for ky in 0..<max(rows, 0) {
        var s = src + ky &* dH
        for _ in 0..<kw {
            let wv = load16(q)
            a0 = a0.addingProduct(wv, load16(s))
            if n > 1 { a1 = a1.addingProduct(wv, load16(s + step)) }
            if n > 2 { a2 = a2.addingProduct(wv, load16(s + 2 &* step)) }
            if n > 3 { a3 = a3.addingProduct(wv, load16(s + 3 &* step)) }
            if n > 4 { a4 = a4.addingProduct(wv, load16(s + 4 &* step)) }
            if n > 5 { a5 = a5.addingProduct(wv, load16(s + 5 &* step)) }
            if n > 6 { a6 = a6.addingProduct(wv, load16(s + 6 &* step)) }
            if n > 7 { a7 = a7.addingProduct(wv, load16(s + 7 &* step)) }
            s += dW
            q += 16
        }
    }
    return (a0, a1, a2, a3, a4, a5, a6, a7)
}
