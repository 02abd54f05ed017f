import Foundation
// Single-precision GEMM on raw buffers.
//
// Contract
//   C[i, j] = c0 + Σ_k A[i, k] · B[k, j]   for 0 ≤ i < m, 0 ≤ j < n
//   where c0 = C[i, j] when `accumulate` is true and 0 otherwise.
// Layout
//   Row-major with leading dimensions. A[i, k] is a[i * lda + k], or a[k * lda + i] when
//   `transposeA`; B[k, j] is b[k * ldb + j], or b[j * ldb + k] when `transposeB`.
//   C[i, j] is c[i * ldc + j]. C must not overlap A or B.
// Accumulation order (what makes results bit-identical)
//   Every element is one fused multiply-add chain in increasing k:
//       acc = c0; for k in 0..<K { acc = fma(A[i, k], B[k, j], acc) }; C[i, j] = acc
//   Blocking over K stores the running sum in C between blocks (an exact round trip), and
//   threads split M and N only, never K. So the result equals `gemmReference` bit for bit,
//   for any blocking and any thread count.
// Allocation
//   Packing buffers are the calling thread's scratch (`withThreadScratch`), kept between
//   calls: a steady-state loop of GEMMs does not allocate.

import CCPUFeatures
import KernelsAVX512

/// The instruction set GEMM's micro-kernel uses. Every variant computes each output as the same
/// FMA chain, so results are bit-identical across them.
public enum KernelISA: String, Sendable, Equatable {
    /// The portable kernels: 6×16 tiles of Swift's 8-lane SIMD vectors, compiled for the target
    /// (NEON on aarch64). On x86-64 they are the same code as `avx2`.
    case generic
    /// Those kernels on x86-64-v3 (AVX2 + FMA), the baseline of every x86-64 build.
    case avx2
    /// 8×32 tiles of 16-lane vectors (AVX-512), only where the CPU has it.
    case avx512

    /// What the CPU runs: avx512 where it has it, avx2 on other x86-64, generic elsewhere.
    public static let hardware: KernelISA = {
        #if arch(x86_64)
        return prunecheck_cpu_has_avx512() != 0 ? .avx512 : .avx2
        #else
        return .generic
        #endif
    }()

    /// The variant the kernels use: `hardware`, or PRUNECHECK_ISA (generic, avx2 or avx512)
    /// when it names one the CPU runs, so that the test suite can run every path on one
    /// machine. Results are the same bits on every variant (the kernels' contract).
    public static let detected: KernelISA = {
        guard let name = ProcessInfo.processInfo.environment["PRUNECHECK_ISA"], let forced = KernelISA(rawValue: name) else { return hardware }
        switch (forced, hardware) {
        case (.avx512, .avx512), (.avx2, .avx2), (.avx2, .avx512), (.generic, _): return forced
        default: return hardware
        }
    }()
}

/// Register tile: 6 rows by 16 columns (12 eight-lane accumulators, AVX2/FMA-sized).
@usableFromInline let gemmMR = 6
@usableFromInline let gemmNR = 16
/// The AVX-512 tile: 8 rows by two 16-column panels (16 sixteen-lane accumulators).
@usableFromInline let wideMR = 8
/// Rows of A packed together for the AVX-512 tile (64 × kc floats: 64 KB at kc = 256, in L2).
@usableFromInline let wideBlockRows = 64
/// Cache blocking: K in equal blocks of at most 256 (packed A and B panels stay in L1/L2), N
/// by 512.
@usableFromInline let gemmKC = 256
@usableFromInline let gemmNC = 512

/// The K block length for a reduction of k: the fewest blocks of at most `gemmKC`, of equal
/// length but the last.
// NOTE: 784 inputs (LeNet-300-100's fc1) went as 256 + 256 + 256 + 16: the last block loaded
// and stored every C tile for 16 steps. Now 4 × 196. Blocking changes no bit (C holds the exact
// running sum between blocks).
@inline(__always)
func kBlock(_ k: Int) -> Int {
    let blocks = (k + gemmKC - 1) / gemmKC
    return (k + blocks - 1) / max(blocks, 1)
}

/// Naive GEMM with the same contract and accumulation order as `gemm`.
public func gemmReference(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool
) {
    for i in 0..<m {
        for j in 0..<n {
            var acc: Float = accumulate ? c[i * ldc + j] : 0
            for p in 0..<k {
                let av = transposeA ? a[p * lda + i] : a[i * lda + p]
                let bv = transposeB ? b[j * ldb + p] : b[p * ldb + j]
                acc = acc.addingProduct(av, bv)
            }
            c[i * ldc + j] = acc
        }
    }
}

/// Packed, blocked, multi-threaded GEMM. See the file header for the contract.
public func gemm(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    threads: Int = 1, isa: KernelISA = .detected, packedA: PackedA? = nil, epilogue: GemmEpilogue = .none
) {
    let wide = isa == .avx512 && KernelISA.detected == .avx512
    guard m > 0, n > 0 else { return }
    if let packedA, wide, !transposeA, packedA.m == m, packedA.k == k {
        packedA.storage.withUnsafeBufferPointer { storage in
            gemmBody(m: m, n: n, k: k, a: a, lda: lda, transposeA: false, b: b, ldb: ldb, transposeB: transposeB, c: c, ldc: ldc,
                     accumulate: accumulate, threads: threads, wide: true,
                     pa: PrepackedA(address: Int(bitPattern: storage.baseAddress!), tiles: packedA.tiles), epilogue: epilogue)
        }
        return
    }
    gemmBody(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB, c: c, ldc: ldc,
             accumulate: accumulate, threads: threads, wide: wide, pa: nil, epilogue: epilogue)
}

/// Where a `PackedA`'s tiles are, for the drivers below (an address, so closures may carry it).
@usableFromInline
struct PrepackedA: Sendable {
    let address: Int, tiles: Int
    /// The tile of rows `row`… (a multiple of 8) of the K block from pc, kc long.
    @inline(__always)
    func tile(pc: Int, row: Int, kc: Int) -> UnsafePointer<Float> {
        UnsafePointer<Float>(bitPattern: address)! + PackedA.offset(pc: pc, tile: row / wideMR, kc: kc, tiles: tiles)
    }
}

