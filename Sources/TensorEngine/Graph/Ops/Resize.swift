import Foundation

// Resize (opsets 10 to 19): nearest, (multi)linear and cubic interpolation, the forms PyTorch's
// `F.interpolate` and `nn.Upsample` export to (nearest with asymmetric coordinates and floor;
// linear and cubic with half_pixel, pytorch_half_pixel or align_corners). Coordinates and
// weights are computed in Double, as ONNX's reference implementation does; each output is a
// fixed-order weighted sum of its taps (1, 2 or 4 per resized axis), and the backward step adds
// the same weights. Not supported: antialias, tf_crop_and_resize.

extension OpContext {
    func resize() throws -> Value {
        let x = try value(0)
        let shape = x.shape
        let rank = shape.count
        let opset10 = graph.opset < 11
        let scalesInput = opset10 ? 1 : 2, sizesInput = 3
        var axes = Array(0..<rank)
        if let given = try ints("axes") { axes = try given.map { try axis($0, rank: rank) } }
        // Output size and scale per axis.
        var scale = [Double](repeating: 1, count: rank)
        var out = shape
        if has(sizesInput), try ints(sizesInput).data.count > 0 {
            let sizes = try ints(sizesInput).data.map { Int($0) }
            guard sizes.count == axes.count else { throw fail("sizes has \(sizes.count) values for \(axes.count) axes") }
            guard sizes.allSatisfy({ $0 >= 0 }) else { throw fail("sizes must not be negative") }
            let policy = try string("keep_aspect_ratio_policy", "stretch")
            switch policy {
            case "stretch":
                for (a, n) in zip(axes, sizes) {
                    out[a] = n
                    scale[a] = shape[a] == 0 ? 1 : Double(n) / Double(shape[a])
                }
            case "not_larger", "not_smaller":
                // One scale for every axis: the smallest (largest) of sizes / input.
                let ratios = zip(axes, sizes).map { Double($1) / Double(max(shape[$0], 1)) }
                let s = policy == "not_larger" ? ratios.min() ?? 1 : ratios.max() ?? 1
                for a in axes {
                    scale[a] = s
                    out[a] = Int((Double(shape[a]) * s).rounded(.toNearestOrAwayFromZero))
                }
            default:
                throw fail("keep_aspect_ratio_policy '\(policy)' is not supported (stretch, not_larger, not_smaller)")
            }
        } else if has(scalesInput) {
            let scales = try float(scalesInput).value.scalars.map(Double.init)
            guard scales.count == axes.count else { throw fail("scales has \(scales.count) values for \(axes.count) axes") }
            for (a, s) in zip(axes, scales) {
                guard s > 0 else { throw fail("scales must be positive, found \(s)") }
                scale[a] = s
                out[a] = Int((Double(shape[a]) * s).rounded(.down))
            }
        } else {
            throw fail("needs scales or sizes")
        }
        let mode = try string("mode", "nearest")
        guard ["nearest", "linear", "cubic"].contains(mode) else {
            throw fail("mode '\(mode)' is not supported (nearest, linear, cubic)")
        }
        let cubicA = Double(try float("cubic_coeff_a", -0.75))
        let excludeOutside = try int("exclude_outside", 0) != 0
        guard try int("antialias", 0) == 0 else { throw fail("antialias is not supported (export with antialias=False)") }
        let transform = opset10 ? "asymmetric" : try string("coordinate_transformation_mode", "half_pixel")
        let nearestMode = opset10 ? "floor" : try string("nearest_mode", "round_prefer_floor")
        guard ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"].contains(transform) else {
            throw fail("coordinate_transformation_mode '\(transform)' is not supported (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric)")
        }
        guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearestMode) else {
            throw fail("nearest_mode '\(nearestMode)' is not supported")
        }

        /// The input coordinate of output index `o` along an axis.
        func source(_ o: Int, inLength: Int, outLength: Int, scale s: Double) -> Double {
            let xo = Double(o)
            switch transform {
            case "asymmetric": return xo / s
            case "align_corners":
                // ONNX's reference divides by the unrounded output length (scale · input).
                let width = s * Double(inLength)
                return width == 1 ? 0 : xo * Double(inLength - 1) / (width - 1)
            case "pytorch_half_pixel": return outLength > 1 ? (xo + 0.5) / s - 0.5 : 0
            case "tf_half_pixel_for_nn": return (xo + 0.5) / s
            case "half_pixel_symmetric":
                let adjustment = Double(outLength) / (s * Double(inLength))
                let center = Double(inLength) / 2
                return center * (1 - adjustment) + (xo + 0.5) / s - 0.5
            default: return (xo + 0.5) / s - 0.5
            }
        }
        // Per axis and output index: the source indices (clamped to the edges, as ONNX's
        // reference pads with edge values) and their weights.
        _ = try checkedCount(out, bytesPerElement: 16)
        var taps: [[[(index: Int, weight: Double)]]] = []
        for a in 0..<rank {
            let n = shape[a], m = out[a]
            guard out[a] != n || scale[a] != 1 else { taps.append((0..<m).map { [($0, 1)] }); continue }
            taps.append((0..<m).map { o in
                let xs = source(o, inLength: n, outLength: m, scale: scale[a])
                let clampIndex = { (i: Int) in min(max(i, 0), max(n - 1, 0)) }
                let f = xs.rounded(.down), frac = xs - f, i = Int(f)
                switch mode {
                case "nearest":
                    // The left or right neighbour of the coordinate by its fraction.
                    var k = i
                    switch nearestMode {
                    case "floor": break
                    case "ceil": if frac > 0 { k += 1 }
                    case "round_prefer_ceil": if frac >= 0.5 { k += 1 }
                    default: if frac > 0.5 { k += 1 }
                    }
                    return [(clampIndex(k), 1)]
                case "linear":
                    return [(clampIndex(i), 1 - frac), (clampIndex(i + 1), frac)]
                default:
                    // Keys' cubic convolution with coefficient A on i − 1 … i + 2.
                    let A = cubicA, r = frac, q = 1 - frac
                    var w = [((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A,
                             ((A + 2) * r - (A + 3)) * r * r + 1,
                             ((A + 2) * q - (A + 3)) * q * q + 1,
                             ((A * (q + 1) - 5 * A) * (q + 1) + 8 * A) * (q + 1) - 4 * A]
                    let points = [i - 1, i, i + 1, i + 2]
                    if excludeOutside {
                        for k in 0..<4 where points[k] < 0 || points[k] >= n { w[k] = 0 }
                        let sum = w.reduce(0, +)
                        if sum != 0 { w = w.map { $0 / sum } }
                    }
                    return zip(points, w).map { (clampIndex($0), $1) }
                }
            })
        }
        let total = out.reduce(1, *)
        let inStrides = stridesOf(shape), outStrides = stridesOf(out)
        // Every output element: its sources and weights over every combination of taps, in a
        // fixed order (the last axis fastest).
        let width = taps.map { $0.first?.count ?? 1 }
        let corners = width.reduce(1, *)
        var index = [Int](repeating: 0, count: total * corners)
        var weight = [Float](repeating: 0, count: total * corners)
        var coords = [Int](repeating: 0, count: rank)
        for e in 0..<total {
            var rest = e
            for a in 0..<rank {
                coords[a] = rest / outStrides[a]
                rest %= outStrides[a]
            }
            for c in 0..<corners {
                var src = 0, w = 1.0, digit = c
                for a in stride(from: rank - 1, through: 0, by: -1) {
                    let t = taps[a][coords[a]][digit % width[a]]
                    digit /= width[a]
                    src += t.index * inStrides[a]
                    w *= t.weight
                }
                index[e * corners + c] = src
                weight[e * corners + c] = Float(w)
            }
        }
        guard case .float(let xv) = x else {
            guard mode == "nearest" else { throw fail("\(mode) interpolation needs float32 input") }
            return gatherElements(x, map: (0..<total).map { index[$0 * corners] }, shape: out)
        }
        var y = Tensor(zeros: out)
        xv.value.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for e in 0..<total {
                    var acc: Float = 0
                    for c in 0..<corners { acc += weight[e * corners + c] * xp[index[e * corners + c]] }
                    yp[e] = acc
                }
            }
        }
        return emit(y, parents: [xv]) { dy in
            dy.withUnsafeBufferPointer { dp in
                xv.accumulateGrad { g in
                    for e in 0..<total { for c in 0..<corners { g[index[e * corners + c]] += weight[e * corners + c] * dp[e] } }
                }
            }
        }
    }
}
