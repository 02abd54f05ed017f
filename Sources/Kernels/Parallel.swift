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
