/// The element types a graph value can have (the ones ONNX models of this project use).
public enum DType: String, Sendable, Equatable {
    case float32, int64, bool
}

/// A dense tensor of int64 or bool (stored as 0/1), row-major. Float values are `Variable`s.
public struct IntTensor: Equatable, Sendable {
    public var shape: [Int]
    public var data: [Int64]
    public init(shape: [Int], data: [Int64]) {
        precondition(shape.reduce(1, *) == data.count, "int tensor: shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
    }
}

/// One value flowing through a graph.
public enum Value {
    case float(Variable)
    case int64(IntTensor)
    case bool(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let v): return v.value.shape
        case .int64(let t), .bool(let t): return t.shape
        }
    }

    public var dtype: DType {
        switch self {
        case .float: return .float32
        case .int64: return .int64
        case .bool: return .bool
        }
    }

    public static func constant(_ t: Tensor) -> Value { .float(Variable(t)) }
}

/// Row-major strides of `shape`.
@inline(__always)
public func stridesOf(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        s[i] = acc
        acc *= shape[i]
    }
    return s
}

/// The NumPy broadcast of two shapes, or nil when they do not broadcast.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let n = max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
        let da = i < n - a.count ? 1 : a[i - (n - a.count)]
        let db = i < n - b.count ? 1 : b[i - (n - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// For each dimension of a `rank`-dimensional output that a tensor of shape `shape` broadcasts
/// to (NumPy rules: `shape` aligned to the right), the step through the tensor's elements: its
/// row-major stride, 0 where it repeats (size 1).
public func broadcastSteps(_ shape: [Int], rank: Int) -> [Int] {
    let padded = [Int](repeating: 1, count: rank - shape.count) + shape
    var steps = [Int](repeating: 0, count: rank), size = 1
    for i in stride(from: rank - 1, through: 0, by: -1) {
        steps[i] = padded[i] == 1 ? 0 : size
        size *= padded[i]
    }
    return steps
}

/// For every element of `outShape` (row-major), the index of the element of a tensor of shape
/// `shape` that broadcasts to it.
public func broadcastSourceIndex(_ shape: [Int], to outShape: [Int]) -> [Int] {
    let total = outShape.reduce(1, *)
    if shape == outShape { return Array(0..<total) }
    return strideWalk(outShape, strides: broadcastSteps(shape, rank: outShape.count), offset: 0)
}

/// For each element of `shape` in row-major order, offset + Σ index[d]·strides[d] (an
/// odometer over the indices; used by broadcasting and by every element-moving op).
public func strideWalk(_ shape: [Int], strides st: [Int], offset: Int) -> [Int] {
    var out: [Int] = []
    out.reserveCapacity(shape.reduce(1, *))
    forEachStrideOffset(shape, strides: st, offset: offset) { out.append($0) }
    return out
}

/// Calls `body` with offset + Σ index[d]·strides[d] for each element of `shape`, in row-major
/// order, without building the list; with `elements`, only for those row-major positions.
@inline(__always)
public func forEachStrideOffset(_ shape: [Int], strides st: [Int], offset: Int, elements: Range<Int>? = nil, _ body: (Int) -> Void) {
    let range = elements ?? 0..<shape.reduce(1, *)
    guard !range.isEmpty else { return }
    // The first position's index and offset, then a step at a time.
    var idx = [Int](repeating: 0, count: shape.count)
    var src = offset, rem = range.lowerBound
    for d in shape.indices.reversed() {
        idx[d] = rem % shape[d]
        rem /= shape[d]
        src += idx[d] * st[d]
    }
    for _ in range {
        body(src)
        var d = shape.count - 1
        while d >= 0 {
            idx[d] += 1
            src += st[d]
            if idx[d] < shape[d] { break }
            src -= st[d] * idx[d]
            idx[d] = 0
            d -= 1
        }
    }
}

/// The same permutation of the same elements with fewer axes: axes of size 1 dropped, and input
/// axes that stay next to each other, in order, merged into one. `perm[i]` is the input axis of
/// output axis i (ONNX's Transpose). An identity result (`perm == 0..<n`) moves nothing.
public func simplifiedPermutation(shape: [Int], perm: [Int]) -> (shape: [Int], perm: [Int]) {
    // Input axes kept (size > 1), renumbered in input order.
    var number = [Int](repeating: -1, count: shape.count)
    var kept = 0
    for a in shape.indices where shape[a] != 1 {
        number[a] = kept
        kept += 1
    }
    let order = perm.filter { shape[$0] != 1 }
    // Runs of consecutive input axes in output order: each run becomes one axis.
    var runs: [(first: Int, size: Int)] = []
    var last = -2
    for a in order {
        if number[a] == last + 1, !runs.isEmpty {
            runs[runs.count - 1].size *= shape[a]
        } else {
            runs.append((number[a], shape[a]))
        }
        last = number[a]
    }
    // The runs in input order give the input shape; each output axis is its run's rank there.
    let byInput = runs.indices.sorted { runs[$0].first < runs[$1].first }
    var rank = [Int](repeating: 0, count: runs.count)
    for (r, i) in byInput.enumerated() { rank[i] = r }
    return (byInput.map { runs[$0].size }, runs.indices.map { rank[$0] })
}

/// Normalizes a possibly negative axis against `rank`; nil when out of range.
@inline(__always)
public func normalizeAxis(_ axis: Int, rank: Int) -> Int? {
    let a = axis < 0 ? axis + rank : axis
    return a >= 0 && a < rank ? a : nil
}
