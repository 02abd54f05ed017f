// What a GEMM does to its outputs once their chains are complete, while they are in cache: a
// Conv's bias and its fused ReLU, Clip or SiLU; a MatMul's bias (per column) and Gelu. The drivers apply it after the last K block to each
// group of rows they ran through a block of columns (at most 64 × 512 outputs, or a few rows
// across B read in place), on the thread that computed them.
// NOTE: tile by tile (8 × 32, right after the micro-kernel) was slower than a pass afterwards
// (MobileNetV2 at batch 1: 10.0 → 10.6 ms): every tile's stores were read back at once.
//
// Every step is elementwise and the same function the separate pass would run (`+` of the
// bias, `reluForward`, `clipForward`, `siluForward`, `geluErfForward`, whose lanes and tails give
// the same bits), so C ends with the bits of the plain GEMM followed by those passes over it, whatever
// the tiling and the threads.

import KernelsAVX512

/// A bias (per row or per column), then a ReLU, then a Clip, a SiLU or a GELU, applied by `gemm`
/// to each output after its last K block.
// NOTE: three words, passed in registers: with an enum payload and as an Optional, every tile's
// call built it on the stack with byte stores and read it back as one vector (a store-forwarding
// stall; the GEMM drivers' own time went from nothing to 6 % of MobileNetV2).
public struct GemmEpilogue: Sendable {
    public enum Activation: Sendable, Equatable {
        case none
        /// min(max(x, lo), hi), as `clipForward`.
        case clip(lo: Float, hi: Float)
        /// x · sigmoid(x), as `siluForward`.
        case silu
        /// GELU with the exact CDF, as `geluErfForward` (the Gelu op).
        case geluErf
    }

    /// The address of one value per row of C (row i of this GEMM adds bias[i]), or per column
    /// (mode bit 3: column j adds bias[j]), or 0.
    let biasAddress: Int
    /// Bit 0: ReLU; bit 1 Clip, bit 2 SiLU, bit 4 GELU; bit 3: the bias is per column.
    let mode: Int
    /// The Clip's bounds, lo in the low 32 bits.
    let bounds: UInt64

    /// Nothing to do.
    public static let none = GemmEpilogue(bias: nil, relu: false, activation: .none)

    /// `bias` must outlive the `gemm` call that takes this epilogue; it holds a value per row
    /// of C, or per column with `biasPerColumn` (a Linear layer's bias, C = X · W).
    public init(bias: UnsafePointer<Float>?, relu: Bool, activation: Activation, biasPerColumn: Bool = false) {
        biasAddress = bias.map { Int(bitPattern: $0) } ?? 0
        let base = (relu ? 1 : 0) | (biasPerColumn && bias != nil ? 8 : 0)
        switch activation {
        case .none: mode = base; bounds = 0
        case .clip(let lo, let hi):
            mode = base | 2
            bounds = UInt64(lo.bitPattern) | UInt64(hi.bitPattern) << 32
        case .silu: mode = base | 4; bounds = 0
        case .geluErf: mode = base | 16; bounds = 0
        }
    }

    /// Whether it changes nothing.
    @inline(__always)
    public var isEmpty: Bool { biasAddress == 0 && mode == 0 }

    /// Applies it to C[i0..<i0+rows, j0..<j0+cols] (nothing when empty).
    @inline(__always)
    public func apply(c: UnsafeMutablePointer<Float>, ldc: Int, i0: Int, rows: Int, j0: Int, cols: Int) {
        if !isEmpty { GemmEpilogue.run(biasAddress, mode, bounds, c: c, ldc: ldc, i0: i0, rows: rows, j0: j0, cols: cols) }
    }

    // NOTE: a function of its own (inlined into the GEMM drivers, it would leave them too
    // large to inline their vector loads; see `packA`).
    @inline(never)
    static func run(_ biasAddress: Int, _ mode: Int, _ bounds: UInt64,
                    c: UnsafeMutablePointer<Float>, ldc: Int, i0: Int, rows: Int, j0: Int, cols: Int) {
        let bias = UnsafePointer<Float>(bitPattern: biasAddress)
        let lo = Float(bitPattern: UInt32(truncatingIfNeeded: bounds)), hi = Float(bitPattern: UInt32(truncatingIfNeeded: bounds >> 32))
        let perColumn = mode & 8 != 0
        if KernelISA.detected == .avx512 {
            return epilogueRowsAVX512(c + i0 * ldc + j0, ldc: ldc, rows: rows, cols: cols, bias: bias.map { perColumn ? $0 + j0 : $0 + i0 },
                                      mode: mode, lo: lo, hi: hi)
        }
        for r in i0..<(i0 + rows) {
            let row = c + r * ldc + j0
            if let bias {
                if perColumn { addRowVector(bias + j0, rows: 1, cols: cols, out: row) } else { addScalar(bias[r], to: row, count: cols) }
            }
            if mode & 1 != 0 { reluForward(row, count: cols, out: row) }
            if mode & 2 != 0 { clipForward(row, count: cols, lo: lo, hi: hi) }
            if mode & 4 != 0 { siluForward(row, count: cols) }
            if mode & 16 != 0 { geluErfForward(row, count: cols, out: row) }
        }
    }
}

/// x[i] = x[i] + value for `count` values (one rounding each, as the scalar sum).
@inline(__always)
func addScalar(_ value: Float, to x: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = SIMD16<Float>
    let v = V(repeating: value)
    var i = 0
    while i + 16 <= count {
        let s = UnsafeRawPointer(x + i).loadUnaligned(as: V.self) + v
        UnsafeMutableRawPointer(x + i).storeBytes(of: s, as: V.self)
        i += 16
    }
    while i < count { x[i] = x[i] + value; i += 1 }
}
