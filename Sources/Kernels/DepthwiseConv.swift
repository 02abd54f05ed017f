// Depthwise 2-D convolution (one filter per channel, groups = channels): MobileNet, EfficientNet,
// ConvNeXt and MNASNet spend most of their time here.
//
// Contract: one channel plane at a time; x (ih × iw) and y (oh × ow) row-major; w (kh × kw).
// y is overwritten. Each output is one FMA chain over the taps q = (ky, kx) in increasing order,
// starting from +0, with the input at a tap outside the plane taken as 0 (so the product is
// still added, as im2col's zero does), then the bias is added once: exactly the chain that
// im2col + GEMM computes for a group of one channel, so the two paths give the same bits.
// Threads split channel planes only, never a chain.

/// Output geometry of a depthwise convolution (strides, dilations, leading pads).
public struct DepthwiseGeometry: Sendable, Equatable {
    public var ih: Int, iw: Int, kh: Int, kw: Int
    public var strideH: Int, strideW: Int, dilationH: Int, dilationW: Int
    public var padTop: Int, padLeft: Int
    public var oh: Int, ow: Int

    public init(ih: Int, iw: Int, kh: Int, kw: Int, strideH: Int, strideW: Int, dilationH: Int, dilationW: Int,
                padTop: Int, padLeft: Int, oh: Int, ow: Int) {
        (self.ih, self.iw, self.kh, self.kw) = (ih, iw, kh, kw)
        (self.strideH, self.strideW, self.dilationH, self.dilationW) = (strideH, strideW, dilationH, dilationW)
        (self.padTop, self.padLeft, self.oh, self.ow) = (padTop, padLeft, oh, ow)
    }
}

/// One channel plane. `scratch` holds `oh · ow` floats (the running chains of the plane).
public func depthwiseConv2d(_ x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias: Float?, geometry g: DepthwiseGeometry,
                            y: UnsafeMutablePointer<Float>, scratch acc: UnsafeMutablePointer<Float>) {
    let ow = g.ow
    acc.update(repeating: 0, count: g.oh * ow)
    // Taps outermost, so that each output's chain still runs over q in increasing order, and
    // one call covers a whole plane.
    for ky in 0..<g.kh {
        for kx in 0..<g.kw {
            depthwiseTap(acc, x, weight: w[ky * g.kw + kx], ky: ky, kx: kx, geometry: g)
        }
    }
    for i in 0..<(g.oh * ow) { y[i] = bias.map { acc[i] + $0 } ?? acc[i] }
}

/// One tap (ky, kx) over the plane: acc[oy, ox] = fma(w, x[iy, ix], acc[oy, ox]), with 0 for an
/// input outside the plane (the product is still added, as im2col's zeros are: a chain that is
/// −0 stays as the GEMM path leaves it). Eight outputs per vector: contiguous loads at stride 1,
/// the even lanes of sixteen at stride 2. Lane-wise FMA: the same bits as one output at a time.
// NOTE: as a plain loop per output row this ran at 2-4 GFLOP/s on MobileNetV2's depthwise
// layers: the rows are 7-112 outputs, and a call per row and tap cost more than its work.
@inline(never)
func depthwiseTap(_ acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, weight: Float, ky: Int, kx: Int, geometry g: DepthwiseGeometry) {
    let ow = g.ow, stride = g.strideW
    let wv = SIMD8<Float>(repeating: weight)
    let shift = kx * g.dilationW - g.padLeft
    // Outputs whose input column is inside a row: ox·stride + shift in [0, iw).
    let lo0 = shift >= 0 ? 0 : (-shift + stride - 1) / stride
    let hi = g.iw - 1 - shift < 0 ? 0 : min(ow, (g.iw - 1 - shift) / stride + 1)
    let lo = min(lo0, hi)
    for oy in 0..<g.oh {
        let out = acc + oy * ow
        let iy = oy * g.strideH - g.padTop + ky * g.dilationH
        guard iy >= 0 && iy < g.ih else {
            for ox in 0..<ow { out[ox] = out[ox].addingProduct(weight, 0) }
            continue
        }
        let row = x + iy * g.iw
        for ox in 0..<lo { out[ox] = out[ox].addingProduct(weight, 0) }
        var ox = lo
        let dst = UnsafeMutableRawPointer(out)
        if stride == 1 {
            let src = UnsafeRawPointer(row + shift)
            while ox + 8 <= hi {
                let a = dst.loadUnaligned(fromByteOffset: ox * 4, as: SIMD8<Float>.self)
                let v = src.loadUnaligned(fromByteOffset: ox * 4, as: SIMD8<Float>.self)
                dst.storeBytes(of: a.addingProduct(wv, v), toByteOffset: ox * 4, as: SIMD8<Float>.self)
                ox += 8
            }
            // NOTE: rows of 7-28 outputs left most of the work to the one-by-one tail.
            if ox + 4 <= hi {
                let a = dst.loadUnaligned(fromByteOffset: ox * 4, as: SIMD4<Float>.self)
                let v = src.loadUnaligned(fromByteOffset: ox * 4, as: SIMD4<Float>.self)
                dst.storeBytes(of: a.addingProduct(SIMD4(repeating: weight), v), toByteOffset: ox * 4, as: SIMD4<Float>.self)
                ox += 4
            }
        } else if stride == 2 {
            let src = UnsafeRawPointer(row)
            // Sixteen values from ox·2 + shift must lie inside the row.
            while ox + 8 <= hi && ox * 2 + shift + 16 <= g.iw {
                let a = dst.loadUnaligned(fromByteOffset: ox * 4, as: SIMD8<Float>.self)
                let v = src.loadUnaligned(fromByteOffset: (ox * 2 + shift) * 4, as: SIMD16<Float>.self).evenHalf
                dst.storeBytes(of: a.addingProduct(wv, v), toByteOffset: ox * 4, as: SIMD8<Float>.self)
                ox += 8
            }
            if ox + 4 <= hi && ox * 2 + shift + 8 <= g.iw {
                let a = dst.loadUnaligned(fromByteOffset: ox * 4, as: SIMD4<Float>.self)
                let v = src.loadUnaligned(fromByteOffset: (ox * 2 + shift) * 4, as: SIMD8<Float>.self).evenHalf
                dst.storeBytes(of: a.addingProduct(SIMD4(repeating: weight), v), toByteOffset: ox * 4, as: SIMD4<Float>.self)
                ox += 4
            }
        }
        while ox < hi {
            out[ox] = out[ox].addingProduct(weight, row[ox * stride + shift])
            ox += 1
        }
        for ox in hi..<ow { out[ox] = out[ox].addingProduct(weight, 0) }
    }
}

/// The reference twin: one output at a time, straight from the definition.
public func depthwiseConv2dReference(_ x: UnsafePointer<Float>, weights w: UnsafePointer<Float>, bias: Float?, geometry g: DepthwiseGeometry,
                                     y: UnsafeMutablePointer<Float>) {
    for oy in 0..<g.oh {
        for ox in 0..<g.ow {
            var acc: Float = 0
            for ky in 0..<g.kh {
                for kx in 0..<g.kw {
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH, ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                    let v: Float = iy >= 0 && iy < g.ih && ix >= 0 && ix < g.iw ? x[iy * g.iw + ix] : 0
                    acc = acc.addingProduct(w[ky * g.kw + kx], v)
                }
            }
            y[oy * g.ow + ox] = bias.map { acc + $0 } ?? acc
        }
    }
}
