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

// The direct 2-D convolution's inner block (see Kernels/DirectConv.swift for the contract):
// sixteen output columns per vector where the AVX2 block has eight. Each lane is one output's
// fused multiply-add chain over k = (c, ky, kx) in increasing order from 0, exactly as in the
// eight-lane block and the naive twin, so the bits are the same.
// NOTE: it lives in this file on purpose. Built as a second file of this module, it left the
// binary corrupting memory far from either kernel (batch-1 inference of LeNet-300-100 jumped to
// a garbage address out of microKernel1x128AVX512; reproduction on the branch
// experiment/avx512-direct-conv). As one file it runs clean; the cause is not understood.
/// Eight output channels (`channels` ≤ 8 of them stored) of one sample: y[j·oh·ow + oy·ow + ox]
/// for j < channels, from the zero-padded input `xp` (cin × ph × pw) and the weights `wb`
/// regrouped as [k][8]. Needs ow ≥ 16; the last vector of a row overlaps the one before it
/// and rewrites the same values.
@inline(never)
public func conv2dDirectBlock16AVX512(
    xp: UnsafePointer<Float>, ph: Int, pw: Int, cin: Int, kh: Int, kw: Int, weights wb: UnsafePointer<Float>,
    channels: Int, oh: Int, ow: Int, y: UnsafeMutablePointer<Float>
) {
    typealias V = SIMD16<Float>
    // ow ≥ 16: `conv2dDirect` calls this block only then.
    let plane = oh * ow
    for oy in 0..<oh {
        var ox = 0
        while ox < ow {
            let x0 = min(ox, ow - 16)
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
            var wk = wb
            for c in 0..<cin {
                for ky in 0..<kh {
                    let src = xp + (c * ph + oy + ky) * pw + x0
                    for kx in 0..<kw {
                        let v = UnsafeRawPointer(src + kx).loadUnaligned(as: V.self)
                        a0 = a0.addingProduct(v, wk[0]); a1 = a1.addingProduct(v, wk[1])
                        a2 = a2.addingProduct(v, wk[2]); a3 = a3.addingProduct(v, wk[3])
                        a4 = a4.addingProduct(v, wk[4]); a5 = a5.addingProduct(v, wk[5])
                        a6 = a6.addingProduct(v, wk[6]); a7 = a7.addingProduct(v, wk[7])
                        wk += 8
                    }
                }
            }
            // Stored straight from registers: no temporary buffer of 64-byte vectors.
            let out = y + oy * ow + x0
            @inline(__always) func store(_ j: Int, _ v: V) {
                if j < channels { UnsafeMutableRawPointer(out + j * plane).storeBytes(of: v, as: V.self) }
            }
            store(0, a0); store(1, a1); store(2, a2); store(3, a3); store(4, a4); store(5, a5); store(6, a6); store(7, a7)
            ox = x0 + 16
        }
    }
}
