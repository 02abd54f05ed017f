// Sixteen vectors of sixteen floats transposed in registers (AVX-512): the depthwise kernel's
// blocks of sixteen channel planes (DepthwiseBlocked.swift) and Softmax's sixteen rows
// (SoftmaxRows.swift) go through it.

/// p rounded up to a multiple of 64 bytes (scratch sized with sixteen floats to spare).
@inline(__always) func aligned64(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
    UnsafeMutablePointer(bitPattern: (Int(bitPattern: p) + 63) & ~63)!
}

typealias Rows16 = (V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16, V16)

/// Row k: `lanes` floats at p + k · stride for k < planes, zeros elsewhere.
// (Not inlined: the partial blocks only.)
@inline(never)
func rowsOfPlanes(_ p: UnsafePointer<Float>, stride s: Int, planes: Int, lanes n: Int) -> Rows16 {
    @inline(__always) func row(_ k: Int) -> V16 { k < planes ? loadLanes(p + k &* s, n) : V16() }
    return (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7),
            row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15))
}

/// The 16 × 16 block whose row k (k < rows) is `lanes` floats at src + k · stride (zeros past
/// them), transposed: its row j to dst + j · dstStride.
@inline(__always)
func transpose16(_ src: UnsafePointer<Float>, stride s: Int, rows: Int, lanes: Int, to dst: UnsafeMutablePointer<Float>,
                 stride d: Int = 16) {
    var r: Rows16
    if rows == 16 && lanes == 16 {
        r = (load16(src), load16(src + s), load16(src + 2 &* s), load16(src + 3 &* s), load16(src + 4 &* s), load16(src + 5 &* s),
             load16(src + 6 &* s), load16(src + 7 &* s), load16(src + 8 &* s), load16(src + 9 &* s), load16(src + 10 &* s),
             load16(src + 11 &* s), load16(src + 12 &* s), load16(src + 13 &* s), load16(src + 14 &* s), load16(src + 15 &* s))
    } else {
        r = rowsOfPlanes(src, stride: s, planes: rows, lanes: lanes)
    }
    r = transposed16(r)
    store16(dst, r.0); store16(dst + d, r.1); store16(dst + 2 &* d, r.2); store16(dst + 3 &* d, r.3)
    store16(dst + 4 &* d, r.4); store16(dst + 5 &* d, r.5); store16(dst + 6 &* d, r.6); store16(dst + 7 &* d, r.7)
    store16(dst + 8 &* d, r.8); store16(dst + 9 &* d, r.9); store16(dst + 10 &* d, r.10); store16(dst + 11 &* d, r.11)
    store16(dst + 12 &* d, r.12); store16(dst + 13 &* d, r.13); store16(dst + 14 &* d, r.14); store16(dst + 15 &* d, r.15)
}

/// The 16 × 16 transpose (lane j of row k to lane k of row j), as four rounds of an unzip: new
/// row i the even lanes of rows 2i and 2i + 1, row i + 8 their odd lanes. With the element index
/// (row, lane) as eight bits, a round rotates them right by one; four rounds swap row and lane.
@inline(__always)
func transposed16(_ r: Rows16) -> Rows16 {
    @inline(__always) func ev(_ a: V16, _ b: V16) -> V16 { V16(lowHalf: a.evenHalf, highHalf: b.evenHalf) }
    @inline(__always) func od(_ a: V16, _ b: V16) -> V16 { V16(lowHalf: a.oddHalf, highHalf: b.oddHalf) }
    @inline(__always) func round(_ r: Rows16) -> Rows16 {
        (ev(r.0, r.1), ev(r.2, r.3), ev(r.4, r.5), ev(r.6, r.7), ev(r.8, r.9), ev(r.10, r.11), ev(r.12, r.13), ev(r.14, r.15),
         od(r.0, r.1), od(r.2, r.3), od(r.4, r.5), od(r.6, r.7), od(r.8, r.9), od(r.10, r.11), od(r.12, r.13), od(r.14, r.15))
    }
    return round(round(round(round(r))))
}

/// `Kernels.transposePlane` on AVX-512: dst[j · dstStride + i] = src[i · srcStride + j] for
/// i < rows, j < cols, in blocks of 16 × 16 through registers; the last partial blocks one
/// element at a time. A copy: any order gives the same bits.
@inline(never)
public func transposePlaneAVX512(_ src: UnsafePointer<Float>, rows: Int, cols: Int, srcStride: Int,
                                 to dst: UnsafeMutablePointer<Float>, dstStride: Int) {
    let fullRows = rows & ~15, fullCols = cols & ~15
    var i0 = 0
    while i0 < fullRows {
        var j0 = 0
        while j0 < fullCols {
            transpose16(src + (i0 &* srcStride &+ j0), stride: srcStride, rows: 16, lanes: 16, to: dst + (j0 &* dstStride &+ i0),
                        stride: dstStride)
            j0 &+= 16
        }
        i0 &+= 16
    }
    // The right edge (columns past the last full block) of the full rows, then the bottom rows.
    for j in fullCols..<cols {
        let d = dst + j &* dstStride
        for i in 0..<fullRows { d[i] = src[i &* srcStride &+ j] }
    }
    for i in fullRows..<rows {
        let s = src + i &* srcStride
        for j in 0..<cols { dst[j &* dstStride &+ i] = s[j] }
    }
}
