// 3 × 3 convolutions of stride 1 by Winograd's minimal filtering F(2 × 2, 3 × 3) (Lavin and
// Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): each 2 × 2 block of outputs
// (a tile) from the 4 × 4 input patch d around it as Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A, with
//
//     Bᵀ = | 1  0 -1  0 |     G = |  1    0    0  |     Aᵀ = | 1  1  1  0 |
//          | 0  1  1  0 |         | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//          | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//          | 0  1  0 -1 |         |  0    0    1  |
//
// Summed over input channels, the 16 element-wise products become 16 GEMMs, one per position ξ
// of the 4 × 4 transform: M_ξ (Cout × tiles) = U_ξ (Cout × Cin) · V_ξ (Cin × tiles), U = G g Gᵀ
// per (output, input) channel, V = Bᵀ d B per (input channel, tile). 16 multiply-adds per
// tile and channel pair instead of 36: 2.25 × fewer.
//
// Accumulation order (what makes results bit-identical): the transforms are fixed sequences
// of single adds, subtractions and halvings (below, `winogradWeights`, `inputTileRow`,
// `outputTileRow`); each M_ξ element is `gemm`'s one FMA chain over input channels in increasing
// order from 0; the bias is added last. Tiles go in blocks of whole tile rows, and threads split
// input channels (input transform), positions ξ (GEMMs) and output channels (output transform),
// never a sum: results equal `winogradConv2dReference` bit for bit, for any thread count and
// block size, on every instruction set. They differ from im2col + GEMM's in the last bits
// (another order of the same sum), so a Conv takes this path by its geometry alone.

/// Whether F(2 × 2, 3 × 3) computes this convolution: 3 × 3, stride 1, no dilation.
public func winogradApplies(_ g: DepthwiseGeometry) -> Bool {
    g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.dilationH == 1 && g.dilationW == 1
        && g.padTop >= 0 && g.padLeft >= 0 && g.oh > 0 && g.ow > 0
}

/// Floats of `winogradWeights`' output: 16 · cout · cin.
public func winogradWeightCount(cin: Int, cout: Int) -> Int { 16 * cout * cin }

/// U = G g Gᵀ for every (output o, input c) pair of the 3 × 3 kernels w (cout × cin × 3 × 3):
/// u[ξ·cout·cin + o·cin + c] for ξ = 4i + j, so each U_ξ is a row-major Cout × Cin matrix. With
/// `transposedFlipped`, the weights of the Conv that gives this one's input gradient: w is
/// (cin × cout × 3 × 3) and the kernel of pair (o, c) is w's (c, o) kernel turned by 180°.
/// Output channels split across `threads`; each U value is the same few operations, so the same
/// bits for any thread count.
public func winogradWeights(_ w: UnsafePointer<Float>, cin: Int, cout: Int, into u: UnsafeMutablePointer<Float>,
                            transposedFlipped: Bool = false, threads: Int = 1) {
    let plane = cout * cin
    let wa = Int(bitPattern: w), ua = Int(bitPattern: u)
    parallelRanges(cout, threads: threads, grain: max(1, 16_384 / max(cin, 1))) { outputs in
        let w = UnsafePointer<Float>(bitPattern: wa)!, u = UnsafeMutablePointer<Float>(bitPattern: ua)!
        for o in outputs {
            for c in 0..<cin {
                let g = transposedFlipped ? w + (c * cout + o) * 9 : w + (o * cin + c) * 9
                // Tap (r, k) of the kernel: g[3r + k], or g[8 - 3r - k] turned by 180°.
                @inline(__always) func tap(_ q: Int) -> Float { transposedFlipped ? g[8 - q] : g[q] }
                // t = G g (4 × 3), then U = t Gᵀ (4 × 4): each row of t, (t0, t1, t2), gives
                // (t0, ((t0 + t1) + t2) / 2, ((t0 - t1) + t2) / 2, t2).
                @inline(__always) func emit(_ i: Int, _ t0: Float, _ t1: Float, _ t2: Float) {
                    let at = u + o * cin + c
                    at[(4 * i) * plane] = t0
                    at[(4 * i + 1) * plane] = ((t0 + t1) + t2) * 0.5
                    at[(4 * i + 2) * plane] = ((t0 - t1) + t2) * 0.5
                    at[(4 * i + 3) * plane] = t2
                }
                @inline(__always) func column(_ k: Int) -> (Float, Float, Float, Float) {
                    let g0 = tap(k), g1 = tap(3 + k), g2 = tap(6 + k)
                    return (g0, ((g0 + g1) + g2) * 0.5, ((g0 - g1) + g2) * 0.5, g2)
                }
                let (a0, a1, a2, a3) = column(0), (b0, b1, b2, b3) = column(1), (c0, c1, c2, c3) = column(2)
                emit(0, a0, b0, c0)
                emit(1, a1, b1, c1)
                emit(2, a2, b2, c2)
                emit(3, a3, b3, c3)
            }
        }
    }
}

