// Activations in blocks of sixteen channels (NCHW16c; see KernelsAVX512/Blocked16.swift): the
// reorders in and out, pointwise and depthwise Convs, means over the pixels and per-channel
// scales, split across threads. AVX-512 only: callers check `Blocked16.available` first.
// Every output element is computed by one chain whatever the split, so the bits are the same
// for any thread count.

import Foundation
import KernelsAVX512

public enum Blocked16 {
    /// Whether this CPU (and PRUNECHECK_ISA) runs the blocked kernels, and PRUNECHECK_BLOCKED is
    /// not 0.
    public static let available: Bool = KernelISA.detected == .avx512 && ProcessInfo.processInfo.environment["PRUNECHECK_BLOCKED"] != "0"

    /// Channel blocks for `channels` channels.
    @inline(__always) public static func blocks(_ channels: Int) -> Int { (channels + 15) / 16 }

    /// An activation applied to the output: the bits of `epilogueRowsAVX512`'s mode (1 ReLU,
    /// 2 Clip to [lo, hi], 4 SiLU).
    public struct Activation: Equatable, Sendable {
        public var mode: Int, lo: Float, hi: Float
        public init(mode: Int = 0, lo: Float = 0, hi: Float = 0) { (self.mode, self.lo, self.hi) = (mode, lo, hi) }
        public static let none = Activation()
        public static let relu = Activation(mode: 1)
        public static func clip(_ lo: Float, _ hi: Float) -> Activation { Activation(mode: 2, lo: lo, hi: hi) }
        public static let silu = Activation(mode: 4)
    }

    /// NCHW (batch × channels × pixels) at x into blocks at y (batch × blocks × pixels × 16).
    public static func toBlocked(_ x: UnsafePointer<Float>, batch: Int, channels c: Int, pixels hw: Int,
                                 _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let nb = blocks(c)
        parallelRanges(batch * nb, threads: threads, grain: max(1, 16_384 / max(hw * 16, 1))) { r in
            forEachSample(r, nb) { n, blocks in
                toBlocked16AVX512(x + n * c * hw, channels: c, pixels: hw, y + n * nb * hw * 16, blocks: blocks)
            }
        }
    }

    /// Blocks at x back to NCHW at y (the first `channels` channels).
    public static func fromBlocked(_ x: UnsafePointer<Float>, batch: Int, channels c: Int, pixels hw: Int,
                                   _ y: UnsafeMutablePointer<Float>, threads: Int) {
        let nb = blocks(c)
        parallelRanges(batch * nb, threads: threads, grain: max(1, 16_384 / max(hw * 16, 1))) { r in
            forEachSample(r, nb) { n, blocks in
                fromBlocked16AVX512(x + n * nb * hw * 16, channels: c, pixels: hw, y + n * c * hw, blocks: blocks)
            }
        }
    }

    /// body(sample, blocks) over the (sample, block) items in `r` (items sample-major).
    @inline(__always)
    static func forEachSample(_ r: Range<Int>, _ nb: Int, _ body: (Int, Range<Int>) -> Void) {
        var i = r.lowerBound
        while i < r.upperBound {
            let n = i / nb, b0 = i % nb, b1 = min(nb, b0 + r.upperBound - i)
            body(n, b0..<b1)
            i += b1 - b0
        }
    }

    /// A pointwise Conv's weights (cout × cin, row-major) for `pointwise`: groups of up to four
    /// output blocks; group g at g · 64 · 16·blocks(cin) floats, per input channel (padded to
    /// whole blocks, zeros past cin) the group's 16 · (its blocks) output channels (zeros past
    /// cout).
    public static func packPointwise(_ w: UnsafePointer<Float>, cout: Int, cin: Int) -> [Float] {
        let ob = blocks(cout), cinP = blocks(cin) * 16, groups = (ob + 3) / 4
        var out = [Float](repeating: 0, count: groups * 64 * cinP)
        for g in 0..<groups {
            let width = min(4, ob - 4 * g) * 16, base = g * 64 * cinP
            for o in 0..<width where 64 * g + o < cout {
                for i in 0..<cin { out[base + i * width + o] = w[(64 * g + o) * cin + i] }
            }
        }
        return out
    }

