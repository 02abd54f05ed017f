// The 8×32 GEMM micro-kernel for CPUs with AVX-512 (built with `-target-cpu skylake-avx512`,
// called by `Kernels` only after checking the CPU at run time).
//
// Contract: C[0..<mr, 0..<nr] (+)= A · B, A packed (kc groups of 8 rows) or, for
// `microKernel8x32RowsAVX512`, read in place (row-major with `lda`), where B's columns 0–15
// are read from `b0` and columns 16–31 from `b1` (nil when nr ≤ 16: then only the first half
// runs), each advancing by `bStride` floats per k (16 for packed panels, ldb for B read in place). Every element is one FMA chain in increasing k starting from C
// (when `load`) or 0, so the result equals the 6×16 and 12×16 kernels' bit for bit. Edge tiles
// (mr < 8 or nr < 32) load and store their valid lanes one by one; the rows past mr start at 0
// and are not stored.
// NOTE: 16 zmm accumulators take 2 B loads and 8 broadcasts per k step for 16 FMAs, so the
// FMA ports, not the load ports, bound it; the 12×16 tile needs 13 loads per 12 FMAs.
// NOTE: no closure here (no `withUnsafeTemporaryAllocation` tile). Swift 6.3's LLVM can
// miscompile a closure (a function with an error register, r12) whose last act is a tail call
// to memmove: the epilogue skips restoring r12, and the caller takes the kernel for having
// thrown and runs off the end of the function (swiftlang/swift#90477, fixed upstream by
// llvm/llvm-project#214590). It happened here once, on the edge tile's copy-out; `make test`
// scans every binary for the pattern (Tests/tools/check_swifterror_tailcalls.py).

import CCPUFeatures

typealias V16 = SIMD16<Float>

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }
@inline(__always) func store16(_ p: UnsafeMutablePointer<Float>, _ v: V16) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}
/// The first `n` lanes (0 ≤ n ≤ 16) from `p`, the rest 0.
@inline(__always) func loadLanes(_ p: UnsafePointer<Float>, _ n: Int) -> V16 {
    if n >= 16 { return load16(p) }
    var v = V16()
    for i in 0..<max(n, 0) { v[i] = p[i] }
    return v
}
/// Stores the first `n` lanes (0 ≤ n ≤ 16) of `v` at `p`.
@inline(__always) func storeLanes(_ p: UnsafeMutablePointer<Float>, _ v: V16, _ n: Int) {
    if n >= 16 { store16(p, v); return }
    for i in 0..<max(n, 0) { p[i] = v[i] }
}

/// Where the 8×32 kernel reads A: the value of row r at the current k, and the step to the next k.
protocol KernelRows {
    func value(_ r: Int) -> Float
    mutating func advance()
}

/// Packed A: kc groups of 8 rows.
struct PackedRows: KernelRows {
    var p: UnsafePointer<Float>
    @inline(__always) func value(_ r: Int) -> Float { p[r] }
    @inline(__always) mutating func advance() { p += 8 }
}

/// A read in place: row r's k-th value at p[r·lda + k]; rows past mr read row 0 (their
/// results are not stored).
struct StridedRows: KernelRows {
    var p: UnsafePointer<Float>
    let o1, o2, o3, o4, o5, o6, o7: Int
    init(a: UnsafePointer<Float>, lda: Int, mr: Int) {
        p = a
        func offset(_ r: Int) -> Int { r < mr ? r * lda : 0 }
        (o1, o2, o3, o4, o5, o6, o7) = (offset(1), offset(2), offset(3), offset(4), offset(5), offset(6), offset(7))
    }
    @inline(__always) func value(_ r: Int) -> Float {
        switch r {
        case 0: return p[0]
        case 1: return p[o1]
        case 2: return p[o2]
        case 3: return p[o3]
        case 4: return p[o4]
        case 5: return p[o5]
        case 6: return p[o6]
        default: return p[o7]
        }
    }
    @inline(__always) mutating func advance() { p += 1 }
}

