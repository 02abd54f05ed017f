// The 8×32 GEMM micro-kernel for CPUs with AVX-512 (built with `-target-cpu skylake-avx512`,
// called by `Kernels` only after checking the CPU at run time).
//
// Contract: C[0..<mr, 0..<nr] (+)= packed A (kc groups of 8 rows) · B, where B's columns 0–15
// are read from `b0` and columns 16–31 from `b1` (nil when nr ≤ 16: then only the first half
// runs), each advancing by `bStride` floats per k (16 for packed panels, ldb for B read in place). Every element is one FMA chain in increasing k starting from C
// (when `load`) or 0, so the result equals the 6×16 and 12×16 kernels' bit for bit. Edge tiles
// (mr < 8 or nr < 32) go through a local buffer.
// NOTE: 16 zmm accumulators take 2 B loads and 8 broadcasts per k step for 16 FMAs, so the
// FMA ports, not the load ports, bound it; the 12×16 tile needs 13 loads per 12 FMAs.

@inline(never)
public func microKernel8x32AVX512(
    kc: Int, a: UnsafePointer<Float>, b0: UnsafePointer<Float>, b1: UnsafePointer<Float>?, bStride: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool
) {
    typealias V = SIMD16<Float>
    let full = mr == 8 && nr == 32
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 8 * 32) { tile in
        let t = tile.baseAddress!
        let (dst, ld): (UnsafeMutablePointer<Float>, Int) = full ? (c, ldc) : (t, 32)
        if !full {
            t.update(repeating: 0, count: 8 * 32)
            if load { for r in 0..<mr { (t + r * 32).update(from: c + r * ldc, count: nr) } }
        }
        @inline(__always) func ld16(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        @inline(__always) func st16(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
        let fromC = load || !full
        var c00 = fromC ? ld16(dst) : V(), c10 = fromC ? ld16(dst + ld) : V()
        var c20 = fromC ? ld16(dst + 2 * ld) : V(), c30 = fromC ? ld16(dst + 3 * ld) : V()
        var c40 = fromC ? ld16(dst + 4 * ld) : V(), c50 = fromC ? ld16(dst + 5 * ld) : V()
        var c60 = fromC ? ld16(dst + 6 * ld) : V(), c70 = fromC ? ld16(dst + 7 * ld) : V()
        if let b1 {
            var c01 = fromC ? ld16(dst + 16) : V(), c11 = fromC ? ld16(dst + ld + 16) : V()
            var c21 = fromC ? ld16(dst + 2 * ld + 16) : V(), c31 = fromC ? ld16(dst + 3 * ld + 16) : V()
            var c41 = fromC ? ld16(dst + 4 * ld + 16) : V(), c51 = fromC ? ld16(dst + 5 * ld + 16) : V()
            var c61 = fromC ? ld16(dst + 6 * ld + 16) : V(), c71 = fromC ? ld16(dst + 7 * ld + 16) : V()
            var ap = a, p0 = b0, p1 = b1
            for _ in 0..<kc {
                let x0 = UnsafeRawPointer(p0).loadUnaligned(as: V.self), x1 = UnsafeRawPointer(p1).loadUnaligned(as: V.self)
                var s = V(repeating: ap[0]); c00 = c00.addingProduct(s, x0); c01 = c01.addingProduct(s, x1)
                s = V(repeating: ap[1]); c10 = c10.addingProduct(s, x0); c11 = c11.addingProduct(s, x1)
                s = V(repeating: ap[2]); c20 = c20.addingProduct(s, x0); c21 = c21.addingProduct(s, x1)
                s = V(repeating: ap[3]); c30 = c30.addingProduct(s, x0); c31 = c31.addingProduct(s, x1)
                s = V(repeating: ap[4]); c40 = c40.addingProduct(s, x0); c41 = c41.addingProduct(s, x1)
                s = V(repeating: ap[5]); c50 = c50.addingProduct(s, x0); c51 = c51.addingProduct(s, x1)
                s = V(repeating: ap[6]); c60 = c60.addingProduct(s, x0); c61 = c61.addingProduct(s, x1)
                s = V(repeating: ap[7]); c70 = c70.addingProduct(s, x0); c71 = c71.addingProduct(s, x1)
                ap += 8
                p0 += bStride
                p1 += bStride
            }
            st16(dst + 16, c01); st16(dst + ld + 16, c11); st16(dst + 2 * ld + 16, c21); st16(dst + 3 * ld + 16, c31)
            st16(dst + 4 * ld + 16, c41); st16(dst + 5 * ld + 16, c51); st16(dst + 6 * ld + 16, c61); st16(dst + 7 * ld + 16, c71)
        } else {
            var ap = a, p0 = b0
            for _ in 0..<kc {
                let x0 = UnsafeRawPointer(p0).loadUnaligned(as: V.self)
                c00 = c00.addingProduct(V(repeating: ap[0]), x0); c10 = c10.addingProduct(V(repeating: ap[1]), x0)
                c20 = c20.addingProduct(V(repeating: ap[2]), x0); c30 = c30.addingProduct(V(repeating: ap[3]), x0)
                c40 = c40.addingProduct(V(repeating: ap[4]), x0); c50 = c50.addingProduct(V(repeating: ap[5]), x0)
                c60 = c60.addingProduct(V(repeating: ap[6]), x0); c70 = c70.addingProduct(V(repeating: ap[7]), x0)
                ap += 8
                p0 += bStride
            }
        }
        st16(dst, c00); st16(dst + ld, c10); st16(dst + 2 * ld, c20); st16(dst + 3 * ld, c30)
        st16(dst + 4 * ld, c40); st16(dst + 5 * ld, c50); st16(dst + 6 * ld, c60); st16(dst + 7 * ld, c70)
        if !full {
            for r in 0..<mr { (c + r * ldc).update(from: t + r * 32, count: nr) }
        }
    }
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
    typealias V = SIMD16<Float>
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 128) { tile in
        let t = tile.baseAddress!
        t.update(repeating: 0, count: 128)
        if load { t.update(from: c, count: nr) }
        @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        var c0 = ld(t), c1 = ld(t + 16), c2 = ld(t + 32), c3 = ld(t + 48), c4 = ld(t + 64), c5 = ld(t + 80), c6 = ld(t + 96), c7 = ld(t + 112)
        @inline(__always) func panel(_ i: Int) -> UnsafePointer<Float> { b + (i < panels ? i * panelStride : 0) }
        var p0 = panel(0), p1 = panel(1), p2 = panel(2), p3 = panel(3), p4 = panel(4), p5 = panel(5), p6 = panel(6), p7 = panel(7)
        var ap = a
        for _ in 0..<kc {
            let s = V(repeating: ap[0])
            c0 = c0.addingProduct(s, ld(p0)); c1 = c1.addingProduct(s, ld(p1)); c2 = c2.addingProduct(s, ld(p2)); c3 = c3.addingProduct(s, ld(p3))
            c4 = c4.addingProduct(s, ld(p4)); c5 = c5.addingProduct(s, ld(p5)); c6 = c6.addingProduct(s, ld(p6)); c7 = c7.addingProduct(s, ld(p7))
            ap += aStride
            p0 += 16; p1 += 16; p2 += 16; p3 += 16; p4 += 16; p5 += 16; p6 += 16; p7 += 16
        }
        @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
        st(t, c0); st(t + 16, c1); st(t + 32, c2); st(t + 48, c3); st(t + 64, c4); st(t + 80, c5); st(t + 96, c6); st(t + 112, c7)
        c.update(from: t, count: nr)
    }
}
