import Kernels

// Elementwise ops: every loop runs in increasing index order; transcendental functions are
// the project's own (Kernels/MathFunctions.swift), so results do not depend on libm.

extension Variable {
    /// dx[i] += g[i].
    func addGrad(_ g: UnsafeBufferPointer<Float>) {
        accumulateGrad { d in for i in 0..<g.count { d[i] += g[i] } }
    }
}

let sqrtHalf = 0.7071067811865476
let sqrt2OverPi = 0.7978845608028654

@inline(__always) func geluErf(_ x: Float) -> Float { geluErf32(x) }

/// Φ(x) + x·φ(x).
@inline(__always) func geluErfGrad(_ x: Float) -> Float {
    let cdf = x == 0 ? 0.5 : geluErf32(x) / x
    let pdf = expf32(-0.5 * x * x) * 0.398942280
    return cdf + x * pdf
}

@inline(__always) func geluTanh(_ x: Float) -> Float {
    let d = Double(x)
    return Float(0.5 * d * (1 + tanh64(sqrt2OverPi * (d + 0.044715 * d * d * d))))
}

@inline(__always) func geluTanhGrad(_ x: Float) -> Float {
    let d = Double(x)
    let u = sqrt2OverPi * (d + 0.044715 * d * d * d)
    let t = tanh64(u)
    let du = sqrt2OverPi * (1 + 3 * 0.044715 * d * d)
    return Float(0.5 * (1 + t) + 0.5 * d * (1 - t * t) * du)
}