/// The body of `gemm`, with A's tiles prepacked (`pa`, AVX-512 only) or not.
func gemmBody(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
    threads: Int, wide: Bool, pa: PrepackedA?, epilogue: GemmEpilogue = .none
) {
    if k == 0 {
        if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        epilogue.apply(c: c, ldc: ldc, i0: 0, rows: m, j0: 0, cols: n)
        return
    }
    let unit = wide ? wideMR : gemmMR
    let rowPanels = (m + unit - 1) / unit
    let colPanels = (n + gemmNR - 1) / gemmNR
    // Split the larger side into `workers` contiguous ranges of panels (never K).
    let splitColumns = colPanels >= rowPanels
    let panels = splitColumns ? colPanels : rowPanels
    // NOTE: a worker needs about 1M multiply-adds to pay for waking a thread; below that,
    // threads made small-batch latency both slower and 3x noisier on a 2-core runner.
    let workers = max(1, min(threads, panels, (m * n * k) / 1_048_576 + 1))
    // Sendable wrappers for raw addresses (the ranges written by workers are disjoint).
    let aa = Int(bitPattern: a), bb = Int(bitPattern: b), cc = Int(bitPattern: c)
    if workers > 1 && !splitColumns && packedBCount(n: n, k: k) > gemmKC * gemmNC {
        // B larger than one block: each (N, K) block is packed by all workers together and
        // shared while the rows go through it, so it stays in L2.
        gemmSharedBlocks(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB,
                         c: c, ldc: ldc, accumulate: accumulate, workers: workers, wide: wide, pa: pa, epilogue: epilogue)
        return
    }
    if workers > 1 && !splitColumns {
        // Threads split rows: B is packed once, its blocks in parallel, and shared (each worker
        // packed all of it before), then rows go out in chunks as workers free up (`gemmPacked`).
        withThreadScratch(.packedB, of: Float.self, count: packedBCount(n: n, k: k)) { whole in
            packBWhole(b: b, ldb: ldb, transposeB: transposeB, k: k, n: n, into: whole.baseAddress!, threads: workers)
            gemmPacked(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, packed: whole.baseAddress!,
                       c: c, ldc: ldc, accumulate: accumulate, threads: workers, wide: wide, pa: pa, epilogue: epilogue)
        }
        return
    }
    // NOTE: the closure goes to parallelFor as a literal: held in a `let` first, its context
    // was a heap allocation per call (seen on every batch-1 Linear layer).
    parallelFor(workers, threads: workers) { w in
        let lo = panels * w / workers, hi = panels * (w + 1) / workers
        guard lo < hi else { return }
        let (i0, i1, j0, j1) = splitColumns
            ? (0, m, lo * gemmNR, min(n, hi * gemmNR))
            : (lo * unit, min(m, hi * unit), 0, n)
        gemmBlock(
            i0: i0, i1: i1, j0: j0, j1: j1, k: k,
            a: UnsafePointer(bitPattern: aa)!, lda: lda, transposeA: transposeA,
            b: UnsafePointer(bitPattern: bb)!, ldb: ldb, transposeB: transposeB,
            c: UnsafeMutablePointer(bitPattern: cc)!, ldc: ldc, accumulate: accumulate, wide: wide, pa: pa, epilogue: epilogue)
    }
}

/// Threads splitting rows, B packed one (N, K) block at a time: the workers pack the block's
/// panels together, then take the rows in chunks of `wideBlockRows` (or 6-row tiles) through
/// it. The blocks go in `forEachBlock`'s order, so every output is the same chain as in
/// `gemmBlock`.
func gemmSharedBlocks(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, workers: Int, wide: Bool, pa: PrepackedA? = nil,
    epilogue: GemmEpilogue = .none
) {
    let unit = wide ? wideMR : gemmMR
    let rowPanels = (m + unit - 1) / unit
    let chunkPanels = wide ? wideBlockRows / wideMR : 1
    let chunks = (rowPanels + chunkPanels - 1) / chunkPanels
    let aa = Int(bitPattern: a), bb = Int(bitPattern: b), cc = Int(bitPattern: c)
    withThreadScratch(.packedB, of: Float.self, count: min(k, gemmKC) * ((min(n, gemmNC) + gemmNR - 1) / gemmNR * gemmNR)) { block in
        let blockAddress = Int(bitPattern: block.baseAddress!)
        forEachBlock(columns: 0, n, k: k) { jc, nc, pc, kc in
            let panels = (nc + gemmNR - 1) / gemmNR
            parallelFor(workers, threads: workers) { w in
                let p0 = panels * w / workers, p1 = panels * (w + 1) / workers
                guard p0 < p1 else { return }
                packB(b: UnsafePointer<Float>(bitPattern: bb)!, ldb: ldb, transposeB: transposeB, k0: pc, kc: kc, j0: jc + p0 * gemmNR,
                      nc: min(nc, p1 * gemmNR) - p0 * gemmNR, into: UnsafeMutablePointer<Float>(bitPattern: blockAddress)! + p0 * kc * gemmNR)
            }
            parallelFor(chunks, threads: workers) { chunk in
                let i0 = min(m, chunk * chunkPanels * unit), i1 = min(m, (chunk + 1) * chunkPanels * unit)
                guard i0 < i1 else { return }
                withThreadScratch(.packedA, of: Float.self, count: kc * wideBlockRows) { aPack in
                    rowTiles(i0: i0, i1: i1, jc: jc, nc: nc, pc: pc, kc: kc, a: UnsafePointer<Float>(bitPattern: aa)!, lda: lda,
                             transposeA: transposeA, panels: UnsafePointer<Float>(bitPattern: blockAddress)!,
                             c: UnsafeMutablePointer<Float>(bitPattern: cc)!, ldc: ldc, load: accumulate || pc > 0, wide: wide,
                             aPack: aPack.baseAddress!, pa: pa, finish: pc + kc == k ? epilogue : .none)
                }
            }
        }
    }
}

/// Visits the (N block, K block) pairs of columns `j0..<j1` in the order every GEMM here uses:
/// N blocks of `gemmNC` outermost, K blocks of `kBlock(k)` inside. Sharing it keeps the packed and
/// the prepacked paths in the same accumulation order.
@inline(__always)
func forEachBlock(columns j0: Int, _ j1: Int, k: Int, _ body: (_ jc: Int, _ nc: Int, _ pc: Int, _ kc: Int) -> Void) {
    var jc = j0
    while jc < j1 {
        let nc = min(gemmNC, j1 - jc)
        var pc = 0
        while pc < k {
            let kc = min(kBlock(k), k - pc)
            body(jc, nc, pc, kc)
            pc += kc
        }
        jc += nc
    }
}

