// Sparse (CSR) fully connected layer on raw buffers, for pruned weights.
//
// Contract
//   y[b, o] = Σ_{k : W[o, k] ≠ 0} x[b, k] · W[o, k]     for 0 ≤ b < batch, 0 ≤ o < rows
//   W is given in CSR form: the nonzeros of row o are values[rowStart[o] ..< rowStart[o+1]],
//   at columns colIndex[…], in increasing column order. x is (batch × cols) row-major, y is
//   (batch × rows) row-major and overwritten. y must not overlap x.
// Accumulation order
//   One fused multiply-add chain per output in increasing column order, starting from 0: the
//   dense `gemm` chain with the zero terms left out. Groups of 8 examples take every nonzero
//   weight; the remaining examples (all of a batch below 8) also leave out the terms whose
//   input is zero (±0). fma(x, 0, acc) == acc and fma(0, w, acc) == acc for finite values (up
//   to the sign of a zero), so the result equals the dense product bit for bit except that a
//   -0 may become +0 and an infinite or NaN value meeting a zero is skipped rather than making
//   NaN. Threads split rows (or row panels) only; the result does not depend on the thread
//   count.


/// A matrix in compressed sparse row form (indices as Int32). A class: a layer's cache hands it
/// to every call, and as a struct of six arrays each hand-over retained and released all six.
public final class CSRMatrix: Sendable {
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
        (panelColumnStart, panelRowIndex, panelValues) = CSRMatrix.columnPanels(dense: dense, rows: rows, cols: cols)
    }

    public var nonzeros: Int { values.count }

    /// The same nonzeros column by column (CSC) within panels of `panelRows` rows: panel q's
    /// column k holds its entries at panelColumnStart[q·(cols+1) + k] ..< [… + k + 1], rows
    /// ascending (row indices relative to the panel). Small batches walk it per example over
    /// the nonzero inputs only, so inputs that are zero (ReLU outputs, background pixels) cost
    /// nothing; each output still takes its terms in increasing column order.
    static let panelRows = 1024
    var panels: Int { (rows + CSRMatrix.panelRows - 1) / CSRMatrix.panelRows }
    let panelColumnStart: [Int32]
    let panelRowIndex: [Int16]
    let panelValues: [Float]

    static func columnPanels(dense: UnsafeBufferPointer<Float>, rows: Int, cols: Int) -> ([Int32], [Int16], [Float]) {
        var start: [Int32] = [], index: [Int16] = [], vals: [Float] = []
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + panelRows)
            for k in 0..<cols {
                start.append(Int32(vals.count))
                for r in r0..<r1 where dense[r * cols + k] != 0 {
                    index.append(Int16(r - r0))
                    vals.append(dense[r * cols + k])
                }
            }
            start.append(Int32(vals.count))
            r0 = r1
        }
        return (start, index, vals)
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
    let grouped = batch / 8 * 8
    if grouped > 0 { csrGroupsOfEight(w, x: x, batch: grouped, y: y, threads: threads) }
    if grouped < batch {
        cscSmallBatch(w, x: x + grouped * w.cols, batch: batch - grouped, y: y + grouped * w.rows, threads: threads)
    }
}

