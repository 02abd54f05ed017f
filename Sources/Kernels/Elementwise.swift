// Elementwise and row kernels on raw buffers.
//
// Contract: `count` elements; outputs may alias inputs only where a doc comment says so.
// Every loop runs in increasing index order, so results do not depend on threads.
// `exp` is the project's own (range reduction + polynomial), so results do not depend on
// the platform's libm.

import KernelsAVX512

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
// NOTE: one row at a time, the max and the sum were chains of one lane (the sum's order is
// the contract): ViT's four Softmax nodes took 156 µs at batch 1 against ONNX Runtime's 54.
// Now the max runs in sixteen lanes (the same value: max is order-free but for the sign of a
// zero, which no exp(x − max) sees) and eight rows' sums run side by side, each lane one row's
// chain left to right.
public func softmaxRows(_ x: UnsafePointer<Float>, rows: Int, cols: Int, out: UnsafeMutablePointer<Float>) {
    let wide = KernelISA.detected == .avx512
    var r = 0
    if wide && rows >= 16 && cols >= 16 {
        // Sixteen rows at a time (`softmax16RowsAVX512`: the same chains, the sums with the
        // rows in lanes).
        // NOTE: per row, a row of 65 (the ViT's attention) paid its calls and partial vectors four
        // times over and the sums gathered eight rows a column: its Softmax 131-157 µs, ONNX
        // Runtime's 48.
        while r + 16 <= rows {
            softmax16RowsAVX512(x + r * cols, cols: cols, out: out + r * cols)
            r += 16
        }
    }
    while r < rows {
        let group = min(8, rows - r)
        for g in 0..<group {
            let xr = x + (r + g) * cols, yr = out + (r + g) * cols
            // Swift's max(m, v) is v >= m ? v : m: lane by lane, then over the lanes.
            var mv = Float16x(repeating: -.infinity)
            var j = 0
            while j + 16 <= cols {
                let v = UnsafeRawPointer(xr + j).loadUnaligned(as: Float16x.self)
                mv = mv.replacing(with: v, where: v .>= mv)
                j += 16
            }
            var m = -Float.infinity
            for l in 0..<16 { m = max(m, mv[l]) }
            while j < cols { m = max(m, xr[j]); j += 1 }
            // The exponentials sixteen lanes at a time (each lane the scalar's bits).
            j = 0
            let mb = Float16x(repeating: m)
            if wide {
                // x − max stored, then exp in place, built for AVX-512 (the same values: the
                // difference rounds to a float either way).
                // NOTE: built for AVX2 here, each sixteen-lane exponential was two halves with
                // spills: ViT's four Softmax nodes took 150 µs at batch 1 (ONNX Runtime 48).
                while j + 16 <= cols {
                    UnsafeMutableRawPointer(yr + j).storeBytes(of: UnsafeRawPointer(xr + j).loadUnaligned(as: Float16x.self) - mb, as: Float16x.self)
                    j += 16
                }
                while j < cols { yr[j] = xr[j] - m; j += 1 }
                expForwardAVX512(yr, count: cols, out: yr)
                continue
            }
            while j + 16 <= cols {
                let v = UnsafeRawPointer(xr + j).loadUnaligned(as: Float16x.self) - mb
                UnsafeMutableRawPointer(yr + j).storeBytes(of: expf32(v), as: Float16x.self)
                j += 16
            }
            while j < cols { yr[j] = expf32(xr[j] - m); j += 1 }
        }
        // Lane g sums row r + g left to right (lanes past the group repeat its last row).
        let y0 = out + r * cols
        let o1 = min(1, group - 1) * cols, o2 = min(2, group - 1) * cols, o3 = min(3, group - 1) * cols
        let o4 = min(4, group - 1) * cols, o5 = min(5, group - 1) * cols, o6 = min(6, group - 1) * cols, o7 = min(7, group - 1) * cols
        var s = SIMD8<Float>()
        for j in 0..<cols {
            s += SIMD8<Float>(y0[j], y0[o1 + j], y0[o2 + j], y0[o3 + j], y0[o4 + j], y0[o5 + j], y0[o6 + j], y0[o7 + j])
        }
        for g in 0..<group {
            let yr = y0 + g * cols
            let inv = 1 / s[g]
            let iv = Float16x(repeating: inv)
            var j = 0
            while j + 16 <= cols {
                let v = UnsafeRawPointer(yr + j).loadUnaligned(as: Float16x.self)
                UnsafeMutableRawPointer(yr + j).storeBytes(of: v * iv, as: Float16x.self)
                j += 16
            }
            while j < cols { yr[j] *= inv; j += 1 }
        }
        r += group
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

/// The logistic sigmoid 1 / (1 + e^−x) in Float, within 3 ulp (2.5 seen); 0 below x = −88 (where it is
/// under 6.1·10⁻³⁹). e^−x = 2^−n · e^−r with n = round(x · log₂e) and |r| ≤ ln2 / 2, e^−r by a
/// degree-6 polynomial (relative minimax on that interval, 0.85 ulp in Float); x clamped to
/// [−88, 87], where 2^−n is one normal float and 1 + e^−x rounds to 1 at the top.
@inline(__always)
public func sigmoid32(_ x: Float) -> Float {
    // A NaN fails both comparisons and every step carries it.
    var c = x
    if c < -88 { c = -88 }
    if c > 87 { c = 87 }
    // Round to nearest even by adding 1.5·2²³ inside the FMA: the sum's bits hold n.
    let shifted = (12_582_912 as Float).addingProduct(c, 1.442695041)
    let n = shifted - 12_582_912
    var r = c.addingProduct(n, -0.693145751953125)
    r = r.addingProduct(n, -1.4286068203094172e-06)
    var p: Float = 1.3836637372151017e-3
    p = (-8.37498065084219e-3 as Float).addingProduct(p, r)
    p = (4.166823625564575e-2 as Float).addingProduct(p, r)
    p = (-0.16666418313980103 as Float).addingProduct(p, r)
    p = (0.49999991059303284 as Float).addingProduct(p, r)
    p = (-1 as Float).addingProduct(p, r)
    p = (1 as Float).addingProduct(p, r)
    // 2^−n: exponent field 127 − n = (0x4B40_0000 + 127) − the sum's bits.
    let bits = (0x4B40_007F as Int32) &- Int32(bitPattern: shifted.bitPattern)
    let s = 1 / (1 + p * Float(bitPattern: UInt32(bitPattern: bits &<< 23)))
    return x < -88 ? 0 : s
}

/// erf x in Float, faithfully rounded in most of the range: below |x| = 0.921875 an odd
/// polynomial x + x·p(x²); above, 1 − e^{−r(|x|)} with r a degree-7 polynomial (N. Juffa's
/// minimax erff, the one ONNX Runtime's MLAS uses). Pure FMA arithmetic with the project's own
/// exp: the same bits on every machine.
@inline(__always)
public func erf32(_ x: Float) -> Float {
    let t = x.magnitude
    if t > 0.921875 { return Float(sign: x.sign, exponentBitPattern: 127, significandBitPattern: 0) * (1 - erfcTail32(min(t, 3.925))) }
    return erfSmall32(x)
}

/// erf x for |x| ≤ 0.921875.
@inline(__always)
func erfSmall32(_ a: Float) -> Float {
    let s = a * a
    var r: Float = -5.99104969e-4
    r = (4.99339588e-3 as Float).addingProduct(r, s)
    r = (-2.67667342e-2 as Float).addingProduct(r, s)
    r = (1.12818025e-1 as Float).addingProduct(r, s)
    r = (-3.76124859e-1 as Float).addingProduct(r, s)
    r = (1.28379151e-1 as Float).addingProduct(r, s)
    return a.addingProduct(r, a)
}

/// erfc t = e^{−r(t)} for t > 0.921875 (t = |x|): the complement without cancellation.
@inline(__always)
func erfcTail32(_ t: Float) -> Float {
    let s = t * t
    var r = (-3.83208680e-4 as Float).addingProduct(1.72948930e-5, t)
    let u = (-2.42545605e-2 as Float).addingProduct(3.88393435e-3, t)
    r = u.addingProduct(r, s)
    r = (1.06777847e-1 as Float).addingProduct(r, t)
    r = (6.34846687e-1 as Float).addingProduct(r, t)
    r = (1.28717512e-1 as Float).addingProduct(r, t)
    r = t.addingProduct(r, t)
    return expf32(-r)
}

/// GELU with the exact normal CDF, x·Φ(x) = ½·x·(1 + erf(x/√2)), in Float. Below
/// x/√2 = −0.921875, 1 + erf is erfc(|x|/√2), taken as such: no cancellation for large
/// negative x.
@inline(__always)
public func geluErf32(_ x: Float) -> Float {
    let a = x * 0.707106781
    let t = a.magnitude
    let cdf2: Float
    if t > 0.921875 {
        let e = erfcTail32(t)
        cdf2 = a > 0 ? 2 - e : e
    } else {
        cdf2 = 1 + erfSmall32(a)
    }
    return 0.5 * x * cdf2
}

// MARK: Sixteen lanes at a time: `expf32`, `geluErf32`, `sigmoid32` on `Float16x` are in
// KernelsAVX512/LaneMath.swift (inlinable: built for AVX2 here, for AVX-512 there).

/// out[i] = f(x[i]) sixteen lanes at a time, the tail one by one with the scalar twin.
@inline(__always)
func mapLanes(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>,
              _ vector: (Float16x) -> Float16x, _ scalar: (Float) -> Float) {
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: Float16x.self)
        UnsafeMutableRawPointer(out + i).storeBytes(of: vector(v), as: Float16x.self)
        i += 16
    }
    while i < count { out[i] = scalar(x[i]); i += 1 }
}

