// The GEMM micro-kernel for CPUs with AVX-512, in a module of its own built with
// `-target-cpu skylake-avx512` (the rest of the package targets x86-64-v3). `Kernels` calls it
// only after checking the CPU at run time.
//
// Contract: the same as `Kernels.microKernel6x16`, for 12 rows: C[0..<mr, 0..<nr] (+)= packed A
// (rows 0–5 in `a0`, rows 6–11 in `a1`, each kc groups of 6) · packed B (kc × 16). Every element
// is one FMA chain in increasing k starting from C (when `load`) or 0, so the result equals the
// 6×16 kernel's bit for bit. Edge tiles (mr < 12 or nr < 16) go through a local buffer.
// NOTE: a SIMD16 row is one zmm register here; the same code built for x86-64-v3 splits it in
// two ymm halves and spills (measured: 120 GFLOP/s against 49 in L1).

@inline(never)
public func microKernel12x16AVX512(
    kc: Int, a0: UnsafePointer<Float>, a1: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool
) {
    typealias V = SIMD16<Float>
    let full = mr == 12 && nr == 16
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 12 * 16) { tile in
        let t = tile.baseAddress!
        let (dst, ld): (UnsafeMutablePointer<Float>, Int) = full ? (c, ldc) : (t, 16)
        if !full {
            t.update(repeating: 0, count: 12 * 16)
            if load { for r in 0..<mr { (t + r * 16).update(from: c + r * ldc, count: nr) } }
        }
        @inline(__always) func ld16(_ p: UnsafeMutablePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
        let fromC = load || !full
        var c0 = fromC ? ld16(dst) : V(), c1 = fromC ? ld16(dst + ld) : V(), c2 = fromC ? ld16(dst + 2 * ld) : V()
        var c3 = fromC ? ld16(dst + 3 * ld) : V(), c4 = fromC ? ld16(dst + 4 * ld) : V(), c5 = fromC ? ld16(dst + 5 * ld) : V()
        var c6 = fromC ? ld16(dst + 6 * ld) : V(), c7 = fromC ? ld16(dst + 7 * ld) : V(), c8 = fromC ? ld16(dst + 8 * ld) : V()
        var c9 = fromC ? ld16(dst + 9 * ld) : V(), c10 = fromC ? ld16(dst + 10 * ld) : V(), c11 = fromC ? ld16(dst + 11 * ld) : V()
        var p0 = a0, p1 = a1, bp = b
        for _ in 0..<kc {
            let bv = UnsafeRawPointer(bp).loadUnaligned(as: V.self)
            c0 = c0.addingProduct(V(repeating: p0[0]), bv); c1 = c1.addingProduct(V(repeating: p0[1]), bv)
            c2 = c2.addingProduct(V(repeating: p0[2]), bv); c3 = c3.addingProduct(V(repeating: p0[3]), bv)
            c4 = c4.addingProduct(V(repeating: p0[4]), bv); c5 = c5.addingProduct(V(repeating: p0[5]), bv)
            c6 = c6.addingProduct(V(repeating: p1[0]), bv); c7 = c7.addingProduct(V(repeating: p1[1]), bv)
            c8 = c8.addingProduct(V(repeating: p1[2]), bv); c9 = c9.addingProduct(V(repeating: p1[3]), bv)
            c10 = c10.addingProduct(V(repeating: p1[4]), bv); c11 = c11.addingProduct(V(repeating: p1[5]), bv)
            p0 += 6
            p1 += 6
            bp += 16
        }
        @inline(__always) func st16(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
        st16(dst, c0); st16(dst + ld, c1); st16(dst + 2 * ld, c2); st16(dst + 3 * ld, c3)
        st16(dst + 4 * ld, c4); st16(dst + 5 * ld, c5); st16(dst + 6 * ld, c6); st16(dst + 7 * ld, c7)
        st16(dst + 8 * ld, c8); st16(dst + 9 * ld, c9); st16(dst + 10 * ld, c10); st16(dst + 11 * ld, c11)
        if !full {
            for r in 0..<mr { (c + r * ldc).update(from: t + r * 16, count: nr) }
        }
    }
}
