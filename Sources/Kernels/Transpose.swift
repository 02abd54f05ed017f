// Moving axes: the Transpose op's planes.

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
