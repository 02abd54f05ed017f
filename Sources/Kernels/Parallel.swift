// Parallel loops for the kernels: a thin Swift face on CCPUFeatures' spinning pool.

import CCPUFeatures

/// Runs body(i) for every 0 ≤ i < count on up to `threads` threads (the caller's included) and
/// returns when all are done. Which thread runs which index is not fixed: each index must write
/// its own outputs, and the result must not depend on the order (so results are identical for
/// any thread count).
public func parallelFor(_ count: Int, threads: Int, _ body: (Int) -> Void) {
    if count <= 1 || threads <= 1 {
        for i in 0..<count { body(i) }
        return
    }
    withoutActuallyEscaping(body) { body in
        var task = body
        withUnsafeMutablePointer(to: &task) { context in
            prunecheck_parallel_for(count, threads, { context, index in
                context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
            }, context)
        }
    }
}

/// The calling thread's scratch buffers (`prunecheck_thread_scratch`), by use. Two uses that
/// can overlap on one thread take different slots.
enum ScratchSlot: Int32 {
    /// B packed for GEMM: a block, or all of it when threads share it.
    case packedB = 0
    /// A packed for GEMM, per worker.
    case packedA = 1
    /// The sparse kernels' transposed inputs or lists of nonzero inputs.
    case sparse = 2
}

/// Runs `body` on `count` values of the calling thread's scratch `slot`, uninitialized as from
/// `withUnsafeTemporaryAllocation`, but kept for the thread's next call: kernels that need
/// scratch on every call (GEMM's packing) then do not allocate in a steady-state loop.
@inline(__always)
func withThreadScratch<T, R>(_ slot: ScratchSlot, of type: T.Type, count: Int, _ body: (UnsafeMutableBufferPointer<T>) -> R) -> R {
    // A kilobyte or less comes from the stack, which costs nothing (batch-1 GEMM packs nothing).
    if count * MemoryLayout<T>.stride <= 1024 { return withUnsafeTemporaryAllocation(of: T.self, capacity: count, body) }
    guard let raw = prunecheck_thread_scratch(slot.rawValue, UInt(max(count, 1) * MemoryLayout<T>.stride)) else {
        fatalError("no memory for \(count) values of scratch")
    }
    return body(UnsafeMutableBufferPointer(start: raw.bindMemory(to: T.self, capacity: count), count: count))
}
