// A GEMM's epilogue (`Kernels.GemmEpilogue`) in sixteen-lane vectors: the bias, ReLU, Clip and
// SiLU of `Kernels.Elementwise`, lane by lane the same operations, so the same bits.

/// For each row r of C[0..<rows, 0..<cols] (row stride ldc): + bias[r] (when given; bias[j] for
/// column j with mode bit 3), then a ReLU (mode bit 0), a Clip to [lo, hi] (bit 1), a SiLU (bit
/// 2) or a GELU (bit 4).
// NOTE: built here, it reads C in the vectors the 8 × 32 kernel stored (half vectors from the
// AVX2 build stalled on store forwarding). The SiLU is `siluForwardAVX512`'s loop: written
// into this function, `sigmoid32` stayed a call (the function too large to inline into) and the
// SiLU ran at a third of the speed.
@inline(never)
public func epilogueRowsAVX512(_ c: UnsafeMutablePointer<Float>, ldc: Int, rows: Int, cols: Int, bias: UnsafePointer<Float>?,
                               mode: Int, lo: Float, hi: Float) {
    let l = V16(repeating: lo), h = V16(repeating: hi)
    for r in 0..<rows {
        let row = c + r * ldc
        // (No bias adds nothing: -0 + 0 would be +0.)
        if bias != nil || mode & 3 != 0 {
            let perColumn = mode & 8 != 0
            let b = V16(repeating: perColumn ? 0 : bias?[r] ?? 0)
            var j = 0
            while j < cols {
                let n = min(16, cols - j)
                var v = loadLanes(row + j, n)
                if let bias { v = v + (perColumn ? loadLanes(bias + j, n) : b) }
                if mode & 1 != 0 { v = V16().replacing(with: v, where: v .> 0) }
                if mode & 2 != 0 {
                    let m = v.replacing(with: l, where: l .>= v)
                    v = m.replacing(with: h, where: h .< m)
                }
                storeLanes(row + j, v, n)
                j += 16
            }
        }
        if mode & 4 != 0 { siluForwardAVX512(row, count: cols) }
        if mode & 16 != 0 { geluErfForwardAVX512(row, count: cols, out: row) }
    }
}
