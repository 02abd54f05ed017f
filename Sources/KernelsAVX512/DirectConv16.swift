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
    // NOTE: two output rows at a time share each weight broadcast and give sixteen independent
    // chains; with one row the eight chains only just covered the FMA latency (LeNet-5's conv2
    // ran at about 60 % of the FMA peak its lanes allow).
    var oy = 0
    while oy + 2 <= oh {
        var ox = 0
        while ox < ow {
            let x0 = max(0, min(ox, ow - 16))
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
            var b0 = V(), b1 = V(), b2 = V(), b3 = V(), b4 = V(), b5 = V(), b6 = V(), b7 = V()
            var wk = wb
            for c in 0..<cin {
                for ky in 0..<kh {
                    let src = xp + (c * ph + oy + ky) * pw + x0
                    for kx in 0..<kw {
                        let u = load16(src + kx), v = load16(src + pw + kx)
                        let w0 = V(repeating: wk[0]), w1 = V(repeating: wk[1]), w2 = V(repeating: wk[2]), w3 = V(repeating: wk[3])
                        a0 = a0.addingProduct(u, w0); b0 = b0.addingProduct(v, w0)
                        a1 = a1.addingProduct(u, w1); b1 = b1.addingProduct(v, w1)
                        a2 = a2.addingProduct(u, w2); b2 = b2.addingProduct(v, w2)
                        a3 = a3.addingProduct(u, w3); b3 = b3.addingProduct(v, w3)
                        let w4 = V(repeating: wk[4]), w5 = V(repeating: wk[5]), w6 = V(repeating: wk[6]), w7 = V(repeating: wk[7])
                        a4 = a4.addingProduct(u, w4); b4 = b4.addingProduct(v, w4)
                        a5 = a5.addingProduct(u, w5); b5 = b5.addingProduct(v, w5)
                        a6 = a6.addingProduct(u, w6); b6 = b6.addingProduct(v, w6)
                        a7 = a7.addingProduct(u, w7); b7 = b7.addingProduct(v, w7)
                        wk += 8
                    }
                }
            }
            storeChannels(y + oy * ow + x0, plane: plane, lanes: lanes, channels: channels, a0, a1, a2, a3, a4, a5, a6, a7)
            storeChannels(y + (oy + 1) * ow + x0, plane: plane, lanes: lanes, channels: channels, b0, b1, b2, b3, b4, b5, b6, b7)
            ox = x0 + 16
        }
        oy += 2
    }
    while oy < oh {
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
            storeChannels(y + oy * ow + x0, plane: plane, lanes: lanes, channels: channels, a0, a1, a2, a3, a4, a5, a6, a7)
            ox = x0 + 16
        }
        oy += 1
    }
}

/// Stores the first `channels` of eight channel vectors at `out`, `plane` apart, `lanes` lanes
/// each. Straight from registers: no temporary buffer of 64-byte vectors.
@inline(__always)
func storeChannels(_ out: UnsafeMutablePointer<Float>, plane: Int, lanes: Int, channels: Int,
                   _ a0: V16, _ a1: V16, _ a2: V16, _ a3: V16, _ a4: V16, _ a5: V16, _ a6: V16, _ a7: V16) {
    @inline(__always) func store(_ j: Int, _ v: V16) {
        if j < channels { storeLanes(out + j * plane, v, lanes) }
    }
    store(0, a0); store(1, a1); store(2, a2); store(3, a3); store(4, a4); store(5, a5); store(6, a6); store(7, a7)
}