/// `prefetch`: with two halves, each k step also asks for the lines at `prefetch` and
/// `prefetch + prefetchSecond` in L2, both pointers stepping by `bStride` like B: the driver
/// points them at the next pair of B panels, which then come from L2 instead of memory (a
/// layer's weights are out of the caches one inference later). nil: no prefetch.
@inline(never)
public func microKernel8x32AVX512(
    kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>?, bStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool,
    prefetch: UnsafePointer<Float>? = nil, prefetchSecond: Int = 0, nextC: UnsafeMutablePointer<Float>? = nil
) {
    kernel8x32(kc: kc, rows: PackedRows(p: a), b0: b0, b1: b1, bStride: bStride, c: c, ldc: ldc, mr: mr, nr: nr, load: load,
               prefetch: prefetch, prefetchSecond: prefetchSecond, nextC: nextC)
}

/// The same kernel with A row-major and unpacked (A[r, k] at a[r·lda + k]): for blocks with
/// few B panels, where packing A costs more than it saves.
@inline(never)
public func microKernel8x32RowsAVX512(
    kc: Int, a: UnsafePointer<Float>, lda: Int, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>?, bStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool,
    prefetch: UnsafePointer<Float>? = nil, prefetchSecond: Int = 0, nextC: UnsafeMutablePointer<Float>? = nil
) {
    kernel8x32(kc: kc, rows: StridedRows(a: a, lda: lda, mr: mr), b0: b0, b1: b1, bStride: bStride, c: c, ldc: ldc, mr: mr, nr: nr,
               load: load, prefetch: prefetch, prefetchSecond: prefetchSecond, nextC: nextC)
}

@inline(__always)
func kernel8x32<Rows: KernelRows>(
    kc: Int, rows: Rows, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>?, bStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool,
    prefetch: UnsafePointer<Float>?, prefetchSecond: Int, nextC: UnsafeMutablePointer<Float>?
) {
    typealias V = V16
    // The next tile's C lines (8 rows × 32 columns), asked for while this tile runs.
    if let nextC {
        var r = nextC
        for _ in 0..<8 {
            prunecheck_prefetch_write(r)
            prunecheck_prefetch_write(r + 16)
            r += ldc
        }
    }
    // Lanes of each half that belong to C; rows r ≥ mr belong to none.
    let n0 = min(nr, 16), n1 = nr - 16
    @inline(__always) func ldC(_ r: Int, _ half: Int) -> V {
        guard load, r < mr else { return V() }
        return loadLanes(c + r * ldc + 16 * half, half == 0 ? n0 : n1)
    }
    @inline(__always) func stC(_ r: Int, _ half: Int, _ v: V) {
        if r < mr { storeLanes(c + r * ldc + 16 * half, v, half == 0 ? n0 : n1) }
    }
    var c00 = ldC(0, 0), c10 = ldC(1, 0), c20 = ldC(2, 0), c30 = ldC(3, 0)
    var c40 = ldC(4, 0), c50 = ldC(5, 0), c60 = ldC(6, 0), c70 = ldC(7, 0)
    if let b1 {
        var c01 = ldC(0, 1), c11 = ldC(1, 1), c21 = ldC(2, 1), c31 = ldC(3, 1)
        var c41 = ldC(4, 1), c51 = ldC(5, 1), c61 = ldC(6, 1), c71 = ldC(7, 1)
        var ap = rows, p0 = b0, p1 = b1
        // Without a prefetch target the loop asks for B's own lines (in L1: no traffic).
        var f0 = prefetch ?? b0, f1 = prefetch.map { $0 + prefetchSecond } ?? b1
        for _ in 0..<kc {
            prunecheck_prefetch_l2(f0)
            prunecheck_prefetch_l2(f1)
            f0 += bStride
            f1 += bStride
            let x0 = load16(p0), x1 = load16(p1)
            var s = V(repeating: ap.value(0)); c00 = c00.addingProduct(s, x0); c01 = c01.addingProduct(s, x1)
            s = V(repeating: ap.value(1)); c10 = c10.addingProduct(s, x0); c11 = c11.addingProduct(s, x1)
            s = V(repeating: ap.value(2)); c20 = c20.addingProduct(s, x0); c21 = c21.addingProduct(s, x1)
            s = V(repeating: ap.value(3)); c30 = c30.addingProduct(s, x0); c31 = c31.addingProduct(s, x1)
            s = V(repeating: ap.value(4)); c40 = c40.addingProduct(s, x0); c41 = c41.addingProduct(s, x1)
            s = V(repeating: ap.value(5)); c50 = c50.addingProduct(s, x0); c51 = c51.addingProduct(s, x1)
            s = V(repeating: ap.value(6)); c60 = c60.addingProduct(s, x0); c61 = c61.addingProduct(s, x1)
            s = V(repeating: ap.value(7)); c70 = c70.addingProduct(s, x0); c71 = c71.addingProduct(s, x1)
            ap.advance()
            p0 += bStride
            p1 += bStride
        }
        stC(0, 1, c01); stC(1, 1, c11); stC(2, 1, c21); stC(3, 1, c31)
        stC(4, 1, c41); stC(5, 1, c51); stC(6, 1, c61); stC(7, 1, c71)
    } else {
        var ap = rows, p0 = b0
        for _ in 0..<kc {
            let x0 = load16(p0)
            c00 = c00.addingProduct(V(repeating: ap.value(0)), x0); c10 = c10.addingProduct(V(repeating: ap.value(1)), x0)
            c20 = c20.addingProduct(V(repeating: ap.value(2)), x0); c30 = c30.addingProduct(V(repeating: ap.value(3)), x0)
            c40 = c40.addingProduct(V(repeating: ap.value(4)), x0); c50 = c50.addingProduct(V(repeating: ap.value(5)), x0)
            c60 = c60.addingProduct(V(repeating: ap.value(6)), x0); c70 = c70.addingProduct(V(repeating: ap.value(7)), x0)
            ap.advance()
            p0 += bStride
        }
    }
    stC(0, 0, c00); stC(1, 0, c10); stC(2, 0, c20); stC(3, 0, c30)
    stC(4, 0, c40); stC(5, 0, c50); stC(6, 0, c60); stC(7, 0, c70)
}

