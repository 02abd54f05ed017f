import Common
import Kernels

// Dropout: identity at inference, a seeded Philox mask in training mode.

extension OpContext {
    func dropout() throws -> [Value] {
        let x = try float(0)
        var ratio: Float = 0.5
        if graph.opset >= 12 { ratio = try optionalScalar(1) ?? 0.5 } else { ratio = try float("ratio", 0.5) }
        var training = graph.training
        if graph.opset >= 12, has(2) {
            guard case .bool(let t) = try value(2), t.data.count == 1 else { throw fail("training_mode must be a bool scalar") }
            training = t.data[0] != 0
        }
        guard ratio >= 0 && ratio < 1 else { throw fail("ratio \(ratio) must be in [0, 1)") }
        let n = x.value.count
        if !training || ratio == 0 {
            let out = emit(x.value, parents: [x]) { dy in dy.withUnsafeBufferPointer { x.addGrad($0) } }
            return [out, .bool(IntTensor(shape: x.value.shape, data: [Int64](repeating: 1, count: n)))]
        }
        // Training: a Philox stream per (seed, call), so masks are the same on every run.
        var rng = Philox(seed: graph.dropoutSeed, stream: graph.dropoutCounter)
        graph.dropoutCounter += 1
        var mask = [Float](repeating: 0, count: n)
        let keep = 1 / (1 - ratio)
        for i in 0..<n where rng.nextUnitFloat() >= ratio { mask[i] = keep }
        var y = x.value
        y.withUnsafeMutableBufferPointer { p in for i in 0..<n { p[i] *= mask[i] } }
        let out = emit(y, parents: [x]) { dy in
            dy.withUnsafeBufferPointer { dp in x.accumulateGrad { g in for i in 0..<n { g[i] += dp[i] * mask[i] } } }
        }
        return [out, .bool(IntTensor(shape: x.value.shape, data: mask.map { $0 != 0 ? 1 : 0 }))]
    }
}
