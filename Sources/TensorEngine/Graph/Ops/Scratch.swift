import Kernels

// Buffers that ops keep between runs.

/// Two scratch arrays of `count` floats that a kept backward closure reuses from one training
/// run to the next, each made on its first use.
final class ScratchPair {
    let count: Int
    private var first: [Float] = [], second: [Float] = []

    init(count: Int) { self.count = count }

    func withFirst<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        if first.count != count { first = [Float](repeating: 0, count: count) }
        return first.withUnsafeMutableBufferPointer { body($0) }
    }

    func withSecond<R>(_ body: (UnsafeMutableBufferPointer<Float>) -> R) -> R {
        if second.count != count { second = [Float](repeating: 0, count: count) }
        return second.withUnsafeMutableBufferPointer { body($0) }
    }

}

/// Buffers that every Conv's backward shares (backward steps run one at a time): a chunk of
/// samples' columns and their output gradients for the weight gradient. One per graph, so the
/// largest chunk sets its size, not their sum.
// NOTE: kept per node, ResNet-18's check peaked 75 MiB higher (999 against 924 MiB).
final class ChunkScratch {
    private var wide: [Float] = [], rows: [Float] = []

    /// Two buffers of `wideCount` and `rowsCount` floats, contents left from their last use.
    func with<R>(wideCount: Int, rowsCount: Int, _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> R) -> R {
        if wide.count < wideCount { wide = [Float](repeating: 0, count: wideCount) }
        if rows.count < rowsCount { rows = [Float](repeating: 0, count: rowsCount) }
        return wide.withUnsafeMutableBufferPointer { w in rows.withUnsafeMutableBufferPointer { r in body(w.baseAddress!, r.baseAddress!) } }
    }
}

/// An array of indices that a kept backward closure reads and each training run refills (a
/// max pool's argmax).
final class IndexBox {
    var values: [Int] = []

    /// The array, left empty here (so the caller's copy is the only one and writes in place).
    func take() -> [Int] {
        let v = values
        values = []
        return v
    }
}