/// Each U_ξ packed as GEMM's right-hand side transposed (Cin × Cout): the weights of
/// `winogradConv2d`'s tiles-major products, packed once rather than on every call.
public func winogradPackWeights(_ u: UnsafePointer<Float>, cin: Int, cout: Int) -> [PackedB] {
    (0..<16).map { xi in PackedB(b: u + xi * cout * cin, ldb: cin, transposeB: true, k: cin, n: cout) }
}

/// Whether `winogradConv2d` multiplies tiles-major, M_ξᵀ (tiles × Cout) = V_ξᵀ · U_ξᵀ: when the
/// whole batch has fewer than 64 tiles (a deep layer's 7 × 7 or 14 × 14 plane at batch 1), whose
/// channels-major products would be one or two narrow column panels. The same FMA chains (each
/// product's operands swapped), so the same bits.
public func winogradTilesMajor(_ g: DepthwiseGeometry, batch: Int) -> Bool {
    let (th, tw) = winogradTiles(g)
    return batch * th * tw < 64
}

/// The tile grid: rows and columns of 2 × 2 output tiles.
@inline(__always) func winogradTiles(_ g: DepthwiseGeometry) -> (th: Int, tw: Int) { ((g.oh + 1) / 2, (g.ow + 1) / 2) }

/// Tile rows per block (a block's tiles are the GEMMs' columns): blocks of about `target`
/// tiles, so that a block's transformed input and products stay in L2.
public func winogradBlockRows(_ g: DepthwiseGeometry, cin: Int, cout: Int, batch: Int) -> Int {
    let (th, tw) = winogradTiles(g)
    if winogradTilesMajor(g, batch: batch) { return batch * th }
    // NOTE: V and M, 16 · (Cin + Cout) · tiles floats, of about 2 MB (at least 32 tiles, so that
    // the GEMMs' columns fill their panels). Every Winograd Conv keeps its own: with 8 MB
    // blocks, a check of ResNet-18 peaked 110 MB higher.
    let target = max(32, 32_768 / max(cin + cout, 1))
    return max(1, min(batch * th, target / tw))
}

/// Floats of scratch `winogradConv2d` needs with `workers` workers (and the same `blockRows`
/// and `tilesMajor`).
public func winogradConv2dScratch(_ g: DepthwiseGeometry, cin: Int, cout: Int, batch: Int, workers: Int, blockRows: Int? = nil,
                                  tilesMajor: Bool? = nil) -> Int {
    if tilesMajor ?? winogradTilesMajor(g, batch: batch) { return winogradTilesMajorScratch(g, cin: cin, cout: cout, batch: batch, workers: workers) }
    let tw = winogradTiles(g).tw
    let blockRows = blockRows ?? winogradBlockRows(g, cin: cin, cout: cout, batch: batch)
    return 16 * (cin + cout) * (blockRows * tw + lanePad) + workers * workerScratch(tw, blockRows: blockRows)
}

