// Sparse (CSR) fully connected layer on raw buffers, for pruned weights.
//
// Contract
//   y[b, o] = Σ_{k : W[o, k] ≠ 0} x[b, k] · W[o, k]     for 0 ≤ b < batch, 0 ≤ o < rows
//   W is given in CSR form: the nonzeros of row o are values[rowStart[o] ..< rowStart[o+1]],
//   at columns colIndex[…], in increasing column order. x is (batch × cols) row-major, y is
//   (batch × rows) row-major and overwritten. y must not overlap x.
// Accumulation order
//   One fused multiply-add chain per output in increasing column order, starting from 0: the
//   dense `gemm` chain with the zero terms left out. fma(x, 0, acc) == acc (up to the sign of
//   a zero), so the result equals the dense product bit for bit except that a -0 may become
//   +0 and an infinite or NaN input meeting a zero weight is skipped rather than making NaN.
//   Threads split rows only; the result does not depend on the thread count.


/// A matrix in compressed sparse row form (indices as Int32).
public struct CSRMatrix: Sendable {
    public let rows: Int
    public let cols: Int
    public let rowStart: [Int32]
    public let colIndex: [Int32]
    public let values: [Float]

    /// The nonzeros of a dense row-major (rows × cols) matrix.
    public init(dense: UnsafeBufferPointer<Float>, rows: Int, cols: Int) {
        precondition(dense.count == rows * cols, "CSR: \(dense.count) values for \(rows)×\(cols)")
        var start: [Int32] = [0], index: [Int32] = [], vals: [Float] = []
        for r in 0..<rows {
            for c in 0..<cols where dense[r * cols + c] != 0 {
                index.append(Int32(c))
                vals.append(dense[r * cols + c])
            }
            start.append(Int32(vals.count))
        }
        self.rows = rows
        self.cols = cols
        rowStart = start
        colIndex = index
        values = vals
        (sliceStart, sliceColumns, sliceValues) = CSRMatrix.slices(rows: rows, rowStart: start, colIndex: index, values: vals)
    }

    public var nonzeros: Int { values.count }

    /// The same rows as slices of 8 (SELL-8): slice s holds rows 8s..<8s+8, each padded to
    /// the slice's longest row with zero weights at column 0, stored slot-major (8 lanes per
    /// slot). A lane is one row's chain in its own column order; the padding adds
    /// fma(x[0], 0, acc) == acc at the end. Rows past `rows` are all padding.
    let sliceStart: [Int32]
    let sliceColumns: [Int32]
    let sliceValues: [Float]

    static func slices(rows: Int, rowStart: [Int32], colIndex: [Int32], values: [Float]) -> ([Int32], [Int32], [Float]) {
        var start: [Int32] = [0], cols: [Int32] = [], vals: [Float] = []
        for s in 0..<((rows + 7) / 8) {
            let lanes = (0..<8).map { s * 8 + $0 }
            let width = lanes.map { $0 < rows ? Int(rowStart[$0 + 1] - rowStart[$0]) : 0 }.max() ?? 0
            for slot in 0..<width {
                for r in lanes {
                    if r < rows, slot < Int(rowStart[r + 1] - rowStart[r]) {
                        let p = Int(rowStart[r]) + slot
                        cols.append(colIndex[p])
                        vals.append(values[p])
                    } else {
                        cols.append(0)
                        vals.append(0)
                    }
                }
            }
            start.append(Int32(vals.count / 8))
        }
        return (start, cols, vals)
    }
}

/// Naive twin of `csrLinearForward`: the same chains, one output at a time.
public func csrLinearForwardReference(_ w: CSRMatrix, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>) {
    for b in 0..<batch {
        for o in 0..<w.rows {
            var acc: Float = 0
            for p in Int(w.rowStart[o])..<Int(w.rowStart[o + 1]) {
                acc = acc.addingProduct(x[b * w.cols + Int(w.colIndex[p])], w.values[p])
            }
            y[b * w.rows + o] = acc
        }
    }
}

