import Kernels

// Gemm (general and as a Linear layer) and MatMul: forward, backward and the Linear layer's
// inference.
//
// Accumulation order: products go through `gemm` (one FMA chain per output in increasing k,
// threads split M and N only), so results are bit-identical for any thread count.

extension OpContext {
    func gemmOp() throws -> Value {
        if let cache = graph.linearCaches[index] {
            let x = try float(0), w = try float(1)
            let b = has(2) ? try float(2) : nil
            let s = x.value.shape
            guard s.count == 2, s[1] == w.value.shape[1] else {
                throw fail("input of shape \(s) does not fit the weight \(w.value.shape) (transB = 1)")
            }
            if tape == nil {
                return graph.linearInference(node: index, x: x, w: w, bias: b, cache: cache, threads: threads, relu: fuseRelu)
            }
            // `linear`, with the output and backward step of the last run when reusable.
            var y = outputBuffer(rows: s[0], cols: w.value.shape[0])
            linearForward(x.value, w.value, b?.value, into: &y, threads: threads)
            if let kept = reuse(y) { return kept }
            let (batch, inF, outF, nThreads) = (s[0], s[1], w.value.shape[0], threads)
            return emitKept(y) { dy in
                linearBackward(x: x, weight: w, bias: b, dy: dy, batch: batch, inF: inF, outF: outF, threads: nThreads)
            }
        }
        let a = try float(0), b = try float(1)
        let transA = try int("transA", 0) == 1, transB = try int("transB", 0) == 1
        let alpha = try float("alpha", 1), beta = try float("beta", 1)
        let sa = a.value.shape, sb = b.value.shape
        guard sa.count == 2, sb.count == 2 else { throw fail("A \(sa) and B \(sb) must be 2-D") }
        let m = transA ? sa[1] : sa[0], k = transA ? sa[0] : sa[1]
        let kb = transB ? sb[1] : sb[0], n = transB ? sb[0] : sb[1]
        guard k == kb else { throw fail("A \(sa) (transA \(transA ? 1 : 0)) and B \(sb) (transB \(transB ? 1 : 0)) do not multiply") }
        let c = has(2) ? try float(2) : nil
        var cIndex: [Int] = []
        if let c {
            guard let bs = broadcastShape(c.value.shape, [m, n]), bs == [m, n] else { throw fail("C \(c.value.shape) does not broadcast to [\(m), \(n)]") }
            cIndex = broadcastSourceIndex(c.value.shape, to: [m, n])
        }
        var y = outputBuffer(rows: m, cols: n)   // gemm writes every element
        a.value.withUnsafeBufferPointer { ap in
            b.value.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    gemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: sa[1], transposeA: transA,
                         b: bp.baseAddress!, ldb: sb[1], transposeB: transB,
                         c: yp.baseAddress!, ldc: n, accumulate: false, threads: threads)
                    if alpha != 1 { for i in 0..<yp.count { yp[i] *= alpha } }
                    if let c {
                        c.value.withUnsafeBufferPointer { cp in for i in 0..<yp.count { yp[i] += beta * cp[cIndex[i]] } }
                    }
                    if fuseRelu { reluForward(yp.baseAddress!, count: yp.count, out: yp.baseAddress!) }
                }
            }
        }
        if let kept = reuse(y) { return kept }
        let nThreads = self.threads
        return emitKept(y) { dy in
            dy.withUnsafeBufferPointer { dp in
                if a.requiresGrad {
                    // d(opA) = alpha · dY · opBᵀ  (m × k), added to A in its stored layout.
                    var t = [Float](repeating: 0, count: m * k)
                    b.value.withUnsafeBufferPointer { bp in
                        gemm(m: m, n: k, k: n, a: dp.baseAddress!, lda: n, transposeA: false,
                             b: bp.baseAddress!, ldb: sb[1], transposeB: !transB,
                             c: &t, ldc: k, accumulate: false, threads: nThreads)
                    }
                    a.accumulateGrad { g in
                        for i in 0..<m { for j in 0..<k { g[transA ? j * m + i : i * k + j] += alpha * t[i * k + j] } }
                    }
                }
                if b.requiresGrad {
                    // d(opB) = alpha · opAᵀ · dY  (k × n).
                    var t = [Float](repeating: 0, count: k * n)
                    a.value.withUnsafeBufferPointer { ap in
                        gemm(m: k, n: n, k: m, a: ap.baseAddress!, lda: sa[1], transposeA: !transA,
                             b: dp.baseAddress!, ldb: n, transposeB: false,
                             c: &t, ldc: n, accumulate: false, threads: nThreads)
                    }
                    b.accumulateGrad { g in
                        for i in 0..<k { for j in 0..<n { g[transB ? j * k + i : i * n + j] += alpha * t[i * n + j] } }
                    }
                }
                if let c, c.requiresGrad {
                    c.accumulateGrad { g in for i in 0..<(m * n) { g[cIndex[i]] += beta * dp[i] } }
                }
            }
        }
    }

    func matMul() throws -> Value {
        let a = try float(0), b = try float(1)
        var sa = a.value.shape, sb = b.value.shape
        guard !sa.isEmpty, !sb.isEmpty else { throw fail("inputs must have at least one dimension") }
        let aVector = sa.count == 1, bVector = sb.count == 1
        if aVector { sa = [1] + sa }
        if bVector { sb = sb + [1] }
        let m = sa[sa.count - 2], k = sa[sa.count - 1], kb = sb[sb.count - 2], n = sb[sb.count - 1]
        guard k == kb else { throw fail("shapes \(a.value.shape) and \(b.value.shape) do not multiply") }
        let batchA = Array(sa.dropLast(2)), batchB = Array(sb.dropLast(2))
        guard let batch = broadcastShape(batchA, batchB) else { throw fail("batch dimensions \(batchA) and \(batchB) do not broadcast") }
        let ia = broadcastSourceIndex(batchA, to: batch), ib = broadcastSourceIndex(batchB, to: batch)
        let count = batch.reduce(1, *)
        var outShape = batch + [m, n]
        if aVector { outShape.remove(at: outShape.count - 2) }
        if bVector { outShape.removeLast() }
        _ = try checkedCount(outShape, bytesPerElement: 4)
        // At inference, the bias Add (and Gelu) after it, applied by the GEMM (`MatMulEpilogue`).
        var biasTensor: Tensor? = nil, gelu = false
        if tape == nil, let fused = graph.matMulEpilogues[index], case .float(let bias)? = graph.initializers[fused.bias],
           bias.value.shape == [n] {
            biasTensor = bias.value
            gelu = fused.gelu
        }
        // At inference, by a constant 2-D right side: every row of A against B packed once.
        if tape == nil, sb.count == 2, !bVector, let cache = graph.matMulPacks[index], let packed = cache.packed(for: b, graph: graph) {
            var y = outputBuffer(outShape)  // every element written
            a.value.withUnsafeBufferPointer { ap in
                y.withUnsafeMutableBufferPointer { yp in
                    Self.withMatMulEpilogue(biasTensor, gelu: gelu) { epilogue in
                        gemm(m: count * m, a: ap.baseAddress!, lda: k, transposeA: false, packed: packed, c: yp.baseAddress!, ldc: n,
                             accumulate: false, threads: threads, epilogue: epilogue)
                    }
                }
            }
            return inferenceValue(y, requiresGrad: a.requiresGrad || b.requiresGrad)
        }
        // Every element is written by a GEMM (accumulate: false), so the buffer starts uninitialized;
        // at inference it is the node's buffer of the last run.
        var y = tape == nil ? outputBuffer(outShape) : Tensor(uninitialized: outShape)
        // NOTE: a batch of rows against one matrix (a Linear layer of a transformer, (B, S, K)
        // · (K, N)) is one GEMM of B·S rows: the per-slice loop ran B GEMMs of S rows each. The
        // GEMM's chain per output does not depend on how rows are blocked, so the bits are the
        // same.
        if batchB.isEmpty || batchB.allSatisfy({ $0 == 1 }), count > 1 {
            a.value.withUnsafeBufferPointer { ap in
                b.value.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        gemm(m: count * m, n: n, k: k, a: ap.baseAddress!, lda: k, transposeA: false,
                             b: bp.baseAddress!, ldb: n, transposeB: false,
                             c: yp.baseAddress!, ldc: n, accumulate: false, threads: threads)
                    }
                }
            }
        } else {
            // Slices too small for the GEMM to share (attention's per-head products: 32 × 32 × 32
            // in MiniLM-L6) go out to the threads whole, one GEMM per slice on one thread. Each
            // slice is its own product, so the bits are the same.
            // NOTE: one slice after another, two threads ran them on one.
            let perSlice = m * n * k
            let sliceWorkers = perSlice < 1_048_576 ? max(1, min(threads, count, count * perSlice / 262_144)) : 1
            a.value.withUnsafeBufferPointer { ap in
                b.value.withUnsafeBufferPointer { bp in
                    y.withUnsafeMutableBufferPointer { yp in
                        let aa = Int(bitPattern: ap.baseAddress!), bb = Int(bitPattern: bp.baseAddress!), yy = Int(bitPattern: yp.baseAddress!)
                        let threads = sliceWorkers > 1 ? 1 : self.threads
                        parallelFor(count, threads: sliceWorkers) { t in
                            gemm(m: m, n: n, k: k, a: UnsafePointer<Float>(bitPattern: aa)! + ia[t] * m * k, lda: k, transposeA: false,
                                 b: UnsafePointer<Float>(bitPattern: bb)! + ib[t] * k * n, ldb: n, transposeB: false,
                                 c: UnsafeMutablePointer<Float>(bitPattern: yy)! + t * m * n, ldc: n, accumulate: false, threads: threads)
                        }
                    }
                }
            }
        }
        if biasTensor != nil {
            // (Past the packing budget: the same steps as a pass of their own.)
            y.withUnsafeMutableBufferPointer { yp in
                Self.withMatMulEpilogue(biasTensor, gelu: gelu) { $0.apply(c: yp.baseAddress!, ldc: n, i0: 0, rows: count * m, j0: 0, cols: n) }
            }
        }
        let nThreads = self.threads
        return emit(y, parents: [a, b]) { dy in
            dy.withUnsafeBufferPointer { dp in
                for t in 0..<count {
                    if a.requiresGrad {
                        b.value.withUnsafeBufferPointer { bp in
                            a.accumulateGrad { g in
                                gemm(m: m, n: k, k: n, a: dp.baseAddress! + t * m * n, lda: n, transposeA: false,
                                     b: bp.baseAddress! + ib[t] * k * n, ldb: n, transposeB: true,
                                     c: g + ia[t] * m * k, ldc: k, accumulate: true, threads: nThreads)
                            }
                        }
                    }
                    if b.requiresGrad {
                        a.value.withUnsafeBufferPointer { ap in
                            b.accumulateGrad { g in
                                gemm(m: k, n: n, k: m, a: ap.baseAddress! + ia[t] * m * k, lda: k, transposeA: true,
                                     b: dp.baseAddress! + t * m * n, ldb: n, transposeB: false,
                                     c: g + ib[t] * k * n, ldc: n, accumulate: true, threads: nThreads)
                            }
                        }
                    }
                }
            }
        }
    }
}