/// One worker's rectangle C[i0..<i1, j0..<j1], full K.
@usableFromInline
func gemmBlock(
    i0: Int, i1: Int, j0: Int, j1: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, wide: Bool, pa: PrepackedA? = nil, epilogue: GemmEpilogue = .none
) {
    if wide && !transposeB && i1 - i0 > 1 && i1 - i0 <= directRowsMax {
        gemmBlockDirectB(i0: i0, i1: i1, j0: j0, j1: j1, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb,
                         c: c, ldc: ldc, accumulate: accumulate, pa: pa, epilogue: epilogue)
        return
    }
    let kcMax = min(k, gemmKC)
    let ncMax = min(j1 - j0, gemmNC)
    let bPanelsMax = (ncMax + gemmNR - 1) / gemmNR
    withThreadScratch(.packedB, of: Float.self, count: kcMax * bPanelsMax * gemmNR) { bPack in
        withThreadScratch(.packedA, of: Float.self, count: kcMax * wideBlockRows) { aPack in
            forEachBlock(columns: j0, j1, k: k) { jc, nc, pc, kc in
                packB(b: b, ldb: ldb, transposeB: transposeB, k0: pc, kc: kc, j0: jc, nc: nc, into: bPack.baseAddress!)
                let load = accumulate || pc > 0
                rowTiles(i0: i0, i1: i1, jc: jc, nc: nc, pc: pc, kc: kc, a: a, lda: lda, transposeA: transposeA,
                         panels: bPack.baseAddress!, c: c, ldc: ldc, load: load, wide: wide, aPack: aPack.baseAddress!, pa: pa,
                         finish: pc + kc == k ? epilogue : .none)
            }
        }
    }
}

/// At most this many rows read B in place (AVX-512 only): packing B costs about as much as
/// two 8-row tiles' multiply-adds on it, so small M (a Conv's output channels) skips it.
@usableFromInline let directRowsMax = 16

/// `gemmBlock` for a few rows of a row-major B: the 8×32 kernel reads B's rows where they are
/// (32 columns at a time), only the last < 32 columns are packed. Same K blocks in the same
/// order, the same FMA chain per element, so the same bits as the packed path.
func gemmBlockDirectB(
    i0: Int, i1: Int, j0: Int, j1: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool, b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, pa: PrepackedA? = nil, epilogue: GemmEpilogue = .none
) {
    let kcMax = min(k, gemmKC)
    let inPlace = (j1 - j0) / (2 * gemmNR) * (2 * gemmNR), rest = j1 - j0 - inPlace
    withThreadScratch(.packedB, of: Float.self, count: kcMax * 2 * gemmNR) { tail in
        withThreadScratch(.packedA, of: Float.self, count: kcMax * wideMR) { aPack in
            var pc = 0
            while pc < k {
                let kc = min(kBlock(k), k - pc)
                let load = accumulate || pc > 0
                let finish = pc + kc == k ? epilogue : .none
                if rest > 0 { packB(b: b, ldb: ldb, transposeB: false, k0: pc, kc: kc, j0: j0 + inPlace, nc: rest, into: tail.baseAddress!) }
                var ic = i0
                while ic < i1 {
                    let mr = min(wideMR, i1 - ic)
                    let tile = pa?.tile(pc: pc, row: ic, kc: kc) ?? UnsafePointer(aPack.baseAddress!)
                    if pa == nil {
                        packA(a: a, lda: lda, transposeA: transposeA, i0: ic, mr: mr, k0: pc, kc: kc, stride: wideMR, into: aPack.baseAddress!)
                    }
                    var jj = j0
                    while jj < j0 + inPlace {
                        let bp = b + pc * ldb + jj
                        microKernel8x32AVX512(kc: kc, a: tile, b0: bp, b1: bp + gemmNR, bStride: ldb,
                                              c: c + ic * ldc + jj, ldc: ldc, mr: mr, nr: 2 * gemmNR, load: load)
                        jj += 2 * gemmNR
                    }
                    if rest > 0 {
                        let t = tail.baseAddress!
                        microKernel8x32AVX512(kc: kc, a: tile, b0: t, b1: rest > gemmNR ? t + kc * gemmNR : nil, bStride: gemmNR,
                                              c: c + ic * ldc + jj, ldc: ldc, mr: mr, nr: rest, load: load)
                    }
                    finish.apply(c: c, ldc: ldc, i0: ic, rows: mr, j0: j0, cols: j1 - j0)
                    ic += wideMR
                }
                pc += kc
            }
        }
    }
}

