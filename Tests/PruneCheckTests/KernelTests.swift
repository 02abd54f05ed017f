import Testing
@testable import Kernels
import CCPUFeatures

@Suite struct GemmTests {
    static let sizes = [1, 3, 7, 16, 33, 100]

    /// Every micro-kernel variant this CPU runs: each must match the reference bit for bit.
    static let variants: [KernelISA] = KernelISA.detected == .avx512 ? [.avx2, .avx512] : [.avx2]

    /// Detection agrees with the kernel's own report of the CPU, so the wide variant cannot go
    /// untested (or be called) by mistake.
    @Test func detectionMatchesTheCPUFlags() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let words = Set(flags.split(separator: " ").map(String.init))
        let has = ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(words.contains)
        #expect((KernelISA.hardware == .avx512) == has, "cpuinfo says AVX-512 \(has), detection says \(KernelISA.hardware)")
        // PRUNECHECK_ISA picks a variant the CPU runs, never one it does not.
        let forced = ProcessInfo.processInfo.environment["PRUNECHECK_ISA"].flatMap(KernelISA.init(rawValue:))
        if let forced, forced == .generic || (forced == .avx2 && KernelISA.hardware != .generic) || forced == KernelISA.hardware {
            #expect(KernelISA.detected == forced)
        } else {
            #expect(KernelISA.detected == KernelISA.hardware)
        }
        for isa in ["generic", "avx2"] {
            let r = try run(Repo.binary, ["latency", "--model", exampleModel("mlp_digits", "onnx"), "--json", "--min-runs", "3", "--max-seconds", "0.05"],
                            environment: ProcessInfo.processInfo.environment.merging(["PRUNECHECK_ISA": isa]) { $1 })
            #expect(r.status == 0 && r.stdout.contains("\"isa\": \"\(isa)\""), "\(r.stdout)\(r.stderr)")
        }
    }

    /// Deterministic pseudo-random fill (no RNG dependency in kernel tests).
    static func fill(_ n: Int, seed: UInt32) -> [Float] {
        var s = seed &* 2654435761 &+ 1
        return (0..<n).map { _ in
            s = s &* 1664525 &+ 1013904223
            return Float(Int32(bitPattern: s) >> 8) / Float(1 << 23)
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func matchesReferenceBitForBit(transposeA: Bool, transposeB: Bool) {
        let shapes = Self.sizes.flatMap { m in Self.sizes.flatMap { n in [1, 7, 33, 300].map { k in (m, n, k) } } }
        Self.expectReferenceBits(shapes, transposeA: transposeA, transposeB: transposeB, threads: [1, 2, 3])
    }

    /// Shapes where threads split rows over several N and K blocks: B is packed once, blocks in
    /// parallel, and rows go out in chunks (more chunks than threads). Ragged rows and columns.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func threadsSplittingRowsMatchReference(transposeA: Bool, transposeB: Bool) {
        // (301, 530, 300): B larger than one block, packed and shared block by block (two N
        // blocks, two K blocks, ragged rows and columns). (65, 65, 48): attention's scores, a
        // last column taken alone over A packed for it. (203, 200, 300) and (70, 196, 520): 9 to
        // 24 panels, A read in place by the packed rows' loop (a last tile of 3 rows; the second
        // with a last panel of 4 columns taken alone over A packed for them).
        Self.expectReferenceBits([(203, 530, 300), (97, 33, 1000), (600, 17, 260), (301, 530, 300), (65, 65, 48), (203, 200, 300),
                                  (70, 196, 520)], transposeA: transposeA,
                                 transposeB: transposeB, threads: [2, 3])
    }

    /// `gemm` gives `gemmReference`'s bits for each shape, with and without accumulation, at each
    /// thread count and with every kernel variant this CPU runs.
    static func expectReferenceBits(_ shapes: [(m: Int, n: Int, k: Int)], transposeA: Bool, transposeB: Bool, threads: [Int]) {
        for (m, n, k) in shapes {
            let a = fill(m * k, seed: UInt32(m * 31 + k)), b = fill(k * n, seed: UInt32(n * 17 + k))
            let c0 = fill(m * n, seed: 7)
            let lda = transposeA ? m : k, ldb = transposeB ? k : n
            for accumulate in [false, true] {
                var expected = c0
                expected.withUnsafeMutableBufferPointer { c in
                    gemmReference(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb,
                                  transposeB: transposeB, c: c.baseAddress!, ldc: n, accumulate: accumulate)
                }
                for t in threads {
                    for isa in variants {
                        var got = c0
                        got.withUnsafeMutableBufferPointer { c in
                            gemm(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb,
                                 transposeB: transposeB, c: c.baseAddress!, ldc: n, accumulate: accumulate, threads: t, isa: isa)
                        }
                        // Counted rather than compared as arrays, so a failure prints one line, not
                        // two arrays of m * n numbers.
                        let differing = zip(got, expected).filter { $0.bitPattern != $1.bitPattern }.count
                        let worst = zip(got, expected).enumerated().max { abs($0.1.0 - $0.1.1) < abs($1.1.0 - $1.1.1) }
                        #expect(differing == 0,
                                "\(isa) m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB) acc=\(accumulate) threads=\(t): \(differing) of \(got.count) differ, worst element \(worst.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "-")")
                    }
                }
            }
        }
    }

    @Test func matchesDoublePrecisionProduct() {
        // Guards the reference itself: an FMA chain in Float stays close to the exact product.
        let m = 5, n = 9, k = 64
        let a = Self.fill(m * k, seed: 1), b = Self.fill(k * n, seed: 2)
        var c = [Float](repeating: 0, count: m * n)
        c.withUnsafeMutableBufferPointer { cp in
            gemm(m: m, n: n, k: k, a: a, lda: k, transposeA: false, b: b, ldb: n, transposeB: false,
                 c: cp.baseAddress!, ldc: n, accumulate: false)
        }
        for i in 0..<m {
            for j in 0..<n {
                let exact = (0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(b[$1 * n + j]) }
                #expect(abs(Double(c[i * n + j]) - exact) < 1e-4, "C[\(i),\(j)] = \(c[i * n + j]), exact \(exact)")
            }
        }
    }

    @Test func emptyReductionClearsOrKeepsC() {
        var c: [Float] = [1, 2, 3, 4]
        let a: [Float] = [], b: [Float] = []
        c.withUnsafeMutableBufferPointer { cp in
            gemm(m: 2, n: 2, k: 0, a: a, lda: 1, transposeA: false, b: b, ldb: 2, transposeB: false,
                 c: cp.baseAddress!, ldc: 2, accumulate: true)
        }
        #expect(c == [1, 2, 3, 4])
        c.withUnsafeMutableBufferPointer { cp in
            gemm(m: 2, n: 2, k: 0, a: a, lda: 1, transposeA: false, b: b, ldb: 2, transposeB: false,
                 c: cp.baseAddress!, ldc: 2, accumulate: false)
        }
        #expect(c == [0, 0, 0, 0])
    }
}

@Suite struct ElementwiseTests {
    @Test func expMatchesDoubleWithinTwoUlp() {
        var worst: (x: Float, ulps: Float) = (0, 0)
        var x: Float = -87
        while x < 88 {
            let got = expf32(x)
            let exact = Float(_exp(Double(x)))
            let ulps = abs(got - exact) / exact.ulp
            if ulps > worst.ulps { worst = (x, ulps) }
            x += 0.0137
        }
        #expect(worst.ulps <= 2, "worst error \(worst.ulps) ulp at x = \(worst.x)")
        #expect(expf32(0) == 1)
        #expect(expf32(-200) == 0)
        #expect(expf32(100) == .infinity)
    }

