// Window copies of convolutions: im2col, its adjoint col2im, and the short copies and bias
// epilogues around them.
//
// A window over P output positions and kq kernel offsets is given as a table: input offset
// table[pp·kq + q] (within one channel plane of `inCount` values), or a negative value for
// padding. Layout of the columns: row (c·kq + q), column pp, at cols[(c·kq + q)·ld + pp].
// im2col overwrites every column value it is asked for; col2im adds into its destination.
// Each loop runs in increasing (c, q, pp) order on one thread, so the bits never depend on the
// thread count. The fast forms below read the same table as runs (see `WindowRuns`).

/// A window table as runs, kernel offset by kernel offset (q increasing): each run is four
/// values (out, in, count, step): output positions out + i (i < count) read input in + i·step;
/// runs of offset q are runs[runStart[q]·4 ..< runStart[q + 1]·4]. `padded[q]`: some output
/// position reads padding at q. `byOffset`, for windows with strided runs, is the table by
/// kernel offset (input position of output pp at offset q at [q·P + pp], −1 for padding) and
/// empty otherwise; im2col then walks it instead of the runs.
public struct WindowRuns {
    public let kernelCount: Int, outCount: Int, inCount: Int
    public let runStart: [Int], runs: [Int], padded: [Bool]
    public let byOffset: [Int32]

    public init(table: [Int], kernelCount kq: Int, outCount p: Int, inCount: Int) {
        precondition(table.count == kq * p, "window table of \(table.count) values for \(p) positions × \(kq) offsets")
        (kernelCount, outCount, self.inCount) = (kq, p, inCount)
        var start = [0], runs: [Int] = []
        var padded = [Bool](repeating: false, count: kq)
        for q in 0..<kq {
            var pp = 0
            while pp < p {
                let t = table[pp * kq + q]
                if t < 0 { padded[q] = true; pp += 1; continue }
                var len = 1, step = 1
                if pp + 1 < p, table[(pp + 1) * kq + q] > t {
                    step = table[(pp + 1) * kq + q] - t
                    while pp + len < p && table[(pp + len) * kq + q] == t + len * step { len += 1 }
                }
                runs += [pp, t, len, step]
                pp += len
            }
            start.append(runs.count / 4)
        }
        (runStart, self.runs, self.padded) = (start, runs, padded)
        // NOTE: strided runs (stride > 1) copy value by value anyway; walking the table offset
        // by offset avoids the per-run cost and the padded rows' fills (the MNIST-1D CNN's
        // stride-2 convolutions spent 44 % of batch-64 inference in im2col, perf, most of it
        // per run of about ten values and in zero fills).
        if Swift.stride(from: 3, to: runs.count, by: 4).contains(where: { runs[$0] != 1 }) {
            var byOffset = [Int32](repeating: -1, count: kq * p)
            for pp in 0..<p { for q in 0..<kq { byOffset[q * p + pp] = Int32(max(table[pp * kq + q], -1)) } }
            self.byOffset = byOffset
        } else {
            byOffset = []
        }
    }

    /// Calls `body(q, out, in, count, step)` for every run, kernel offset by kernel offset, each
    /// offset's runs in increasing output position.
    @inlinable @inline(__always)
    public func forEachRun(_ body: (_ q: Int, _ out: Int, _ input: Int, _ count: Int, _ step: Int) -> Void) {
        runStart.withUnsafeBufferPointer { start in
            runs.withUnsafeBufferPointer { runs in
                for q in 0..<(start.count - 1) {
                    var r = start[q] * 4
                    let end = start[q + 1] * 4
                    while r < end {
                        body(q, runs[r], runs[r + 1], runs[r + 2], runs[r + 3])
                        r += 4
                    }
                }
            }
        }
    }

