// The forward depthwise kernel straight from the plane, without a padded copy, for 3 × 3 kernels
// at stride 1 and dilation 1 (AVX-512, sixteen lanes; `Kernels.depthwiseConv2d` calls it for rows
// of at least sixteen outputs).
//
// Contract: one channel plane, x (ih × iw) and y (oh × ow) row-major; w (3 × 3); y is
// overwritten. Output (oy, ox) is, as in the reference, one FMA chain from +0 over the taps
// (ky, kx) in increasing order of w[ky, kx] times the input at row oy − padTop + ky, column
// ox − padLeft + kx, or +0 outside the plane (the product is still added), then the bias added
// once. So the bits are the reference's.
//
// A row's outputs go as vectors of sixteen at columns 0, 16, … and a last one ending at the row's
// end (overlapping the one before; the same values written twice), eight rows at a time. Input
// row j of a strip feeds output row r at tap row ky = j − r: its sixteen columns at each kx are
// loaded once, where they are, and go to every output row that reads them (30 loads for 72
// FMAs, against one per FMA over the padded copy). Lanes outside the row are set to +0 (an and
// with a mask of the columns). Rows are read through a table of row pointers: a row outside the
// plane points into a row of zeros, and a row whose loads would reach out of `lo..<hi` (the
// memory that may be read) points to a copy of it between zeros.
// NOTE: measured against the padded copy (`PRUNECHECK_DEPTHWISE`, best of three, one thread):
// 144 × 56 × 56 213 → 127 µs, 192 × 28 × 28 83 → 60, 32 × 112 × 112 198 → 91; but 14 × 14
// rows (one vector, two lanes wasted) 81 → 98, and 5 × 5 kernels slower (240 × 28 × 28 202 →
// 246), so those keep the copy. Tried and slower: loading every tap's vector for every output
// row (one load per FMA, most across two cache lines: 144 × 56 × 56 at 250-390 µs); two
// positions at once (sixteen chains, spilled: 228 µs; or two of four rows: 316).

public typealias DepthwiseVector = SIMD16<Float>

/// Where `depthwiseRowsAVX512` keeps its row of zeros and its copied rows, for one geometry.
public struct DepthwiseRowsLayout: Sendable {
    /// Floats before a row's column 0, and per row (zeros around it).
    public let margin: Int, rowLength: Int
    /// One past the last column any load of a row reads (the last position's third tap).
    public let reach: Int
    /// Row slots: the zero row, then one per input row a strip reads.
    public let slots: Int
    public var floats: Int { slots * rowLength }

    public init(iw: Int, padLeft: Int, ow: Int) {
        margin = max(0, padLeft)
        reach = ow - 16 - padLeft + 2 + 16
        rowLength = (margin + max(iw, reach) + 15) / 16 * 16
        slots = 1 + 10
    }
}

