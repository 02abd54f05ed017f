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

    func cast() throws -> Value {
        let to = try int("to", 1)
        let v = try value(0)
        // ONNX TensorProto.DataType: FLOAT 1, INT64 7, BOOL 9.
        switch (v, to) {
        case (.float(let x), 1): return .float(x)
        case (.float(let x), 7): return .int64(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0.isFinite ? Int64($0.rounded(.towardZero)) : 0 }))
        case (.float(let x), 9): return .bool(IntTensor(shape: x.value.shape, data: x.value.scalars.map { $0 != 0 ? 1 : 0 }))
        case (.int64(let t), 1), (.bool(let t), 1): return .constant(Tensor(shape: t.shape, scalars: t.data.map { Float($0) }))
        case (.int64(let t), 7), (.bool(let t), 7): return .int64(t)
        case (.int64(let t), 9), (.bool(let t), 9): return .bool(IntTensor(shape: t.shape, data: t.data.map { $0 != 0 ? 1 : 0 }))
        default: throw fail("cast to data type \(to) is not supported (float32 = 1, int64 = 7, bool = 9)")
        }
    }
}