/// GELU (exact CDF) of `count` values; `out` may alias `x`.
public func geluErfForward(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    if KernelISA.detected == .avx512 { return geluErfForwardAVX512(x, count: count, out: out) }
    mapLanes(x, count: count, out: out, { geluErf32($0) }, { geluErf32($0) })
}

/// The logistic sigmoid of `count` values; `out` may alias `x`.
public func sigmoidForward(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    if KernelISA.detected == .avx512 { return sigmoidForwardAVX512(x, count: count, out: out) }
    mapLanes(x, count: count, out: out, { sigmoid32($0) }, { sigmoid32($0) })
}

/// x · sigmoid(x) (SiLU) of `count` values, in place: the bits of a Sigmoid (`sigmoidForward`)
/// followed by a Mul of its input and output.
public func siluForward(_ x: UnsafeMutablePointer<Float>, count: Int) {
    if KernelISA.detected == .avx512 { return siluForwardAVX512(x, count: count) }
    mapLanes(x, count: count, out: x, { $0 * sigmoid32($0) }, { $0 * sigmoid32($0) })
}

/// min(max(x, lo), hi) of `count` values, in place: the Clip op's expression.
// NOTE: the scalar loop did not vectorize (Swift's min and max keep their NaN order): 3.6 % of
// MobileNetV2 at batch 1, its ReLU6 after every depthwise plane.
public func clipForward(_ x: UnsafeMutablePointer<Float>, count: Int, lo: Float, hi: Float) {
    typealias V = SIMD16<Float>
    // Swift's max(a, b) is b >= a ? b : a, min(a, b) is b < a ? b : a: the same selections
    // lane by lane (a NaN stays NaN, a −0 below lo = +0 becomes lo).
    let l = V(repeating: lo), h = V(repeating: hi)
    var i = 0
    while i + 16 <= count {
        let v = UnsafeRawPointer(x + i).loadUnaligned(as: V.self)
        let m = v.replacing(with: l, where: l .>= v)
        UnsafeMutableRawPointer(x + i).storeBytes(of: m.replacing(with: h, where: h .< m), as: V.self)
        i += 16
    }
    while i < count { x[i] = min(max(x[i], lo), hi); i += 1 }
}