extension OpContext {
    /// `relu`, with the output and backward step of the last training run when reusable.
    func reluOp() throws -> Value {
        let x = try float(0)
        guard tape != nil else { return .float(relu(x, tape: nil)) }
        var y = outputBuffer(x.value.shape)
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { reluForward(xp.baseAddress!, count: xp.count, out: $0.baseAddress!) }
        }
        if let kept = reuse(y) { return kept }
        return emitKept(y) { dy in
            x.value.withUnsafeBufferPointer { xp in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { reluBackward(xp.baseAddress!, dp.baseAddress!, count: xp.count, dx: $0) }
                }
            }
        }
    }

    func unary() throws -> Value {
        if case .int64(let t) = try value(0) {
            // Shape arithmetic: the integer forms of Neg, Abs and Sign.
            switch node.opType {
            case "Neg": return .int64(IntTensor(shape: t.shape, data: t.data.map { 0 &- $0 }))
            case "Abs": return .int64(IntTensor(shape: t.shape, data: t.data.map { $0 < 0 ? 0 &- $0 : $0 }))
            case "Sign": return .int64(IntTensor(shape: t.shape, data: t.data.map { $0.signum() }))
            default: throw fail("input 0 ('\(node.inputs[0])') must be float32, found int64")
            }
        }
        let x = try float(0)
        let f: (Float) -> Float
        // Derivative from the input x and the output y.
        let df: (Float, Float) -> Float
        switch node.opType {
        case "Relu":
            f = { $0 > 0 ? $0 : 0 }; df = { x, _ in x > 0 ? 1 : 0 }
        case "LeakyRelu":
            let alpha = try float("alpha", 0.01)
            f = { $0 >= 0 ? $0 : alpha * $0 }; df = { x, _ in x >= 0 ? 1 : alpha }
        case "Gelu":
            switch try string("approximate", "none") {
            case "none": f = geluErf; df = { x, _ in geluErfGrad(x) }
            case "tanh": f = geluTanh; df = { x, _ in geluTanhGrad(x) }
            case let other: throw fail("attribute approximate = '\(other)' (allowed: none, tanh)")
            }
        case "Sigmoid": f = sigmoid32; df = { _, y in y * (1 - y) }
        case "Tanh": f = { Float(tanh64(Double($0))) }; df = { _, y in 1 - y * y }
        case "Exp": f = { Float(exp64(Double($0))) }; df = { _, y in y }
        case "Log": f = { Float(log64(Double($0))) }; df = { x, _ in 1 / x }
        case "Sqrt": f = { $0.squareRoot() }; df = { _, y in 0.5 / y }
        case "Erf": f = erf32; df = { x, _ in 1.12837917 * expf32(-x * x) }
        case "Abs": f = { abs($0) }; df = { x, _ in x > 0 ? 1 : (x < 0 ? -1 : 0) }
        case "Neg": f = { -$0 }; df = { _, _ in -1 }
        case "Reciprocal": f = { 1 / $0 }; df = { _, y in -y * y }
        case "Sin": f = { Float(sincos64(Double($0)).sin) }; df = { x, _ in Float(sincos64(Double(x)).cos) }
        case "Cos": f = { Float(sincos64(Double($0)).cos) }; df = { x, _ in -Float(sincos64(Double(x)).sin) }
        case "HardSigmoid":
            let alpha = try float("alpha", 0.2), beta = try float("beta", 0.5)
            f = { max(0, min(1, alpha * $0 + beta)) }
            df = { x, _ in let t = alpha * x + beta; return t > 0 && t < 1 ? alpha : 0 }
        case "HardSwish":
            // x · HardSigmoid(x) with alpha 1/6 and beta 1/2.
            f = { $0 * max(0, min(1, $0 / 6 + 0.5)) }
            df = { x, _ in x < -3 ? 0 : x > 3 ? 1 : x / 3 + 0.5 }
        case "Softplus": f = { Float(softplus64(Double($0))) }; df = { x, _ in sigmoid32(x) }
        case "Sign": f = { $0 > 0 ? 1 : $0 < 0 ? -1 : $0.isNaN ? .nan : 0 }; df = { _, _ in 0 }
        case "Floor": f = { $0.rounded(.down) }; df = { _, _ in 0 }
        case "Ceil": f = { $0.rounded(.up) }; df = { _, _ in 0 }
        case "Round": f = { $0.rounded(.toNearestOrEven) }; df = { _, _ in 0 }
        case "Elu":
            let alpha = try float("alpha", 1)
            f = { $0 >= 0 ? $0 : alpha * Float(exp64(Double($0)) - 1) }
            df = { x, y in x >= 0 ? 1 : y + alpha }
        case "Softsign": f = { $0 / (1 + abs($0)) }; df = { x, _ in 1 / ((1 + abs(x)) * (1 + abs(x))) }
        default: throw fail("not a unary op")
        }
        let n = x.value.count
        let lanes: ((UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void)? =
            node.opType == "Sigmoid" ? { sigmoidForward($0, count: $1, out: $2) }
            : node.opType == "Gelu" && (try? string("approximate", "none")) == "none" ? { geluErfForward($0, count: $1, out: $2) } : nil
        if tape == nil, let lanes {
            // NOTE: the same expression as `f`, sixteen lanes at a time (every lane has the
            // scalar bits): through the closure, each element cost a call (30 % of
            // EfficientNet-B0, whose SiLU is Sigmoid · x; 54 % of MiniLM in Gelu).
            var y = outputBuffer(x.value.shape)
            let threads = self.threads
            x.value.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    let x0 = xp.baseAddress!, y0 = yp.baseAddress!
                    // NOTE: about a nanosecond a value: 8K values pay for a helper (ViT's Gelu,
                    // 65 × 768 at batch 1, was one range at a grain of 32K).
                    parallelRanges(n, threads: threads, grain: 8_192, align: 16) { r in lanes(x0 + r.lowerBound, r.count, y0 + r.lowerBound) }
                }
            }
            return inferenceValue(y, requiresGrad: x.requiresGrad)
        }
        var y = Tensor(zeros: x.value.shape)
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in for i in 0..<n { yp[i] = f(xp[i]) } }
        }
        let yv = y
        return emit(y, parents: [x]) { dy in
            x.value.withUnsafeBufferPointer { xp in
                yv.withUnsafeBufferPointer { yp in
                    dy.withUnsafeBufferPointer { dp in
                        x.accumulateGrad { d in for i in 0..<n { d[i] += dp[i] * df(xp[i], yp[i]) } }
                    }
                }
            }
        }
    }

    func clip() throws -> Value {
        let x = try float(0)
        // NOTE: `let`, not `var`: a `var` captured by the backward closure is boxed, and every
        // read of it in the loop was a dynamic exclusivity check (a third of MobileNetV2's
        // training step).
        let lo: Float, hi: Float
        if graph.opset < 11 {
            lo = try float("min", -Float.infinity); hi = try float("max", Float.infinity)
        } else {
            lo = try optionalScalar(1) ?? -Float.infinity
            hi = try optionalScalar(2) ?? Float.infinity
        }
        let n = x.value.count
        // NOTE: into the node's reused output buffer, in one pass: a copy of the input (a
        // memmove) and a pass over it took 9 % of MobileNetV2 (ReLU6 after every Conv).
        var y = outputBuffer(x.value.shape)
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { p in for i in 0..<n { p[i] = min(max(xp[i], lo), hi) } }
        }
        return emit(y, parents: [x]) { dy in
            x.value.withUnsafeBufferPointer { xp in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { d in for i in 0..<n where xp[i] >= lo && xp[i] <= hi { d[i] += dp[i] } }
                }
            }
        }
    }

    /// Add, Sub, Mul, Div, Pow, Max, Min with NumPy broadcasting, on floats or int64.
    func binary(_ op: String, _ a: Value, _ b: Value) throws -> Value {
        guard let outShape = try broadcastShape(a.shape, b.shape).map({ _ = try checkedCount($0); return $0 }) else {
            throw fail("shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        switch (a, b) {
        case (.int64(let x), .int64(let y)):
            return .int64(try intBinary(op, x, y, outShape))
        case (.float(let x), .float(let y)):
            return try floatBinary(op, x, y, outShape)
        case (.int64(let x), .float(let y)) where op == "Pow":
            // int64 base, float exponent: the result keeps the base's type (truncated).
            let ia = broadcastSourceIndex(x.shape, to: outShape), ib = broadcastSourceIndex(y.value.shape, to: outShape)
            let ys = y.value.scalars
            return .int64(IntTensor(shape: outShape, data: (0..<ia.count).map { i in
                let r = pow64(Double(x.data[ia[i]]), Double(ys[ib[i]]))
                return r.isFinite ? Int64(r.rounded(.towardZero)) : 0
            }))
        case (.float(let x), .int64(let y)) where op == "Pow":
            return try floatBinary(op, x, Variable(Tensor(shape: y.shape, scalars: y.data.map { Float($0) })), outShape)
        default:
            throw fail("inputs must have the same element type, found \(a.dtype.rawValue) and \(b.dtype.rawValue)")
        }
    }

    func intBinary(_ op: String, _ a: IntTensor, _ b: IntTensor, _ outShape: [Int]) throws -> IntTensor {
        let ia = broadcastSourceIndex(a.shape, to: outShape), ib = broadcastSourceIndex(b.shape, to: outShape)
        var out = [Int64](repeating: 0, count: ia.count)
        for i in 0..<out.count {
            let x = a.data[ia[i]], y = b.data[ib[i]]
            switch op {
            case "Add": out[i] = x &+ y
            case "Sub": out[i] = x &- y
            case "Mul": out[i] = x &* y
            case "Div":
                guard y != 0 else { throw fail("integer division by zero") }
                out[i] = x / y
            case "Pow":
                var r: Int64 = 1
                if y >= 0 { for _ in 0..<min(y, 64) { r = r &* x } } else { r = 0 }
                out[i] = r
            case "Max": out[i] = max(x, y)
            case "Min": out[i] = min(x, y)
            default: throw fail("op is not defined on int64")
            }
        }
        return IntTensor(shape: outShape, data: out)
    }

    func floatBinary(_ op: String, _ a: Variable, _ b: Variable, _ outShape: [Int]) throws -> Value {
        let av = a.value, bv = b.value
        let total = outShape.reduce(1, *)
        if tape == nil, let y = inferenceBinary(op, av, bv, outShape) {
            return inferenceValue(y, requiresGrad: a.requiresGrad || b.requiresGrad)
        }
        let sameA = av.shape == outShape, sameB = bv.shape == outShape
        let ia = sameA ? [] : broadcastSourceIndex(av.shape, to: outShape)
        let ib = sameB ? [] : broadcastSourceIndex(bv.shape, to: outShape)
        let f: (Float, Float) -> Float
        // ∂/∂a and ∂/∂b from a, b and the output.
        let da: (Float, Float, Float) -> Float
        let db: (Float, Float, Float) -> Float
        switch op {
        case "Add": f = { $0 + $1 }; da = { _, _, _ in 1 }; db = { _, _, _ in 1 }
        case "Sub": f = { $0 - $1 }; da = { _, _, _ in 1 }; db = { _, _, _ in -1 }
        case "Mul": f = { $0 * $1 }; da = { _, y, _ in y }; db = { x, _, _ in x }
        case "Div": f = { $0 / $1 }; da = { _, y, _ in 1 / y }; db = { _, y, z in -z / y }
        case "Pow":
            f = { Float(pow64(Double($0), Double($1))) }
            da = { x, y, _ in y == 0 ? 0 : y * Float(pow64(Double(x), Double(y - 1))) }
            db = { x, _, z in x > 0 ? z * Float(log64(Double(x))) : 0 }
        case "Max": f = { $0.isNaN || $1.isNaN ? .nan : max($0, $1) }; da = { x, y, _ in x >= y ? 1 : 0 }; db = { x, y, _ in x >= y ? 0 : 1 }
        case "Min": f = { $0.isNaN || $1.isNaN ? .nan : min($0, $1) }; da = { x, y, _ in x <= y ? 1 : 0 }; db = { x, y, _ in x <= y ? 0 : 1 }
        default: throw fail("not a binary op")
        }
        var out = Tensor(zeros: outShape)
        av.withUnsafeBufferPointer { ap in
            bv.withUnsafeBufferPointer { bp in
                out.withUnsafeMutableBufferPointer { op in
                    if sameA && sameB {
                        for i in 0..<total { op[i] = f(ap[i], bp[i]) }
                    } else if sameA && bv.count == 1 {
                        let s = bp[0]
                        for i in 0..<total { op[i] = f(ap[i], s) }
                    } else {
                        for i in 0..<total { op[i] = f(ap[sameA ? i : ia[i]], bp[sameB ? i : ib[i]]) }
                    }
                }
            }
        }
        let result = out
        return emit(out, parents: [a, b]) { dy in
            av.withUnsafeBufferPointer { ap in
                bv.withUnsafeBufferPointer { bp in
                    result.withUnsafeBufferPointer { zp in
                        dy.withUnsafeBufferPointer { dp in
                            if a.requiresGrad {
                                a.accumulateGrad { g in
                                    for i in 0..<total {
                                        let x = ap[sameA ? i : ia[i]], y = bp[sameB ? i : ib[i]]
                                        g[sameA ? i : ia[i]] += dp[i] * da(x, y, zp[i])
                                    }
                                }
                            }
                            if b.requiresGrad {
                                b.accumulateGrad { g in
                                    for i in 0..<total {
                                        let x = ap[sameA ? i : ia[i]], y = bp[sameB ? i : ib[i]]
                                        g[sameB ? i : ib[i]] += dp[i] * db(x, y, zp[i])
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sum, Max, Min, Mean over any number of inputs, folded left to right.
    func variadic() throws -> Value {
        guard !inputs.isEmpty else { throw fail("needs at least one input") }
        var acc = try value(0)
        let op = node.opType == "Sum" || node.opType == "Mean" ? "Add" : node.opType
        for i in 1..<max(inputs.count, 1) { acc = try binary(op, acc, try value(i)) }
        if node.opType == "Mean", inputs.count > 1 {
            guard case .float = acc else { throw fail("Mean needs float inputs") }
            acc = try binary("Div", acc, .constant(Tensor(shape: [], scalars: [Float(inputs.count)])))
        }
        if inputs.count == 1, case .float(let x) = acc {
            // A fresh output, so that later in-place updates never alias the input.
            return emit(x.value, parents: [x]) { dy in dy.withUnsafeBufferPointer { x.addGrad($0) } }
        }
        return acc
    }

    /// Softmax or LogSoftmax along one axis (opset ≥ 13; the older 2-D coercion below 13).
    func softmax(log: Bool) throws -> Value {
        let x = try float(0)
        let shape = x.value.shape
        let rank = shape.count
        guard rank > 0 else { throw fail("input must have at least one dimension") }
        let ax = try axis(try int("axis", graph.opset >= 13 ? -1 : 1), rank: rank)
        let outer: Int, n: Int, inner: Int
        if graph.opset >= 13 {
            outer = shape[..<ax].reduce(1, *); n = shape[ax]; inner = shape[(ax + 1)...].reduce(1, *)
        } else {
            outer = shape[..<ax].reduce(1, *); n = shape[ax...].reduce(1, *); inner = 1
        }
        // (Every element is written below; at inference, the node's buffer of the last run.)
        var y = tape == nil ? outputBuffer(shape) : Tensor(uninitialized: shape)
        let threads = self.threads
        x.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                // Rows split across threads (each row's chain is its own), in runs of sixteen
                // (`softmaxRows`' blocks).
                // NOTE: at 16K values a thread, the ViT's attention at batch 1 (260 rows of 65) ran
                // on one of two threads.
                if inner == 1 && !log {
                    // (`softmaxRows`: the same chain, its exponentials sixteen lanes at a time)
                    let x0 = xp.baseAddress!, y0 = yp.baseAddress!
                    parallelRanges(outer, threads: threads, grain: max(1, 8_192 / max(n, 1)), align: 16) { rows in
                        softmaxRows(x0 + rows.lowerBound * n, rows: rows.count, cols: n, out: y0 + rows.lowerBound * n)
                    }
                    return
                }
                for o in 0..<outer {
                    for j in 0..<inner {
                        let base = o * n * inner + j
                        var m = -Float.infinity
                        for k in 0..<n { m = max(m, xp[base + k * inner]) }
                        var s: Float = 0
                        for k in 0..<n {
                            let e = expf32(xp[base + k * inner] - m)
                            yp[base + k * inner] = e
                            s += e
                        }
                        if log {
                            let ls = Float(log64(Double(s)))
                            for k in 0..<n { yp[base + k * inner] = xp[base + k * inner] - m - ls }
                        } else {
                            let inv = 1 / s
                            for k in 0..<n { yp[base + k * inner] *= inv }
                        }
                    }
                }
            }
        }
        let yv = y
        return emit(y, parents: [x]) { dy in
            yv.withUnsafeBufferPointer { yp in
                dy.withUnsafeBufferPointer { dp in
                    x.accumulateGrad { g in
                        for o in 0..<outer {
                            for j in 0..<inner {
                                let base = o * n * inner + j
                                var s: Float = 0
                                if log {
                                    for k in 0..<n { s += dp[base + k * inner] }
                                    for k in 0..<n { let i = base + k * inner; g[i] += dp[i] - expf32(yp[i]) * s }
                                } else {
                                    for k in 0..<n { let i = base + k * inner; s += dp[i] * yp[i] }
                                    for k in 0..<n { let i = base + k * inner; g[i] += yp[i] * (dp[i] - s) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// PRelu(x, slope): x where x ≥ 0, slope · x elsewhere, the slope broadcast to x (one per
    /// channel in a CNN).
    func prelu() throws -> Value {
        let x = try float(0), slope = try float(1)
        let xs = x.value.shape
        guard let out = broadcastShape(xs, slope.value.shape), out == xs else {
            throw fail("slope \(slope.value.shape) does not broadcast to the input \(xs)")
        }
        let isl = broadcastSourceIndex(slope.value.shape, to: xs)
        let xv = x.value.scalars, sv = slope.value.scalars
        let y = Tensor(shape: xs, scalars: (0..<xv.count).map { xv[$0] < 0 ? sv[isl[$0]] * xv[$0] : xv[$0] })
        return emit(y, parents: [x, slope]) { dy in
            let d = dy.scalars
            if x.requiresGrad { x.accumulateGrad { g in for i in 0..<d.count { g[i] += xv[i] < 0 ? sv[isl[i]] * d[i] : d[i] } } }
            if slope.requiresGrad { slope.accumulateGrad { g in for i in 0..<d.count where xv[i] < 0 { g[isl[i]] += xv[i] * d[i] } } }
        }
    }

    /// Mod(a, b): the remainder with the divisor's sign (`fmod` = 0, as Python's %) or the
    /// dividend's (`fmod` = 1, C's fmod). No gradient.
    func mod() throws -> Value {
        let a = try value(0), b = try value(1)
        let cFmod = try int("fmod", 0) == 1
        guard let outShape = broadcastShape(a.shape, b.shape) else { throw fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
        _ = try checkedCount(outShape)
        let ia = broadcastSourceIndex(a.shape, to: outShape), ib = broadcastSourceIndex(b.shape, to: outShape)
        switch (a, b) {
        case (.int64(let x), .int64(let y)):
            return .int64(IntTensor(shape: outShape, data: try (0..<ia.count).map { i in
                let p = x.data[ia[i]], q = y.data[ib[i]]
                guard q != 0 else { throw fail("integer modulo by zero") }
                let r = p % q
                return cFmod || r == 0 || (r < 0) == (q < 0) ? r : r + q
            }))
        case (.float(let x), .float(let y)):
            let xs = x.value.scalars, ys = y.value.scalars
            return .constant(Tensor(shape: outShape, scalars: (0..<ia.count).map { i in
                let q = ys[ib[i]], r = xs[ia[i]].truncatingRemainder(dividingBy: q)
                return cFmod || r == 0 || r.isNaN || (r < 0) == (q < 0) ? r : r + q
            }))
        default:
            throw fail("inputs must have the same element type, found \(a.dtype.rawValue) and \(b.dtype.rawValue)")
        }
    }

    /// Add, Sub, Mul and Div at inference without index maps or a closure per element, when
    /// one operand has the output's shape and the other is the same shape, a scalar, or repeats
    /// one value over each trailing block (a per-channel scale of (N, C, 1, 1) against
    /// (N, C, H, W), a bias of (C) against (…, C) is not: it varies fastest). The same
    /// operation per element as `floatBinary`'s loop, so the same bits. Nil otherwise.
    // NOTE: squeeze-and-excitation and SiLU products were 27 % of EfficientNet-B0 at batch 1
    // through the index maps of the general loop.
    // (The operation as a type, not a closure: inside the threads' closures a closure was
    // called per element.)
    func inferenceBinary(_ op: String, _ a: Tensor, _ b: Tensor, _ outShape: [Int]) -> Tensor? {
        switch op {
        case "Add": return inferenceBinary(AddOp.self, a, b, outShape)
        case "Sub": return inferenceBinary(SubOp.self, a, b, outShape)
        case "Mul": return inferenceBinary(MulOp.self, a, b, outShape)
        case "Div": return inferenceBinary(DivOp.self, a, b, outShape)
        default: return nil
        }
    }

    private func inferenceBinary<F: FloatBinaryOp>(_: F.Type, _ a: Tensor, _ b: Tensor, _ outShape: [Int]) -> Tensor {
        let total = outShape.reduce(1, *)
        /// For an operand that repeats each of its values over a trailing block of the output:
        /// the block length (1 when the shapes are equal), else nil.
        func block(_ shape: [Int]) -> Int? {
            let padded = [Int](repeating: 1, count: outShape.count - shape.count) + shape
            var k = padded.count
            while k > 0 && padded[k - 1] == 1 { k -= 1 }
            guard Array(padded[..<k]) == Array(outShape[..<k]) else { return nil }
            return outShape[k...].reduce(1, *)
        }
        /// For an operand that is the output's trailing dimensions repeated over its leading
        /// ones (a bias row under (batch, positions, features)): its length, else nil.
        func periodOf(_ shape: [Int]) -> Int? {
            let padded = [Int](repeating: 1, count: outShape.count - shape.count) + shape
            guard let k = padded.firstIndex(where: { $0 != 1 }), k > 0, Array(padded[k...]) == Array(outShape[k...]) else { return nil }
            return outShape[k...].reduce(1, *)
        }
        let aFull = a.shape == outShape, bFull = b.shape == outShape
        guard aFull || bFull else { return stridedBinary(F.self, a, b, outShape) }
        // How the operand that is not the output's shape repeats: each of its values over a
        // trailing block (block > 1), or all of it over the leading dimensions (period > 1).
        // (Constants, not vars: the loops below capture them, and a captured var is boxed, each
        // read an exclusivity check.)
        let blockA: Int, blockB: Int, period: Int
        if aFull != bFull, let p = periodOf(aFull ? b.shape : a.shape), p > 1, total % p == 0 {
            (blockA, blockB, period) = (1, 1, p)
        } else {
            guard let ba = block(a.shape), let bb = block(b.shape) else { return stridedBinary(F.self, a, b, outShape) }
            (blockA, blockB, period) = (ba, bb, 1)
        }
        var y = outputBuffer(outShape)
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    let x = ap.baseAddress!, z = bp.baseAddress!, out = yp.baseAddress!
                    // Rows of the output over which the other operand repeats (or single
                    // elements), split across threads; each inner loop over plain pointers, so
                    // that it is vectorized (index arithmetic with overflow checks was not).
                    let row = period > 1 ? period : max(blockA, blockB)
                    let rows = total / row
                    let threads = self.threads
                    if row == 1 {
                        parallelRanges(total, threads: threads, grain: 32_768) { range in
                            let xs = x + range.lowerBound, zs = z + range.lowerBound, dst = out + range.lowerBound
                            for j in 0..<range.count { dst[j] = F.apply(xs[j], zs[j]) }
                        }
                        return
                    }
                    if rows == 1 {
                        // One row (a single value against a tensor, as a transformer's
                        // attention scale): its elements across threads.
                        parallelRanges(row, threads: threads, grain: 32_768, align: 16) { range in
                            let lo = range.lowerBound, dst = out + lo
                            if period > 1 {
                                let xs = x + lo, zs = z + lo
                                for j in 0..<range.count { dst[j] = F.apply(xs[j], zs[j]) }
                            } else if blockB > 1 {
                                let v = z[0], xs = x + lo
                                for j in 0..<range.count { dst[j] = F.apply(xs[j], v) }
                            } else {
                                let v = x[0], zs = z + lo
                                for j in 0..<range.count { dst[j] = F.apply(v, zs[j]) }
                            }
                        }
                        return
                    }
                    parallelRanges(rows, threads: threads, grain: max(1, 32_768 / row)) { range in
                        for o in range {
                            let base = o * row, dst = out + base
                            if period > 1 {
                                let xs = aFull ? x + base : x, zs = aFull ? z : z + base
                                for j in 0..<row { dst[j] = F.apply(xs[j], zs[j]) }
                            } else if blockB > 1 {
                                let v = z[o], xs = x + base
                                for j in 0..<row { dst[j] = F.apply(xs[j], v) }
                            } else {
                                let v = x[o], zs = z + base
                                for j in 0..<row { dst[j] = F.apply(v, zs[j]) }
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

extension OpContext {
    /// `inferenceBinary` for any broadcast (Add, Sub, Mul, Div as `F`): an attention mask of
    /// (batch, 1, q, k) added to scores of (batch, heads, q, k), operands that both broadcast.
    /// The output's dimensions of size 1 are dropped and neighbours that both operands step
    /// through alike merged; the output then runs in rows of its last dimension, along which
    /// each operand is contiguous or one repeated value.
    // NOTE: through the general path (an index map, a closure per element), MiniLM-L6's six
    // mask Adds at batch 8 took 355 µs each, 3.6 ns a value: 3 % of the model.
    func stridedBinary<F: FloatBinaryOp>(_: F.Type, _ a: Tensor, _ b: Tensor, _ outShape: [Int]) -> Tensor {
        let rank = outShape.count
        // Each output dimension's step through each operand: 0 where it repeats.
        let fa = broadcastSteps(a.shape, rank: rank), fb = broadcastSteps(b.shape, rank: rank)
        var dims: [Int] = [], sa: [Int] = [], sb: [Int] = []
        for i in 0..<rank where outShape[i] != 1 {
            if let last = dims.indices.last, sa[last] == fa[i] * outShape[i], sb[last] == fb[i] * outShape[i] {
                dims[last] *= outShape[i]
                sa[last] = fa[i]
                sb[last] = fb[i]
            } else {
                dims.append(outShape[i])
                sa.append(fa[i])
                sb.append(fb[i])
            }
        }
        if dims.isEmpty { (dims, sa, sb) = ([1], [0], [0]) }
        var y = outputBuffer(outShape)
        let total = outShape.reduce(1, *)
        guard total > 0 else { return y }
        let n = dims[dims.count - 1], ia = sa[sa.count - 1], ib = sb[sb.count - 1]
        let outer = Array(dims.dropLast()), oa = Array(sa.dropLast()), ob = Array(sb.dropLast())
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    let x = ap.baseAddress!, z = bp.baseAddress!, out = yp.baseAddress!
                    let threads = self.threads
                    parallelRanges(total / n, threads: threads, grain: max(1, 32_768 / n)) { rows in
                        for o in rows {
                            // The row's offsets into a and b from its index over the outer dimensions.
                            var rest = o, pa = 0, pb = 0
                            for d in stride(from: outer.count - 1, through: 0, by: -1) {
                                let k = rest % outer[d]
                                rest /= outer[d]
                                pa += k * oa[d]
                                pb += k * ob[d]
                            }
                            let xs = x + pa, zs = z + pb, dst = out + o * n
                            switch (ia, ib) {
                            case (0, 0): let v = F.apply(xs[0], zs[0]); for j in 0..<n { dst[j] = v }
                            case (0, _): let v = xs[0]; for j in 0..<n { dst[j] = F.apply(v, zs[j]) }
                            case (_, 0): let v = zs[0]; for j in 0..<n { dst[j] = F.apply(xs[j], v) }
                            default: for j in 0..<n { dst[j] = F.apply(xs[j], zs[j]) }
                            }
                        }
                    }
                }
            }
        }
        return y
    }
}

/// An elementwise float operation as a type, so that generic loops specialize and inline it.
protocol FloatBinaryOp { static func apply(_ a: Float, _ b: Float) -> Float }
enum AddOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivOp: FloatBinaryOp { @_transparent static func apply(_ a: Float, _ b: Float) -> Float { a / b } }
