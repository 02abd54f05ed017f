// The multiply-adds of the forward depthwise kernel (`Kernels.depthwiseConv2d`) over its padded
// phase planes: output vector j (lanes j·L …) is, lane by lane, one FMA chain from +0 over the
// taps q in increasing order of w[q] times the value `offsets[q]` floats further on in `planes`.
// Inlinable, so that `Kernels` builds it for its own target (eight lanes, AVX2) and this module
// for AVX-512 (sixteen lanes); the lanes are independent, so both give the same bits.

/// `count` vectors of `V` from `planes` into `out` (see the file's comment).
@inlinable @inline(__always)
public func depthwiseFlatVectors<V: SIMD>(_: V.Type, planes: UnsafePointer<Float>, offsets: UnsafePointer<Int>, taps: Int,
                                          weights w: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>)
where V.Scalar == Float {
    let lanes = V.scalarCount
    // Eight vectors at a time, eight independent chains (one chain waits on the FMA's latency);
    // the rest four at a time, where fewer than four are left the last repeating (the same
    // values written again).
    var j = 0
    while j &+ 8 <= count {
        let j0 = j &* lanes
        var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
        for q in 0..<taps {
            let s = UnsafeRawPointer(planes + (offsets[q] &+ j0))
            let wv = V(repeating: w[q])
            a0 = a0.addingProduct(wv, s.loadUnaligned(fromByteOffset: 0, as: V.self))
            a1 = a1.addingProduct(wv, s.loadUnaligned(fromByteOffset: 4 &* lanes, as: V.self))
            a2 = a2.addingProduct(wv, s.loadUnaligned(fromByteOffset: 8 &* lanes, as: V.self))
            a3 = a3.addingProduct(wv, s.loadUnaligned(fromByteOffset: 12 &* lanes, as: V.self))
            a4 = a4.addingProduct(wv, s.loadUnaligned(fromByteOffset: 16 &* lanes, as: V.self))
            a5 = a5.addingProduct(wv, s.loadUnaligned(fromByteOffset: 20 &* lanes, as: V.self))
            a6 = a6.addingProduct(wv, s.loadUnaligned(fromByteOffset: 24 &* lanes, as: V.self))
            a7 = a7.addingProduct(wv, s.loadUnaligned(fromByteOffset: 28 &* lanes, as: V.self))
        }
        let d = UnsafeMutableRawPointer(out + j0)
        d.storeBytes(of: a0, toByteOffset: 0, as: V.self)
        d.storeBytes(of: a1, toByteOffset: 4 &* lanes, as: V.self)
        d.storeBytes(of: a2, toByteOffset: 8 &* lanes, as: V.self)
        d.storeBytes(of: a3, toByteOffset: 12 &* lanes, as: V.self)
        d.storeBytes(of: a4, toByteOffset: 16 &* lanes, as: V.self)
        d.storeBytes(of: a5, toByteOffset: 20 &* lanes, as: V.self)
        d.storeBytes(of: a6, toByteOffset: 24 &* lanes, as: V.self)
        d.storeBytes(of: a7, toByteOffset: 28 &* lanes, as: V.self)
        j &+= 8
    }
    while j < count {
        let last = count &- 1
        let j0 = j &* lanes, j1 = min(j &+ 1, last) &* lanes, j2 = min(j &+ 2, last) &* lanes, j3 = min(j &+ 3, last) &* lanes
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        for q in 0..<taps {
            let s = UnsafeRawPointer(planes + offsets[q])
            let wv = V(repeating: w[q])
            a0 = a0.addingProduct(wv, s.loadUnaligned(fromByteOffset: 4 &* j0, as: V.self))
            a1 = a1.addingProduct(wv, s.loadUnaligned(fromByteOffset: 4 &* j1, as: V.self))
            a2 = a2.addingProduct(wv, s.loadUnaligned(fromByteOffset: 4 &* j2, as: V.self))
            a3 = a3.addingProduct(wv, s.loadUnaligned(fromByteOffset: 4 &* j3, as: V.self))
        }
        let d = UnsafeMutableRawPointer(out)
        d.storeBytes(of: a0, toByteOffset: 4 &* j0, as: V.self)
        d.storeBytes(of: a1, toByteOffset: 4 &* j1, as: V.self)
        d.storeBytes(of: a2, toByteOffset: 4 &* j2, as: V.self)
        d.storeBytes(of: a3, toByteOffset: 4 &* j3, as: V.self)
        j &+= 4
    }
}

/// `depthwiseFlatVectors` with sixteen-lane vectors, built for AVX-512.
@inline(never)
public func depthwiseFlatVectorsAVX512(planes: UnsafePointer<Float>, offsets: UnsafePointer<Int>, taps: Int,
                                       weights: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    depthwiseFlatVectors(SIMD16<Float>.self, planes: planes, offsets: offsets, taps: taps, weights: weights, count: count, out: out)
}
