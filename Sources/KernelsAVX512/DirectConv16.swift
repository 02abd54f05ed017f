// The direct 2-D convolution's inner block (see Kernels/DirectConv.swift for the contract):
// sixteen output columns per vector where the AVX2 block has eight. Each lane is one output's
// fused multiply-add chain over k = (c, ky, kx) in increasing order from 0, exactly as in the
// eight-lane block and the naive twin, so the bits are the same.

/// Eight output channels (`channels` ≤ 8 of them stored) of one sample: y[j·oh·ow + oy·ow + ox]
/// for j < channels, from the zero-padded input `xp` (cin × ph × pw) and the weights `wb`
/// regrouped as [k][8]. With ow ≥ 16 the last vector of a row overlaps the one before it and
/// rewrites the same values; with ow < 16 one vector covers the row, its lanes past ow read on
/// into the next row (or up to 16 floats past `xp`'s end: the caller leaves that slack) and are
/// not stored.
@inline(never)
public func conv2dDirectBlock16AVX512(
    xp: UnsafePointer<Float>, ph: Int, pw: Int, cin: Int, kh: Int, kw: Int, weights wb: UnsafePointer<Float>,
    channels: Int, oh: Int, ow: Int, y: UnsafeMutablePointer<Float>
) {
    typealias V = V16
    let plane = oh * ow, lanes = min(ow, 16)
    for oy in 0..<oh {
        var ox = 0
        while ox < ow {
            let x0 = max(0, min(ox, ow - 16))
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
            var wk = wb
            for c in 0..<cin {
                for ky in 0..<kh {
                    let src = xp + (c * ph + oy + ky) * pw + x0
                    for kx in 0..<kw {
                        let v = load16(src + kx)
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
                if j < channels { storeLanes(out + j * plane, v, lanes) }
            }
            store(0, a0); store(1, a1); store(2, a2); store(3, a3); store(4, a4); store(5, a5); store(6, a6); store(7, a7)
            ox = x0 + 16
        }
    }
}
