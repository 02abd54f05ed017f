// Softmax of sixteen rows at a time (AVX-512), for `Kernels.softmaxRows`: each row's max and
// x − max along the row, the exponentials over the sixteen rows as one run of values, then the
// sums with the rows in lanes (blocks of sixteen columns transposed in registers, so that each
// lane adds its row's exponentials in index order from +0), and the products by 1 / sum along
// the rows. Every step is the per-row path's operation on the same values (x − max, `expf32`,
// the sum in index order, 1 / sum, the product): the same bits.
// NOTE: with the rows transposed in and out around every step (ten 16 × 16 transposes for rows
// of 65, the last block overlapping), the ViT's 65-wide rows took 1.0 ns a value, ONNX Runtime
// 0.5.

/// Sixteen rows of `cols` floats (row r at x + r · cols) into out (the same layout; out may
/// alias x); cols ≥ 16.
@inline(never)
public func softmax16RowsAVX512(_ x: UnsafePointer<Float>, cols: Int, out: UnsafeMutablePointer<Float>) {
    let full = cols & ~15, tail = cols &- full
    // Each row's max: Swift's max(m, v) is v >= m ? v : m (a NaN is passed over), over sixteen
    // lanes, then over them, as the per-row path; then x − max.
    for r in 0..<16 {
        let xr = x + r &* cols, yr = out + r &* cols
        var mv = V16(repeating: -.infinity)
        var j = 0
        while j < full {
            let v = load16(xr + j)
            mv = mv.replacing(with: v, where: v .>= mv)
            j &+= 16
        }
        var m = maxOfLanes(mv)
        for k in full..<cols { m = max(m, xr[k]) }
        let mb = V16(repeating: m)
        j = 0
        while j < full {
            store16(yr + j, load16(xr + j) - mb)
            j &+= 16
        }
        if tail > 0 { storeLanes(yr + full, loadLanes(xr + full, tail) - mb, tail) }
    }
    // The exponentials: sixteen rows of cols values are 16 · cols contiguous values.
    expForwardAVX512(out, count: cols &* 16, out: out)
    let s = rowSums16(out, cols: cols)
    let inv = 1 / s
    for r in 0..<16 {
        let yr = out + r &* cols
        let iv = V16(repeating: inv[r])
        var j = 0
        while j < full {
            store16(yr + j, load16(yr + j) * iv)
            j &+= 16
        }
        if tail > 0 { storeLanes(yr + full, loadLanes(yr + full, tail) * iv, tail) }
    }
}

/// The largest of v's lanes, as Swift's max folded over them (v >= m ? v : m, a NaN passed
/// over) but in halves: the same value but for the sign of a zero, which no exp(x − max) sees.
// NOTE: folded lane by lane, sixteen dependent steps a row took a third of the ViT's Softmax.
@inline(__always)
private func maxOfLanes(_ v: V16) -> Float {
    let a8 = v.lowHalf, b8 = v.highHalf
    let h8 = a8.replacing(with: b8, where: b8 .>= a8)
    let a4 = h8.lowHalf, b4 = h8.highHalf
    let h4 = a4.replacing(with: b4, where: b4 .>= a4)
    let a2 = h4.lowHalf, b2 = h4.highHalf
    let h2 = a2.replacing(with: b2, where: b2 .>= a2)
    return max(h2[0], h2[1])
}

/// Lane r: the sum of row r's `cols` values (row r at y + r · cols) from +0, left to right.
@inline(__always)
private func rowSums16(_ y: UnsafePointer<Float>, cols: Int) -> V16 {
    let c = cols
    var s = V16()
    var j0 = 0
    while j0 &+ 16 <= c {
        let p = y + j0
        let t = transposed16((load16(p), load16(p + c), load16(p + 2 &* c), load16(p + 3 &* c), load16(p + 4 &* c),
                              load16(p + 5 &* c), load16(p + 6 &* c), load16(p + 7 &* c), load16(p + 8 &* c),
                              load16(p + 9 &* c), load16(p + 10 &* c), load16(p + 11 &* c), load16(p + 12 &* c),
                              load16(p + 13 &* c), load16(p + 14 &* c), load16(p + 15 &* c)))
        s += t.0; s += t.1; s += t.2; s += t.3; s += t.4; s += t.5; s += t.6; s += t.7
        s += t.8; s += t.9; s += t.10; s += t.11; s += t.12; s += t.13; s += t.14; s += t.15
        j0 &+= 16
    }
    // The last columns one at a time, gathered down the rows.
    for j in j0..<c {
        let p = y + j
        s += V16(p[0], p[c], p[2 &* c], p[3 &* c], p[4 &* c], p[5 &* c], p[6 &* c], p[7 &* c], p[8 &* c],
                 p[9 &* c], p[10 &* c], p[11 &* c], p[12 &* c], p[13 &* c], p[14 &* c], p[15 &* c])
    }
    return s
}