    /// A depthwise Conv's weights (channels × taps) for `depthwise`: per block the taps, sixteen
    /// floats each (zeros past `channels`).
    public static func packDepthwise(_ w: UnsafePointer<Float>, channels c: Int, taps: Int) -> [Float] {
        var out = [Float](repeating: 0, count: blocks(c) * taps * 16)
        for ch in 0..<c {
            for q in 0..<taps { out[((ch / 16) * taps + q) * 16 + ch % 16] = w[ch * taps + q] }
        }
        return out
    }

    /// A bias padded to whole blocks with zeros.
    public static func padBias(_ b: [Float]) -> [Float] { b + [Float](repeating: 0, count: blocks(b.count) * 16 - b.count) }

    /// A pointwise Conv: x (batch × blocks(cin) × pixels × 16) by weights from `packPointwise`
    /// into y (batch × blocks(cout) × pixels × 16), bias from `padBias` or nil.
    public static func pointwise(_ x: UnsafePointer<Float>, batch: Int, cin: Int, cout: Int, pixels hw: Int,
                                 weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                                 activation a: Activation, threads: Int) {
        let ib = blocks(cin), ob = blocks(cout), groups = (ob + 3) / 4
        // Pixels per item: their input (ib · 16 floats each) within ~256 KiB of L2 beside the
        // group's weights; smaller when the threads would otherwise go short of items.
        var chunk = max(6, 65_536 / (ib * 16) / 6 * 6)
        // An item runs every group of its chunk when there are items enough for the threads
        // without splitting the groups: split, one chunk's groups ran on both cores, each
        // reading the chunk into its own cache.
        let whole = threads <= 1 || batch * ((hw + chunk - 1) / chunk) >= 4 * threads
        if !whole {
            while chunk > 6 && batch * groups * ((hw + chunk - 1) / chunk) < 4 * threads { chunk = max(6, chunk / 2 / 6 * 6) }
        }
        let chunks = (hw + chunk - 1) / chunk, split = whole ? 1 : groups
        parallelFor(batch * chunks * split, threads: threads) { item in
            // Groups fastest: a chunk's input stays in cache across the groups.
            let c = (item / split) % chunks, n = item / (split * chunks)
            let p0 = c * chunk, p1 = min(hw, p0 + chunk)
            for g in stride(from: item % split, to: groups, by: split) {  // every group, or the item's one
                pointwise16AVX512(x: x + n * ib * hw * 16, inBlocks: ib, pixels: hw, p0: p0, p1: p1,
                                  w: w + g * 64 * ib * 16, nb: min(4, ob - 4 * g), bias: bias.map { $0 + 64 * g },
                                  y: y + (n * ob + 4 * g) * hw * 16, mode: a.mode, lo: a.lo, hi: a.hi)
            }
        }
    }

    /// The window of a depthwise or direct Conv in blocks (dilation 1).
    public struct Window: Equatable, Sendable {
        public var kh: Int, kw: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
        public init(kh: Int, kw: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int, padBottom: Int, padRight: Int) {
            (self.kh, self.kw, self.strideH, self.strideW) = (kh, kw, strideH, strideW)
            (self.padTop, self.padLeft, self.padBottom, self.padRight) = (padTop, padLeft, padBottom, padRight)
        }
        /// The output size for an ih × iw input (nil when the window does not fit).
        public func output(ih: Int, iw: Int) -> (oh: Int, ow: Int)? {
            let h = ih + padTop + padBottom - kh, w = iw + padLeft + padRight - kw
            guard h >= 0, w >= 0 else { return nil }
            return (h / strideH + 1, w / strideW + 1)
        }
    }