/// One plane (see the file's comment; ow ≥ 16); `bias` nil adds none. `scratch` holds
/// `layout.floats`, its first row zeros (`depthwiseRowsZeros`) and kept so between calls.
@inline(never)
public func depthwiseRowsAVX512(x: UnsafePointer<Float>, ih: Int, iw: Int, padTop: Int, padLeft: Int, oh: Int, ow: Int,
                                weights w: UnsafePointer<Float>, bias: Float?, y: UnsafeMutablePointer<Float>,
                                lo: UnsafePointer<Float>, hi: UnsafePointer<Float>, layout l: DepthwiseRowsLayout,
                                scratch: UnsafeMutablePointer<Float>) {
    precondition(ow >= 16, "depthwiseRowsAVX512 takes rows of 16 outputs or more")
    let positions = (ow + 15) / 16
    let zeros = UnsafePointer(scratch + l.margin)
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: l.slots) { table in
        let rowTable = table.baseAddress!
        var oy0 = 0
        while oy0 < oh {
            let rows = min(8, oh - oy0)
            let top = oy0 &- padTop
            // Rows top ..< top + 10 (the ones past the strip's last row point to zeros).
            var copies = 0
            for j in 0..<10 {
                let iy = top &+ j
                if iy < 0 || iy >= ih || j > rows &+ 1 {
                    rowTable[j] = zeros
                    continue
                }
                let row = x + iy &* iw
                if row - padLeft >= lo && row + l.reach <= hi {
                    rowTable[j] = row
                } else {
                    // A copy between zeros (the plane's first or last rows at the tensor's ends).
                    copies &+= 1
                    let slot = scratch + copies &* l.rowLength
                    slot.update(repeating: 0, count: l.rowLength)
                    (slot + l.margin).update(from: row, count: iw)
                    rowTable[j] = UnsafePointer(slot + l.margin)
                }
            }
            for p in 0..<positions {
                let c = min(16 &* p, ow &- 16), first = c &- padLeft
                let out = y + (oy0 &* ow &+ c)
                // Every lane's column inside the row at every tap, or masked.
                if first >= 0 && first &+ 18 <= iw {
                    DepthwiseStrip.run(Inside.self, rows: rowTable, iw: iw, first: first, w: w, y: out, ow: ow, count: rows, bias: bias)
                } else {
                    DepthwiseStrip.run(Edge.self, rows: rowTable, iw: iw, first: first, w: w, y: out, ow: ow, count: rows, bias: bias)
                }
            }
            oy0 &+= 8
        }
    }
}

/// Zeros the row of zeros of `depthwiseRowsAVX512`'s scratch (once per call of a range of planes).
public func depthwiseRowsZeros(_ scratch: UnsafeMutablePointer<Float>, layout l: DepthwiseRowsLayout) {
    scratch.update(repeating: 0, count: l.rowLength)
}

/// Whether a strip's lanes may fall outside its rows' columns (then masked).
protocol DepthwiseEdges { static var masked: Bool { get } }
enum Inside: DepthwiseEdges { @inline(__always) static var masked: Bool { false } }
enum Edge: DepthwiseEdges { @inline(__always) static var masked: Bool { true } }

/// Eight rows' chains of one vector position.
struct DepthwiseStrip {
    var a0 = DepthwiseVector(), a1 = DepthwiseVector(), a2 = DepthwiseVector(), a3 = DepthwiseVector()
    var a4 = DepthwiseVector(), a5 = DepthwiseVector(), a6 = DepthwiseVector(), a7 = DepthwiseVector()

    /// Input row j's vector v at tap column kx into the rows that read it: row r at tap row
    /// j − r.
    @inline(__always)
    mutating func add(_ v: DepthwiseVector, j: Int, kx: Int, w: UnsafePointer<Float>) {
        let k = 3
        if j >= 0 && j < k { a0 = a0.addingProduct(DepthwiseVector(repeating: w[j &* k &+ kx]), v) }
        if j >= 1 && j < 1 &+ k { a1 = a1.addingProduct(DepthwiseVector(repeating: w[(j &- 1) &* k &+ kx]), v) }
        if j >= 2 && j < 2 &+ k { a2 = a2.addingProduct(DepthwiseVector(repeating: w[(j &- 2) &* k &+ kx]), v) }
        if j >= 3 && j < 3 &+ k { a3 = a3.addingProduct(DepthwiseVector(repeating: w[(j &- 3) &* k &+ kx]), v) }
        if j >= 4 && j < 4 &+ k { a4 = a4.addingProduct(DepthwiseVector(repeating: w[(j &- 4) &* k &+ kx]), v) }
        if j >= 5 && j < 5 &+ k { a5 = a5.addingProduct(DepthwiseVector(repeating: w[(j &- 5) &* k &+ kx]), v) }
        if j >= 6 && j < 6 &+ k { a6 = a6.addingProduct(DepthwiseVector(repeating: w[(j &- 6) &* k &+ kx]), v) }
        if j >= 7 && j < 7 &+ k { a7 = a7.addingProduct(DepthwiseVector(repeating: w[(j &- 7) &* k &+ kx]), v) }
    }