/// A tile row's length rounded up to whole 8-lane vectors: the transforms write (and read)
/// that many, so every buffer they touch has `lanePad` floats to spare.
@inline(__always) func laneCeil(_ tw: Int) -> Int { (tw + 7) / 8 * 8 }
@usableFromInline let lanePad = 8

@inline(__always) func rowScratch(_ tw: Int) -> Int { 16 * laneCeil(tw) }
/// A worker's scratch: a tile row's transform and a padded band of input rows.
@inline(__always) func workerScratch(_ tw: Int, blockRows: Int) -> Int { rowScratch(tw) + bandCount(tw, tileRows: blockRows) }

typealias F8 = SIMD8<Float>
@inline(__always) func ld8(_ p: UnsafePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }
@inline(__always) func st8(_ p: UnsafeMutablePointer<Float>, _ v: F8) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self) }

/// Floats of a padded band: the input rows of `tileRows` tile rows, each `bandWidth` long.
@inline(__always) func bandWidth(_ tw: Int) -> Int { 2 * laneCeil(tw) + 18 }
@inline(__always) func bandCount(_ tw: Int, tileRows: Int) -> Int { (2 * tileRows + 2) * bandWidth(tw) }

/// The input rows of tile rows ty0..<ty1 of one plane, padded: row j is input row
/// 2·ty0 - padTop + j with padLeft zeros before it and zeros after, `bandWidth(tw)` long (rows
/// past the plane all zeros), so the transform reads whole vectors without a bound.
// NOTE: built row by row just before the transform read it, the vector loads waited on the
// copy's stores (a load across two stores is not forwarded): 26 % of the transform's time.
@inline(__always)
func padBand(_ plane: UnsafePointer<Float>, _ g: DepthwiseGeometry, ty0: Int, ty1: Int, tw: Int, into band: UnsafeMutablePointer<Float>) {
    let width = bandWidth(tw), left = min(g.padLeft, width), copied = max(0, min(g.iw, width - left))
    for j in 0..<(2 * (ty1 - ty0) + 2) {
        let r = 2 * ty0 - g.padTop + j, dst = band + j * width
        guard r >= 0 && r < g.ih else {
            dst.update(repeating: 0, count: width)
            continue
        }
        dst.update(repeating: 0, count: left)
        (dst + left).update(from: plane + r * g.iw, count: copied)
        (dst + left + copied).update(repeating: 0, count: width - left - copied)
    }
}

/// V_ξ[t] = (Bᵀ d B)[ξ] for the `tw` tiles of one tile row, whose four padded input rows start
/// at `rows` (`bandWidth(tw)` apart), written at v + ξ·vStride + t for t < laneCeil(tw) (past
/// tw: values to be overwritten or ignored).
@inline(__always)
func inputTileRow(_ rows: UnsafePointer<Float>, tw: Int, v: UnsafeMutablePointer<Float>, vStride: Int, scratch h: UnsafeMutablePointer<Float>) {
    // h[4i + j] (laneCeil(tw) values each): row i of the patch transformed along the row,
    // z = d Bᵀ's columns: z0 = d0 - d2, z1 = d1 + d2, z2 = d2 - d1, z3 = d1 - d3, where
    // d_j = p[2t + j] of the padded row p.
    let lw = laneCeil(tw), width = bandWidth(tw)
    for i in 0..<4 {
        let p = rows + i * width
        let h0 = h + 4 * i * lw, h1 = h0 + lw, h2 = h0 + 2 * lw, h3 = h0 + 3 * lw
        var t = 0
        while t < lw {
            // d_j of tiles t..<t+8: j = 0, 1 the even and odd lanes of p[2t..<2t+16], j = 2, 3
            // those of p[2t+2..<2t+18].
            let first = UnsafeRawPointer(p + 2 * t).loadUnaligned(as: SIMD16<Float>.self)
            let second = UnsafeRawPointer(p + 2 * t + 2).loadUnaligned(as: SIMD16<Float>.self)
            let d0 = first.evenHalf, d1 = first.oddHalf, d2 = second.evenHalf, d3 = second.oddHalf
            st8(h0 + t, d0 - d2)
            st8(h1 + t, d1 + d2)
            st8(h2 + t, d2 - d1)
            st8(h3 + t, d1 - d3)
            t += 8
        }
    }
    // The same transform down the columns: V[4i' + j] from h[j], h[4 + j], h[8 + j], h[12 + j].
    for j in 0..<4 {
        let r0 = h + j * lw, r1 = h + (4 + j) * lw, r2 = h + (8 + j) * lw, r3 = h + (12 + j) * lw
        let v0 = v + j * vStride, v1 = v + (4 + j) * vStride, v2 = v + (8 + j) * vStride, v3 = v + (12 + j) * vStride
        var t = 0
        while t < lw {
            let a0 = ld8(r0 + t), a1 = ld8(r1 + t), a2 = ld8(r2 + t), a3 = ld8(r3 + t)
            st8(v0 + t, a0 - a2)
            st8(v1 + t, a1 + a2)
            st8(v2 + t, a2 - a1)
            st8(v3 + t, a1 - a3)
            t += 8
        }
    }
}