    /// A depthwise Conv: x (batch × blocks(channels) × ih × iw × 16) by weights from
    /// `packDepthwise` into y (batch × blocks × oh × ow × 16).
    public static func depthwise(_ x: UnsafePointer<Float>, batch: Int, channels c: Int, ih: Int, iw: Int,
                                 weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, geometry g: Window,
                                 oh: Int, ow: Int, _ y: UnsafeMutablePointer<Float>, activation a: Activation, threads: Int) {
        let nb = blocks(c), taps = g.kh * g.kw
        // Rows per item: about 8 K output floats, fewer when the threads would go short of items;
        // planes smaller than that go several to an item.
        // NOTE: a plane an item, MobileNetV2's 7 × 7 depthwise Convs at batch 8 (480 planes of
        // 784 outputs) ran slower on two threads than on one: the items were too small for the
        // shared counter the threads take them from.
        let planes = batch * nb
        var rows = max(1, min(oh, 8_192 / max(ow * 16, 1)))
        if threads > 1 { while rows > 1 && planes * ((oh + rows - 1) / rows) < 4 * threads { rows = (rows + 1) / 2 } }
        let parts = (oh + rows - 1) / rows
        var group = rows == oh ? max(1, 8_192 / max(oh * ow * 16, 1)) : 1
        if threads > 1 { group = max(1, min(group, planes / (4 * threads))) }
        // (Several planes only when one item takes a whole plane: group is 1 when parts > 1.)
        parallelFor(parts * ((planes + group - 1) / group), threads: threads) { item in
            let part = item % parts, first = item / parts * group
            for plane in first..<min(planes, first + group) {
                let b = plane % nb
                depthwise16AVX512(x: x + plane * ih * iw * 16, ih: ih, iw: iw, w: w + b * taps * 16, bias: bias.map { $0 + b * 16 },
                                  kh: g.kh, kw: g.kw, strideH: g.strideH, strideW: g.strideW, padTop: g.padTop, padLeft: g.padLeft,
                                  oh: oh, ow: ow, rows: (part * rows)..<min(oh, (part + 1) * rows), y: y + plane * oh * ow * 16,
                                  mode: a.mode, lo: a.lo, hi: a.hi)
            }
        }
    }

    /// A direct Conv's weights (cout × cin × taps) for `direct`: per output block, per input
    /// channel, the taps, sixteen floats each (zeros past cout).
    public static func packDirect(_ w: UnsafePointer<Float>, cout: Int, cin: Int, taps: Int) -> [Float] {
        var out = [Float](repeating: 0, count: blocks(cout) * cin * taps * 16)
        for o in 0..<cout {
            for i in 0..<(cin * taps) { out[((o / 16) * cin * taps + i) * 16 + o % 16] = w[o * cin * taps + i] }
        }
        return out
    }

    /// A Conv of few input channels (a stem) from NCHW x (batch × cin × ih × iw) by weights from
    /// `packDirect` into blocks y (batch × blocks(cout) × oh × ow × 16).
    public static func direct(_ x: UnsafePointer<Float>, batch: Int, cin: Int, ih: Int, iw: Int, cout: Int,
                              weights w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, geometry g: Window,
                              oh: Int, ow: Int, _ y: UnsafeMutablePointer<Float>, activation a: Activation, threads: Int) {
        let ob = blocks(cout), pairs = (ob + 1) / 2
        var rows = max(1, min(oh, 4_096 / max(ow * 32, 1)))
        if threads > 1 { while rows > 1 && batch * pairs * ((oh + rows - 1) / rows) < 4 * threads { rows = (rows + 1) / 2 } }
        let parts = (oh + rows - 1) / rows
        parallelFor(batch * pairs * parts, threads: threads) { item in
            let part = item % parts, pair = (item / parts) % pairs, n = item / (parts * pairs)
            directBlocked16AVX512(x: x + n * cin * ih * iw, cin: cin, ih: ih, iw: iw, w: w, bias: bias, kh: g.kh, kw: g.kw,
                                  strideH: g.strideH, strideW: g.strideW, padTop: g.padTop, padLeft: g.padLeft, oh: oh, ow: ow,
                                  ob0: 2 * pair, nb: min(2, ob - 2 * pair), rows: (part * rows)..<min(oh, (part + 1) * rows),
                                  y: y + n * ob * oh * ow * 16, mode: a.mode, lo: a.lo, hi: a.hi)
        }
    }

    /// The mean over the pixels of each of `planes` blocks (batch × blocks) into y (16 floats each).
    public static func mean(_ x: UnsafePointer<Float>, planes: Int, pixels hw: Int, _ y: UnsafeMutablePointer<Float>, threads: Int) {
        parallelRanges(planes, threads: threads, grain: max(1, 16_384 / max(hw * 16, 1))) { r in
            meanBlocked16AVX512(x, pixels: hw, planes: r, y)
        }
    }

    /// y[plane][p] = x[plane][p] · s[plane] (sixteen lanes) for `planes` blocks of `pixels` pixels.
    public static func scale(_ x: UnsafePointer<Float>, by s: UnsafePointer<Float>, planes: Int, pixels hw: Int,
                             _ y: UnsafeMutablePointer<Float>, threads: Int) {
        parallelRanges(planes, threads: threads, grain: max(1, 16_384 / max(hw * 16, 1))) { r in
            scaleBlocked16AVX512(x, s, pixels: hw, planes: r, y)
        }
    }
}
