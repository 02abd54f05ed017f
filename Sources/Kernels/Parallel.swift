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
    /// Fused attention's scores and probabilities (`withAttentionScratch`), which GEMMs
    /// read and write while they use the other slots.
    case attention = 3
}

/// Runs `body` on `count` floats of the calling thread's attention scratch (uninitialized, kept
/// for the thread's next call): a block of attention scores that GEMMs, which use the other
/// slots, read and write.
public func withAttentionScratch<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    withThreadScratch(.attention, of: Float.self, count: count) { body($0.baseAddress!) }
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

/// Runs body(range) over 0..<count split into contiguous ranges, one per worker: at most
/// `threads` workers and at least `grain` items each (one range when there is less work).
/// Range boundaries are multiples of `align`. For loops whose items write their own outputs,
/// so the result does not depend on the split.
@inline(__always)
public func parallelRanges(_ count: Int, threads: Int, grain: Int, align: Int = 1, _ body: (Range<Int>) -> Void) {
    let workers = max(1, min(threads, count / max(grain, 1)))
    if workers == 1 {
        body(0..<count)
        return
    }
    parallelFor(workers, threads: workers) { w in
        let lo = w == 0 ? 0 : count * w / workers / align * align
        let hi = w == workers - 1 ? count : count * (w + 1) / workers / align * align
        body(lo..<hi)
    }
}

/// out[o] = the sum of block o (x[o·length ..< (o+1)·length]) from +0 in index order, for
/// `blocks` blocks, eight blocks side by side (eight independent chains: one chain at a time
/// waited on each add), blocks split across threads: each block's bits are its plain chain's.
public func sumBlocks(_ x: UnsafePointer<Float>, blocks: Int, length n: Int, out: UnsafeMutablePointer<Float>, threads: Int) {
    parallelRanges(blocks, threads: threads, grain: max(1, 65_536 / max(n, 1))) { range in
        var o = range.lowerBound
        while o + 8 <= range.upperBound {
            let p = x + o * n
            // Lane b is block b's chain: eight values of each block loaded as a vector, the
            // 8 × 8 transposed, then its columns added in index order. (Eight scalar chains,
            // two loads and adds a value, read EfficientNet-B0's squeeze inputs at 7 G values/s.)
            var a = SIMD8<Float>()
            var i = 0
            @inline(__always) func row(_ b: Int) -> SIMD8<Float> { UnsafeRawPointer(p + (b &* n &+ i)).loadUnaligned(as: SIMD8<Float>.self) }
            while i &+ 8 <= n {
                let t = transpose8x8(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
                a += t.0; a += t.1; a += t.2; a += t.3; a += t.4; a += t.5; a += t.6; a += t.7
                i &+= 8
            }
            while i < n {
                a += SIMD8(p[i], p[n &+ i], p[2 &* n &+ i], p[3 &* n &+ i], p[4 &* n &+ i], p[5 &* n &+ i], p[6 &* n &+ i], p[7 &* n &+ i])
                i &+= 1
            }
            for b in 0..<8 { out[o + b] = a[b] }
            o += 8
        }
        while o < range.upperBound {
            var a: Float = 0
            let p = x + o * n
            for i in 0..<n { a += p[i] }
            out[o] = a
            o += 1
        }
    }
}

/// out[j] = Σ over rows r of x[r · columns + j], each a chain from +0 over r in order; sixteen
/// columns side by side.
public func sumColumns(_ x: UnsafePointer<Float>, rows: Int, columns: Int, out: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    var j = 0
    while j + 16 <= columns {
        var a = V()
        for r in 0..<rows { a += UnsafeRawPointer(x + r * columns + j).loadUnaligned(as: V.self) }
        UnsafeMutableRawPointer(out + j).storeBytes(of: a, as: V.self)
        j += 16
    }
    while j < columns {
        var a: Float = 0
        for r in 0..<rows { a += x[r * columns + j] }
        out[j] = a
        j += 1
    }
}

/// Sets glibc's allocator up for the engine's tensors (`prunecheck_tune_allocator`): buffers
/// up to 32 MB stay in the heap and the heap is not trimmed, so a training loop reuses its
/// memory rather than faulting it in again every step. The tools call it first thing.
public func tuneAllocatorForTensors() { prunecheck_tune_allocator() }