/// y = x · Wᵀ with W sparse. See the file header for the contract.
public func csrLinearForward(_ w: CSRMatrix, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>, threads: Int = 1) {
    guard batch > 0, w.rows > 0 else { return }
    // NOTE: 16K multiply-adds per worker pay for a helper of the spinning pool (LeNet-300-100's
    // first layer at 90 % sparsity and batch 1 has 23.5K).
    let workers = max(1, min(threads, (w.rows + 7) / 8, (w.nonzeros * batch) / 16_384 + 1))
    let xx = Int(bitPattern: x), yy = Int(bitPattern: y)
    w.rowStart.withUnsafeBufferPointer { starts in
        w.colIndex.withUnsafeBufferPointer { cols in
            w.values.withUnsafeBufferPointer { vals in
                let s = Int(bitPattern: starts.baseAddress!), c = Int(bitPattern: cols.baseAddress!), v = Int(bitPattern: vals.baseAddress!)
                let slices = (w.rows + 7) / 8
                let work: (Int) -> Void = { t in
                    // Whole slices of 8 rows per worker (the sliced path needs aligned ranges).
                    let r0 = min(w.rows, slices * t / workers * 8), r1 = min(w.rows, slices * (t + 1) / workers * 8)
                    guard r0 < r1 else { return }
                    csrRows(r0..<r1, matrix: w, rows: w.rows, cols: w.cols,
                            rowStart: UnsafePointer(bitPattern: s)!, colIndex: UnsafePointer(bitPattern: c)!,
                            values: UnsafePointer(bitPattern: v)!, x: UnsafePointer(bitPattern: xx)!, batch: batch,
                            y: UnsafeMutablePointer(bitPattern: yy)!)
                }
                parallelFor(workers, threads: workers, work)
            }
        }
    }
}

/// Rows `range` of the output for every batch row. Batches of 8 and more go eight examples at
/// a time through a transposed copy of x, one SIMD lane per example (still one chain each).
@inline(__always)
func csrRows(
    _ range: Range<Int>, matrix: CSRMatrix, rows: Int, cols: Int, rowStart: UnsafePointer<Int32>, colIndex: UnsafePointer<Int32>,
    values: UnsafePointer<Float>, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>
) {
    typealias V = SIMD8<Float>
    let groups = batch / 8
    if groups > 0 {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: cols * 8) { xt in
            let t = xt.baseAddress!
            for g in 0..<groups {
                // xᵀ for examples 8g ..< 8g+8: column k holds their 8 values side by side.
                for k in 0..<cols {
                    for lane in 0..<8 { t[k * 8 + lane] = x[(g * 8 + lane) * cols + k] }
                }
                for o in range {
                    var acc = V()
                    for p in Int(rowStart[o])..<Int(rowStart[o + 1]) {
                        let xv = UnsafeRawPointer(t + Int(colIndex[p]) * 8).loadUnaligned(as: V.self)
                        acc = acc.addingProduct(xv, V(repeating: values[p]))
                    }
                    for lane in 0..<8 { y[(g * 8 + lane) * rows + o] = acc[lane] }
                }
            }
        }
    }
    // NOTE: batches below 8 go through the SELL-8 slices, one SIMD lane per row: on
    // LeNet-300-100 at 90 % this took batch-1 p50 from about 30 to 17 µs (docs/performance.md).
    guard groups * 8 < batch else { return }
    precondition(range.lowerBound % 8 == 0, "row ranges of the sliced path start at a multiple of 8")
    matrix.sliceStart.withUnsafeBufferPointer { starts in
        matrix.sliceColumns.withUnsafeBufferPointer { sc in
            matrix.sliceValues.withUnsafeBufferPointer { sv in
                for b in (groups * 8)..<batch {
                    let xb = x + b * cols
                    var s = range.lowerBound / 8
                    while s * 8 < range.upperBound {
                        var acc = V()
                        var q = Int(starts[s]) * 8
                        let end = Int(starts[s + 1]) * 8
                        while q < end {
                            let xv = V(xb[Int(sc[q])], xb[Int(sc[q + 1])], xb[Int(sc[q + 2])], xb[Int(sc[q + 3])],
                                       xb[Int(sc[q + 4])], xb[Int(sc[q + 5])], xb[Int(sc[q + 6])], xb[Int(sc[q + 7])])
                            acc = acc.addingProduct(xv, UnsafeRawPointer(sv.baseAddress! + q).loadUnaligned(as: V.self))
                            q += 8
                        }
                        for lane in 0..<8 where s * 8 + lane < range.upperBound { y[b * rows + s * 8 + lane] = acc[lane] }
                        s += 1
                    }
                }
            }
        }
    }
}
