// Sixteen lanes at a time: the same operations in the same order as the scalar functions in
// Kernels/Elementwise.swift, so every lane has the scalar result's bits. Inlinable, so that
// `Kernels` builds them for its own target (AVX2) and this module for AVX-512; no other
// module's code is needed here (`Kernels` imports this one).

public typealias Float16x = SIMD16<Float>

/// `expf32` on sixteen lanes.
@_transparent
public func expf32(_ x: Float16x) -> Float16x {
    let nan = x .!= x
    // Clamp (NaN to 0) so that `expInRange32` computes a number; the lanes outside the range
    // are set afterwards, as the scalar function's early returns do.
    // NOTE: not pointwiseMin/Max: built for AVX-512 they became calls to the standard library's
    // generic versions, one lane at a time.
    var c = x.replacing(with: 0, where: nan)
    c.replace(with: -104, where: c .< -104)
    c.replace(with: 89, where: c .> 89)
    var y = expInRange32(c)
    y.replace(with: Float.infinity, where: x .> 88.72283)
    y.replace(with: 0, where: x .< -103.97208)
    y.replace(with: x, where: nan)
    return y
}

/// `expf32`'s arithmetic on lanes clamped to [−104, 89] (a NaN lane gives a NaN): the lanes
/// the scalar function's early returns do not take have its bits.
@_transparent
public func expInRange32(_ c: Float16x) -> Float16x {
    // Round to nearest even by adding and removing 1.5·2²³ (exact for |v| < 2²²): the bits
    // of the sum hold n as an integer, too.
    let shifted = c * 1.442695041 + 12_582_912
    let n = shifted - 12_582_912
    var r = c.addingProduct(n, Float16x(repeating: -0.693145751953125))
    r = r.addingProduct(n, Float16x(repeating: -1.4286068203094172e-06))
    var p = Float16x(repeating: 1.0 / 5040)
    p = Float16x(repeating: 1.0 / 720).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 120).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 24).addingProduct(p, r)
    p = Float16x(repeating: 1.0 / 6).addingProduct(p, r)
    p = Float16x(repeating: 0.5).addingProduct(p, r)
    p = Float16x(repeating: 1).addingProduct(p, r)
    p = Float16x(repeating: 1).addingProduct(p, r)
    // 2^n as 2^half · 2^(n − half): both factors normal and the first product exact, so the
    // one rounding is the scalar function's (whichever way n is split).
    let ni = unsafeBitCast(shifted, to: SIMD16<Int32>.self) &- 0x4B40_0000
    let half = ni &>> 1
    let rest = ni &- half
    let s1 = unsafeBitCast((half &+ 127) &<< 23, to: Float16x.self)
    let s2 = unsafeBitCast((rest &+ 127) &<< 23, to: Float16x.self)
    return p * s1 * s2
}

/// `expf32` on sixteen lanes of arguments that are ≤ 0, −∞ or NaN, where a NaN lane's result
/// may be any NaN: the bits of `expf32` on every other lane, without its NaN masks and upper
/// bound (GELU's erfc tail, e^{−r} with r ≥ 0, whose NaN lanes the product with x makes x's NaN
/// anyway).
// NOTE: seven of GELU's some fifty operations a vector (ViT's Gelus at batch 8, 1.47 ms a run).
@_transparent
public func expOfNonPositive32(_ x: Float16x) -> Float16x {
    // (A NaN lane fails the comparison and stays NaN through the arithmetic; the bit casts in
    // `expInRange32` convert nothing, so no lane traps.)
    var c = x
    c.replace(with: -104, where: c .< -104)
    var y = expInRange32(c)
    y.replace(with: 0, where: x .< -103.97208)
    return y
}

/// `geluErf32` on sixteen lanes.
@_transparent
public func geluErf32(_ x: Float16x) -> Float16x {
    let a = x * 0.707106781
    let t = a.replacing(with: -a, where: a .< 0)
    // erfSmall32
    let s = a * a
    var q = Float16x(repeating: -5.99104969e-4)
    q = Float16x(repeating: 4.99339588e-3).addingProduct(q, s)
    q = Float16x(repeating: -2.67667342e-2).addingProduct(q, s)
    q = Float16x(repeating: 1.12818025e-1).addingProduct(q, s)
    q = Float16x(repeating: -3.76124859e-1).addingProduct(q, s)
    q = Float16x(repeating: 1.28379151e-1).addingProduct(q, s)
    let small = a.addingProduct(q, a)
    // erfcTail32
    let ts = t * t
    var r = Float16x(repeating: -3.83208680e-4).addingProduct(Float16x(repeating: 1.72948930e-5), t)
    let u = Float16x(repeating: -2.42545605e-2).addingProduct(Float16x(repeating: 3.88393435e-3), t)
    r = u.addingProduct(r, ts)
    r = Float16x(repeating: 1.06777847e-1).addingProduct(r, t)
    r = Float16x(repeating: 6.34846687e-1).addingProduct(r, t)
    r = Float16x(repeating: 1.28717512e-1).addingProduct(r, t)
    r = t.addingProduct(r, t)
    // (r ≥ 0 for t ≥ 0.921875; on the lanes below it, which take `small`, and for a NaN x,
    // whose product below is x's NaN, e is not seen.)
    let e = expOfNonPositive32(negated(r))
    var cdf2 = 1 + small
    let tail = e.replacing(with: 2 - e, where: a .> 0)
    cdf2.replace(with: tail, where: t .> 0.921875)
    return 0.5 * x * cdf2
}

