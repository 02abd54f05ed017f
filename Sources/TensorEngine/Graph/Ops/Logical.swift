import Kernels

// Comparisons (Equal, Less, LessOrEqual, Greater, GreaterOrEqual), logic (And, Or, Xor, Not),
// IsNaN, IsInf and Where. Comparisons and logic give bool tensors and carry no gradient;
// Where passes the gradient to the branch each element came from. NumPy broadcasting
// throughout; every loop runs in increasing index order.

extension OpContext {
    /// Equal, Less, LessOrEqual, Greater, GreaterOrEqual on two float, int64 or bool inputs of
    /// the same type.
    func compare() throws -> Value {
        let a = try value(0), b = try value(1)
        guard let outShape = broadcastShape(a.shape, b.shape) else { throw fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
        let ia = broadcastSourceIndex(a.shape, to: outShape), ib = broadcastSourceIndex(b.shape, to: outShape)
        let test: (Int) -> Bool
        let op = node.opType
        func ordered<T: Comparable>(_ x: T, _ y: T) -> Bool {
            switch op {
            case "Equal": return x == y
            case "Less": return x < y
            case "LessOrEqual": return x <= y
            case "Greater": return x > y
            default: return x >= y
            }
        }
        switch (a, b) {
        case (.float(let x), .float(let y)):
            let xs = x.value.scalars, ys = y.value.scalars
            test = { ordered(xs[ia[$0]], ys[ib[$0]]) }
        case (.int64(let x), .int64(let y)), (.bool(let x), .bool(let y)):
            test = { ordered(x.data[ia[$0]], y.data[ib[$0]]) }
        default:
            throw fail("inputs must have the same element type, found \(a.dtype.rawValue) and \(b.dtype.rawValue)")
        }
        return .bool(IntTensor(shape: outShape, data: (0..<ia.count).map { test($0) ? 1 : 0 }))
    }

    /// And, Or, Xor on two bool inputs; Not on one.
    func logical() throws -> Value {
        func bools(_ i: Int) throws -> IntTensor {
            guard case .bool(let t) = try value(i) else { throw fail("input \(i) must be bool, found \(try value(i).dtype.rawValue)") }
            return t
        }
        let a = try bools(0)
        if node.opType == "Not" { return .bool(IntTensor(shape: a.shape, data: a.data.map { $0 == 0 ? 1 : 0 })) }
        let b = try bools(1)
        guard let outShape = broadcastShape(a.shape, b.shape) else { throw fail("shapes \(a.shape) and \(b.shape) do not broadcast") }
        let ia = broadcastSourceIndex(a.shape, to: outShape), ib = broadcastSourceIndex(b.shape, to: outShape)
        let op = node.opType
        return .bool(IntTensor(shape: outShape, data: (0..<ia.count).map { i in
            let x = a.data[ia[i]] != 0, y = b.data[ib[i]] != 0
            let r = op == "And" ? x && y : op == "Or" ? x || y : x != y
            return r ? 1 : 0
        }))
    }

    /// IsNaN, and IsInf with `detect_negative` and `detect_positive`.
    func isSpecial() throws -> Value {
        let x = try float(0).value
        // NOTE: as `x.scalars.map`, a copy of the input and a closure call a value: MiniLM-L6's six
        // IsNaN nodes (12K values each) took 91 µs at batch 1, ONNX Runtime's 36.
        @inline(__always) func flags(_ test: (Float) -> Bool) -> IntTensor {
            let n = x.count
            return IntTensor(shape: x.shape, data: x.withUnsafeBufferPointer { p in
                [Int64](unsafeUninitializedCapacity: n) { out, count in
                    for i in 0..<n { out[i] = test(p[i]) ? 1 : 0 }
                    count = n
                }
            })
        }
        if node.opType == "IsNaN" { return .bool(flags { $0.isNaN }) }
        let negative = try int("detect_negative", 1) == 1, positive = try int("detect_positive", 1) == 1
        return .bool(flags { $0 == .infinity ? positive : $0 == -.infinity ? negative : false })
    }

    /// Where(condition, X, Y): X where the condition holds, else Y, broadcast to one shape.
    func whereOp() throws -> Value {
        guard case .bool(let c) = try value(0) else { throw fail("input 0 (condition) must be bool, found \(try value(0).dtype.rawValue)") }
        let x = try value(1), y = try value(2)
        guard let xy = broadcastShape(x.shape, y.shape), let outShape = broadcastShape(c.shape, xy) else {
            throw fail("shapes \(c.shape), \(x.shape) and \(y.shape) do not broadcast")
        }
        let n = outShape.reduce(1, *)
        // Operands of the output's shape or of one element (an attention mask's Where between
        // two constants) need no index map: it was 64 ns an element, 4 % of MiniLM.
        let direct = [c.shape, x.shape, y.shape].allSatisfy { $0 == outShape || $0.reduce(1, *) == 1 }
        if direct, tape == nil, case (.float(let a), .float(let b)) = (x, y) {
            let (sc, sa, sb) = (c.data.count == 1 ? 0 : 1, a.value.count == 1 ? 0 : 1, b.value.count == 1 ? 0 : 1)
            var out = outputBuffer(outShape)
            // NOTE: through the arrays' subscripts (a bounds check and an index product a value),
            // MiniLM-L6's six Where(IsNaN(p), 0, p) nodes after its Softmax took 88 µs each at
            // batch 8, 0.9 ns a value.
            out.withUnsafeMutableBufferPointer { op in
                c.data.withUnsafeBufferPointer { cp in
                    a.value.withUnsafeBufferPointer { ap in
                        b.value.withUnsafeBufferPointer { bp in
                            guard n > 0 else { return }
                            let o = op.baseAddress!, cs = cp.baseAddress!, xs = ap.baseAddress!, ys = bp.baseAddress!
                            switch (sc, sa, sb) {
                            case (1, 0, 1): let v = xs[0]; for i in 0..<n { o[i] = cs[i] != 0 ? v : ys[i] }
                            case (1, 1, 0): let v = ys[0]; for i in 0..<n { o[i] = cs[i] != 0 ? xs[i] : v }
                            case (1, 1, 1): for i in 0..<n { o[i] = cs[i] != 0 ? xs[i] : ys[i] }
                            default: for i in 0..<n { o[i] = cs[i * sc] != 0 ? xs[i * sa] : ys[i * sb] }
                            }
                        }
                    }
                }
            }
            return inferenceValue(out, requiresGrad: a.requiresGrad || b.requiresGrad)
        }
        let ic = broadcastSourceIndex(c.shape, to: outShape)
        let ix = broadcastSourceIndex(x.shape, to: outShape), iy = broadcastSourceIndex(y.shape, to: outShape)
        switch (x, y) {
        case (.float(let a), .float(let b)):
            let av = a.value.scalars, bv = b.value.scalars
            let out = Tensor(shape: outShape, scalars: (0..<n).map { c.data[ic[$0]] != 0 ? av[ix[$0]] : bv[iy[$0]] })
            return emit(out, parents: [a, b]) { dy in
                let d = dy.scalars
                if a.requiresGrad { a.accumulateGrad { g in for i in 0..<n where c.data[ic[i]] != 0 { g[ix[i]] += d[i] } } }
                if b.requiresGrad { b.accumulateGrad { g in for i in 0..<n where c.data[ic[i]] == 0 { g[iy[i]] += d[i] } } }
            }
        case (.int64(let a), .int64(let b)):
            return .int64(IntTensor(shape: outShape, data: (0..<n).map { c.data[ic[$0]] != 0 ? a.data[ix[$0]] : b.data[iy[$0]] }))
        case (.bool(let a), .bool(let b)):
            return .bool(IntTensor(shape: outShape, data: (0..<n).map { c.data[ic[$0]] != 0 ? a.data[ix[$0]] : b.data[iy[$0]] }))
        default:
            throw fail("X and Y must have the same element type, found \(x.dtype.rawValue) and \(y.dtype.rawValue)")
        }
    }
}