extension OpContext {
    /// The GEMM epilogue of a fused bias (one value per column) and Gelu, or none.
    static func withMatMulEpilogue(_ bias: Tensor?, gelu: Bool, _ body: (GemmEpilogue) -> Void) {
        guard let bias else { return body(.none) }
        bias.withUnsafeBufferPointer { body(GemmEpilogue(bias: $0.baseAddress!, relu: false, activation: gelu ? .geluErf : .none, biasPerColumn: true)) }
    }
}

/// Inference of a Linear layer: writes y (rows × out, every element) = x · Wᵀ + b, through the
/// CSR kernel when the weight is sparse enough for the batch, else the prepacked GEMM (both
/// equal the plain GEMM bit for bit).
func linearInfer(_ x: Tensor, weight: Variable, bias: Variable?, cache: LinearCache, threads: Int, relu: Bool = false,
                 into y: inout Tensor) {
    let outF = weight.value.shape[0]
    let rows = x.shape[0]
    precondition(y.shape.count == 2 && y.shape[0] == rows && y.shape[1] == outF,
                 "linear output \(y.shape) for input \(x.shape) and weight \(weight.value.shape)")
    x.withUnsafeBufferPointer { xp in
        y.withUnsafeMutableBufferPointer { yp in
            linearInfer(xp.baseAddress!, rows: rows, weight: weight, bias: bias, cache: cache, threads: threads, relu: relu,
                        into: yp.baseAddress!)
        }
    }
}

