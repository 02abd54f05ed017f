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