/// Rows i0..<i1 of one (N block, K block) of C: packs A tile by tile and runs the micro-kernel
/// over every packed B panel of columns jc..<jc+nc. With `wide`, tiles of up to 8 rows go to the
/// AVX-512 kernel (A packed in groups of 8, up to 64 rows at once; `aPack` holds kc·64), two
/// panels at a time; single
/// rows (batch-1 inference) and every tile without it go to the 6×16 kernel. Both packed and
/// prepacked GEMM run through here.
@inline(__always)
func rowTiles(
    i0: Int, i1: Int, jc: Int, nc: Int, pc: Int, kc: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    panels: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, load: Bool, wide: Bool, aPack: UnsafeMutablePointer<Float>,
    pa: PrepackedA? = nil, finish: GemmEpilogue = .none
) {
    let count = (nc + gemmNR - 1) / gemmNR
    var ic = i0
    while ic < i1 {
        if wide && i1 - ic == 1 {
            // A single row (batch-1 inference) needs no packing: eight panels per call.
            let (row, stride) = transposeA ? (a + pc * lda + ic, lda) : (a + ic * lda + pc, 1)
            var p = 0
            while p < count {
                let panelsHere = min(8, count - p)
                microKernel1x128AVX512(kc: kc, a: row, aStride: stride, b: panels + p * kc * gemmNR, panelStride: kc * gemmNR,
                                       panels: panelsHere, c: c + ic * ldc + jc + p * gemmNR,
                                       nr: min(panelsHere * gemmNR, nc - p * gemmNR), load: load)
                p += panelsHere
            }
            finish.apply(c: c, ldc: ldc, i0: ic, rows: 1, j0: jc, cols: nc)
            ic += 1
        } else if wide && !transposeA && count <= unpackedPanelsMax {
            // Few panels (a small layer's outputs): A is read where it is, eight rows per tile,
            // since packing it cost more than the few panel pairs that would reuse it.
            // A last single row is left to the 1-row path.
            let rows = (i1 - ic) % wideMR == 1 ? i1 - ic - 1 : i1 - ic
            // A last panel of a few columns goes column by column, over A prepacked or packed
            // here for it (up to `wideBlockRows` rows: what `aPack` holds).
            // NOTE: the ViT's attention scores (65 × 65 per head) paid a whole panel of sixteen for
            // their 65th column, a fifth of the product.
            let tiles = (rows + wideMR - 1) / wideMR
            let tail = pa == nil && rows > wideBlockRows ? 0 : columnTail(count: count, nc: nc, tiles: tiles)
            let main = tail > 0 ? count - 1 : count
            var p = 0
            while p < main {
                let jj = jc + p * gemmNR
                let two = p + 1 < main
                let nr = min(two ? 2 * gemmNR : gemmNR, jc + nc - jj)
                var t = 0
                while t < rows {
                    if let pa {
                        microKernel8x32AVX512(kc: kc, a: pa.tile(pc: pc, row: ic + t, kc: kc), b0: panels + p * kc * gemmNR,
                                              b1: two ? panels + (p + 1) * kc * gemmNR : nil, bStride: gemmNR,
                                              c: c + (ic + t) * ldc + jj, ldc: ldc, mr: min(wideMR, rows - t), nr: nr, load: load)
                    } else {
                        microKernel8x32RowsAVX512(kc: kc, a: a + (ic + t) * lda + pc, lda: lda, b0: panels + p * kc * gemmNR,
                                                  b1: two ? panels + (p + 1) * kc * gemmNR : nil, bStride: gemmNR,
                                                  c: c + (ic + t) * ldc + jj, ldc: ldc, mr: min(wideMR, rows - t), nr: nr, load: load)
                    }
                    t += wideMR
                }
                p += 2
            }
            if tail > 0 {
                let tileBase: UnsafePointer<Float>
                if let pa {
                    tileBase = pa.tile(pc: pc, row: ic, kc: kc)
                } else {
                    for t in 0..<tiles {
                        packA(a: a, lda: lda, transposeA: false, i0: ic + t * wideMR, mr: min(wideMR, rows - t * wideMR), k0: pc, kc: kc,
                              stride: wideMR, into: aPack + t * kc * wideMR)
                    }
                    tileBase = UnsafePointer(aPack)
                }
                for j in 0..<tail {
                    microKernelColumnAVX512(kc: kc, a: tileBase, tileStride: kc * wideMR, tiles: tiles,
                                            rows: rows, b: panels + main * kc * gemmNR + j, bStride: gemmNR,
                                            c: c + ic * ldc + jc + main * gemmNR + j, ldc: ldc, load: load)
                }
            }
            finish.apply(c: c, ldc: ldc, i0: ic, rows: rows, j0: jc, cols: nc)
            ic += rows
        } else if wide {
            // Up to `wideBlockRows` rows packed tile by tile, then each panel pair runs over all
            // of them: the pair (kc × 32) stays in L1 while the A tiles stream from L2 (one
            // tile at a time through every pair streamed all of B from L2 per 8 rows). A last
            // single row is left to the 1-row path.
            var rows = min(wideBlockRows, i1 - ic)
            if rows == i1 - ic && rows % wideMR == 1 { rows -= 1 }
            let tiles = (rows + wideMR - 1) / wideMR
            // (Prepacked, the tiles are already in this layout, one after another.)
            let tileBase = pa?.tile(pc: pc, row: ic, kc: kc) ?? UnsafePointer(aPack)
            let tail = columnTail(count: count, nc: nc, tiles: tiles)
            let main = tail > 0 ? count - 1 : count
            let inPlace = pa == nil && !transposeA && main > 0 && count <= inPlacePanelsMax
            @inline(__always) func pack(_ t: Int) {
                packA(a: a, lda: lda, transposeA: transposeA, i0: ic + t * wideMR, mr: min(wideMR, rows - t * wideMR), k0: pc, kc: kc,
                      stride: wideMR, into: aPack + t * kc * wideMR)
            }
            for t in 0..<tiles where pa == nil && (!inPlace || tail > 0) { pack(t) }
            var p = 0
            while p < main {
                let jj = jc + p * gemmNR
                let two = p + 1 < main
                let nr = min(two ? 2 * gemmNR : gemmNR, jc + nc - jj)
                // Every tile asks for the next pair's lines in L2 (the panels, and the blocks after
                // this one, follow each other in memory): the first tile of a pair then reads it
                // from L2, not from memory. And for the next tile's C lines, to be written: a
                // layer's output buffer is out of the caches too (520 × 768 × 192 with the caches
                // flushed 1530 → 1450 µs; warm unchanged).
                let next = panels + (p + 2) * kc * gemmNR
                for t in 0..<tiles {
                    let nextC = t + 1 < tiles ? c + (ic + (t + 1) * wideMR) * ldc + jj : c + ic * ldc + jj + 2 * gemmNR
                    if inPlace {
                        microKernel8x32RowsAVX512(kc: kc, a: a + (ic + t * wideMR) * lda + pc, lda: lda, b0: panels + p * kc * gemmNR,
                                                  b1: two ? panels + (p + 1) * kc * gemmNR : nil, bStride: gemmNR,
                                                  c: c + (ic + t * wideMR) * ldc + jj, ldc: ldc, mr: min(wideMR, rows - t * wideMR), nr: nr,
                                                  load: load, prefetch: next, prefetchSecond: kc * gemmNR, nextC: nextC)
                    } else {
                        microKernel8x32AVX512(kc: kc, a: tileBase + t * kc * wideMR, b0: panels + p * kc * gemmNR,
                                              b1: two ? panels + (p + 1) * kc * gemmNR : nil, bStride: gemmNR,
                                              c: c + (ic + t * wideMR) * ldc + jj, ldc: ldc, mr: min(wideMR, rows - t * wideMR), nr: nr, load: load,
                                              prefetch: next, prefetchSecond: kc * gemmNR, nextC: nextC)
                    }
                }
                p += 2
            }
            for j in 0..<tail {
                microKernelColumnAVX512(kc: kc, a: tileBase, tileStride: kc * wideMR, tiles: tiles, rows: rows,
                                        b: panels + main * kc * gemmNR + j, bStride: gemmNR, c: c + ic * ldc + jc + main * gemmNR + j,
                                        ldc: ldc, load: load)
            }
            finish.apply(c: c, ldc: ldc, i0: ic, rows: rows, j0: jc, cols: nc)
            ic += rows
        } else {
            let mr = min(gemmMR, i1 - ic)
            packA(a: a, lda: lda, transposeA: transposeA, i0: ic, mr: mr, k0: pc, kc: kc, into: aPack)
            var first = 0
            if mr == 1 {
                // A single row (batch-1 inference) takes four full panels at a time.
                while first + 4 <= count && (first + 4) * gemmNR <= nc {
                    microKernel1x64(kc: kc, a: aPack, b: panels + first * kc * gemmNR, panelStride: kc * gemmNR,
                                    c: c + ic * ldc + jc + first * gemmNR, load: load)
                    first += 4
                }
            }
            for p in first..<count {
                let jj = jc + p * gemmNR
                microKernel6x16(kc: kc, a: aPack, b: panels + p * kc * gemmNR, c: c + ic * ldc + jj, ldc: ldc,
                                mr: mr, nr: min(gemmNR, jc + nc - jj), load: load)
            }
            finish.apply(c: c, ldc: ldc, i0: ic, rows: mr, j0: jc, cols: nc)
            ic += gemmMR
        }
    }
}