/// The outputs of tile row `ty` of one output plane from M_ξ[t] at m + ξ·mStride + t (read for
/// t < laneCeil(tw)): Aᵀ M A, plus the bias; rows and columns past the plane are dropped.
@inline(__always)
func outputTileRow(_ m: UnsafePointer<Float>, mStride: Int, _ g: DepthwiseGeometry, ty: Int, tw: Int, bias: Float?,
                   out plane: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    let lw = laneCeil(tw)
    let y00 = scratch, y01 = scratch + lw, y10 = scratch + 2 * lw, y11 = scratch + 3 * lw
    @inline(__always) func at(_ xi: Int, _ t: Int) -> F8 { ld8(m + xi * mStride + t) }
    var t = 0
    while t < lw {
        // s = Aᵀ M (2 × 4), then Y = s A (2 × 2).
        let m10 = at(4, t), m11 = at(5, t), m12 = at(6, t), m13 = at(7, t)
        let m20 = at(8, t), m21 = at(9, t), m22 = at(10, t), m23 = at(11, t)
        let s00 = (at(0, t) + m10) + m20, s01 = (at(1, t) + m11) + m21
        let s02 = (at(2, t) + m12) + m22, s03 = (at(3, t) + m13) + m23
        let s10 = (m10 - m20) - at(12, t), s11 = (m11 - m21) - at(13, t)
        let s12 = (m12 - m22) - at(14, t), s13 = (m13 - m23) - at(15, t)
        st8(y00 + t, (s00 + s01) + s02)
        st8(y01 + t, (s01 - s02) - s03)
        st8(y10 + t, (s10 + s11) + s12)
        st8(y11 + t, (s11 - s12) - s13)
        t += 8
    }
    let ow = g.ow, pairs = ow / 2
    for i in 0..<2 {
        let oy = 2 * ty + i
        guard oy < g.oh else { break }
        let row = plane + oy * ow, left = i == 0 ? y00 : y10, right = i == 0 ? y01 : y11
        let b = F8(repeating: bias ?? 0)
        // Eight pairs at a time, interleaved; a vector may run past the row into rows of this
        // plane written after it (the next row, the next tile row's), never past the plane.
        let end = plane + g.oh * ow
        var t = 0
        while t < (ow + 1) / 2 && row + 2 * t + 16 <= end {
            var pair = SIMD16<Float>()
            pair.evenHalf = bias == nil ? ld8(left + t) : ld8(left + t) + b
            pair.oddHalf = bias == nil ? ld8(right + t) : ld8(right + t) + b
            UnsafeMutableRawPointer(row + 2 * t).storeBytes(of: pair, as: SIMD16<Float>.self)
            t += 8
        }
        if let bias {
            while t < pairs { row[2 * t] = left[t] + bias; row[2 * t + 1] = right[t] + bias; t += 1 }
            if ow % 2 == 1 && t <= pairs { row[ow - 1] = left[pairs] + bias }
        } else {
            while t < pairs { row[2 * t] = left[t]; row[2 * t + 1] = right[t]; t += 1 }
            if ow % 2 == 1 && t <= pairs { row[ow - 1] = left[pairs] }
        }
    }
}

