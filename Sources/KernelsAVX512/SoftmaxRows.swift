// Softmax of sixteen rows at a time with the rows in lanes (AVX-512), for
// `Kernels.softmaxRows`: the rows are transposed in blocks of sixteen columns into a scratch of
// column vectors, so that each lane runs its row's chains over the columns in index order (the
// max, then the sum of the exponentials from +0, left to right), and transposed back after the
// division. Every step is the per-row path's operation on the same values (x − max, `expf32`,
// the sum in index order, 1 / sum, the product): the same bits.

/// Sixteen rows of `cols` floats (row r at x + r · cols) into out (the same layout; out may
/// alias x); cols ≥ 16. `scratch` holds `softmax16RowsScratch(cols)` floats.
@inline(never)
public func softmax16RowsAVX512(_ x: UnsafePointer<Float>, cols: Int, out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    let t = aligned64(scratch)
    // In, and each row's max: Swift's max(m, v) is v >= m ? v : m (a NaN is passed over), lane
    // by lane; the per-row path takes it over sixteen lanes, then over them: the same value
    // but for the sign of a zero, which no exp(x − max) sees.
    // (A last partial block of columns is the sixteen before the row's end, overlapping the
    // block before it: the same values again.)
    var m = V16(repeating: -.infinity)
    var j0 = 0
    while j0 < cols {
        let start = min(j0, cols &- 16)
        transpose16(x + start, stride: cols, rows: 16, lanes: 16, to: t + start &* 16)
        for j in j0..<min(j0 &+ 16, cols) {
            let v = load16(t + j &* 16)
            m = m.replacing(with: v, where: v .>= m)
        }
        j0 &+= 16
    }
    for j in 0..<cols { store16(t + j &* 16, load16(t + j &* 16) - m) }
    expForwardAVX512(t, count: cols &* 16, out: t)
    var s = V16()
    for j in 0..<cols { s += load16(t + j &* 16) }
    let inv = 1 / s
    for j in 0..<cols { store16(t + j &* 16, load16(t + j &* 16) * inv) }
    // Out: sixteen columns at a time (the last block overlapping, as above).
    j0 = 0
    while j0 < cols {
        let start = min(j0, cols &- 16)
        transpose16(t + start &* 16, stride: 16, rows: 16, lanes: 16, to: out + start, stride: cols)
        j0 &+= 16
    }
}

/// Floats of scratch `softmax16RowsAVX512` needs for rows of `cols`.
public func softmax16RowsScratch(cols: Int) -> Int { cols * 16 + 16 }
