import TensorEngine

// Layer-wise reconstruction: Optimal Brain Surgeon and SparseGPT. For a layer Y = W·X with
// calibration inputs X, both minimize ‖WX − ŴX‖² = Σ_rows (w − ŵ)ᵀ H (w − ŵ)/2 with
// H = 2XXᵀ/n, subject to the pruned entries of ŵ being zero. All arithmetic is Double, every
// loop runs in index order on one thread: results are the same on every run.

/// Dense symmetric positive definite matrices (row-major, n × n) in Double.
enum SPD {
    /// The lower Cholesky factor L (A = L·Lᵀ), nil when A is not positive definite.
    static func cholesky(_ a: [Double], n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var d = a[j * n + j]
            for k in 0..<j { d -= l[j * n + k] * l[j * n + k] }
            guard d > 0, d.isFinite else { return nil }
            let root = d.squareRoot()
            l[j * n + j] = root
            for i in (j + 1)..<max(n, j + 1) {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / root
            }
        }
        return l
    }

    /// Solves L·Lᵀ·x = b given the lower factor L.
    static func solve(lower l: [Double], n: Int, _ b: [Double]) -> [Double] {
        var y = b
        for i in 0..<n {
            var s = y[i]
            for k in 0..<i { s -= l[i * n + k] * y[k] }
            y[i] = s / l[i * n + i]
        }
        for i in stride(from: n - 1, through: 0, by: -1) {
            var s = y[i]
            for k in (i + 1)..<max(n, i + 1) { s -= l[k * n + i] * y[k] }
            y[i] = s / l[i * n + i]
        }
        return y
    }

    /// A⁻¹ from its lower factor (column by column).
    static func inverse(lower l: [Double], n: Int) -> [Double] {
        var inv = [Double](repeating: 0, count: n * n)
        var e = [Double](repeating: 0, count: n)
        for j in 0..<n {
            e[j] = 1
            let col = solve(lower: l, n: n, e)
            e[j] = 0
            for i in 0..<n { inv[i * n + j] = col[i] }
        }
        // Exactly symmetric (the two triangles differ in the last bits otherwise).
        for i in 0..<n { for j in 0..<i { let m = (inv[i * n + j] + inv[j * n + i]) / 2; inv[i * n + j] = m; inv[j * n + i] = m } }
        return inv
    }

    /// H with dead inputs (zero diagonal) set to 1 and λ = damping·mean(diag H) added to the
    /// diagonal; the damping grows ×10 until H factors. Returns H and its lower factor.
    static func dampened(_ h: [Double], n: Int, damping: Double) -> (h: [Double], lower: [Double]) {
        var base = h
        for j in 0..<n where base[j * n + j] == 0 { base[j * n + j] = 1 }
        let mean = (0..<n).reduce(0.0) { $0 + base[$1 * n + $1] } / Double(max(n, 1))
        var factor = max(damping, 1e-8)
        while true {
            var d = base
            for j in 0..<n { d[j * n + j] += factor * mean }
            if let l = cholesky(d, n: n) { return (d, l) }
            factor *= 10
        }
    }
}

enum Reconstruction {
    /// OBS saliency w_q² / (2·[H⁻¹]_qq) of every weight of a (rows × cols) layer; 0 for a
    /// weight on a dead input (diag H = 0: the input is zero on every calibration example, so
    /// the weight changes nothing there). SparseGPT's reference zeroes such weights; scoring
    /// them 0 removes them first and keeps the count of pruned weights exact.
    static func obsSaliency(_ w: [Float], rows: Int, hInverse: [Double], cols: Int, dead: [Bool]) -> [Double] {
        (0..<(rows * cols)).map { i in
            let v = Double(w[i])
            return dead[i % cols] ? 0 : v * v / (2 * hInverse[(i % cols) * cols + (i % cols)])
        }
    }

    /// The inputs that are zero on every calibration row.
    static func deadInputs(_ h: [Double], cols: Int) -> [Bool] { (0..<cols).map { h[$0 * cols + $0] == 0 } }

    /// The exact OBS update of one row for the pruned set `mask == 0`: the survivors move to
    /// the minimizer of (w − ŵ)ᵀH(w − ŵ) with ŵ_Q = 0, solved on the smaller of the kept set S
    /// (ŵ_S = w_S + H_SS⁻¹·H_SQ·w_Q) and the pruned set Q (δ = −H⁻¹_{:,Q}·([H⁻¹]_QQ)⁻¹·w_Q).
    static func obsRow(_ w: [Double], mask: ArraySlice<Float>, h: [Double], hInverse: [Double], cols: Int) -> [Double] {
        let q = (0..<cols).filter { mask[mask.startIndex + $0] == 0 }
        let s = (0..<cols).filter { mask[mask.startIndex + $0] != 0 }
        var out = w
        guard !q.isEmpty else { return out }
        if s.isEmpty { return [Double](repeating: 0, count: cols) }
        if s.count <= q.count {
            let hss = s.flatMap { i in s.map { j in h[i * cols + j] } }
            let rhs = s.map { i in q.reduce(0.0) { $0 + h[i * cols + $1] * w[$1] } }
            if let l = SPD.cholesky(hss, n: s.count) {
                let delta = SPD.solve(lower: l, n: s.count, rhs)
                for (k, i) in s.enumerated() { out[i] += delta[k] }
            }
        } else {
            let hqq = q.flatMap { i in q.map { j in hInverse[i * cols + j] } }
            if let l = SPD.cholesky(hqq, n: q.count) {
                let y = SPD.solve(lower: l, n: q.count, q.map { w[$0] })
                for i in 0..<cols { out[i] -= zip(q, y).reduce(0.0) { $0 + hInverse[i * cols + $1.0] * $1.1 } }
            }
        }
        for i in q { out[i] = 0 }
        return out
    }