    @Test func reluMatchesItsDefinitionInPlaceAndNot() {
        for count in [1, 3, 7, 16, 33, 100] {
            var x = GemmTests.fill(count, seed: UInt32(count))
            let specials: [Float] = [.nan, -0.0, 0, .infinity, -.infinity, -.nan]
            for (i, v) in specials.enumerated() where i < count { x[(i * 5) % count] = v }
            let want = x.map { $0 > 0 ? $0 : Float(0) }
            var out = [Float](repeating: .nan, count: count)
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { reluForward(xp.baseAddress!, count: count, out: $0.baseAddress!) } }
            #expect(out.map(\.bitPattern) == want.map(\.bitPattern), "count \(count)")
            var inPlace = x
            inPlace.withUnsafeMutableBufferPointer { reluForward($0.baseAddress!, count: count, out: $0.baseAddress!) }
            #expect(inPlace.map(\.bitPattern) == want.map(\.bitPattern), "count \(count), in place")
        }
    }

    /// The vector Clip gives the Clip op's expression's bits, min(max(x, lo), hi), on NaNs,
    /// zeros of both signs, infinities, the bounds themselves and ragged counts.
    @Test func clipMatchesItsDefinition() {
        for (lo, hi) in [(Float(0), Float(6)), (-1, 1), (-0.0, 0)] {
            for count in [1, 15, 16, 37, 100] {
                var x = GemmTests.fill(count, seed: UInt32(count)).map { $0 * 20 }
                let specials: [Float] = [.nan, -0.0, 0, .infinity, -.infinity, lo, hi, -.nan]
                for (i, v) in specials.enumerated() where i < count { x[(i * 5) % count] = v }
                let want = x.map { min(max($0, lo), hi) }
                x.withUnsafeMutableBufferPointer { clipForward($0.baseAddress!, count: count, lo: lo, hi: hi) }
                #expect(x.map(\.bitPattern) == want.map(\.bitPattern), "count \(count), \(lo)...\(hi)")
            }
        }
    }

    /// The fused bias and ReLU pass gives the bits of the two passes it replaces.
    @Test func biasAndReluInOnePassMatchTwoPasses() {
        for (rows, cols) in [(1, 1), (3, 7), (2, 33), (5, 100)] {
            var x = GemmTests.fill(rows * cols, seed: UInt32(rows + cols))
            var bias = GemmTests.fill(cols, seed: UInt32(cols))
            let specials: [Float] = [.nan, -0.0, 0, .infinity, -.infinity, -.nan]
            for (i, v) in specials.enumerated() where i < x.count { x[(i * 5) % x.count] = v }
            for (i, v) in specials.reversed().enumerated() where i < cols { bias[(i * 3) % cols] = v }
            var twoPasses = x, onePass = x
            bias.withUnsafeBufferPointer { b in
                twoPasses.withUnsafeMutableBufferPointer {
                    addRowVector(b.baseAddress!, rows: rows, cols: cols, out: $0.baseAddress!)
                    reluForward($0.baseAddress!, count: rows * cols, out: $0.baseAddress!)
                }
                onePass.withUnsafeMutableBufferPointer { addRowVectorRelu(b.baseAddress!, rows: rows, cols: cols, out: $0.baseAddress!) }
            }
            #expect(onePass.map(\.bitPattern) == twoPasses.map(\.bitPattern), "\(rows)×\(cols)")
        }
    }

    @Test func softmaxRowsSumToOne() {
        let x: [Float] = [1, 2, 3, -1000, 0, 1000]
        var y = [Float](repeating: 0, count: 6)
        y.withUnsafeMutableBufferPointer { softmaxRows(x, rows: 2, cols: 3, out: $0.baseAddress!) }
        #expect(abs(y[0...2].reduce(0, +) - 1) < 1e-6)
        #expect(y[3] == 0 && y[5] == 1)
        #expect(abs(y[2] - 0.66524096) < 1e-6)
    }

    /// The row softmax gives its definition's bits (max, exp(x − max), the sum left to right,
    /// times its inverse, a row at a time) for groups of rows that do not fill eight lanes,
    /// rows that do not fill sixteen, rows with NaN, infinities and zeros of both signs, a row
    /// of −∞ only, in place and not; on AVX-512 sixteen rows of 16 columns or more go together
    /// (whole groups and a remainder; rows of 16, 17, 31, 32, the ViT's 65 and 197: whole blocks
    /// of sixteen columns and the last columns apart). A NaN's sign and payload are not compared:
    /// the compiler may swap the operands of an addition or product (IEEE leaves which NaN
    /// comes out open), so a row's NaNs need not carry the reference's.
    @Test func softmaxRowsMatchTheirDefinition() {
        func bits(_ v: [Float]) -> [UInt32] { v.map { $0.isNaN ? Float.nan.bitPattern : $0.bitPattern } }
        func reference(_ x: [Float], rows: Int, cols: Int) -> [Float] {
            var y = x
            for r in 0..<rows {
                let row = r * cols
                var m = -Float.infinity
                for j in 0..<cols { m = max(m, x[row + j]) }
                var s: Float = 0
                for j in 0..<cols { y[row + j] = expf32(x[row + j] - m); s += y[row + j] }
                let inv = 1 / s
                for j in 0..<cols { y[row + j] *= inv }
            }
            return y
        }
        for (rows, cols) in [(1, 1), (3, 5), (8, 16), (9, 17), (19, 40), (13, 197), (16, 32), (35, 65), (48, 197), (16, 16), (32, 17), (33, 31)] {
            var x = GemmTests.fill(rows * cols, seed: UInt32(rows * cols)).map { $0 * 30 }
            let specials: [Float] = [.nan, -0.0, 0, .infinity, -.infinity, -0.0]
            for (i, v) in specials.enumerated() where rows * cols > 40 { x[(i * 37 + 11) % (rows * cols)] = v }
            if cols > 1 { for j in 0..<cols { x[cols + j] = j % 2 == 0 ? -0.0 : 0 } }
            if rows > 20 { for j in 0..<cols { x[20 * cols + j] = -.infinity } }
            let want = reference(x, rows: rows, cols: cols)
            #expect(want.contains { $0.isNaN } == (rows * cols > 40), "\(rows)×\(cols): rows of NaN")
            var out = [Float](repeating: 7, count: rows * cols)
            x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { softmaxRows(xp.baseAddress!, rows: rows, cols: cols, out: $0.baseAddress!) } }
            #expect(bits(out) == bits(want), "\(rows)×\(cols)")
            x.withUnsafeMutableBufferPointer { softmaxRows($0.baseAddress!, rows: rows, cols: cols, out: $0.baseAddress!) }
            #expect(bits(x) == bits(want), "\(rows)×\(cols), in place")
        }
    }
}

import Foundation
/// exp in Double from Foundation, as the oracle.
func _exp(_ x: Double) -> Double { Foundation.exp(x) }