/// `linearInfer` on raw buffers: x is (rows × in), y (rows × out) is overwritten; the caller
/// has checked the shapes.
func linearInfer(_ x: UnsafePointer<Float>, rows: Int, weight: Variable, bias: Variable?, cache: LinearCache, threads: Int,
                 relu: Bool, into y: UnsafeMutablePointer<Float>) {
    let forms = cache.forms(for: weight)
    let outF = forms.outFeatures, inF = forms.inFeatures
    if let csr = forms.sparse, rows < 8 || forms.density <= LinearCache.sparseBatchDensityThreshold {
        csrLinearForward(csr, x: x, batch: rows, y: y, threads: threads)
    } else {
        let packed: PackedB
        if let p = forms.packed {
            packed = p
        } else {
            packed = weight.value.withUnsafeBufferPointer { PackedB(b: $0.baseAddress!, ldb: inF, transposeB: true, k: inF, n: outF) }
            forms.packed = packed
        }
        gemm(m: rows, a: x, lda: inF, transposeA: false, packed: packed, c: y, ldc: outF, accumulate: false, threads: threads)
    }
    if let b = bias?.value {
        b.withUnsafeBufferPointer {
            if relu {
                addRowVectorRelu($0.baseAddress!, rows: rows, cols: outF, out: y)
            } else {
                addRowVector($0.baseAddress!, rows: rows, cols: outF, out: y)
            }
        }
    } else if relu {
        reluForward(y, count: rows * outF, out: y)
    }
}