/// Columns of a block's last B panel computed one at a time over packed A tiles
/// (`microKernelColumnAVX512`) instead of as a panel of sixteen: 0, or 1 to `columnTailMax`.
// NOTE: a last panel of one column (a 7 × 7 plane's 49) cost a whole panel in the 8 × 32
// kernel, eight sixteen-lane FMAs per k and tile; a column costs one eight-lane FMA.
// A column's chains wait on their FMAs (four cycles each) when fewer than four tiles run side
// by side, so it pays only for at most one column per tile (without that limit, the MNIST-1D
// CNN at batch 64 went 128 → 132 µs).
@inline(__always)
func columnTail(count: Int, nc: Int, tiles: Int) -> Int {
    let last = nc - (count - 1) * gemmNR
    return last <= min(columnTailMax, tiles) ? last : 0
}

@usableFromInline let columnTailMax = 4

/// Blocks of at most this many B panels (128 columns) run the AVX-512 tile on A in place.
// NOTE: on the MNIST-1D MLP at batch 64 (64 rows; 100, 100 and 10 outputs) packing A was 16 %
// of the model (perf); in place, its three Gemm nodes went from 7.5 / 14.7 / 5.0 to 6.0 / 11.3
// / 2.9 µs (runs minutes apart). Larger blocks keep packing: whether it pays there too was
// lost in this machine's noise.
@usableFromInline let unpackedPanelsMax = 8

/// Blocks of at most this many B panels (384 columns) read A in place in the packed rows' loop
/// too, with its prefetches.
// NOTE: packing A was 6 % of 520 × 192 × 768 (12 panels, perf): 1404-1438 → 1370-1384 µs in
// place, 256 × 384 × 1536 2736-2811 → 2691-2779; 520 × 576 × 192 (36 panels) within noise.
// Without the next-B-panel prefetch (the few-panels branch's kernel) MiniLM-L6 at batch 1 lost
// 20 %: its weights come from memory.
@usableFromInline let inPlacePanelsMax = 24