@Suite struct SparseKernelTests {
    @Test func csrMatchesItsReferenceAndTheDenseProduct() {
        // (64, 800) splits rows across threads from batch 8; (1100, 100) has two column panels, split
        // across threads from batch 1.
        for (rows, cols) in [(1, 1), (3, 7), (16, 33), (33, 100), (64, 800), (1100, 100)] {
            var dense = GemmTests.fill(rows * cols, seed: UInt32(rows * 7 + cols))
            for i in dense.indices where i % 3 != 0 { dense[i] = 0 }  // about 2/3 zeros, ragged rows
            let csr = dense.withUnsafeBufferPointer { CSRMatrix(dense: $0, rows: rows, cols: cols) }
            #expect(csr.nonzeros == dense.filter { $0 != 0 }.count)
            // Runs of zeros (and -0s) in x, as ReLU outputs and background pixels have: batches
            // below 8 skip them. Runs of three; or one value in eleven, so that runs of eight
            // (passed over with one test) alternate with lone values in every lane of a run.
            for (batch, lone) in [(1, false), (3, false), (8, false), (17, false), (1, true), (3, true), (17, true)] {
                var x = GemmTests.fill(batch * cols, seed: UInt32(batch))
                for i in x.indices where lone ? i % 11 != 5 : (i / 3) % 2 == 0 { x[i] = i % 5 == 0 ? -0.0 : 0 }
                var reference = [Float](repeating: 0, count: batch * rows)
                reference.withUnsafeMutableBufferPointer { csrLinearForwardReference(csr, x: x, batch: batch, y: $0.baseAddress!) }
                var viaGemm = [Float](repeating: 0, count: batch * rows)
                viaGemm.withUnsafeMutableBufferPointer { y in
                    gemm(m: batch, n: rows, k: cols, a: x, lda: cols, transposeA: false, b: dense, ldb: cols, transposeB: true,
                         c: y.baseAddress!, ldc: rows, accumulate: false)
                }
                #expect(reference == viaGemm, "\(rows)×\(cols) batch \(batch) lone \(lone): CSR chain differs from the dense product")
                for threads in [1, 2, 3] {
                    var got = [Float](repeating: .nan, count: batch * rows)
                    got.withUnsafeMutableBufferPointer { csrLinearForward(csr, x: x, batch: batch, y: $0.baseAddress!, threads: threads) }
                    #expect(got.map(\.bitPattern) == reference.map(\.bitPattern), "\(rows)×\(cols) batch \(batch) lone \(lone) threads \(threads)")
                }
            }
        }
    }
}

@Suite struct PackedGemmTests {
    @Test func prepackedMatchesGemmBitForBit() {
        // (1, 300, 784) and (2, 530, 300) split B's panels across threads (the latter across two N
        // blocks), and so does (35, 530, 100), B much larger than A, with several row tiles each.
        // (130, 196, 300): 13 panels, A read in place, the last 4 columns alone over A packed.
        for (m, n, k) in [(1, 1, 1), (1, 300, 784), (2, 530, 300), (3, 33, 7), (7, 16, 300), (64, 100, 33), (100, 530, 260), (35, 530, 100), (130, 196, 300)] {
            for transposeB in [false, true] {
                let a = GemmTests.fill(m * k, seed: UInt32(m + k)), b = GemmTests.fill(k * n, seed: UInt32(n + 3 * k))
                let ldb = transposeB ? k : n
                var expected = [Float](repeating: 0, count: m * n)
                expected.withUnsafeMutableBufferPointer { c in
                    gemmReference(m: m, n: n, k: k, a: a, lda: k, transposeA: false, b: b, ldb: ldb, transposeB: transposeB,
                                  c: c.baseAddress!, ldc: n, accumulate: false)
                }
                let packed = PackedB(b: b, ldb: ldb, transposeB: transposeB, k: k, n: n)
                for threads in [1, 2, 3] {
                    for isa in GemmTests.variants {
                        var got = [Float](repeating: .nan, count: m * n)
                        got.withUnsafeMutableBufferPointer { c in
                            gemm(m: m, a: a, lda: k, transposeA: false, packed: packed, c: c.baseAddress!, ldc: n, accumulate: false,
                                 threads: threads, isa: isa)
                        }
                        #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(isa) m=\(m) n=\(n) k=\(k) tB=\(transposeB) threads=\(threads)")
                    }
                }
            }
        }
    }

    /// A prepacked once (a Conv's weights) gives the reference's bits through every driver:
    /// rows read in place for few panels, packed rows, rows through B in place (≤ 16 rows),
    /// threads splitting rows (B packed whole, or one shared block at a time) or columns;
    /// ragged tiles, a last single row, two and three K blocks, two N blocks, last panels of
    /// one to four columns (computed column by column), accumulating
    /// into C or not. On AVX2 the packing is not used; the bits are the same.
    @Test func prepackedAMatchesTheReference() {
        for (m, n, k) in [(1, 5, 3), (9, 49, 160), (17, 33, 7), (12, 200, 300), (65, 196, 96), (130, 600, 520), (40, 3000, 24), (70, 260, 50)] {
            for transposeB in [false, true] {
                let a = GemmTests.fill(m * k, seed: UInt32(m + 7 * k)), b = GemmTests.fill(k * n, seed: UInt32(n + k))
                let ldb = transposeB ? k : n
                let packed = PackedA(a: a, lda: k, m: m, k: k)
                for accumulate in [false, true] {
                    let c0 = GemmTests.fill(m * n, seed: 99)
                    var expected = c0
                    expected.withUnsafeMutableBufferPointer { c in
                        gemmReference(m: m, n: n, k: k, a: a, lda: k, transposeA: false, b: b, ldb: ldb, transposeB: transposeB,
                                      c: c.baseAddress!, ldc: n, accumulate: accumulate)
                    }
                    for threads in [1, 2, 3] {
                        for isa in GemmTests.variants {
                            var got = c0
                            got.withUnsafeMutableBufferPointer { c in
                                gemm(m: m, n: n, k: k, a: a, lda: k, transposeA: false, b: b, ldb: ldb, transposeB: transposeB,
                                     c: c.baseAddress!, ldc: n, accumulate: accumulate, threads: threads, isa: isa, packedA: packed)
                            }
                            let differing = zip(got, expected).filter { $0.bitPattern != $1.bitPattern }.count
                            #expect(differing == 0, "\(isa) m=\(m) n=\(n) k=\(k) tB=\(transposeB) acc=\(accumulate) threads=\(threads)")
                        }
                    }
                }
            }
        }
    }
}

