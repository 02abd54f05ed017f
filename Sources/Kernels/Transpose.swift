// Moving axes: the Transpose op's planes, and the permutation it reduces to.

import KernelsAVX512

/// dst[j · dstStride + i] = src[i · srcStride + j] for i < rows, j < cols: a plane whose rows
/// are `srcStride` apart written with its columns as rows (`dst` must not overlap `src`). With
/// AVX-512, 16 × 16 blocks through registers; elsewhere 8 × 8 tiles, so that reads and writes
/// both stay within a few cache lines.
public func transposePlane(_ src: UnsafePointer<Float>, rows: Int, cols: Int, srcStride: Int,
                           to dst: UnsafeMutablePointer<Float>, dstStride: Int) {
    if KernelISA.detected == .avx512 {
        return transposePlaneAVX512(src, rows: rows, cols: cols, srcStride: srcStride, to: dst, dstStride: dstStride)
    }
    for j0 in stride(from: 0, to: cols, by: 8) {
        for i0 in stride(from: 0, to: rows, by: 8) {
            for j in j0..<min(cols, j0 + 8) {
                for i in i0..<min(rows, i0 + 8) { dst[j * dstStride + i] = src[i * srcStride + j] }
            }
        }
    }
}

/// The same permutation of the same elements with fewer axes: axes of size 1 dropped, and input
/// axes that stay next to each other, in order, merged into one. `perm[i]` is the input axis of
/// output axis i (ONNX's Transpose). An identity result (`perm == 0..<n`) moves nothing.
public func simplifiedPermutation(shape: [Int], perm: [Int]) -> (shape: [Int], perm: [Int]) {
    // Input axes kept (size > 1), renumbered in input order.
    var number = [Int](repeating: -1, count: shape.count)
    var kept = 0
    for a in shape.indices where shape[a] != 1 {
        number[a] = kept
        kept += 1
    }
    let order = perm.filter { shape[$0] != 1 }
    // Runs of consecutive input axes in output order: each run becomes one axis.
    var runs: [(first: Int, size: Int)] = []
    var last = -2
    for a in order {
        if number[a] == last + 1, !runs.isEmpty {
            runs[runs.count - 1].size *= shape[a]
        } else {
            runs.append((number[a], shape[a]))
        }
        last = number[a]
    }
    // The runs in input order give the input shape; each output axis is its run's rank there.
    let byInput = runs.indices.sorted { runs[$0].first < runs[$1].first }
    var rank = [Int](repeating: 0, count: runs.count)
    for (r, i) in byInput.enumerated() { rank[i] = r }
    return (byInput.map { runs[$0].size }, runs.indices.map { rank[$0] })
}