/// Packs A[i0..<i0+mr, k0..<k0+kc] as kc groups of `stride` values (rows past mr are zero).
// NOTE: `@inline(never)`, like packB and the 6×16 and one-row kernels: inlined into the GEMM
// drivers, which were then too large for Swift's inliner to inline anything more into, every
// vector `loadUnaligned`/`storeBytes` here stayed a call that returned its vector in two
// halves (5 % of LeNet-300-100 at batch 64; fc1 240 → 210 µs as functions of their own).
// Tests/tools/check_kernel_calls.py, run by `make test`, finds such calls in the binaries.
@inline(never)
func packA(
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool, i0: Int, mr: Int, k0: Int, kc: Int, stride: Int = gemmMR,
    into dst: UnsafeMutablePointer<Float>
) {
    if mr < stride { dst.update(repeating: 0, count: kc * stride) }
    // Pointer steps rather than index products: the products' overflow checks made this loop
    // cost a third of a small GEMM.
    if transposeA && mr == 8 && stride == 8 {
        var s = a + k0 * lda + i0, d = dst
        for _ in 0..<kc {
            UnsafeMutableRawPointer(d).storeBytes(of: UnsafeRawPointer(s).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
            s += lda
            d += 8
        }
    } else if transposeA {
        var s = a + k0 * lda + i0, d = dst
        for _ in 0..<kc {
            for r in 0..<mr { d[r] = s[r] }
            s += lda
            d += stride
        }
    } else if mr == 8 && stride == 8 {
        // Eight rows at a time, eight k at a time: an 8×8 transpose in registers (three rounds of
        // two-source shuffles) and eight vector stores, where one store per value ran at a
        // sixth of the micro-kernel's pace (18 % of a 1024³ GEMM was this packing).
        let full = kc / 8 * 8
        var q = 0
        while q < full {
            let s = a + i0 * lda + k0 + q
            @inline(__always) func row(_ r: Int) -> SIMD8<Float> { UnsafeRawPointer(s + r * lda).loadUnaligned(as: SIMD8<Float>.self) }
            let t = transpose8x8(row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
            let d = UnsafeMutableRawPointer(dst + q * 8)
            d.storeBytes(of: t.0, toByteOffset: 0, as: SIMD8<Float>.self)
            d.storeBytes(of: t.1, toByteOffset: 32, as: SIMD8<Float>.self)
            d.storeBytes(of: t.2, toByteOffset: 64, as: SIMD8<Float>.self)
            d.storeBytes(of: t.3, toByteOffset: 96, as: SIMD8<Float>.self)
            d.storeBytes(of: t.4, toByteOffset: 128, as: SIMD8<Float>.self)
            d.storeBytes(of: t.5, toByteOffset: 160, as: SIMD8<Float>.self)
            d.storeBytes(of: t.6, toByteOffset: 192, as: SIMD8<Float>.self)
            d.storeBytes(of: t.7, toByteOffset: 224, as: SIMD8<Float>.self)
            q += 8
        }
        for r in 0..<8 {
            var s = a + (i0 + r) * lda + k0 + full, d = dst + full * 8 + r
            for _ in full..<kc {
                d.pointee = s.pointee
                s += 1
                d += 8
            }
        }
    } else {
        for r in 0..<mr {
            var s = a + (i0 + r) * lda + k0, d = dst + r
            for _ in 0..<kc {
                d.pointee = s.pointee
                s += 1
                d += stride
            }
        }
    }
}

/// The transpose of the 8×8 matrix whose rows are r0…r7: result `.j` holds (r0[j], …, r7[j]).
/// Every lane pick is a constant, so each step compiles to one shuffle (unpack, shuffle, then
/// 128-bit lane permutes).
@inline(__always)
func transpose8x8(
    _ r0: SIMD8<Float>, _ r1: SIMD8<Float>, _ r2: SIMD8<Float>, _ r3: SIMD8<Float>,
    _ r4: SIMD8<Float>, _ r5: SIMD8<Float>, _ r6: SIMD8<Float>, _ r7: SIMD8<Float>
) -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    typealias V = SIMD8<Float>
    @inline(__always) func lo(_ a: V, _ b: V) -> V { V(a[0], b[0], a[1], b[1], a[4], b[4], a[5], b[5]) }
    @inline(__always) func hi(_ a: V, _ b: V) -> V { V(a[2], b[2], a[3], b[3], a[6], b[6], a[7], b[7]) }
    @inline(__always) func pairsLo(_ a: V, _ b: V) -> V { V(a[0], a[1], b[0], b[1], a[4], a[5], b[4], b[5]) }
    @inline(__always) func pairsHi(_ a: V, _ b: V) -> V { V(a[2], a[3], b[2], b[3], a[6], a[7], b[6], b[7]) }
    let t0 = lo(r0, r1), t1 = hi(r0, r1), t2 = lo(r2, r3), t3 = hi(r2, r3)
    let t4 = lo(r4, r5), t5 = hi(r4, r5), t6 = lo(r6, r7), t7 = hi(r6, r7)
    let u0 = pairsLo(t0, t2), u1 = pairsHi(t0, t2), u2 = pairsLo(t1, t3), u3 = pairsHi(t1, t3)
    let u4 = pairsLo(t4, t6), u5 = pairsHi(t4, t6), u6 = pairsLo(t5, t7), u7 = pairsHi(t5, t7)
    return (V(lowHalf: u0.lowHalf, highHalf: u4.lowHalf), V(lowHalf: u1.lowHalf, highHalf: u5.lowHalf),
            V(lowHalf: u2.lowHalf, highHalf: u6.lowHalf), V(lowHalf: u3.lowHalf, highHalf: u7.lowHalf),
            V(lowHalf: u0.highHalf, highHalf: u4.highHalf), V(lowHalf: u1.highHalf, highHalf: u5.highHalf),
            V(lowHalf: u2.highHalf, highHalf: u6.highHalf), V(lowHalf: u3.highHalf, highHalf: u7.highHalf))
}

/// Packs B[k0..<k0+kc, j0..<j0+nc] as column panels of NR, each kc rows of NR values
/// (columns past nc are zero).
@inline(never)
func packB(
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, k0: Int, kc: Int, j0: Int, nc: Int,
    into dst: UnsafeMutablePointer<Float>
) {
    let panels = (nc + gemmNR - 1) / gemmNR
    if !transposeB {
        // Row by row: the source streams in order and each full panel row is one 16-float
        // vector (panel by panel, 64-byte reads at the row stride ran at a third of this).
        let full = nc / gemmNR, rest = nc - full * gemmNR
        if rest > 0 { (dst + full * kc * gemmNR).update(repeating: 0, count: kc * gemmNR) }
        for q in 0..<kc {
            let src = b + (k0 + q) * ldb + j0
            let row = dst + q * gemmNR
            for p in 0..<full {
                let v = UnsafeRawPointer(src + p * gemmNR).loadUnaligned(as: SIMD16<Float>.self)
                UnsafeMutableRawPointer(row + p * kc * gemmNR).storeBytes(of: v, as: SIMD16<Float>.self)
            }
            if rest > 0 { (row + full * kc * gemmNR).update(from: src + full * gemmNR, count: rest) }
        }
        return
    }
    for p in 0..<panels {
        let panel = dst + p * kc * gemmNR
        let jj = j0 + p * gemmNR
        let nr = min(gemmNR, j0 + nc - jj)
        if nr < gemmNR {
            panel.update(repeating: 0, count: kc * gemmNR)
            for col in 0..<nr {
                let src = b + (jj + col) * ldb + k0
                for q in 0..<kc { panel[q * gemmNR + col] = src[q] }
            }
            continue
        }
        // A full panel row by row: sixteen sequential read streams (one per column of the
        // panel) and one 64-byte store per k, instead of sixteen passes of 4-byte stores at a
        // 64-byte stride.
        let src = b + jj * ldb + k0
        for q in 0..<kc {
            let s = src + q
            let v = SIMD16<Float>(s[0], s[ldb], s[2 * ldb], s[3 * ldb], s[4 * ldb], s[5 * ldb], s[6 * ldb], s[7 * ldb],
                                  s[8 * ldb], s[9 * ldb], s[10 * ldb], s[11 * ldb], s[12 * ldb], s[13 * ldb], s[14 * ldb], s[15 * ldb])
            UnsafeMutableRawPointer(panel + q * gemmNR).storeBytes(of: v, as: SIMD16<Float>.self)
        }
    }
}

/// C[0..<mr, 0..<nr] (+)= packed A (kc × 6) · packed B (kc × 16), one FMA chain per element.
@inline(never)
func microKernel6x16(
    kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, mr: Int, nr: Int, load: Bool
) {
    typealias V = SIMD8<Float>
    // NOTE: a single row (batch-1 inference) runs only row 0's chain: the same FMAs in the same
    // order, without the five zero rows of a padded tile (LeNet-300-100 at batch 1 does 1/6 of
    // the multiply-adds).
    if mr == 1 {
        microKernel1x16(kc: kc, a: a, b: b, c: c, nr: nr, load: load)
        return
    }
    let full = mr == gemmMR && nr == gemmNR
    // Edge tiles go through a local 6×16 buffer so the kernel body never branches.
    withUnsafeTemporaryAllocation(of: Float.self, capacity: gemmMR * gemmNR) { tile in
        let t = tile.baseAddress!
        let (dst, ld): (UnsafeMutablePointer<Float>, Int) = full ? (c, ldc) : (t, gemmNR)
        if !full {
            t.update(repeating: 0, count: gemmMR * gemmNR)
            if load { for r in 0..<mr { (t + r * gemmNR).update(from: c + r * ldc, count: nr) } }
        }
        @inline(__always) func ld8(_ p: UnsafeMutablePointer<Float>) -> V {
            UnsafeRawPointer(p).loadUnaligned(as: V.self)
        }
        let fromC = load || !full
        var c00 = fromC ? ld8(dst) : V(), c01 = fromC ? ld8(dst + 8) : V()
        var c10 = fromC ? ld8(dst + ld) : V(), c11 = fromC ? ld8(dst + ld + 8) : V()
        var c20 = fromC ? ld8(dst + 2 * ld) : V(), c21 = fromC ? ld8(dst + 2 * ld + 8) : V()
        var c30 = fromC ? ld8(dst + 3 * ld) : V(), c31 = fromC ? ld8(dst + 3 * ld + 8) : V()
        var c40 = fromC ? ld8(dst + 4 * ld) : V(), c41 = fromC ? ld8(dst + 4 * ld + 8) : V()
        var c50 = fromC ? ld8(dst + 5 * ld) : V(), c51 = fromC ? ld8(dst + 5 * ld + 8) : V()
        var ap = a, bp = b
        for _ in 0..<kc {
            let b0 = UnsafeRawPointer(bp).loadUnaligned(as: V.self)
            let b1 = UnsafeRawPointer(bp + 8).loadUnaligned(as: V.self)
            var s = V(repeating: ap[0]); c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
            s = V(repeating: ap[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
            s = V(repeating: ap[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
            s = V(repeating: ap[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
            s = V(repeating: ap[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1)
            s = V(repeating: ap[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1)
            ap += gemmMR
            bp += gemmNR
        }
        @inline(__always) func st8(_ p: UnsafeMutablePointer<Float>, _ v: V) {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
        }
        st8(dst, c00); st8(dst + 8, c01)
        st8(dst + ld, c10); st8(dst + ld + 8, c11)
        st8(dst + 2 * ld, c20); st8(dst + 2 * ld + 8, c21)
        st8(dst + 3 * ld, c30); st8(dst + 3 * ld + 8, c31)
        st8(dst + 4 * ld, c40); st8(dst + 4 * ld + 8, c41)
        st8(dst + 5 * ld, c50); st8(dst + 5 * ld + 8, c51)
        if !full {
            for r in 0..<mr { (c + r * ldc).update(from: t + r * gemmNR, count: nr) }
        }
    }
}

/// Row 0 of `microKernel6x16`: C[0, 0..<nr] (+)= packed A row 0 (stride 6) · packed B (kc × 16),
/// one FMA chain per element in increasing k, starting from C (when `load`) or 0.
@inline(never)
func microKernel1x16(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, nr: Int, load: Bool) {
    typealias V = SIMD8<Float>
    var t = (V(), V())
    withUnsafeMutableBytes(of: &t) { raw in
        let tp = raw.baseAddress!.assumingMemoryBound(to: Float.self)
        if load { tp.update(from: c, count: nr) }
    }
    var c0 = t.0, c1 = t.1
    var ap = a, bp = b
    for _ in 0..<kc {
        let s = V(repeating: ap[0])
        c0 = c0.addingProduct(s, UnsafeRawPointer(bp).loadUnaligned(as: V.self))
        c1 = c1.addingProduct(s, UnsafeRawPointer(bp + 8).loadUnaligned(as: V.self))
        ap += gemmMR
        bp += gemmNR
    }
    t = (c0, c1)
    withUnsafeBytes(of: &t) { raw in c.update(from: raw.baseAddress!.assumingMemoryBound(to: Float.self), count: nr) }
}

/// Row 0 of four consecutive full panels: C[0, 0..<64] (+)= packed A row 0 (stride 6) · four
/// packed B panels (kc × 16 each, `panelStride` floats apart), each output one FMA chain in
/// increasing k from C (when `load`) or 0, as in `microKernel1x16`. Eight independent chains
/// per k step instead of two: with two, each step waited for the previous FMA (4 cycles), and
/// the FMA latency, not memory, bounded batch-1 inference.
@inline(never)
func microKernel1x64(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, panelStride: Int, c: UnsafeMutablePointer<Float>, load: Bool) {
    typealias V = SIMD8<Float>
    @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    let q1 = panelStride, q2 = 2 * panelStride, q3 = 3 * panelStride
    var c0 = load ? ld(c) : V(), c1 = load ? ld(c + 8) : V(), c2 = load ? ld(c + 16) : V(), c3 = load ? ld(c + 24) : V()
    var c4 = load ? ld(c + 32) : V(), c5 = load ? ld(c + 40) : V(), c6 = load ? ld(c + 48) : V(), c7 = load ? ld(c + 56) : V()
    var ap = a, bp = b
    for _ in 0..<kc {
        let s = V(repeating: ap[0])
        c0 = c0.addingProduct(s, ld(bp)); c1 = c1.addingProduct(s, ld(bp + 8))
        c2 = c2.addingProduct(s, ld(bp + q1)); c3 = c3.addingProduct(s, ld(bp + q1 + 8))
        c4 = c4.addingProduct(s, ld(bp + q2)); c5 = c5.addingProduct(s, ld(bp + q2 + 8))
        c6 = c6.addingProduct(s, ld(bp + q3)); c7 = c7.addingProduct(s, ld(bp + q3 + 8))
        ap += gemmMR
        bp += gemmNR
    }
    @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ v: V) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
    st(c, c0); st(c + 8, c1); st(c + 16, c2); st(c + 24, c3); st(c + 32, c4); st(c + 40, c5); st(c + 48, c6); st(c + 56, c7)
}

/// B packed once, in exactly the blocks and panel layout `gemm` builds on every call, for a
/// matrix that is reused across calls (a layer's weights during inference). A class, so handing
/// it to a call retains one object.
public final class PackedB: Sendable {
    public let n: Int
    public let k: Int
    /// Every (N block, K block) in one buffer, laid out as `packedBlockOffset` says.
    let storage: [Float]

    /// Packs B (k × n; B[k, j] = b[j * ldb + k] when `transposeB`).
    public init(b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, k: Int, n: Int) {
        self.n = n
        self.k = k
        storage = [Float](unsafeUninitializedCapacity: packedBCount(n: n, k: k)) { buffer, count in
            packBWhole(b: b, ldb: ldb, transposeB: transposeB, k: k, n: n, into: buffer.baseAddress!, threads: 1)
            count = packedBCount(n: n, k: k)
        }
    }
}

/// A (m × k, row-major) packed once for the AVX-512 tile, in exactly the tiles `packA` builds on
/// every call: for each K block of `kBlock(k)` in order, the 8-row tiles in order, each kc
/// groups of 8 values (rows past m zero). For a matrix reused across calls on the left of the
/// product (a Conv's weights); `gemm` uses it only where it would pack A itself or read it in
/// place with the AVX-512 tile, so results are the same bits with or without it.
// NOTE: read in place or packed on every call, a layer's weights, out of the caches one
// inference later, came from memory eight rows at a time: MobileNetV2's pointwise GEMMs ran at
// 30-36 GMAC/s in the model against 44-49 GMAC/s with A in cache (960 × 49 × 160: 252 against
// 172 µs with the caches flushed before each call; 188 µs with only A brought back in).
public final class PackedA: Sendable {
    public let m: Int
    public let k: Int
    /// Tiles of 8 rows.
    let tiles: Int
    let storage: [Float]

    public init(a: UnsafePointer<Float>, lda: Int, m: Int, k: Int) {
        self.m = m
        self.k = k
        let tiles = (m + wideMR - 1) / wideMR
        self.tiles = tiles
        storage = [Float](unsafeUninitializedCapacity: tiles * wideMR * k) { buffer, count in
            let kb = kBlock(k)
            var pc = 0
            while pc < k {
                let kc = min(kb, k - pc)
                for t in 0..<tiles {
                    packA(a: a, lda: lda, transposeA: false, i0: t * wideMR, mr: min(wideMR, m - t * wideMR), k0: pc, kc: kc, stride: wideMR,
                          into: buffer.baseAddress! + PackedA.offset(pc: pc, tile: t, kc: kc, tiles: tiles))
                }
                pc += kc
            }
            count = tiles * wideMR * k
        }
    }

    /// Where the tile of rows 8·tile… of the K block from pc (kc long) starts.
    @inline(__always)
    static func offset(pc: Int, tile: Int, kc: Int, tiles: Int) -> Int { (pc * tiles + tile * kc) * wideMR }
}

/// Packs all of B (k × n) into `dst`, every (N block, K block) of `forEachBlock` at its
/// `packedBlockOffset`; the blocks are independent, so threads take whole blocks.
func packBWhole(b: UnsafePointer<Float>, ldb: Int, transposeB: Bool, k: Int, n: Int, into dst: UnsafeMutablePointer<Float>, threads: Int) {
    let kb = kBlock(k), kBlocks = (k + kb - 1) / kb
    let bb = Int(bitPattern: b), dd = Int(bitPattern: dst)
    parallelFor((n + gemmNC - 1) / gemmNC * kBlocks, threads: threads) { index in
        let jc = index / kBlocks * gemmNC, pc = index % kBlocks * kb
        let nc = min(gemmNC, n - jc)
        packB(b: UnsafePointer(bitPattern: bb)!, ldb: ldb, transposeB: transposeB, k0: pc, kc: min(kb, k - pc), j0: jc, nc: nc,
              into: UnsafeMutablePointer(bitPattern: dd)! + packedBlockOffset(jc: jc, nc: nc, pc: pc, k: k))
    }
}

/// Floats in B packed whole: every column panel (padded to NR) for all of K.
@inline(__always)
func packedBCount(n: Int, k: Int) -> Int { (n + gemmNR - 1) / gemmNR * gemmNR * k }

/// Where the block (columns jc..<jc+nc, K rows pc..) of B packed whole starts: N blocks follow
/// one another (each holds its padded columns for all of K), and inside one the K blocks do.
@inline(__always)
func packedBlockOffset(jc: Int, nc: Int, pc: Int, k: Int) -> Int {
    jc * k + pc * ((nc + gemmNR - 1) / gemmNR * gemmNR)
}

/// `gemm` with B prepacked: the same blocking, packing layout, micro-kernel and accumulation
/// order, so the result equals `gemm` (and `gemmReference`) bit for bit. Threads split rows, or,
/// when there are fewer row tiles than threads (batch-1 inference), B's panels in every block.
public func gemm(
    m: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool, packed: PackedB,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int = 1, isa: KernelISA = .detected,
    epilogue: GemmEpilogue = .none
) {
    packed.storage.withUnsafeBufferPointer { storage in
        gemmPacked(m: m, n: packed.n, k: packed.k, a: a, lda: lda, transposeA: transposeA, packed: storage.baseAddress!,
                   c: c, ldc: ldc, accumulate: accumulate, threads: threads, wide: isa == .avx512 && KernelISA.detected == .avx512,
                   epilogue: epilogue)
    }
}

/// The body of the prepacked `gemm`, on B packed whole at `packed` (see `packedBlockOffset`).
func gemmPacked(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool, packed: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int, wide: Bool, pa: PrepackedA? = nil,
    epilogue: GemmEpilogue = .none
) {
    guard m > 0, n > 0 else { return }
    if k == 0 {
        if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        epilogue.apply(c: c, ldc: ldc, i0: 0, rows: m, j0: 0, cols: n)
        return
    }
    let unit = wide ? wideMR : gemmMR
    let rowPanels = (m + unit - 1) / unit, colPanels = (n + gemmNR - 1) / gemmNR
    let maxChunkPanels = wideBlockRows / wideMR
    // B much larger than A (a transformer's weights against a few dozen tokens): threads take
    // halves of B, so B is streamed once, not once per worker.
    let splitColumns = rowPanels < min(threads, colPanels) || (colPanels >= threads && n >= 8 * m)
    // NOTE: a worker needs about 1M multiply-adds to pay for a helper (the digits MLP at batch
    // 64, 0.26M, got slower with two); batch-1 GEMVs gained nothing from splitting B below that.
    let workers = max(1, min(threads, splitColumns ? colPanels : rowPanels, (m * n * k) / 1_048_576 + 1))
    // Rows go out in chunks of at most `wideBlockRows` claimed as workers free up: a worker
    // slowed down (this VM's other tenants) then costs its share of one chunk, not of the whole
    // split. Which worker runs a chunk changes no bit. Up to a chunk per worker, equal chunks, a
    // multiple of `workers` of them; with more rows, full chunks first and the last stretch (a
    // chunk per worker) in chunks of a quarter, so that the workers finish together.
    // NOTE: small chunks throughout cost more than they balance: 16-row chunks instead of two
    // 32-row halves made LeNet-300-100 at batch 64 slower on two threads (155 → 235 µs), each
    // chunk streaming B from L2 again.
    // NOTE: in equal chunks (520 rows: ten of 6-7 tiles) a worker waited for the other's last
    // chunk: 520 × 576 × 192 on two threads 583-645 µs, 545-580 now (one thread 1025); ONNX
    // Runtime 515-570.
    let fine = max(1, maxChunkPanels / 4)
    let fullChunks = rowPanels > workers * maxChunkPanels ? (rowPanels - workers * maxChunkPanels) / maxChunkPanels : 0
    let headPanels = fullChunks * maxChunkPanels
    let chunks = splitColumns ? workers
        : fullChunks > 0 ? fullChunks + (rowPanels - headPanels + fine - 1) / fine
        : workers * ((rowPanels + workers * maxChunkPanels - 1) / (workers * maxChunkPanels))
    /// Where chunk w's rows start, in row tiles.
    @inline(__always) func chunkStart(_ w: Int) -> Int {
        if fullChunks == 0 { return rowPanels * w / chunks }
        return w <= fullChunks ? w * maxChunkPanels : min(rowPanels, headPanels + (w - fullChunks) * fine)
    }
    let aa = Int(bitPattern: a), bb = Int(bitPattern: packed), cc = Int(bitPattern: c)
    parallelFor(chunks, threads: workers) { w in  // a literal: no heap context (see `gemm`)
        let (i0, i1) = splitColumns ? (0, m) : (min(m, chunkStart(w) * unit), min(m, chunkStart(w + 1) * unit))
        let (p0, p1) = splitColumns ? (colPanels * w / workers, colPanels * (w + 1) / workers) : (0, colPanels)
        guard i0 < i1, p0 < p1 else { return }
        let a = UnsafePointer<Float>(bitPattern: aa)!, c = UnsafeMutablePointer<Float>(bitPattern: cc)!
        let packed = UnsafePointer<Float>(bitPattern: bb)!
        // A single row with AVX-512 packs nothing (and a 64-row pack buffer was a heap
        // allocation per batch-1 call).
        let packSize = wide && i1 - i0 == 1 ? 1 : min(k, gemmKC) * wideBlockRows
        withThreadScratch(.packedA, of: Float.self, count: packSize) { aPack in
            forEachBlock(columns: 0, n, k: k) { jc, nc, pc, kc in
                let load = accumulate || pc > 0
                // This worker's panels of the block (all of them when threads split rows).
                let lo = max(p0, jc / gemmNR), hi = min(p1, (jc + nc + gemmNR - 1) / gemmNR)
                if lo < hi {
                    let block = packed + packedBlockOffset(jc: jc, nc: nc, pc: pc, k: k)
                    rowTiles(i0: i0, i1: i1, jc: lo * gemmNR, nc: min(jc + nc, hi * gemmNR) - lo * gemmNR, pc: pc, kc: kc,
                             a: a, lda: lda, transposeA: transposeA, panels: block + (lo - jc / gemmNR) * kc * gemmNR,
                             c: c, ldc: ldc, load: load, wide: wide, aPack: aPack.baseAddress!, pa: pa,
                             finish: pc + kc == k ? epilogue : .none)
                }
            }
        }
    }
}
