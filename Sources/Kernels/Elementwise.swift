// Elementwise and row kernels on raw buffers.
//
// Contract: `count` elements; outputs may alias inputs only where a doc comment says so.
// Every loop runs in increasing index order, so results do not depend on threads.
// `exp` is the project's own (range reduction + polynomial), so results do not depend on
// the platform's libm.

/// exp(x) for Float, accurate to about 2 ulp over the float range; own implementation so
/// every platform computes the same bits.
@inline(__always)
public func expf32(_ x: Float) -> Float {
    // NOTE: NaN failed both range checks below and trapped in `Int(n)` (a softmax row that
    // masking had set entirely to −∞ computes −∞ − (−∞)).
    if x.isNaN { return x }
    if x > 88.72283 { return .infinity }
    if x < -103.97208 { return 0 }
    // x = n·ln2 + r, |r| ≤ ln2/2; exp(r) by its degree-7 Taylor polynomial, evaluated with FMA.
    let n = (x * 1.442695041).rounded(.toNearestOrEven)
    // Cody-Waite split of ln2: hi has few mantissa bits, so n·hi is exact.
    var r = x.addingProduct(n, -0.693145751953125)
    r = r.addingProduct(n, -1.4286068203094172e-06)
    var p: Float = 1.0 / 5040
    p = (1.0 / 720 as Float).addingProduct(p, r)
    p = (1.0 / 120 as Float).addingProduct(p, r)
    p = (1.0 / 24 as Float).addingProduct(p, r)
    p = (1.0 / 6 as Float).addingProduct(p, r)
    p = (0.5 as Float).addingProduct(p, r)
    p = (1 as Float).addingProduct(p, r)
    p = (1 as Float).addingProduct(p, r)
    // Scale by 2^n in two steps so that n down to -150 does not overflow the exponent.
    let ni = Int(n)
    let half = ni / 2
    return p * Float(sign: .plus, exponent: half, significand: 1)
        * Float(sign: .plus, exponent: ni - half, significand: 1)
}

/// Row-wise softmax of a (rows × cols) matrix: out = exp(x - max) / Σ exp(x - max).
/// The sum runs left to right. `out` may alias `x`.
public func softmaxRows(_ x: UnsafePointer<Float>, rows: Int, cols: Int, out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let xr = x + r * cols, yr = out + r * cols
        var m = -Float.infinity
        for j in 0..<cols { m = max(m, xr[j]) }
        var s: Float = 0
        for j in 0..<cols {
            let e = expf32(xr[j] - m)
            yr[j] = e
            s += e
        }
        let inv = 1 / s
        for j in 0..<cols { yr[j] *= inv }
    }
}

/// out[i] = x[i] > 0 ? x[i] : 0 (NaN and -0 become +0). `out` may alias `x`.
// NOTE: explicit vectors: as a plain loop, the compiler's overlap check sent every in-place
// call (the ReLU fused into a Conv or Gemm) to its scalar version, one element per cycle, 12 %
// of the MNIST-1D MLP at batch 64.
public func reluForward(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: V.self)
        UnsafeMutableRawPointer(out + i).storeBytes(of: V().replacing(with: v, where: v .> 0), as: V.self)
        i += 16
    }
    while i < count {
        out[i] = x[i] > 0 ? x[i] : 0
        i += 1
    }
}

/// dx[i] += x[i] > 0 ? dy[i] : 0.
public func reluBackward(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, count: Int, dx: UnsafeMutablePointer<Float>
) {
    for i in 0..<count where x[i] > 0 { dx[i] += dy[i] }
}

/// out[r, j] += bias[j] for a (rows × cols) matrix.
public func addRowVector(_ bias: UnsafePointer<Float>, rows: Int, cols: Int, out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let o = out + r * cols
        for j in 0..<cols { o[j] += bias[j] }
    }
}

/// out[r, j] = max(out[r, j] + bias[j], 0) for a (rows × cols) matrix: `addRowVector` then
/// `reluForward` in one pass, with the same bits (NaN and −0 become +0).
public func addRowVectorRelu(_ bias: UnsafePointer<Float>, rows: Int, cols: Int, out: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let o = out + r * cols
        for j in 0..<cols {
            let v = o[j] + bias[j]
            o[j] = v > 0 ? v : 0
        }
    }
}

/// db[j] += Σ_r dy[r, j], summed over r in increasing order.
public func sumRows(_ dy: UnsafePointer<Float>, rows: Int, cols: Int, into db: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let d = dy + r * cols
        for j in 0..<cols { db[j] += d[j] }
    }
}