/// `sigmoid32` on sixteen lanes.
@_transparent
public func sigmoid32(_ x: Float16x) -> Float16x {
    // NOTE: was 1 / (1 + expf32(−x)): 38 instructions a vector, SiLU at 0.46 ns a value and
    // ~17 % of EfficientNet-B0. Now 20: no NaN masks (max and min keep a NaN, which the
    // arithmetic carries), one scale, a degree-6 polynomial.
    var c = x
    c.replace(with: -88, where: c .< -88)
    c.replace(with: 87, where: c .> 87)
    let shifted = Float16x(repeating: 12_582_912).addingProduct(c, Float16x(repeating: 1.442695041))
    let n = shifted - 12_582_912
    var r = c.addingProduct(n, Float16x(repeating: -0.693145751953125))
    r = r.addingProduct(n, Float16x(repeating: -1.4286068203094172e-06))
    var p = Float16x(repeating: 1.3836637372151017e-3)
    p = Float16x(repeating: -8.37498065084219e-3).addingProduct(p, r)
    p = Float16x(repeating: 4.166823625564575e-2).addingProduct(p, r)
    p = Float16x(repeating: -0.16666418313980103).addingProduct(p, r)
    p = Float16x(repeating: 0.49999991059303284).addingProduct(p, r)
    p = Float16x(repeating: -1).addingProduct(p, r)
    p = Float16x(repeating: 1).addingProduct(p, r)
    let bits = SIMD16<Int32>(repeating: 0x4B40_007F) &- unsafeBitCast(shifted, to: SIMD16<Int32>.self)
    var s = 1 / (1 + p * unsafeBitCast(bits &<< 23, to: Float16x.self))
    s.replace(with: 0, where: x .< -88)
    return s
}

/// −x by its sign bit, as scalar negation does (SIMD negation computes 0 − x, which keeps a
/// NaN's sign).
@_transparent
public func negated(_ x: Float16x) -> Float16x {
    unsafeBitCast(unsafeBitCast(x, to: SIMD16<UInt32>.self) ^ SIMD16<UInt32>(repeating: 0x8000_0000), to: Float16x.self)
}


// MARK: Maps built for AVX-512 (`Kernels` calls them when the CPU has it)

/// out[i] = f(x[i]) sixteen lanes at a time, the tail as a partial vector (lanes are
/// independent, so it has the scalar function's bits too).
@inline(__always)
func mapLanes16(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>, _ f: (Float16x) -> Float16x) {
    var i = 0
    while i + 16 <= count {
        store16(out + i, f(load16(x + i)))
        i += 16
    }
    if i < count { storeLanes(out + i, f(loadLanes(x + i, count - i)), count - i) }
}

/// A function of sixteen lanes, as a type: `mapLanes16Pairs` calls it twice per step, which a
/// closure argument would not be inlined for (four, or two through a closure, ran SiLU three
/// times slower).
// NOTE: @_transparent, here and on the lane functions: with `@inline(__always)` the build with
// -enable-testing (`make build`, which `make bench` and the demo run) left `apply` and
// `expf32` as calls (GELU, SiLU and the Softmax's exponentials in 128-bit pieces).
// `check_kernel_calls.py` looks for such calls.
protocol LaneMap { static func apply(_ x: Float16x) -> Float16x }
enum GeluErfLanes: LaneMap { @_transparent static func apply(_ x: Float16x) -> Float16x { geluErf32(x) } }
enum SigmoidLanes: LaneMap { @_transparent static func apply(_ x: Float16x) -> Float16x { sigmoid32(x) } }
enum SiluLanes: LaneMap { @_transparent static func apply(_ x: Float16x) -> Float16x { x * sigmoid32(x) } }
enum ExpLanes: LaneMap { @_transparent static func apply(_ x: Float16x) -> Float16x { expf32(x) } }

/// `mapLanes16` two vectors per step: their chains (some fifty dependent steps for SiLU)
/// interleave. SiLU in L1: 0.48 → 0.44 ns a value.
@inline(__always)
func mapLanes16Pairs<M: LaneMap>(_: M.Type, _ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    var i = 0
    while i + 32 <= count {
        let a = M.apply(load16(x + i)), b = M.apply(load16(x + i + 16))
        store16(out + i, a)
        store16(out + i + 16, b)
        i += 32
    }
    mapLanes16(x + i, count: count - i, out: out + i) { M.apply($0) }
}

/// `Kernels.geluErfForward` on AVX-512.
// NOTE: built for AVX2, each sixteen-lane step is two halves with spills: SiLU ran at 0.7 ns
// a value, 22 % of EfficientNet-B0 at batch 1.
@inline(never)
public func geluErfForwardAVX512(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    mapLanes16Pairs(GeluErfLanes.self, x, count: count, out: out)
}

/// `Kernels.sigmoidForward` on AVX-512.
@inline(never)
public func sigmoidForwardAVX512(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    mapLanes16Pairs(SigmoidLanes.self, x, count: count, out: out)
}

/// `expf32` of `count` values on AVX-512; `out` may alias `x` (Softmax's exponentials).
// NOTE: through `mapLanes16Pairs`, as SiLU: written into a function of its own with the row's
// max, `expf32`'s masks compiled lane by lane (ViT's Softmax 150 → 213 µs).
@inline(never)
public func expForwardAVX512(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
    mapLanes16Pairs(ExpLanes.self, x, count: count, out: out)
}

/// `Kernels.siluForward` on AVX-512 (in place).
@inline(never)
public func siluForwardAVX512(_ x: UnsafeMutablePointer<Float>, count: Int) {
    mapLanes16Pairs(SiluLanes.self, x, count: count, out: x)
}