/// One row of C against up to eight 16-wide B panels: C[0, 0..<nr] (+)= A row (k-th value at
/// a[k·aStride]) · packed panels (kc × 16 each, `panelStride` floats apart), for `panels` ≤ 8 and
/// nr ≤ 16·panels. Each output is one FMA chain in increasing k from C (when `load`) or 0, as in
/// every other kernel. Eight chains always run: past `panels` they repeat panel 0 and are not
/// stored, which costs nothing, since a chain waits 4 cycles on its previous FMA and eight FMAs
/// take those 4 cycles anyway.
@inline(never)
public func microKernel1x128AVX512(
    kc: Int, a: UnsafePointer<Float>, aStride: Int, b: UnsafePointer<Float>, panelStride: Int, panels: Int,
    c: UnsafeMutablePointer<Float>, nr: Int, load: Bool
) {
    typealias V = V16
    // Lanes of chain i that belong to C (0 past nr).
    @inline(__always) func lanes(_ i: Int) -> Int { min(max(nr - 16 * i, 0), 16) }
    @inline(__always) func ldC(_ i: Int) -> V { load ? loadLanes(c + 16 * i, lanes(i)) : V() }
    var c0 = ldC(0), c1 = ldC(1), c2 = ldC(2), c3 = ldC(3), c4 = ldC(4), c5 = ldC(5), c6 = ldC(6), c7 = ldC(7)
    @inline(__always) func panel(_ i: Int) -> UnsafePointer<Float> { b + (i < panels ? i * panelStride : 0) }
    var p0 = panel(0), p1 = panel(1), p2 = panel(2), p3 = panel(3), p4 = panel(4), p5 = panel(5), p6 = panel(6), p7 = panel(7)
    var ap = a
    for _ in 0..<kc {
        let s = V(repeating: ap[0])
        c0 = c0.addingProduct(s, load16(p0)); c1 = c1.addingProduct(s, load16(p1))
        c2 = c2.addingProduct(s, load16(p2)); c3 = c3.addingProduct(s, load16(p3))
        c4 = c4.addingProduct(s, load16(p4)); c5 = c5.addingProduct(s, load16(p5))
        c6 = c6.addingProduct(s, load16(p6)); c7 = c7.addingProduct(s, load16(p7))
        ap += aStride
        p0 += 16; p1 += 16; p2 += 16; p3 += 16; p4 += 16; p5 += 16; p6 += 16; p7 += 16
    }
    storeLanes(c, c0, lanes(0)); storeLanes(c + 16, c1, lanes(1)); storeLanes(c + 32, c2, lanes(2))
    storeLanes(c + 48, c3, lanes(3)); storeLanes(c + 64, c4, lanes(4)); storeLanes(c + 80, c5, lanes(5))
    storeLanes(c + 96, c6, lanes(6)); storeLanes(c + 112, c7, lanes(7))
}

