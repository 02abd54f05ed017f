// Transcendental functions in Double, written here so that every platform computes the same
// bits (the platform's libm differs between glibc, musl and Darwin in the last ulp).
//
// Used by the elementwise graph ops (Exp, Log, Tanh, Erf, GELU, Pow). Each is accurate to a few
// ulp in Double, so the Float results they are rounded to are correctly rounded in all but
// rare ties. The hot exp of softmax stays the Float `expf32`.

/// e^x: x = n·ln2 + r with |r| ≤ ln2/2 (Cody–Waite split), e^r by its Taylor polynomial of
/// degree 13 (truncation error below 1e-17), scaled by 2^n in two steps.
public func exp64(_ x: Double) -> Double {
    if x.isNaN { return x }
    if x > 709.782712893384 { return .infinity }
    if x < -745.1332191019412 { return 0 }
    let n = (x * 1.4426950408889634).rounded(.toNearestOrEven)
    var r = x - n * 0.6931471803691238
    r -= n * 1.9082149292705877e-10
    // Σ_{k≤13} r^k/k! by Horner with the factorials folded in: 1 + r(1 + r/2(1 + … (1 + r/13))).
    var p = 1.0
    for d in stride(from: 13.0, through: 1.0, by: -1.0) { p = 1 + p * r / d }
    let ni = Int(n), half = ni / 2
    return p * Double(sign: .plus, exponent: half, significand: 1)
        * Double(sign: .plus, exponent: ni - half, significand: 1)
}

/// ln x through `Double.logNatural` (binary exponent plus an atanh series).
@inline(__always)
public func log64(_ x: Double) -> Double {
    if x.isNaN || x < 0 { return .nan }
    if x == .infinity { return .infinity }
    guard x > 0 else { return -.infinity }
    let e = Double(x.exponent)
    let m = x.significand / 2.0.squareRoot()   // in [1/√2, √2)
    let t = (m - 1) / (m + 1), t2 = t * t
    var term = t, sum = 0.0, k = 1.0
    while abs(term) > 1e-18 * max(abs(sum), 1e-300) {
        sum += term / k
        term *= t2
        k += 2
    }
    return 2 * sum + (e + 0.5) * 0.6931471805599453
}

/// tanh x = (e^{2|x|} − 1)/(e^{2|x|} + 1) with the sign restored; the cubic series below 1e-5.
public func tanh64(_ x: Double) -> Double {
    if x.isNaN { return x }
    let a = abs(x)
    if a > 20 { return x > 0 ? 1 : -1 }
    if a < 1e-5 { return x - x * x * x / 3 }
    let e = exp64(2 * a)
    let t = (e - 1) / (e + 1)
    return x < 0 ? -t : t
}

/// erf x: the Maclaurin series below |x| = 3 (at most ~3 digits lost to cancellation), the
/// continued fraction of erfc above (Laplace), both in Double.
public func erf64(_ x: Double) -> Double {
    if x.isNaN { return x }
    let a = abs(x)
    let r: Double
    if a < 3 {
        // erf x = 2/√π Σ (−1)^n x^{2n+1} / (n! (2n+1))
        var term = a, sum = a, n = 0.0
        let a2 = a * a
        repeat {
            n += 1
            term *= -a2 / n
            let add = term / (2 * n + 1)
            sum += add
            if abs(add) < 1e-17 * abs(sum) { break }
        } while n < 200
        r = sum * 1.1283791670955126
    } else if a > 6 {
        r = 1
    } else {
        // erfc a = e^{−a²}/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + …)))))
        var f = a
        for k in stride(from: 60, through: 1, by: -1) { f = a + (Double(k) / 2) / f }
        r = 1 - exp64(-a * a) / f * 0.5641895835477563
    }
    return x < 0 ? -r : r
}

/// x^y for Float operands, computed in Double: integer exponents by repeated squaring (so a
/// negative base works, as ONNX's Pow requires), other exponents as e^{y·ln x}.
public func pow64(_ x: Double, _ y: Double) -> Double {
    if y == 0 { return 1 }
    if y == y.rounded(), abs(y) < 1_073_741_824 {
        var base = y < 0 ? 1 / x : x
        var e = Int(abs(y)), result = 1.0
        while e > 0 {
            if e & 1 == 1 { result *= base }
            base *= base
            e >>= 1
        }
        return result
    }
    if x < 0 { return .nan }
    if x == 0 { return y > 0 ? 0 : .infinity }
    return exp64(y * log64(x))
}

/// sin x and cos x together: x = n·π/2 + r with |r| ≤ π/4 (fdlibm's split of π/2 into 33
/// leading bits and the rest, good to ~1e-19 for |x| up to about 2^20·π), then the Taylor polynomials of sin r and cos r to
/// degree 19 and 18 (truncation error below 1e-20), rotated by the quadrant n mod 4. Beyond
/// 2^20·π (far outside rotary embeddings and positional encodings) the reduction loses bits
/// but stays deterministic.
public func sincos64(_ x: Double) -> (sin: Double, cos: Double) {
    if !x.isFinite { return (.nan, .nan) }
    let n = (x * 0.6366197723675814).rounded(.toNearestOrEven)
    var r = x - n * 1.5707963267341256
    r -= n * 6.077100506506192e-11
    let r2 = r * r
    // sin r = r(1 − r²/(2·3)(1 − r²/(4·5)(1 − …))), cos r = 1 − r²/(1·2)(1 − r²/(3·4)(1 − …)).
    var s = 1.0, c = 1.0
    for k in stride(from: 9.0, through: 1.0, by: -1.0) {
        s = 1 - s * r2 / ((2 * k) * (2 * k + 1))
        c = 1 - c * r2 / ((2 * k - 1) * (2 * k))
    }
    s *= r
    switch Int(n.truncatingRemainder(dividingBy: 4) + 4) % 4 {
    case 0: return (s, c)
    case 1: return (c, -s)
    case 2: return (-s, -c)
    default: return (-c, s)
    }
}

/// ln(1 + e^x) without overflow: x + ln(1 + e^−x) above 0.
public func softplus64(_ x: Double) -> Double {
    if x.isNaN { return x }
    return x > 0 ? x + log64(1 + exp64(-x)) : log64(1 + exp64(x))
}