/// V for tile rows `tileRows` (of all samples' tile rows in order) into v (V_ξ[c][t] at
/// v + (ξ·cin + c)·ld + t), input channels split across `workers`, each with its scratch
/// (`workerScratch(tw, blockRows:)`) from `scratch`.
func transformInput(x: UnsafePointer<Float>, _ g: DepthwiseGeometry, batch: Int, cin: Int, tileRows: Range<Int>, v: UnsafeMutablePointer<Float>,
                    ld: Int, scratch: UnsafeMutablePointer<Float>, blockRows: Int, workers: Int) {
    let (th, tw) = winogradTiles(g), inP = g.ih * g.iw
    let xa = Int(bitPattern: x), va = Int(bitPattern: v), ra = Int(bitPattern: scratch)
    parallelFor(workers, threads: workers) { w in
        let x = UnsafePointer<Float>(bitPattern: xa)!, v = UnsafeMutablePointer<Float>(bitPattern: va)!
        let scratch = UnsafeMutablePointer<Float>(bitPattern: ra)! + w * workerScratch(tw, blockRows: blockRows)
        let band = scratch + rowScratch(tw), width = bandWidth(tw)
        for c in (cin * w / workers)..<(cin * (w + 1) / workers) {
            var r = tileRows.lowerBound
            while r < tileRows.upperBound {
                // The tile rows of one sample: one padded band of input rows.
                let n = r / th, end = min(tileRows.upperBound, (n + 1) * th)
                padBand(x + (n * cin + c) * inP, g, ty0: r % th, ty1: r % th + (end - r), tw: tw, into: band)
                for rr in r..<end {
                    inputTileRow(band + 2 * (rr - r) * width, tw: tw, v: v + c * ld + (rr - tileRows.lowerBound) * tw, vStride: cin * ld,
                                 scratch: scratch)
                }
                r = end
            }
        }
    }
}