    /// im2col of `channels` planes of `src`: cols[(c·kq + q)·ld + pp] = src[c·inCount + table[pp·kq + q]],
    /// 0 in the padding.
    public func im2col(_ src: UnsafePointer<Float>, channels: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
        let kq = kernelCount, p = outCount, inP = inCount
        if !byOffset.isEmpty {
            byOffset.withUnsafeBufferPointer { t in
                for c in 0..<channels {
                    let plane = src + c * inP
                    for q in 0..<kq {
                        let d = cols + (c * kq + q) * ld, row = t.baseAddress! + q * p
                        for pp in 0..<p {
                            let i = Int(row[pp])
                            d[pp] = i >= 0 ? plane[i] : 0
                        }
                    }
                }
            }
            return
        }
        for c in 0..<channels {
            let plane = src + c * inP
            for q in 0..<kq where padded[q] { (cols + (c * kq + q) * ld).update(repeating: 0, count: p) }
            forEachRun { q, out, input, count, step in
                let d = cols + (c * kq + q) * ld + out, s = plane + input
                if step == 1 {
                    // Runs are rows of a few dozen values: the vectorizer's prologue and
                    // epilogue cost more than `copyFloats`' overlapping last vector.
                    copyFloats(d, s, count: count)
                } else {
                    for i in 0..<count { d[i] = s[i * step] }
                }
            }
        }
    }

    /// The adjoint of `im2col` with ld = P: dst[c·inCount + table[pp·kq + q]] += cols[(c·kq + q)·P + pp],
    /// in increasing (c, q, pp), the order of `col2imAddReference` (each input receives at most
    /// one value per q, so its sum runs in increasing q either way).
    public func col2imAdd(_ cols: UnsafePointer<Float>, channels: Int, into dst: UnsafeMutablePointer<Float>) {
        let kq = kernelCount, p = outCount, inP = inCount
        for c in 0..<channels {
            let plane = dst + c * inP
            forEachRun { q, out, input, count, step in
                let s = cols + (c * kq + q) * p + out, d = plane + input
                for i in 0..<count { d[i * step] += s[i] }
            }
        }
    }
}

/// The reference twin of `WindowRuns.im2col`: one table lookup per value.
public func im2colReference(_ src: UnsafePointer<Float>, channels: Int, table: [Int], kernelCount kq: Int, outCount p: Int,
                            inCount: Int, into cols: UnsafeMutablePointer<Float>, ld: Int) {
    for c in 0..<channels {
        for q in 0..<kq {
            for pp in 0..<p {
                let t = table[pp * kq + q]
                cols[(c * kq + q) * ld + pp] = t >= 0 ? src[c * inCount + t] : 0
            }
        }
    }
}

/// The reference twin of `WindowRuns.col2imAdd`.
public func col2imAddReference(_ cols: UnsafePointer<Float>, channels: Int, table: [Int], kernelCount kq: Int, outCount p: Int,
                               inCount: Int, into dst: UnsafeMutablePointer<Float>) {
    for c in 0..<channels {
        for q in 0..<kq {
            for pp in 0..<p {
                let t = table[pp * kq + q]
                if t >= 0 { dst[c * inCount + t] += cols[(c * kq + q) * p + pp] }
            }
        }
    }
}

/// dst[i] = src[i] for i < count, eight at a time with the last eight overlapping: the copies
/// of a convolution's columns and outputs are a few dozen values, where a `memmove` call costs
/// more than the copy (13 % of LeNet-5 at batch 64 went to such calls).
@inlinable @inline(__always)
public func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    guard count >= 8 else {
        for i in 0..<count { dst[i] = src[i] }
        return
    }
    var i = 0
    while true {
        let at = min(i, count - 8)
        UnsafeMutableRawPointer(dst + at).storeBytes(of: UnsafeRawPointer(src + at).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        if at == count - 8 { return }
        i += 8
    }
}

/// out[n, c, pp] += bias[c] for a (samples × channels × plane) block: a Conv's bias epilogue,
/// each element once, in increasing index order.
public func addChannelBias(_ bias: UnsafePointer<Float>, samples: Int, channels: Int, plane p: Int, out: UnsafeMutablePointer<Float>) {
    for n in 0..<samples {
        for m in 0..<channels {
            let row = out + (n * channels + m) * p, bm = bias[m]
            for pp in 0..<p { row[pp] += bm }
        }
    }
}