/// One column of C for the rows of `tiles` packed 8-row tiles of A (tile t at a + t·tileStride,
/// its k-th eight values at + 8k): C[r, 0] (+)= Σ_k A[r, k] · b[k·bStride], rows 0..<rows stored
/// (row r at c + r·ldc). Each output is one FMA chain in increasing k from C (when `load`) or
/// 0, as in the 8 × 32 kernel, so the bits are the same. For a B panel's last few columns,
/// which the 8 × 32 kernel computes as a whole panel of sixteen (a 7 × 7 plane's 49 columns
/// took four panels). Eight tiles at a time, eight chains; past the last tile they repeat it
/// and are not stored.
@inline(never)
public func microKernelColumnAVX512(
    kc: Int, a: UnsafePointer<Float>, tileStride: Int, tiles: Int, rows: Int, b: UnsafePointer<Float>, bStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool
) {
    typealias V = SIMD8<Float>
    var t0 = 0
    while t0 < tiles {
        let n = min(8, tiles - t0)
        @inline(__always) func ldC(_ t: Int) -> V {
            var v = V()
            guard load, t < n else { return v }
            for r in 0..<8 where (t0 + t) * 8 + r < rows { v[r] = c[((t0 + t) * 8 + r) * ldc] }
            return v
        }
        @inline(__always) func stC(_ t: Int, _ v: V) {
            guard t < n else { return }
            for r in 0..<8 where (t0 + t) * 8 + r < rows { c[((t0 + t) * 8 + r) * ldc] = v[r] }
        }
        @inline(__always) func tile(_ t: Int) -> UnsafePointer<Float> { a + (t0 + min(t, n - 1)) * tileStride }
        var c0 = ldC(0), c1 = ldC(1), c2 = ldC(2), c3 = ldC(3), c4 = ldC(4), c5 = ldC(5), c6 = ldC(6), c7 = ldC(7)
        let a0 = UnsafeRawPointer(tile(0)), a1 = UnsafeRawPointer(tile(1)), a2 = UnsafeRawPointer(tile(2)), a3 = UnsafeRawPointer(tile(3))
        let a4 = UnsafeRawPointer(tile(4)), a5 = UnsafeRawPointer(tile(5)), a6 = UnsafeRawPointer(tile(6)), a7 = UnsafeRawPointer(tile(7))
        var bp = b, offset = 0
        for _ in 0..<kc {
            let s = V(repeating: bp.pointee)
            c0 = c0.addingProduct(a0.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c1 = c1.addingProduct(a1.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c2 = c2.addingProduct(a2.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c3 = c3.addingProduct(a3.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c4 = c4.addingProduct(a4.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c5 = c5.addingProduct(a5.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c6 = c6.addingProduct(a6.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            c7 = c7.addingProduct(a7.loadUnaligned(fromByteOffset: offset, as: V.self), s)
            offset &+= 32
            bp += bStride
        }
        stC(0, c0); stC(1, c1); stC(2, c2); stC(3, c3); stC(4, c4); stC(5, c5); stC(6, c6); stC(7, c7)
        t0 += 8
    }
}