/// y (batch × cout × oh × ow) = the 3 × 3 convolution of x (batch × cin × ih × iw) by the
/// weights U (`winogradWeights`), plus the bias, for a geometry where `winogradApplies`; with
/// tiles-major when `winogradTilesMajor` (or `tilesMajor`, which tests set), then from `packed`
/// (`winogradPackWeights` of U) when given, which channels-major does not use.
/// `finish(p, count)` runs on each stretch of output rows once they are written (an
/// element-wise activation). `scratch` holds `winogradConv2dScratch(…, workers: threads)` floats
/// (with the same `blockRows`: tile rows per block, `winogradBlockRows` when nil; tests vary it).
public func winogradConv2d(
    x: UnsafePointer<Float>, batch: Int, cin: Int, weights u: UnsafePointer<Float>?, packed: [PackedB]? = nil, cout: Int,
    bias: UnsafePointer<Float>?, geometry g: DepthwiseGeometry, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>,
    threads: Int, blockRows: Int? = nil, tilesMajor: Bool? = nil, finish: (UnsafeMutablePointer<Float>, Int) -> Void
) {
    if tilesMajor ?? winogradTilesMajor(g, batch: batch) {
        winogradTilesMajor(x: x, batch: batch, cin: cin, weights: u, packed: packed, cout: cout, bias: bias, geometry: g, y: y, scratch: scratch,
                           threads: threads, finish: finish)
        return
    }
    guard let u else { preconditionFailure("channels-major Winograd needs U unpacked") }
    let (th, tw) = winogradTiles(g)
    let blockRows = blockRows ?? winogradBlockRows(g, cin: cin, cout: cout, batch: batch)
    let maxTiles = blockRows * tw
    let outP = g.oh * g.ow
    // V_ξ and M_ξ rows are `ld` long: a tile row's transform writes whole vectors, past the
    // block's last tile into the spare lanes (see `laneCeil`).
    let ld = maxTiles + lanePad
    let v = scratch, m = scratch + 16 * cin * ld, rows = m + 16 * cout * ld
    let ua = Int(bitPattern: u), ya = Int(bitPattern: y)
    let va = Int(bitPattern: v), ma = Int(bitPattern: m), ra = Int(bitPattern: rows), ba = bias.map { Int(bitPattern: $0) }
    let totalRows = batch * th
    var r0 = 0
    while r0 < totalRows {
        let r1 = min(totalRows, r0 + blockRows), tiles = (r1 - r0) * tw
        // NOTE: a worker pays for waking at about 256K multiply-adds of the GEMMs.
        let workers = max(1, min(threads, 16 * cout * cin * tiles / 262_144))
        // Input transform, input channels split across workers.
        transformInput(x: x, g, batch: batch, cin: cin, tileRows: r0..<r1, v: v, ld: ld, scratch: rows, blockRows: blockRows, workers: workers)
        // The 16 products, positions split across workers.
        parallelFor(workers, threads: workers) { w in
            let u = UnsafePointer<Float>(bitPattern: ua)!, v = UnsafePointer<Float>(bitPattern: va)!
            let m = UnsafeMutablePointer<Float>(bitPattern: ma)!
            for xi in (16 * w / workers)..<(16 * (w + 1) / workers) {
                gemm(m: cout, n: tiles, k: cin, a: u + xi * cout * cin, lda: cin, transposeA: false,
                     b: v + xi * cin * ld, ldb: ld, transposeB: false, c: m + xi * cout * ld, ldc: ld, accumulate: false)
            }
        }
        // Output transform, output channels split across workers.
        parallelFor(workers, threads: workers) { w in
            let m = UnsafePointer<Float>(bitPattern: ma)!, y = UnsafeMutablePointer<Float>(bitPattern: ya)!
            let scratch = UnsafeMutablePointer<Float>(bitPattern: ra)! + w * workerScratch(tw, blockRows: blockRows)
            let bias = ba.map { UnsafePointer<Float>(bitPattern: $0)! }
            for o in (cout * w / workers)..<(cout * (w + 1) / workers) {
                var r = r0
                while r < r1 {
                    // The block's tile rows of one sample: one stretch of output rows.
                    let n = r / th, end = min(r1, (n + 1) * th)
                    let plane = y + (n * cout + o) * outP
                    for rr in r..<end {
                        outputTileRow(m + o * ld + (rr - r0) * tw, mStride: cout * ld, g, ty: rr % th, tw: tw,
                                      bias: bias?[o], out: plane, scratch: scratch)
                    }
                    let oy0 = 2 * (r % th), oy1 = min(g.oh, 2 * ((end - 1) % th) + 2)
                    finish(plane + oy0 * g.ow, (oy1 - oy0) * g.ow)
                    r = end
                }
            }
        }
        r0 = r1
    }
}

/// Floats of scratch the tiles-major path needs: V (16 × Cin × tiles), M (16 × tiles × Cout)
/// and a worker's band.
func winogradTilesMajorScratch(_ g: DepthwiseGeometry, cin: Int, cout: Int, batch: Int, workers: Int) -> Int {
    let (th, tw) = winogradTiles(g)
    return 16 * cin * (batch * th * tw + lanePad) + 16 * (batch * th * tw * cout + lanePad) + workers * workerScratch(tw, blockRows: batch * th)
}