/// `batch` (a multiple of 8) examples, eight at a time through a transposed copy of x: one SIMD
/// lane per example, still one chain each. Four rows run side by side for their common length,
/// so four chains hide the FMA latency. Threads split rows.
func csrGroupsOfEight(_ w: CSRMatrix, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>, threads: Int) {
    // NOTE: 16K multiply-adds per worker pay for a helper of the spinning pool.
    let workers = max(1, min(threads, (w.rows + 3) / 4, (w.nonzeros * batch) / 16_384 + 1))
    let yy = Int(bitPattern: y)
    let rows = w.rows, cols = w.cols
    w.rowStart.withUnsafeBufferPointer { starts in
        w.colIndex.withUnsafeBufferPointer { colIndex in
            w.values.withUnsafeBufferPointer { vals in
                let s = Int(bitPattern: starts.baseAddress!), c = Int(bitPattern: colIndex.baseAddress!), v = Int(bitPattern: vals.baseAddress!)
                let quads = (rows + 3) / 4
                // xᵀ per group of 8 examples, once for all workers: in group g, column k holds the
                // 8 examples' values side by side.
                withThreadScratch(.sparse, of: Float.self, count: batch * cols) { xt in
                    for g in 0..<(batch / 8) {
                        for k in 0..<cols {
                            for lane in 0..<8 { xt[(g * cols + k) * 8 + lane] = x[(g * 8 + lane) * cols + k] }
                        }
                    }
                    let ta = Int(bitPattern: xt.baseAddress!)
                    parallelFor(workers, threads: workers) { t in
                        let rowStart = UnsafePointer<Int32>(bitPattern: s)!, colIndex = UnsafePointer<Int32>(bitPattern: c)!
                        let values = UnsafePointer<Float>(bitPattern: v)!, transposed = UnsafePointer<Float>(bitPattern: ta)!
                        let y = UnsafeMutablePointer<Float>(bitPattern: yy)!
                        let o0 = min(rows, quads * t / workers * 4), o1 = min(rows, quads * (t + 1) / workers * 4)
                        guard o0 < o1 else { return }
                        typealias V = SIMD8<Float>
                        for g in 0..<(batch / 8) {
                            let xt = transposed + g * cols * 8
                            @inline(__always) func column(_ p: Int) -> V {
                                UnsafeRawPointer(xt + Int(colIndex[p]) * 8).loadUnaligned(as: V.self)
                            }
                            func store(_ acc: V, _ o: Int) { for lane in 0..<8 { y[(g * 8 + lane) * rows + o] = acc[lane] } }
                            var o = o0
                            while o + 4 <= o1 {
                                var p0 = Int(rowStart[o]), p1 = Int(rowStart[o + 1]), p2 = Int(rowStart[o + 2]), p3 = Int(rowStart[o + 3])
                                let e0 = p1, e1 = p2, e2 = p3, e3 = Int(rowStart[o + 4])
                                let common = min(e0 - p0, e1 - p1, e2 - p2, e3 - p3)
                                var a0 = V(), a1 = V(), a2 = V(), a3 = V()
                                for _ in 0..<common {
                                    a0 = a0.addingProduct(column(p0), V(repeating: values[p0]))
                                    a1 = a1.addingProduct(column(p1), V(repeating: values[p1]))
                                    a2 = a2.addingProduct(column(p2), V(repeating: values[p2]))
                                    a3 = a3.addingProduct(column(p3), V(repeating: values[p3]))
                                    p0 += 1; p1 += 1; p2 += 1; p3 += 1
                                }
                                while p0 < e0 { a0 = a0.addingProduct(column(p0), V(repeating: values[p0])); p0 += 1 }
                                while p1 < e1 { a1 = a1.addingProduct(column(p1), V(repeating: values[p1])); p1 += 1 }
                                while p2 < e2 { a2 = a2.addingProduct(column(p2), V(repeating: values[p2])); p2 += 1 }
                                while p3 < e3 { a3 = a3.addingProduct(column(p3), V(repeating: values[p3])); p3 += 1 }
                                store(a0, o); store(a1, o + 1); store(a2, o + 2); store(a3, o + 3)
                                o += 4
                            }
                            while o < o1 {
                                var acc = V()
                                for p in Int(rowStart[o])..<Int(rowStart[o + 1]) { acc = acc.addingProduct(column(p), V(repeating: values[p])) }
                                store(acc, o)
                                o += 1
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Batches below 8: per example, the column panels over the nonzero inputs only. Each output
/// row is its panel's accumulator in L1, updated once per (nonzero input, nonzero weight) in
/// increasing column order: the CSR chain without its zero-input terms (fma(0, w, acc) == acc
/// for finite w, up to the sign of a zero). Threads split the panels.
func cscSmallBatch(_ w: CSRMatrix, x: UnsafePointer<Float>, batch: Int, y: UnsafeMutablePointer<Float>, threads: Int) {
    let cols = w.cols, rows = w.rows, panels = w.panels
    // The nonzero inputs of each example, as column lists, then the lists' lengths.
    withThreadScratch(.sparse, of: Int32.self, count: batch * cols + batch) { active in
        let counts = active.baseAddress! + batch * cols
        var total = 0
        for b in 0..<batch {
            let xb = x + b * cols, list = active.baseAddress! + b * cols
            var n = 0, k = 0
            // Branch-free within a run of eight (background pixels and ReLU zeros come in runs
            // that a branch mispredicts at every edge): v | −v has its top bit set iff v ≠ 0,
            // and ±0 is zero. A run of eight zeros (an MNIST image's background is most of
            // them) is passed over with one test.
            @inline(__always) func append(_ k: Int) {
                let v = xb[k].bitPattern &<< 1
                list[n] = Int32(truncatingIfNeeded: k)
                n &+= Int((v | (0 &- v)) >> 31)
            }
            let signs: UInt64 = 0x7FFF_FFFF_7FFF_FFFF
            while k + 8 <= cols {
                let r = UnsafeRawPointer(xb + k)
                let any = r.loadUnaligned(as: UInt64.self) | r.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                    | r.loadUnaligned(fromByteOffset: 16, as: UInt64.self) | r.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
                if any & signs != 0 { for j in k..<(k + 8) { append(j) } }
                k += 8
            }
            while k < cols { append(k); k += 1 }
            counts[b] = Int32(n)
            total += n
        }
        // NOTE: the work is the nonzeros of the active columns; 16K multiply-adds pay for a helper.
        let work = w.nonzeros * total / max(cols, 1)
        let workers = max(1, min(threads, panels * batch, work / 16_384 + 1))
        let xx = Int(bitPattern: x), yy = Int(bitPattern: y), aa = Int(bitPattern: active.baseAddress!)
        w.panelColumnStart.withUnsafeBufferPointer { starts in
            w.panelRowIndex.withUnsafeBufferPointer { index in
                w.panelValues.withUnsafeBufferPointer { vals in
                    let s = Int(bitPattern: starts.baseAddress!), ix = Int(bitPattern: index.baseAddress!), v = Int(bitPattern: vals.baseAddress!)
                    parallelFor(workers, threads: workers) { t in
                        let starts = UnsafePointer<Int32>(bitPattern: s)!, index = UnsafePointer<Int16>(bitPattern: ix)!
                        let vals = UnsafePointer<Float>(bitPattern: v)!, x = UnsafePointer<Float>(bitPattern: xx)!
                        let y = UnsafeMutablePointer<Float>(bitPattern: yy)!, active = UnsafePointer<Int32>(bitPattern: aa)!
                        // Work item j: panel j / batch of example j % batch.
                        for j in (panels * batch * t / workers)..<(panels * batch * (t + 1) / workers) {
                            let q = j / batch, b = j % batch
                            let r0 = q * CSRMatrix.panelRows, height = min(rows, r0 + CSRMatrix.panelRows) - r0
                            let colStart = starts + q * (cols + 1)
                            let xb = x + b * cols, list = active + b * cols, yb = y + b * rows + r0
                            yb.initialize(repeating: 0, count: height)
                            for i in 0..<Int(active[batch * cols + b]) {
                                let k = Int(list[i]), xv = xb[k]
                                var p = Int(colStart[k])
                                let end = Int(colStart[k + 1])
                                // Four rows per step (distinct rows: independent updates), their
                                // indices in one 8-byte (little-endian) load: the walk is bound by
                                // instructions retired, about four per update.
                                while p + 4 <= end {
                                    let q = UnsafeRawPointer(index + p).loadUnaligned(as: UInt64.self)
                                    let r0 = Int(UInt16(truncatingIfNeeded: q)), r1 = Int(UInt16(truncatingIfNeeded: q &>> 16))
                                    let r2 = Int(UInt16(truncatingIfNeeded: q &>> 32)), r3 = Int(q &>> 48)
                                    yb[r0] = yb[r0].addingProduct(xv, vals[p])
                                    yb[r1] = yb[r1].addingProduct(xv, vals[p + 1])
                                    yb[r2] = yb[r2].addingProduct(xv, vals[p + 2])
                                    yb[r3] = yb[r3].addingProduct(xv, vals[p + 3])
                                    p += 4
                                }
                                while p < end {
                                    let r = Int(index[p])
                                    yb[r] = yb[r].addingProduct(xv, vals[p])
                                    p += 1
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
