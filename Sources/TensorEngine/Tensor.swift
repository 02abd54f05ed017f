/// A dense float32 tensor in row-major (C) order, with value semantics.
///
/// Memory is reached only through `withUnsafeBufferPointer` / `withUnsafeMutableBufferPointer`.
public struct Tensor: Equatable, Sendable {
    /// The dimensions, outermost first: `(B, C, H, W)` for images.
    public private(set) var shape: [Int]
    private var storage: [Float]

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.storage = [Float](repeating: 0, count: AllocationLimit.checkedCount(shape, bytesPerElement: 4))
    }

    /// A tensor whose every element `fill` writes (nothing is zeroed first: for outputs an op
    /// overwrites entirely).
    public init(shape: [Int], fill: (UnsafeMutableBufferPointer<Float>) -> Void) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        let count = AllocationLimit.checkedCount(shape, bytesPerElement: 4)
        self.storage = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(buffer)
            initialized = count
        }
    }

    /// A tensor whose values the caller overwrites, every one, before anyone reads them: ops
    /// whose kernels write all their outputs skip the zero fill (a memset of the whole output
    /// per call, megabytes for a batch of convolutions).
    init(uninitialized shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        let count = AllocationLimit.checkedCount(shape, bytesPerElement: 4)
        self.storage = [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// An empty tensor that allocates nothing: what a holder keeps while its storage is lent
    /// out (`OpContext.outputBuffer`).
    static let placeholder = Tensor(shape: [0], scalars: [])

    /// The same storage under another shape with the same element count.
    mutating func setShape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        shape = newShape
    }

    /// A tensor holding `scalars` in row-major order.
    public init(shape: [Int], scalars: [Float]) {
        precondition(
            shape.reduce(1, *) == scalars.count,
            "shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.storage = scalars
    }

    /// The number of elements.
    public var count: Int { storage.count }

    /// The elements in row-major order.
    public var scalars: [Float] { storage }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(
            newShape.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        var t = self
        t.shape = newShape
        return t
    }

    /// Rows `range` of the outermost dimension.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0],
                     "rows \(range) out of bounds for shape \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [range.count] + shape.dropFirst(),
                      scalars: Array(storage[(range.lowerBound * inner)..<(range.upperBound * inner)]))
    }

    /// Rows at `indices` of the outermost dimension, in that order.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        let inner = shape.dropFirst().reduce(1, *)
        var out = [Float](repeating: 0, count: indices.count * inner)
        storage.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for (r, i) in indices.enumerated() {
                    precondition(i >= 0 && i < shape[0], "row \(i) out of bounds for shape \(shape)")
                    (dst.baseAddress! + r * inner).update(from: src.baseAddress! + i * inner, count: inner)
                }
            }
        }
        return Tensor(shape: [indices.count] + shape.dropFirst(), scalars: out)
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }
}