/// `winogradConv2d` for a batch of fewer than 64 tiles, in one block: the input transform as
/// there, then M_ξᵀ = V_ξᵀ · U_ξᵀ, then the output transform eight output
/// channels at a time (M_ξᵀ's rows), each tile's four outputs stored channel by channel.
func winogradTilesMajor(
    x: UnsafePointer<Float>, batch: Int, cin: Int, weights u: UnsafePointer<Float>?, packed: [PackedB]?, cout: Int, bias: UnsafePointer<Float>?,
    geometry g: DepthwiseGeometry, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, threads: Int,
    finish: (UnsafeMutablePointer<Float>, Int) -> Void
) {
    let (th, tw) = winogradTiles(g)
    let rowsTotal = batch * th, tiles = rowsTotal * tw
    let outP = g.oh * g.ow
    let ld = tiles + lanePad, mStride = tiles * cout
    let v = scratch, m = scratch + 16 * cin * ld, rows = m + 16 * mStride + lanePad
    let ya = Int(bitPattern: y), ua = u.map { Int(bitPattern: $0) }
    let va = Int(bitPattern: v), ma = Int(bitPattern: m), ba = bias.map { Int(bitPattern: $0) }
    let workers = max(1, min(threads, 16 * cout * cin * tiles / 262_144))
    transformInput(x: x, g, batch: batch, cin: cin, tileRows: 0..<rowsTotal, v: v, ld: ld, scratch: rows, blockRows: rowsTotal, workers: workers)
    parallelFor(workers, threads: workers) { w in
        let v = UnsafePointer<Float>(bitPattern: va)!, m = UnsafeMutablePointer<Float>(bitPattern: ma)!
        for xi in (16 * w / workers)..<(16 * (w + 1) / workers) {
            if let packed {
                gemm(m: tiles, a: v + xi * cin * ld, lda: ld, transposeA: true, packed: packed[xi], c: m + xi * mStride, ldc: cout, accumulate: false)
            } else {
                let u = UnsafePointer<Float>(bitPattern: ua!)!
                gemm(m: tiles, n: cout, k: cin, a: v + xi * cin * ld, lda: ld, transposeA: true, b: u + xi * cout * cin, ldb: cin, transposeB: true,
                     c: m + xi * mStride, ldc: cout, accumulate: false)
            }
        }
    }
    // Output channels in groups of eight split across workers.
    let groups = (cout + 7) / 8
    parallelFor(min(workers, groups), threads: workers) { w in
        let m = UnsafePointer<Float>(bitPattern: ma)!, y = UnsafeMutablePointer<Float>(bitPattern: ya)!
        let bias = ba.map { UnsafePointer<Float>(bitPattern: $0)! }
        let parts = min(workers, groups)
        let o0 = groups * w / parts * 8, o1 = min(cout, groups * (w + 1) / parts * 8)
        var o = o0
        while o < o1 {
            let lanes = min(8, o1 - o)
            for t in 0..<tiles {
                let n = t / (th * tw), ty = t / tw % th, tx = t % tw
                @inline(__always) func at(_ xi: Int) -> F8 { ld8(m + xi * mStride + t * cout + o) }
                let m10 = at(4), m11 = at(5), m12 = at(6), m13 = at(7)
                let m20 = at(8), m21 = at(9), m22 = at(10), m23 = at(11)
                let s00 = (at(0) + m10) + m20, s01 = (at(1) + m11) + m21
                let s02 = (at(2) + m12) + m22, s03 = (at(3) + m13) + m23
                let s10 = (m10 - m20) - at(12), s11 = (m11 - m21) - at(13)
                let s12 = (m12 - m22) - at(14), s13 = (m13 - m23) - at(15)
                let y00 = (s00 + s01) + s02, y01 = (s01 - s02) - s03
                let y10 = (s10 + s11) + s12, y11 = (s11 - s12) - s13
                let oy = 2 * ty, ox = 2 * tx, right = ox + 1 < g.ow, below = oy + 1 < g.oh
                for l in 0..<lanes {
                    let at = y + (n * cout + o + l) * outP + oy * g.ow + ox
                    if let bias {
                        let b = bias[o + l]
                        at[0] = y00[l] + b
                        if right { at[1] = y01[l] + b }
                        if below { at[g.ow] = y10[l] + b; if right { at[g.ow + 1] = y11[l] + b } }
                    } else {
                        at[0] = y00[l]
                        if right { at[1] = y01[l] }
                        if below { at[g.ow] = y10[l]; if right { at[g.ow + 1] = y11[l] } }
                    }
                }
            }
            for l in 0..<lanes {
                for n in 0..<batch { finish(y + (n * cout + o + l) * outP, outP) }
            }
            o += 8
        }
    }
}

