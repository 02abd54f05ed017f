// Identity, Constant, Shape and Cast: values that carry no gradient of their own.

extension OpContext {
    func constant() throws -> Value {
        if case .tensor(let t)? = node.attributes["value"] { return t.value() }
        if case .float(let f)? = node.attributes["value_float"] { return .constant(Tensor(shape: [], scalars: [f])) }
        if case .floats(let f)? = node.attributes["value_floats"] { return .constant(Tensor(shape: [f.count], scalars: f)) }
        if case .int(let i)? = node.attributes["value_int"] { return .int64(IntTensor(shape: [], data: [Int64(i)])) }
        if case .ints(let i)? = node.attributes["value_ints"] { return .int64(IntTensor(shape: [i.count], data: i.map { Int64($0) })) }
        throw fail("needs one of the attributes value, value_float(s), value_int(s)")
    }

    func shape() throws -> Value {
        let s = try value(0).shape
        let r = s.count
        func clampAxis(_ a: Int) -> Int { min(max(a < 0 ? a + r : a, 0), r) }
        let start = clampAxis(try int("start", 0))
        let end = clampAxis(try int("end", r))
        let dims = start < end ? Array(s[start..<end]) : []
        return .int64(IntTensor(shape: [dims.count], data: dims.map { Int64($0) }))
    }

    func cast() throws -> Value { try cast(to: try int("to", 1)) }

    /// CastLike(input, target): Cast to the element type of `target`.
    func castLike() throws -> Value {
        switch try value(1) {
        case .float: return try cast(to: 1)
        case .int64: return try cast(to: 7)
        case .bool: return try cast(to: 9)
        }
    }

    /// Size(input): the number of elements, an int64 scalar.
    func size() throws -> Value { .int64(IntTensor(shape: [], data: [Int64(try value(0).shape.reduce(1, *))])) }

    func cast(to requested: Int) throws -> Value {
        let v = try value(0)
        // ONNX TensorProto.DataType: FLOAT 1, INT32 6, INT64 7, BOOL 9, DOUBLE 11. The engine
        // holds float32, int64 and bool: a cast to double computes on in float32, one to int32
        // in int64 (exporters cast index arithmetic so).
        let to = requested == 11 ? 1 : requested == 6 ? 7 : requested
        switch (v, to) {
        case (.float(let x), 1): return .float(x)
        case (.float(let x), 7): return .int64(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0.isFinite ? Int64($0.rounded(.towardZero)) : 0 }))
        case (.float(let x), 9): return .bool(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0 != 0 ? 1 : 0 }))
        case (.int64(let t), 1), (.bool(let t), 1): return .constant(Tensor(shape: t.shape, scalars: t.data.map { Float($0) }))
        case (.int64(let t), 7), (.bool(let t), 7): return .int64(t)
        case (.int64(let t), 9), (.bool(let t), 9): return .bool(IntTensor(shape: t.shape, data: t.data.map { $0 != 0 ? 1 : 0 }))
        default: throw fail("cast to data type \(requested) is not supported (float32 = 1, int32 = 6, int64 = 7, bool = 9, double = 11)")
        }
    }

    /// ConstantOfShape(shape): a tensor of that shape filled with `value` (a one-element
    /// tensor attribute; float 0 by default).
    func constantOfShape() throws -> Value {
        let shape = try ints(0).data.map { Int($0) }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("shape \(shape) has a negative dimension") }
        let count = try checkedCount(shape)
        switch node.attributes["value"] {
        case nil: return .constant(Tensor(zeros: shape))
        case .tensor(.float(let t))? where t.count == 1: return .constant(Tensor(shape: shape, scalars: [Float](repeating: t.scalars[0], count: count)))
        case .tensor(.int64(let t))? where t.data.count == 1: return .int64(IntTensor(shape: shape, data: [Int64](repeating: t.data[0], count: count)))
        case .tensor(.bool(let t))? where t.data.count == 1: return .bool(IntTensor(shape: shape, data: [Int64](repeating: t.data[0], count: count)))
        default: throw fail("attribute 'value' must be a one-element float, int64 or bool tensor")
        }
    }

    /// Range(start, limit, delta): start, start + delta, … while short of limit, float or int64.
    func range() throws -> Value {
        let start = try value(0), limit = try value(1), delta = try value(2)
        switch (start, limit, delta) {
        case (.int64(let a), .int64(let b), .int64(let d)):
            guard a.data.count == 1, b.data.count == 1, d.data.count == 1 else { throw fail("start, limit and delta must be scalars") }
            guard d.data[0] != 0 else { throw fail("delta must not be 0") }
            let n = max(0, Int(((Double(b.data[0]) - Double(a.data[0])) / Double(d.data[0])).rounded(.up)))
            return .int64(IntTensor(shape: [n], data: (0..<n).map { a.data[0] + Int64($0) * d.data[0] }))
        case (.float(let a), .float(let b), .float(let d)):
            guard a.value.count == 1, b.value.count == 1, d.value.count == 1 else { throw fail("start, limit and delta must be scalars") }
            let s0 = a.value.scalars[0], step = d.value.scalars[0]
            guard step != 0 else { throw fail("delta must not be 0") }
            let n = max(0, Int(((b.value.scalars[0] - s0) / step).rounded(.up)))
            guard n <= 1 << 31 else { throw fail("Range of \(n) elements is larger than a tensor may be") }
            // As ONNX's reference: each element is start + i·delta, in float32.
            return .constant(Tensor(shape: [n], scalars: (0..<n).map { s0 + Float($0) * step }))
        default:
            throw fail("start, limit and delta must all be float32 or all int64")
        }
    }
}