    /// Sixteen columns from `column0` of a row, lanes outside 0 ..< iw set to +0 when masked.
    @inline(__always)
    static func load<E: DepthwiseEdges>(_: E.Type, _ row: UnsafePointer<Float>, column0: Int, iw: Int) -> DepthwiseVector {
        let v = UnsafeRawPointer(row + column0).loadUnaligned(as: DepthwiseVector.self)
        guard E.masked else { return v }
        // All ones where 0 ≤ column < iw. (A bitwise and: `replacing(with:where:)` went lane by
        // lane.)
        let columns = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) &+ Int32(truncatingIfNeeded: column0)
        let valid = ~(columns &>> 31) & ((columns &- Int32(truncatingIfNeeded: iw)) &>> 31)
        return unsafeBitCast(unsafeBitCast(v, to: SIMD16<Int32>.self) & valid, to: DepthwiseVector.self)
    }

    /// Input row j into the rows that read it.
    @inline(__always)
    static func step<E: DepthwiseEdges>(_: E.Type, j: Int, rows: UnsafePointer<UnsafePointer<Float>>, iw: Int, first: Int,
                                        w: UnsafePointer<Float>, _ s: inout DepthwiseStrip) {
        let row = rows[j]
        s.add(load(E.self, row, column0: first, iw: iw), j: j, kx: 0, w: w)
        s.add(load(E.self, row, column0: first &+ 1, iw: iw), j: j, kx: 1, w: w)
        s.add(load(E.self, row, column0: first &+ 2, iw: iw), j: j, kx: 2, w: w)
    }

    /// The strip of one position (first column `first`, outputs at `y`), rows 0..<count
    /// stored (row r at y + r · ow) with the bias.
    @inline(__always)
    static func run<E: DepthwiseEdges>(_: E.Type, rows: UnsafePointer<UnsafePointer<Float>>, iw: Int, first: Int, w: UnsafePointer<Float>,
                                       y: UnsafeMutablePointer<Float>, ow: Int, count: Int, bias: Float?) {
        var s = DepthwiseStrip()
        // Over j in order, row r's taps come in increasing ky, and kx in order within each: the
        // reference's chain. (Written out per j: as a loop, j stayed a variable and every tap
        // a branch.)
        step(E.self, j: 0, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 1, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 2, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 3, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 4, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 5, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 6, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 7, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 8, rows: rows, iw: iw, first: first, w: w, &s)
        step(E.self, j: 9, rows: rows, iw: iw, first: first, w: w, &s)
        s.store(y, ow: ow, count: count, bias: bias)
    }

    @inline(__always)
    func store(_ y: UnsafeMutablePointer<Float>, ow: Int, count: Int, bias: Float?) {
        var (a0, a1, a2, a3, a4, a5, a6, a7) = (self.a0, self.a1, self.a2, self.a3, self.a4, self.a5, self.a6, self.a7)
        if let bias {
            let b = DepthwiseVector(repeating: bias)
            a0 += b; a1 += b; a2 += b; a3 += b; a4 += b; a5 += b; a6 += b; a7 += b
        }
        let d = UnsafeMutableRawPointer(y), step = 4 &* ow
        d.storeBytes(of: a0, as: DepthwiseVector.self)
        if count > 1 { d.storeBytes(of: a1, toByteOffset: step, as: DepthwiseVector.self) }
        if count > 2 { d.storeBytes(of: a2, toByteOffset: 2 &* step, as: DepthwiseVector.self) }
        if count > 3 { d.storeBytes(of: a3, toByteOffset: 3 &* step, as: DepthwiseVector.self) }
        if count > 4 { d.storeBytes(of: a4, toByteOffset: 4 &* step, as: DepthwiseVector.self) }
        if count > 5 { d.storeBytes(of: a5, toByteOffset: 5 &* step, as: DepthwiseVector.self) }
        if count > 6 { d.storeBytes(of: a6, toByteOffset: 6 &* step, as: DepthwiseVector.self) }
        if count > 7 { d.storeBytes(of: a7, toByteOffset: 7 &* step, as: DepthwiseVector.self) }
    }
}