    /// Layer-wise OBS on a (rows × cols) weight: every row updated for its pruned set.
    static func obs(_ w: [Float], rows: Int, cols: Int, mask: [Float], h: [Double], hInverse: [Double]) -> [Float] {
        var out = [Float](repeating: 0, count: w.count)
        for r in 0..<rows {
            let row = obsRow(w[(r * cols)..<((r + 1) * cols)].map { Double($0) }, mask: mask[(r * cols)..<((r + 1) * cols)],
                             h: h, hInverse: hInverse, cols: cols)
            for j in 0..<cols { out[r * cols + j] = mask[r * cols + j] == 0 ? 0 : Float(row[j]) }
        }
        return out
    }

    /// SparseGPT (Frantar & Alistarh 2023, the reference `sparsegpt.py`) on a (rows × cols)
    /// weight: columns in blocks of 128 (a multiple of M for N:M); in each block the mask is
    /// chosen by w²/[U]_ii² (U the upper Cholesky factor of H⁻¹) — the lowest k_b of the block
    /// for unstructured (k_b split so the layer loses exactly round(sparsity·rows·cols)), or
    /// the M − N lowest of each row's group of M at its first column — then every column is
    /// quantized to its mask and the error is spread over the later columns. Returns the new
    /// weight and its mask.
    static func sparseGPT(_ w: [Float], rows: Int, cols: Int, lowerH: [Double], dead: [Bool], sparsity: Double, nm: (n: Int, m: Int)?,
                          locked: [Float]?) -> (weight: [Float], mask: [Float]) {
        // U: upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), i.e. the transpose of the lower factor.
        let hInv = SPD.inverse(lower: lowerH, n: cols)
        guard let lowerInv = SPD.cholesky(hInv, n: cols) else { preconditionFailure("H⁻¹ of a positive definite H must factor") }
        func u(_ i: Int, _ j: Int) -> Double { lowerInv[j * cols + i] }
        var wd = w.map { Double($0) }
        var mask = [Float](repeating: 1, count: w.count)
        let blockSize = nm.map { max($0.m, 128 / $0.m * $0.m) } ?? 128
        var start = 0
        while start < cols {
            let end = min(start + blockSize, cols), width = end - start
            if nm == nil {
                // Exact count for the layer: k_b = round(s·cum_b) − round(s·cum_{b−1}).
                let k = Int((sparsity * Double(rows * end)).rounded()) - Int((sparsity * Double(rows * start)).rounded())
                var scores: [Double] = []
                scores.reserveCapacity(rows * width)
                for r in 0..<rows {
                    for j in start..<end {
                        let locked = locked.map { $0[r * cols + j] == 0 } ?? false
                        scores.append(locked ? -1 : dead[j] ? 0 : wd[r * cols + j] * wd[r * cols + j] / (u(j, j) * u(j, j)))
                    }
                }
                let blockMask = Selection.lowest(scores, count: k)
                for r in 0..<rows { for j in start..<end { mask[r * cols + j] = blockMask[r * width + j - start] } }
            }
            var err = [Double](repeating: 0, count: rows * width)
            for i in start..<end {
                if let (n, m) = nm, (i - start) % m == 0 {
                    let len = min(m, end - i)
                    for r in 0..<rows {
                        let s = (0..<len).map { k in dead[i + k] ? 0 : wd[r * cols + i + k] * wd[r * cols + i + k] / (u(i + k, i + k) * u(i + k, i + k)) }
                        let keep = Selection.nm((name: "", rows: 1, scores: s), n: min(n, len), m: len + 1)
                        for k in 0..<len { mask[r * cols + i + k] = keep[k] }
                    }
                }
                let d = u(i, i)
                for r in 0..<rows {
                    let v = wd[r * cols + i]
                    let q = mask[r * cols + i] == 0 ? 0 : v
                    let e = (v - q) / d
                    err[r * width + i - start] = e
                    wd[r * cols + i] = q
                    if e != 0 { for j in (i + 1)..<max(end, i + 1) { wd[r * cols + j] -= e * u(i, j) } }
                }
            }
            // Spread the block's error over the columns after it.
            if end < cols {
                for r in 0..<rows {
                    for i in start..<end {
                        let e = err[r * width + i - start]
                        guard e != 0 else { continue }
                        for j in end..<cols { wd[r * cols + j] -= e * u(i, j) }
                    }
                }
            }
            start = end
        }
        return (zip(wd, mask).map { $1 == 0 ? 0 : Float($0) }, mask)
    }
}