/// The naive twin of `winogradConv2d` (weights U from `winogradWeights`): output by output, the
/// same transforms and the same FMA chain per product, so the same bits.
public func winogradConv2dReference(
    x: UnsafePointer<Float>, batch: Int, cin: Int, weights u: UnsafePointer<Float>, cout: Int, bias: UnsafePointer<Float>?,
    geometry g: DepthwiseGeometry, y: UnsafeMutablePointer<Float>
) {
    let (th, tw) = winogradTiles(g)
    func input(_ n: Int, _ c: Int, _ r: Int, _ col: Int) -> Float {
        guard r >= 0, r < g.ih, col >= 0, col < g.iw else { return 0 }
        return x[((n * cin + c) * g.ih + r) * g.iw + col]
    }
    for n in 0..<batch {
        for ty in 0..<th {
            for tx in 0..<tw {
                // V per input channel.
                var vt = [Float](repeating: 0, count: cin * 16)
                for c in 0..<cin {
                    var hz = [Float](repeating: 0, count: 16)
                    for i in 0..<4 {
                        let r = 2 * ty - g.padTop + i, col = 2 * tx - g.padLeft
                        let d0 = input(n, c, r, col), d1 = input(n, c, r, col + 1), d2 = input(n, c, r, col + 2), d3 = input(n, c, r, col + 3)
                        hz[4 * i] = d0 - d2; hz[4 * i + 1] = d1 + d2; hz[4 * i + 2] = d2 - d1; hz[4 * i + 3] = d1 - d3
                    }
                    for j in 0..<4 {
                        let a0 = hz[j], a1 = hz[4 + j], a2 = hz[8 + j], a3 = hz[12 + j]
                        vt[c * 16 + j] = a0 - a2
                        vt[c * 16 + 4 + j] = a1 + a2
                        vt[c * 16 + 8 + j] = a2 - a1
                        vt[c * 16 + 12 + j] = a1 - a3
                    }
                }
                for o in 0..<cout {
                    var mm = [Float](repeating: 0, count: 16)
                    for xi in 0..<16 {
                        var acc: Float = 0
                        for c in 0..<cin { acc = acc.addingProduct(u[(xi * cout + o) * cin + c], vt[c * 16 + xi]) }
                        mm[xi] = acc
                    }
                    var s = [Float](repeating: 0, count: 8)
                    for j in 0..<4 {
                        s[j] = (mm[j] + mm[4 + j]) + mm[8 + j]
                        s[4 + j] = (mm[4 + j] - mm[8 + j]) - mm[12 + j]
                    }
                    let outs: [Float] = [(s[0] + s[1]) + s[2], (s[1] - s[2]) - s[3], (s[4] + s[5]) + s[6], (s[5] - s[6]) - s[7]]
                    for i in 0..<2 {
                        for j in 0..<2 {
                            let oy = 2 * ty + i, ox = 2 * tx + j
                            guard oy < g.oh, ox < g.ow else { continue }
                            let value = outs[2 * i + j]
                            y[((n * cout + o) * g.oh + oy) * g.ow + ox] = bias.map { value + $0[o] } ?? value
                        }
                    }
                }
            }
        }
    }
}