@Suite struct GemmEpilogueTests {
    /// The epilogue (a per-row bias, then ReLU, Clip or SiLU) gives the bits of the plain GEMM
    /// followed by those passes over C, through every driver: one row, rows read in place (few
    /// panels), packed rows, rows through B in place (≤ 16 rows), threads splitting rows (B packed
    /// whole or one shared block at a time) or columns, with A prepacked or not, with B prepacked,
    /// over several K blocks, accumulating or not, K = 0.
    @Test func epilogueEqualsThePassesAfterTheProduct() {
        // (A bias per column: a Linear layer's, C = X · W.)
        let modes: [(bias: Bool, relu: Bool, activation: GemmEpilogue.Activation, perColumn: Bool)] = [
            (true, true, .none, false), (true, false, .clip(lo: -0.25, hi: 0.375), false), (false, false, .silu, false), (true, true, .silu, false),
            (false, true, .clip(lo: 0, hi: 6), false), (true, false, .none, true), (true, false, .geluErf, true), (false, false, .geluErf, false),
        ]
        for (m, n, k) in [(1, 300, 70), (3, 33, 7), (9, 49, 160), (16, 200, 40), (17, 130, 300), (65, 196, 96), (70, 1100, 50), (130, 600, 520), (5, 7, 0)] {
            let a = GemmTests.fill(m * k, seed: UInt32(m + 5 * k)), b = GemmTests.fill(k * n, seed: UInt32(n + 2 * k))
            let rowBias = GemmTests.fill(m, seed: 7).map { $0 * 0.5 }, columnBias = GemmTests.fill(n, seed: 8).map { $0 * 0.5 }
            let c0 = GemmTests.fill(m * n, seed: 31)
            // (Nothing packs an empty K.)
            let packedA = k > 0 ? PackedA(a: a, lda: k, m: m, k: k) : nil
            let packedB = k > 0 ? PackedB(b: b, ldb: n, transposeB: false, k: k, n: n) : nil
            for mode in modes {
                let biasValues = mode.perColumn ? columnBias : rowBias
                for accumulate in [false, true] {
                    var expected = c0
                    expected.withUnsafeMutableBufferPointer { c in
                        gemmReference(m: m, n: n, k: k, a: a, lda: max(k, 1), transposeA: false, b: b, ldb: n, transposeB: false,
                                      c: c.baseAddress!, ldc: n, accumulate: accumulate)
                        for i in 0..<m {
                            let row = c.baseAddress! + i * n
                            if mode.bias { for j in 0..<n { row[j] = row[j] + biasValues[mode.perColumn ? j : i] } }
                            if mode.relu { for j in 0..<n { row[j] = row[j] > 0 ? row[j] : 0 } }
                            switch mode.activation {
                            case .none: break
                            case .clip(let lo, let hi): for j in 0..<n { row[j] = min(max(row[j], lo), hi) }
                            case .silu: siluForward(row, count: n)
                            case .geluErf: for j in 0..<n { row[j] = geluErf32(row[j]) }
                            }
                        }
                    }
                    biasValues.withUnsafeBufferPointer { bias in
                        let epilogue = GemmEpilogue(bias: mode.bias ? bias.baseAddress! : nil, relu: mode.relu, activation: mode.activation,
                                                    biasPerColumn: mode.perColumn)
                        for threads in [1, 2, 3] {
                            for isa in GemmTests.variants {
                                for way in k > 0 ? ["plain", "packedA", "packedB"] : ["plain"] {
                                    var got = c0
                                    got.withUnsafeMutableBufferPointer { c in
                                        switch way {
                                        case "packedB":
                                            gemm(m: m, a: a, lda: max(k, 1), transposeA: false, packed: packedB!, c: c.baseAddress!, ldc: n,
                                                 accumulate: accumulate, threads: threads, isa: isa, epilogue: epilogue)
                                        default:
                                            gemm(m: m, n: n, k: k, a: a, lda: max(k, 1), transposeA: false, b: b, ldb: n, transposeB: false,
                                                 c: c.baseAddress!, ldc: n, accumulate: accumulate, threads: threads, isa: isa,
                                                 packedA: way == "packedA" ? packedA : nil, epilogue: epilogue)
                                        }
                                    }
                                    let differing = zip(got, expected).filter { $0.bitPattern != $1.bitPattern }.count
                                    #expect(differing == 0, "\(way) \(isa) m=\(m) n=\(n) k=\(k) \(mode) acc=\(accumulate) threads=\(threads): \(differing) differ")
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

@Suite struct ParallelForTests {
    /// Every index runs exactly once, for any count and thread count, also when loops nest and
    /// when several threads start loops at once (the pool has one published job at a time).
    @Test func runsEveryIndexExactlyOnce() {
        for threads in [1, 2, 3, 8] {
            for count in [0, 1, 2, 3, 7, 100, 1000] {
                var hits = [Int](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { h in
                    let base = Int(bitPattern: h.baseAddress)
                    parallelFor(count, threads: threads) { i in UnsafeMutablePointer<Int>(bitPattern: base)![i] += 1 }
                }
                #expect(hits.allSatisfy { $0 == 1 }, "threads \(threads) count \(count)")
            }
        }
    }

    @Test func nestedAndConcurrentLoopsEachFinishTheirOwnWork() {
        let outer = 4, inner = 50
        var sums = [Int](repeating: 0, count: outer * inner)
        sums.withUnsafeMutableBufferPointer { s in
            let base = Int(bitPattern: s.baseAddress)
            // The outer loop's tasks start inner loops of their own, concurrently with each other.
            parallelFor(outer, threads: outer) { o in
                parallelFor(inner, threads: 2) { i in UnsafeMutablePointer<Int>(bitPattern: base)![o * inner + i] += o * inner + i }
            }
        }
        #expect(sums == Array(0..<(outer * inner)))
    }
}

@Suite struct DirectConvTests {
    /// The direct kernel gives its naive twin's bits over ragged shapes: output widths that are
    /// and are not multiples of 8 or 16 (the overlapping last vector), channel counts around the
    /// blocks of 8, asymmetric kernels and pads; with each block this CPU runs (8 columns, and
    /// 16 with AVX-512).
    @Test func directConvolutionMatchesItsReference() {
        let cases: [(cin: Int, cout: Int, ih: Int, iw: Int, kh: Int, kw: Int, top: Int, left: Int, bottom: Int, right: Int)] = [
            (1, 6, 28, 28, 5, 5, 2, 2, 2, 2),   // LeNet-5's conv1
            (1, 1, 3, 8, 1, 1, 0, 0, 0, 0),
            (3, 9, 7, 13, 3, 3, 1, 1, 0, 2),
            (2, 17, 5, 9, 2, 3, 0, 1, 1, 0),
            (1, 8, 10, 33, 3, 5, 2, 0, 0, 0),
            (2, 5, 4, 16, 3, 3, 1, 1, 1, 1),    // exactly 16 columns
            (1, 3, 6, 21, 2, 4, 0, 0, 1, 2),    // 20 columns: 16-column vectors overlapping by 12
            (6, 16, 14, 14, 5, 5, 0, 0, 0, 0),  // LeNet-5's conv2: 10 columns, one vector per row (AVX-512)
            (3, 4, 5, 5, 3, 3, 0, 0, 0, 0),     // 3 columns (AVX-512 only)
        ]
        for t in cases {
            for isa in GemmTests.variants {
                let oh = t.ih + t.top + t.bottom - t.kh + 1, ow = t.iw + t.left + t.right - t.kw + 1
                if ow < 8 && isa != .avx512 { continue }
                let x = GemmTests.fill(t.cin * t.ih * t.iw, seed: UInt32(t.cout)), w = GemmTests.fill(t.cout * t.cin * t.kh * t.kw, seed: UInt32(t.iw))
                var expected = [Float](repeating: 0, count: t.cout * oh * ow), got = [Float](repeating: .nan, count: t.cout * oh * ow)
                expected.withUnsafeMutableBufferPointer {
                    conv2dDirectReference(x: x, cin: t.cin, ih: t.ih, iw: t.iw, w: w, cout: t.cout, kh: t.kh, kw: t.kw,
                                          padTop: t.top, padLeft: t.left, oh: oh, ow: ow, y: $0.baseAddress!)
                }
                var scratch = [Float](repeating: .nan, count: conv2dDirectScratch(cin: t.cin, kh: t.kh, kw: t.kw, oh: oh, ow: ow))
                var packed = [Float](repeating: .nan, count: conv2dDirectPackedWeights(cin: t.cin, cout: t.cout, kh: t.kh, kw: t.kw))
                packed.withUnsafeMutableBufferPointer { conv2dDirectPackWeights(w, cin: t.cin, cout: t.cout, kh: t.kh, kw: t.kw, into: $0.baseAddress!) }
                got.withUnsafeMutableBufferPointer { y in
                    scratch.withUnsafeMutableBufferPointer { s in
                        conv2dDirect(x: x, cin: t.cin, ih: t.ih, iw: t.iw, packedWeights: packed, cout: t.cout, kh: t.kh, kw: t.kw,
                                     padTop: t.top, padLeft: t.left, oh: oh, ow: ow, y: y.baseAddress!, scratch: s.baseAddress!, isa: isa)
                    }
                }
                #expect(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(t) \(isa)")
            }
        }
    }
}

/// The per-thread scratch that GEMM and the sparse kernels pack into (`withThreadScratch`).
@Suite struct ThreadScratchTests {
    @Test func aSlotKeepsItsBufferAndGrowsWhenAsked() {
        let a = prunecheck_thread_scratch(0, 4096), again = prunecheck_thread_scratch(0, 100)
        #expect(a != nil && a == again, "a smaller request reuses the buffer")
        #expect(Int(bitPattern: a) % 64 == 0)
        #expect(prunecheck_thread_scratch(1, 4096) != a, "slots are separate")
        let grown = prunecheck_thread_scratch(0, 1 << 20)
        #expect(grown != nil && Int(bitPattern: grown) % 64 == 0)
        // Each thread has its own.
        let other = Thread.runAndWait { Int(bitPattern: prunecheck_thread_scratch(0, 4096)) }
        #expect(other != 0 && other != Int(bitPattern: grown))
    }

    /// Packing writes every value whose product reaches C: what the scratch held before, NaN
    /// here, never does (a pack that skipped the last K values of a row did).
    @Test(arguments: [1, 2])
    func staleScratchDoesNotReachTheResult(threads: Int) {
        for slot: Int32 in 0..<Int32(PRUNECHECK_SCRATCH_SLOTS) {
            let p = prunecheck_thread_scratch(slot, 8 << 20)!.bindMemory(to: Float.self, capacity: 2 << 20)
            p.update(repeating: .nan, count: 2 << 20)
        }
        GemmTests.expectReferenceBits([(37, 45, 300), (1, 70, 33), (203, 530, 300)], transposeA: false, transposeB: true, threads: [threads])
        GemmTests.expectReferenceBits([(37, 45, 300), (9, 17, 5)], transposeA: true, transposeB: false, threads: [threads])
    }
}

extension Thread {
    /// Runs `body` on a new thread and returns its result.
    static func runAndWait<R>(_ body: @escaping @Sendable () -> R) -> R {
        nonisolated(unsafe) var result: R?
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            result = body()
            done.signal()
        }
        thread.start()
        done.wait()
        return result!
    }
}

@Suite struct Im2colTests {
    /// A 1-D or 2-D window table as the engine builds it (stride, dilation, pads; −1 in the
    /// padding), written out naively.
    static func table(_ inSpatial: [Int], kernel: [Int], stride: [Int], dilation: [Int], pads: [Int]) -> (table: [Int], out: [Int]) {
        let d = inSpatial.count
        var out: [Int] = []
        for i in 0..<d {
            let span: Int = inSpatial[i] + pads[i] + pads[i + d] - ((kernel[i] - 1) * dilation[i] + 1)
            out.append(span / stride[i] + 1)
        }
        let kq = kernel.reduce(1, *), p = out.reduce(1, *)
        var table = [Int](repeating: 0, count: kq * p)
        for pp in 0..<p {
            let o = d == 1 ? [pp] : [pp / out[1], pp % out[1]]
            for q in 0..<kq {
                let k = d == 1 ? [q] : [q / kernel[1], q % kernel[1]]
                var offset = 0, inside = true
                for i in 0..<d {
                    let pos = o[i] * stride[i] - pads[i] + k[i] * dilation[i]
                    if pos < 0 || pos >= inSpatial[i] { inside = false }
                    offset = offset * inSpatial[i] + pos
                }
                table[pp * kq + q] = inside ? offset : -1
            }
        }
        return (table, out)
    }

    /// im2col and col2im give their reference twins' bits over ragged windows: strides 1 and 2
    /// (runs copied with `copyFloats`, and the table walked by offset), dilations, asymmetric
    /// pads, 1-D and 2-D, run lengths below, at and above 8; im2col writes every column value
    /// (the destination starts as NaN).
    @Test func windowCopiesMatchTheirReferences() {
        let cases: [(inSpatial: [Int], kernel: [Int], stride: [Int], dilation: [Int], pads: [Int], channels: Int)] = [
            ([28, 28], [5, 5], [1, 1], [1, 1], [2, 2, 2, 2], 1),
            ([7, 13], [3, 3], [1, 1], [1, 1], [1, 1, 0, 2], 3),
            ([9, 9], [3, 3], [2, 2], [1, 1], [1, 1, 1, 1], 2),
            ([11, 6], [2, 3], [1, 2], [2, 1], [0, 1, 1, 0], 5),
            ([40], [5], [2], [1], [2, 2], 3),
            ([33], [3], [1], [3], [0, 1], 7),
            ([1], [1], [1], [1], [0, 0], 1),
            ([16, 16], [1, 1], [1, 1], [1, 1], [0, 0, 0, 0], 4),
        ]
        for c in cases {
            let (table, out) = Im2colTests.table(c.inSpatial, kernel: c.kernel, stride: c.stride, dilation: c.dilation, pads: c.pads)
            let kq = c.kernel.reduce(1, *), p = out.reduce(1, *), inP = c.inSpatial.reduce(1, *)
            let runs = WindowRuns(table: table, kernelCount: kq, outCount: p, inCount: inP)
            let x = GemmTests.fill(c.channels * inP, seed: UInt32(inP))
            let ld = p + 3
            var expected = [Float](repeating: .nan, count: c.channels * kq * ld), got = expected
            expected.withUnsafeMutableBufferPointer {
                im2colReference(x, channels: c.channels, table: table, kernelCount: kq, outCount: p, inCount: inP, into: $0.baseAddress!, ld: ld)
            }
            got.withUnsafeMutableBufferPointer { runs.im2col(x, channels: c.channels, into: $0.baseAddress!, ld: ld) }
            let columns = (0..<(c.channels * kq)).flatMap { r in (0..<p).map { r * ld + $0 } }
            let differing = columns.filter { expected[$0].bitPattern != got[$0].bitPattern }
            #expect(differing.isEmpty, "im2col \(c): \(differing.count) of \(columns.count) differ, first at \(differing.first ?? -1)")

            let cols = GemmTests.fill(c.channels * kq * p, seed: UInt32(kq))
            var dstExpected = GemmTests.fill(c.channels * inP, seed: 7), dstGot = dstExpected
            dstExpected.withUnsafeMutableBufferPointer {
                col2imAddReference(cols, channels: c.channels, table: table, kernelCount: kq, outCount: p, inCount: inP, into: $0.baseAddress!)
            }
            dstGot.withUnsafeMutableBufferPointer { runs.col2imAdd(cols, channels: c.channels, into: $0.baseAddress!) }
            let worst = zip(dstExpected, dstGot).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(worst == 0, "col2im \(c): \(worst) of \(dstGot.count) differ")
        }
    }

    /// The Conv bias epilogue adds each channel's bias to its plane and nothing else.
    @Test func channelBiasAddsPerChannel() {
        let bias: [Float] = [1, -2, 0.5]
        var y = GemmTests.fill(2 * 3 * 5, seed: 3)
        let before = y
        y.withUnsafeMutableBufferPointer { addChannelBias(bias, samples: 2, channels: 3, plane: 5, out: $0.baseAddress!) }
        for i in y.indices { #expect(y[i] == before[i] + bias[(i / 5) % 3]) }
    }
}

@Suite struct DepthwiseConvTests {
    /// Ragged planes (also the backward kernel's test cases).
    static let geometries: [DepthwiseGeometry] = [
        .init(ih: 7, iw: 7, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 7, ow: 7),
        .init(ih: 16, iw: 33, kh: 3, kw: 3, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 1, oh: 8, ow: 17),
        .init(ih: 9, iw: 17, kh: 5, kw: 5, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 9, ow: 17),
        .init(ih: 12, iw: 12, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 2, dilationW: 2, padTop: 2, padLeft: 2, oh: 12, ow: 12),
        .init(ih: 5, iw: 8, kh: 3, kw: 5, strideH: 2, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 2, oh: 3, ow: 8),
        .init(ih: 4, iw: 1, kh: 1, kw: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0, oh: 4, ow: 1),
        .init(ih: 2, iw: 2, kh: 5, kw: 5, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 2, ow: 2),
        // Rows of several 32-output blocks and a ragged tail; odd widths at stride 2 (5 × 5,
        // EfficientNet's); stride 3; dilation with stride 2; more padding than the kernel needs.
        .init(ih: 6, iw: 75, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 6, ow: 75),
        .init(ih: 11, iw: 113, kh: 5, kw: 5, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 6, ow: 57),
        .init(ih: 10, iw: 41, kh: 3, kw: 3, strideH: 3, strideW: 3, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 4, ow: 14),
        .init(ih: 13, iw: 37, kh: 3, kw: 3, strideH: 2, strideW: 2, dilationH: 2, dilationW: 2, padTop: 2, padLeft: 2, oh: 7, ow: 19),
        .init(ih: 3, iw: 9, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 3, padLeft: 4, oh: 7, ow: 15),
        // MobileNet's and EfficientNet's small planes: 14 × 14 at stride 1 and 2, 7 × 7 with
        // 5 × 5; rows past sixteen at stride 2 whose vectors reach the row's end; stride 2
        // in height only, and in width only with an odd left pad; one row.
        .init(ih: 14, iw: 14, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 14, ow: 14),
        .init(ih: 14, iw: 14, kh: 3, kw: 3, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0, oh: 7, ow: 7),
        .init(ih: 7, iw: 7, kh: 5, kw: 5, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 7, ow: 7),
        .init(ih: 5, iw: 40, kh: 3, kw: 3, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 3, ow: 20),
        .init(ih: 9, iw: 6, kh: 3, kw: 3, strideH: 2, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 5, ow: 6),
        .init(ih: 4, iw: 35, kh: 3, kw: 3, strideH: 1, strideW: 2, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 4, ow: 19),
        .init(ih: 1, iw: 23, kh: 1, kw: 5, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 2, oh: 1, ow: 23),
        // 3 × 3 at stride 1 with rows of sixteen or more (read in place on AVX-512): strips of
        // eight rows inside the plane and at its edges, a last vector overlapping the one
        // before; no padding; more padding than the kernel needs; one row; rows of exactly 16.
        .init(ih: 20, iw: 56, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 20, ow: 56),
        .init(ih: 17, iw: 40, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0, oh: 15, ow: 38),
        .init(ih: 11, iw: 16, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 13, ow: 18),
        .init(ih: 1, iw: 33, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 1, ow: 33),
        .init(ih: 26, iw: 16, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 26, ow: 16),
        // Sixteen planes at a time on AVX-512 (up to 64 outputs, or 196 with 5 × 5): 5 × 5 on
        // 14 × 14 at strides 1 and 2; planes of one pixel, of sixteen and of seventeen; more
        // padding than the kernel needs; dilation 2; rows of one output.
        .init(ih: 14, iw: 14, kh: 5, kw: 5, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 14, ow: 14),
        .init(ih: 14, iw: 14, kh: 5, kw: 5, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 2, padLeft: 2, oh: 7, ow: 7),
        .init(ih: 1, iw: 1, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 1, ow: 1),
        .init(ih: 4, iw: 4, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: 4, ow: 4),
        .init(ih: 17, iw: 1, kh: 3, kw: 1, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 0, oh: 17, ow: 1),
        .init(ih: 2, iw: 3, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 3, padLeft: 3, oh: 6, ow: 7),
        .init(ih: 7, iw: 8, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 2, dilationW: 2, padTop: 2, padLeft: 2, oh: 7, ow: 8),
    ]

    /// The direct depthwise kernel gives its reference twin's bits over ragged planes: widths
    /// around the vector lengths, strides 1, 2 and 3, dilation 2, asymmetric and large pads,
    /// kernels 1, 3, 5 and 3 × 5, and a plane smaller than its kernel. It runs a range of planes
    /// (of two channels, each with its weights and bias; and 42 planes of 20 channels, which
    /// sixteen-plane groups split at each sample's end: groups of 16, 1, 16, 4 and 5) and writes
    /// nothing outside it: not the plane before, not past the last, not past its scratch;
    /// `finish` sees each value once.
    @Test func depthwiseMatchesItsReference() {
        let canary = Float(bitPattern: 0x7FC0_1234)
        for (i, g) in Self.geometries.enumerated() {
            for (channels, planes) in [(2, 1..<3), (20, 3..<45)] {
                let inP = g.ih * g.iw, outP = g.oh * g.ow, taps = g.kh * g.kw
                let x = GemmTests.fill(planes.upperBound * inP, seed: UInt32(i + 1))
                let w = GemmTests.fill(channels * taps, seed: UInt32(i + 50))
                for bias in [nil, (0..<channels).map { Float($0) * 0.375 - 1.5 }] {
                    var expected = [Float](repeating: canary, count: planes.upperBound * outP + 16), got = expected
                    var scratch = [Float](repeating: .nan, count: depthwiseConv2dScratch(g) + 16)
                    for c in 0..<16 { scratch[scratch.count - 1 - c] = canary }
                    expected.withUnsafeMutableBufferPointer { e in
                        for p in planes {
                            depthwiseConv2dReference(x.withUnsafeBufferPointer { $0.baseAddress! } + p * inP,
                                                     weights: w.withUnsafeBufferPointer { $0.baseAddress! } + (p % channels) * taps,
                                                     bias: bias?[p % channels], geometry: g, y: e.baseAddress! + p * outP)
                        }
                    }
                    var finished: [Range<Int>] = []
                    got.withUnsafeMutableBufferPointer { y in
                        scratch.withUnsafeMutableBufferPointer { s in
                            (bias ?? []).withUnsafeBufferPointer { b in
                                depthwiseConv2d(x, planes: planes, channels: channels, weights: w, bias: bias == nil ? nil : b.baseAddress!,
                                                geometry: g, y: y.baseAddress!, scratch: s.baseAddress!) { p, count in
                                    finished.append((p - y.baseAddress!)..<(p - y.baseAddress! + count))
                                }
                            }
                        }
                    }
                    let differing = zip(expected, got).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differing == 0, "case \(i), \(channels) channels, bias \(bias != nil): \(differing) of \(got.count) differ")
                    #expect(finished.first?.lowerBound == planes.lowerBound * outP && finished.last?.upperBound == planes.upperBound * outP
                            && zip(finished, finished.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "case \(i): \(finished)")
                    #expect(scratch.suffix(16).allSatisfy { $0.bitPattern == canary.bitPattern }, "case \(i): past the scratch")
                }
            }
        }
    }
}

@Suite struct DepthwiseBackwardTests {
    /// The depthwise backward kernel gives its reference twin's bits for the weight, bias and
    /// input gradients (added to what the buffers held) over ragged planes: widths around the
    /// vector length, strides 1, 2 and 3, dilation, asymmetric pads, kernels 1, 3, 5 and 3 × 5
    /// (tap groups of five and four, of seven and six), a plane smaller than its kernel.
    @Test func backwardMatchesItsReference() {
        // The forward kernel's cases within the kernel's reach (all but the two padded wider
        // than the kernel), and 7 × 7.
        let cases = DepthwiseConvTests.geometries.filter(depthwiseConv2dBackwardApplies)
            + [.init(ih: 14, iw: 14, kh: 7, kw: 7, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 3, padLeft: 3, oh: 14, ow: 14)]
        #expect(cases.count == DepthwiseConvTests.geometries.count - 1)
        for (i, g) in cases.enumerated() {
            let x = GemmTests.fill(g.ih * g.iw, seed: UInt32(i + 1)), w = GemmTests.fill(g.kh * g.kw, seed: UInt32(i + 50))
            let dy = GemmTests.fill(g.oh * g.ow, seed: UInt32(i + 90))
            // Gradients already holding values: the kernel adds to them.
            let dx0 = GemmTests.fill(g.ih * g.iw, seed: UInt32(i + 130)), dw0 = GemmTests.fill(g.kh * g.kw, seed: UInt32(i + 170))
            var ex = dx0, ew = dw0, eb: Float = 0.5
            var gx = dx0, gw = dw0, gb: Float = 0.5
            var scratch = [Float](repeating: .nan, count: depthwiseConv2dBackwardScratch(g))
            ex.withUnsafeMutableBufferPointer { exp in
                ew.withUnsafeMutableBufferPointer { ewp in
                    depthwiseConv2dBackwardReference(x: x, dy: dy, weights: w, geometry: g, dw: ewp.baseAddress!, db: &eb, dx: exp.baseAddress!)
                }
            }
            gx.withUnsafeMutableBufferPointer { gxp in
                gw.withUnsafeMutableBufferPointer { gwp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        depthwiseConv2dBackward(x: x, dy: dy, weights: w, geometry: g, dw: gwp.baseAddress!, db: &gb, dx: gxp.baseAddress!,
                                                scratch: sp.baseAddress!)
                    }
                }
            }
            #expect(zip(ex, gx).filter { $0.bitPattern != $1.bitPattern }.count == 0, "case \(i): input gradient")
            #expect(zip(ew, gw).filter { $0.bitPattern != $1.bitPattern }.count == 0, "case \(i): weight gradient")
            #expect(eb.bitPattern == gb.bitPattern, "case \(i): bias gradient")
            // The definition in doubles, loosely: the twin is not wrong in the same way.
            var dwDef = [Double](repeating: 0, count: g.kh * g.kw)
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    for ky in 0..<g.kh {
                        for kx in 0..<g.kw {
                            let iy = oy * g.strideH - g.padTop + ky * g.dilationH, ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                            guard iy >= 0, iy < g.ih, ix >= 0, ix < g.iw else { continue }
                            dwDef[ky * g.kw + kx] += Double(dy[oy * g.ow + ox]) * Double(x[iy * g.iw + ix])
                        }
                    }
                }
            }
            for q in 0..<(g.kh * g.kw) { #expect(abs(Double(gw[q] - dw0[q]) - dwDef[q]) < 1e-4, "case \(i) tap \(q)") }
        }
        // Pads past the kernel's reach are the GEMM path's.
        #expect(!depthwiseConv2dBackwardApplies(.init(ih: 5, iw: 5, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                                                      padTop: 3, padLeft: 0, oh: 7, ow: 3)))
    }
}

@Suite struct WinogradTests {
    /// 3 × 3 stride-1 windows: planes from 1 × 1 to rows of several vectors, odd and even
    /// outputs, pads 0, 1 and 2 and asymmetric ones, planes smaller than the kernel.
    static let geometries: [DepthwiseGeometry] = [(7, 7, 1, 1), (14, 14, 1, 1), (1, 1, 1, 1), (2, 3, 1, 1), (5, 37, 1, 1), (9, 56, 0, 0),
                                                  (6, 19, 0, 2), (11, 4, 2, 0), (3, 40, 2, 2), (4, 4, 0, 0), (13, 33, 1, 1)].map { ih, iw, pt, pl in
        // Bottom and right pads as the top and left ones, so outputs are ih + 2p - 2.
        DepthwiseGeometry(ih: ih, iw: iw, kh: 3, kw: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
                          padTop: pt, padLeft: pl, oh: ih + 2 * pt - 2, ow: iw + 2 * pl - 2)
    }.filter { $0.oh > 0 && $0.ow > 0 }

    struct Run { var y: [Float]; var canariesIntact: Bool }

    /// winogradConv2d into NaN-filled output and scratch, each followed by canaries that must
    /// stay as they were.
    static func run(_ x: [Float], batch: Int, cin: Int, u: [Float], cout: Int, bias: [Float]?, g: DepthwiseGeometry, threads: Int,
                    blockRows: Int?, tilesMajor: Bool = false, packed: Bool = false, relu: Bool = false) -> Run {
        let packedU = packed ? u.withUnsafeBufferPointer { winogradPackWeights($0.baseAddress!, cin: cin, cout: cout) } : nil
        let count = batch * cout * g.oh * g.ow, canary: Float = 12345.5
        var y = [Float](repeating: .nan, count: count) + [Float](repeating: canary, count: 64)
        let scratchCount = winogradConv2dScratch(g, cin: cin, cout: cout, batch: batch, workers: threads, blockRows: blockRows, tilesMajor: tilesMajor)
        var scratch = [Float](repeating: .nan, count: scratchCount) + [Float](repeating: canary, count: 64)
        x.withUnsafeBufferPointer { xp in
            u.withUnsafeBufferPointer { up in
                y.withUnsafeMutableBufferPointer { yp in
                    scratch.withUnsafeMutableBufferPointer { sp in
                        let (yb, sb) = (yp.baseAddress!, sp.baseAddress!)
                        func go(_ b: UnsafePointer<Float>?) {
                            winogradConv2d(x: xp.baseAddress!, batch: batch, cin: cin, weights: packed ? nil : up.baseAddress!, packed: packedU, cout: cout,
                                           bias: b, geometry: g,
                                           y: yb, scratch: sb, threads: threads, blockRows: blockRows, tilesMajor: tilesMajor) { p, n in
                                if relu { reluForward(p, count: n, out: p) }
                            }
                        }
                        if let bias { bias.withUnsafeBufferPointer { go($0.baseAddress!) } } else { go(nil) }
                    }
                }
            }
        }
        let intact = y[count...].allSatisfy { $0 == canary } && scratch[scratchCount...].allSatisfy { $0 == canary }
        return Run(y: Array(y[..<count]), canariesIntact: intact)
    }

    static func weights(_ w: [Float], cin: Int, cout: Int) -> [Float] {
        var u = [Float](repeating: .nan, count: winogradWeightCount(cin: cin, cout: cout))
        w.withUnsafeBufferPointer { wp in u.withUnsafeMutableBufferPointer { winogradWeights(wp.baseAddress!, cin: cin, cout: cout, into: $0.baseAddress!) } }
        return u
    }

    /// The blocked, vectorized, threaded kernel gives its naive twin's bits over ragged planes
    /// and channel counts, for blocks of 1, 2 and 3 tile rows (blocks across samples) and the
    /// default, and tiles-major, at 1, 2 and 3 threads; it writes nothing past its output and
    /// scratch.
    @Test func winogradMatchesItsReference() {
        let channels = [(3, 5), (16, 24), (33, 17)]
        for (i, g) in Self.geometries.enumerated() {
            for (cin, cout) in channels {
                let batch = 1 + i % 3
                let x = GemmTests.fill(batch * cin * g.ih * g.iw, seed: UInt32(i + 1)), w = GemmTests.fill(cout * cin * 9, seed: UInt32(i + 70))
                let bias: [Float]? = i % 2 == 0 ? GemmTests.fill(cout, seed: UInt32(i + 90)) : nil
                let u = Self.weights(w, cin: cin, cout: cout)
                var expected = [Float](repeating: .nan, count: batch * cout * g.oh * g.ow)
                x.withUnsafeBufferPointer { xp in
                    u.withUnsafeBufferPointer { up in
                        expected.withUnsafeMutableBufferPointer { yp in
                            let yb = yp.baseAddress!
                            func run(_ b: UnsafePointer<Float>?) {
                                winogradConv2dReference(x: xp.baseAddress!, batch: batch, cin: cin, weights: up.baseAddress!, cout: cout, bias: b,
                                                        geometry: g, y: yb)
                            }
                            if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress!) } } else { run(nil) }
                        }
                    }
                }
                // Channels-major in blocks of 1, 2, 3 and the default tile rows, and tiles-major with U
                // packed per call and packed once.
                for (blockRows, tilesMajor, packed) in [(1, false, false), (2, false, false), (3, false, false), (nil, false, false),
                                                        (nil, true, false), (nil, true, true)] as [(Int?, Bool, Bool)] {
                    for threads in [1, 2, 3] {
                        let got = Self.run(x, batch: batch, cin: cin, u: u, cout: cout, bias: bias, g: g, threads: threads, blockRows: blockRows,
                                           tilesMajor: tilesMajor, packed: packed)
                        let differing = zip(expected, got.y).filter { $0.bitPattern != $1.bitPattern }.count
                        #expect(differing == 0 && got.canariesIntact,
                                "case \(i) \(cin)→\(cout) blocks \(String(describing: blockRows)) tiles-major \(tilesMajor) packed \(packed) threads \(threads): \(differing) of \(got.y.count) differ, canaries \(got.canariesIntact)")
                    }
                }
            }
        }
    }

    /// The weight transform gives the same bits at 1, 2 and 3 threads, and its transposed-flipped
    /// form equals the transform of the kernels turned by 180° and transposed.
    @Test func weightTransformsAgree() {
        let (cin, cout) = (37, 21)
        let w = GemmTests.fill(cout * cin * 9, seed: 7)
        var flipped = [Float](repeating: .nan, count: w.count)
        for o in 0..<cout { for c in 0..<cin { for q in 0..<9 { flipped[(c * cout + o) * 9 + q] = w[(o * cin + c) * 9 + 8 - q] } } }
        let plain = Self.weights(w, cin: cin, cout: cout), turned = Self.weights(flipped, cin: cout, cout: cin)
        for threads in [1, 2, 3] {
            var a = [Float](repeating: .nan, count: plain.count), b = a
            w.withUnsafeBufferPointer { wp in
                a.withUnsafeMutableBufferPointer { winogradWeights(wp.baseAddress!, cin: cin, cout: cout, into: $0.baseAddress!, threads: threads) }
                b.withUnsafeMutableBufferPointer {
                    winogradWeights(wp.baseAddress!, cin: cout, cout: cin, into: $0.baseAddress!, transposedFlipped: true, threads: threads)
                }
            }
            #expect(a.map(\.bitPattern) == plain.map(\.bitPattern), "threads \(threads): the transform changed")
            #expect(b.map(\.bitPattern) == turned.map(\.bitPattern), "threads \(threads): the transposed-flipped transform differs")
        }
    }

    /// F(2 × 2, 3 × 3) computes the convolution: against the direct reference in double-checked
    /// float, every output within a few ulps of the sum of the magnitudes of its products.
    @Test func winogradIsTheConvolution() {
        for (i, g) in Self.geometries.enumerated() {
            let (cin, cout) = (19, 21)
            let x = GemmTests.fill(cin * g.ih * g.iw, seed: UInt32(i + 11)), w = GemmTests.fill(cout * cin * 9, seed: UInt32(i + 31))
            let got = Self.run(x, batch: 1, cin: cin, u: Self.weights(w, cin: cin, cout: cout), cout: cout, bias: nil, g: g, threads: 2, blockRows: nil,
                               tilesMajor: i % 2 == 1, packed: i % 4 == 1, relu: true)
            var direct = [Float](repeating: .nan, count: cout * g.oh * g.ow)
            let absX = x.map(abs), absW = w.map(abs)
            var magnitude = direct
            x.withUnsafeBufferPointer { xp in
                w.withUnsafeBufferPointer { wp in
                    direct.withUnsafeMutableBufferPointer {
                        conv2dDirectReference(x: xp.baseAddress!, cin: cin, ih: g.ih, iw: g.iw, w: wp.baseAddress!, cout: cout, kh: 3, kw: 3,
                                              padTop: g.padTop, padLeft: g.padLeft, oh: g.oh, ow: g.ow, y: $0.baseAddress!)
                    }
                }
            }
            absX.withUnsafeBufferPointer { xp in
                absW.withUnsafeBufferPointer { wp in
                    magnitude.withUnsafeMutableBufferPointer {
                        conv2dDirectReference(x: xp.baseAddress!, cin: cin, ih: g.ih, iw: g.iw, w: wp.baseAddress!, cout: cout, kh: 3, kw: 3,
                                              padTop: g.padTop, padLeft: g.padLeft, oh: g.oh, ow: g.ow, y: $0.baseAddress!)
                    }
                }
            }
            let worst = zip(zip(direct, got.y), magnitude).map { pair, m in abs(max(pair.0, 0) - pair.1) / max(m, 1e-6) }.max() ?? 0
            #expect(worst < 4e-6 && got.canariesIntact, "case \(i): worst relative error \(worst)")
        }
    }
}
