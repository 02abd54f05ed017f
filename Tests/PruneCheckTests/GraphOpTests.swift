import Common
import Foundation
import Testing
@testable import Kernels
import KernelsAVX512
@testable import TensorEngine
import ModelIO
import Pruning

/// Inputs spread out so that no two elements tie (max, ReLU kinks and pooling are then
/// differentiable at the test point and under the finite-difference step).
func spreadTensor(_ shape: [Int], seed: UInt64, positive: Bool = false) -> Tensor {
    var rng = Philox(seed: seed)
    let n = shape.reduce(1, *)
    let order = rng.permutation(n)
    return Tensor(shape: shape, scalars: order.map { k in
        let v = (Float(k) + 0.5) / Float(n)          // (0, 1), distinct, spaced 1/n
        return positive ? 0.5 + v : (v * 2 - 1) * 1.5 + (v > 0.5 ? 0.05 : -0.05)
    })
}

/// Central-difference check of one op: loss = Σ wᵢ·yᵢ with fixed random w, the analytic
/// gradient from the tape against (loss(x + h) − loss(x − h)) / 2h for every element of every
/// differentiable input. The engine is float32; losses are summed in Double, and the step
/// and tolerance are sized for float rounding.
func gradientCheck(
    _ op: String, inputs: [(String, Tensor)], constants: [(String, TensorData)] = [], attributes: [String: Attribute] = [:],
    opset: Int = 17, training: Bool = false, step h: Float = 1e-2, atol: Float = 3e-3, rtol: Float = 3e-2,
    order: [String]? = nil, outputs: [String] = ["y"], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let node = Node(name: "op", opType: op, inputs: order ?? inputs.map(\.0) + constants.map(\.0), outputs: outputs, attributes: attributes)
    let graph = Graph(nodes: [node], inputs: inputs.map { GraphInput(name: $0.0, dtype: .float32, shape: $0.1.shape) }, outputs: ["y"],
                      initializers: constants, opset: opset)
    graph.training = training
    let vars = inputs.map { Variable($0.1, requiresGrad: true) }
    func output(_ vs: [Variable], tape: Tape?) throws -> Variable {
        graph.dropoutCounter = 0
        guard case .float(let y) = try graph.run(vs.map { .float($0) }, tape: tape)[0] else { fatalError() }
        return y
    }
    let probe = try output(vars.map { Variable($0.value) }, tape: nil)
    var rng = Philox(seed: 99)
    let w = (0..<probe.value.count).map { _ in rng.nextUnitFloat() * 2 - 1 }
    func loss(_ vs: [Variable]) throws -> Double {
        let y = try output(vs, tape: nil).value.scalars
        return zip(y, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }
    let tape = Tape()
    let y = try output(vars, tape: tape)
    let l = Variable(Tensor(shape: [1], scalars: [0]), requiresGrad: true)
    tape.record { y.accumulateGrad { g in for i in 0..<w.count { g[i] += w[i] * l.grad!.scalars[0] } } }
    tape.backward(from: l)
    for (k, v) in vars.enumerated() {
        let analytic = v.grad?.scalars ?? [Float](repeating: 0, count: v.value.count)
        for i in 0..<v.value.count {
            let plus = vars.map { Variable($0.value) }, minus = vars.map { Variable($0.value) }
            plus[k].update { $0[i] += h }
            minus[k].update { $0[i] -= h }
            let numeric = Float((try loss(plus) - loss(minus)) / Double(2 * h))
            #expect(abs(numeric - analytic[i]) <= atol + rtol * abs(numeric),
                    "\(op) input \(inputs[k].0)[\(i)]: analytic \(analytic[i]), numeric \(numeric)", sourceLocation: sourceLocation)
        }
    }
}

func ints(_ v: [Int64]) -> TensorData { .int64(IntTensor(shape: [v.count], data: v)) }

@Suite struct GraphGradientTests {
    @Test(arguments: ["Relu", "Sigmoid", "Tanh", "Exp", "Erf", "Abs", "Neg"])
    func unary(_ op: String) throws {
        try gradientCheck(op, inputs: [("x", spreadTensor([3, 4], seed: 1))])
    }

    @Test func unaryOnPositiveInputs() throws {
        for op in ["Log", "Sqrt", "Reciprocal"] { try gradientCheck(op, inputs: [("x", spreadTensor([3, 4], seed: 2, positive: true))], step: 1e-3) }
    }

    @Test func parameterizedActivations() throws {
        let x = spreadTensor([2, 5], seed: 3)
        try gradientCheck("LeakyRelu", inputs: [("x", x)], attributes: ["alpha": .float(0.2)])
        try gradientCheck("Gelu", inputs: [("x", x)], opset: 20)
        try gradientCheck("Gelu", inputs: [("x", x)], attributes: ["approximate": .string("tanh")], opset: 20)
        // Resize: each output a fixed weighted sum of inputs (nearest, linear, cubic).
        let image = spreadTensor([1, 2, 3, 4], seed: 7)
        for (mode, transform) in [("nearest", "asymmetric"), ("linear", "half_pixel"), ("linear", "align_corners"), ("cubic", "pytorch_half_pixel")] {
            try gradientCheck("Resize", inputs: [("x", image)],
                              constants: [("scales", .float(Tensor(shape: [4], scalars: [1, 1, 1.7, 0.75])))],
                              attributes: ["mode": .string(mode), "coordinate_transformation_mode": .string(transform)],
                              opset: 19, order: ["x", "", "scales"])
        }
        // Einsum: a contraction, a diagonal, an outer product with broadcast dimensions.
        try gradientCheck("Einsum", inputs: [("a", spreadTensor([2, 3, 4], seed: 8)), ("b", spreadTensor([2, 5, 4], seed: 9))],
                          attributes: ["equation": .string("bqd,bkd->bqk")])
        try gradientCheck("Einsum", inputs: [("a", spreadTensor([2, 3, 3], seed: 10))], attributes: ["equation": .string("...ii->...i")])
        try gradientCheck("Einsum", inputs: [("a", spreadTensor([2, 3], seed: 11)), ("b", spreadTensor([4], seed: 12))],
                          attributes: ["equation": .string("...i,j->...ij")])
        try gradientCheck("Clip", inputs: [("x", x)], constants: [("lo", .float(Tensor(shape: [], scalars: [-0.65]))),
                                                                    ("hi", .float(Tensor(shape: [], scalars: [0.3])))])
    }

    @Test(arguments: ["Add", "Sub", "Mul", "Div", "Max", "Min"])
    func broadcastingBinary(_ op: String) throws {
        try gradientCheck(op, inputs: [("a", spreadTensor([2, 3, 4], seed: 4)), ("b", spreadTensor([3, 1], seed: 5, positive: true))])
    }

    @Test func powAndVariadic() throws {
        try gradientCheck("Pow", inputs: [("a", spreadTensor([2, 3], seed: 6, positive: true)), ("b", spreadTensor([3], seed: 7))], step: 1e-3)
        try gradientCheck("Sum", inputs: [("a", spreadTensor([2, 3], seed: 8)), ("b", spreadTensor([3], seed: 9)), ("c", spreadTensor([2, 1], seed: 10))])
        try gradientCheck("Mean", inputs: [("a", spreadTensor([2, 3], seed: 11)), ("b", spreadTensor([2, 3], seed: 12))])
    }

    @Test func softmaxFamily() throws {
        for op in ["Softmax", "LogSoftmax"] {
            try gradientCheck(op, inputs: [("x", spreadTensor([2, 3, 4], seed: 13))], attributes: ["axis": .int(1)])
            try gradientCheck(op, inputs: [("x", spreadTensor([3, 5], seed: 14))])
        }
    }

    @Test func gemmAndMatMul() throws {
        try gradientCheck("Gemm", inputs: [("a", spreadTensor([4, 3], seed: 15)), ("b", spreadTensor([5, 4], seed: 16)), ("c", spreadTensor([1, 5], seed: 17))],
                          attributes: ["transA": .int(1), "transB": .int(1), "alpha": .float(0.7), "beta": .float(1.3)])
        try gradientCheck("Gemm", inputs: [("a", spreadTensor([3, 4], seed: 18)), ("b", spreadTensor([4, 2], seed: 19))])
        try gradientCheck("MatMul", inputs: [("a", spreadTensor([2, 1, 3, 4], seed: 20)), ("b", spreadTensor([3, 4, 2], seed: 21))])
        try gradientCheck("MatMul", inputs: [("a", spreadTensor([4], seed: 22)), ("b", spreadTensor([2, 4, 3], seed: 23))])
    }

    @Test func convolutions() throws {
        try gradientCheck("Conv", inputs: [("x", spreadTensor([2, 4, 5, 6], seed: 24)), ("w", spreadTensor([6, 2, 3, 2], seed: 25)), ("b", spreadTensor([6], seed: 26))],
                          attributes: ["strides": .ints([2, 1]), "pads": .ints([1, 0, 1, 1]), "dilations": .ints([1, 2]), "group": .int(2)])
        try gradientCheck("Conv", inputs: [("x", spreadTensor([2, 3, 9], seed: 27)), ("w", spreadTensor([4, 3, 3], seed: 28))],
                          attributes: ["strides": .ints([2]), "auto_pad": .string("SAME_UPPER")])
        // Depthwise (the direct backward kernel): strides 1 and 2, dilation, asymmetric pads, and
        // pads past the kernel's reach (the GEMM path).
        for (strides, pads, dilations) in [([1, 1], [1, 1, 1, 1], [1, 1]), ([2, 2], [1, 2, 0, 1], [1, 1]), ([1, 2], [2, 1, 2, 1], [2, 1]),
                                           ([2, 1], [3, 0, 3, 0], [1, 1])] {
            try gradientCheck("Conv", inputs: [("x", spreadTensor([2, 3, 7, 10], seed: 29)), ("w", spreadTensor([3, 1, 3, 3], seed: 30)),
                                               ("b", spreadTensor([3], seed: 31))],
                              attributes: ["strides": .ints(strides), "pads": .ints(pads), "dilations": .ints(dilations), "group": .int(3)])
        }
        // 3 × 3 of stride 1 with 16 channels (Winograd forward and input gradient): pads 1, none,
        // and asymmetric ones up to 2, odd and even planes.
        for (shape, pads) in [([1, 16, 5, 6], [1, 1, 1, 1]), ([2, 16, 6, 5], [0, 0, 0, 0]), ([1, 16, 4, 7], [2, 0, 1, 2])] {
            try gradientCheck("Conv", inputs: [("x", spreadTensor(shape, seed: 32)), ("w", spreadTensor([17, 16, 3, 3], seed: 33)),
                                               ("b", spreadTensor([17], seed: 34))],
                              attributes: ["pads": .ints(pads)])
        }
    }

    /// A Winograd Conv's gradients (its input gradient is a Winograd Conv too) are the same bits
    /// at 1, 2 and 3 threads.
    @Test func winogradGradientsDoNotDependOnThreads() throws {
        let node = Node(name: "op", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"], attributes: ["pads": .ints([1, 1, 1, 1])])
        let x = spreadTensor([3, 24, 9, 14], seed: 40), w = spreadTensor([20, 24, 3, 3], seed: 41), b = spreadTensor([20], seed: 42)
        let graph = Graph(nodes: [node], inputs: [("x", x.shape), ("w", w.shape), ("b", b.shape)].map { GraphInput(name: $0.0, dtype: .float32, shape: $0.1) },
                          outputs: ["y"], initializers: [], opset: 17)
        var results: [[[UInt32]]] = []
        for threads in [1, 2, 3] {
            let vars = [x, w, b].map { Variable($0, requiresGrad: true) }
            let tape = Tape()
            guard case .float(let y) = try graph.run(vars.map { .float($0) }, tape: tape, threads: threads)[0] else { fatalError() }
            let l = Variable(Tensor(shape: [1], scalars: [0]), requiresGrad: true)
            tape.record { y.accumulateGrad { g in for i in 0..<y.value.count { g[i] += Float(i % 7) - 3 } } }
            tape.backward(from: l)
            results.append(([y.value] + vars.map { $0.grad! }).map { $0.scalars.map(\.bitPattern) })
        }
        #expect(results[1] == results[0] && results[2] == results[0], "threads change the Conv's output or gradients")
    }

    @Test func pooling() throws {
        let x = spreadTensor([2, 2, 5, 5], seed: 29)
        try gradientCheck("MaxPool", inputs: [("x", x)], attributes: ["kernel_shape": .ints([2, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 0, 1])])
        try gradientCheck("AveragePool", inputs: [("x", x)], attributes: ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1]),
                                                                         "count_include_pad": .int(1), "ceil_mode": .int(1)])
        try gradientCheck("AveragePool", inputs: [("x", spreadTensor([2, 3, 7], seed: 30))], attributes: ["kernel_shape": .ints([3]), "pads": .ints([1, 1])])
        try gradientCheck("GlobalAveragePool", inputs: [("x", x)])
        try gradientCheck("GlobalMaxPool", inputs: [("x", x)])
    }

    @Test func normalization() throws {
        let x = spreadTensor([3, 2, 2, 2], seed: 31)
        let stats: [(String, TensorData)] = [("mean", .float(Tensor(shape: [2], scalars: [0.1, -0.2]))), ("var", .float(Tensor(shape: [2], scalars: [0.5, 1.5])))]
        for training in [false, true] {
            try gradientCheck("BatchNormalization", inputs: [("x", x), ("scale", spreadTensor([2], seed: 32, positive: true)), ("bias", spreadTensor([2], seed: 33))],
                              constants: stats, training: training, step: 1e-2, atol: 5e-3, rtol: 5e-2)
        }
        try gradientCheck("LayerNormalization", inputs: [("x", spreadTensor([2, 3, 4], seed: 34)), ("scale", spreadTensor([4], seed: 35, positive: true)),
                                                         ("bias", spreadTensor([4], seed: 36))],
                          attributes: ["axis": .int(-1)], atol: 5e-3, rtol: 5e-2)
        try gradientCheck("LayerNormalization", inputs: [("x", spreadTensor([2, 3, 4], seed: 37)), ("scale", spreadTensor([3, 4], seed: 38, positive: true))],
                          attributes: ["axis": .int(1)], atol: 5e-3, rtol: 5e-2)
    }

    @Test func dropoutInTrainingUsesAFixedMask() throws {
        try gradientCheck("Dropout", inputs: [("x", spreadTensor([4, 5], seed: 39))], constants: [("ratio", .float(Tensor(shape: [], scalars: [0.3])))], training: true)
    }

    @Test func movement() throws {
        let x = spreadTensor([2, 3, 4], seed: 40)
        try gradientCheck("Transpose", inputs: [("x", x)], attributes: ["perm": .ints([2, 0, 1])])
        try gradientCheck("Concat", inputs: [("a", x), ("b", spreadTensor([2, 1, 4], seed: 41))], attributes: ["axis": .int(1)])
        try gradientCheck("Slice", inputs: [("x", x)], constants: [("s", ints([0, -1])), ("e", ints([3, -5])), ("a", ints([1, 2])), ("st", ints([2, -2]))])
        try gradientCheck("Pad", inputs: [("x", x)], constants: [("p", ints([0, 1, 2, 0, 1, 1]))], attributes: ["mode": .string("reflect")])
        try gradientCheck("Pad", inputs: [("x", x)], constants: [("p", ints([0, 1, 0, 1, 0, 2]))], attributes: ["mode": .string("edge")])
        try gradientCheck("Gather", inputs: [("x", x)], constants: [("i", .int64(IntTensor(shape: [2, 2], data: [2, 0, -1, 2])))], attributes: ["axis": .int(1)])
        try gradientCheck("Reshape", inputs: [("x", x)], constants: [("s", ints([4, -1]))])
        try gradientCheck("Flatten", inputs: [("x", x)], attributes: ["axis": .int(2)])
        try gradientCheck("Unsqueeze", inputs: [("x", x)], constants: [("a", ints([0, -1]))])
        try gradientCheck("Squeeze", inputs: [("x", spreadTensor([2, 1, 3], seed: 42))], constants: [("a", ints([1]))])
    }

    @Test func reductions() throws {
        let x = spreadTensor([2, 3, 4], seed: 43)
        for op in ["ReduceSum", "ReduceMean", "ReduceMax"] {
            try gradientCheck(op, inputs: [("x", x)], constants: [("axes", ints([0, 2]))], attributes: ["keepdims": .int(0)], opset: 18)
            try gradientCheck(op, inputs: [("x", x)], opset: 18)
        }
    }

    @Test func lossesAgainstTheirFormulas() throws {
        let logits = spreadTensor([3, 4], seed: 44), teacher = spreadTensor([3, 4], seed: 45)
        // Label smoothing ε: loss = −Σ_j t_j log p_j with t = (1 − ε)·onehot + ε/C.
        let labels: [Int32] = [2, 0, 3]
        let eps: Float = 0.1
        let ce = softmaxCrossEntropy(Variable(logits), labels: labels, labelSmoothing: eps, tape: nil).value.scalars[0]
        var expected = 0.0
        for r in 0..<3 {
            let row = (0..<4).map { Double(logits.scalars[r * 4 + $0]) }
            let lse = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
            for j in 0..<4 { expected -= (j == Int(labels[r]) ? 1 - Double(eps) + Double(eps) / 4 : Double(eps) / 4) * (row[j] - lse) }
        }
        #expect(abs(Double(ce) - expected / 3) < 1e-5)
        // Gradients of both losses by central differences.
        for which in 0..<2 {
            let v = Variable(logits, requiresGrad: true)
            func value(_ x: Tensor) -> Double {
                which == 0 ? Double(softmaxCrossEntropy(Variable(x), labels: labels, labelSmoothing: eps, tape: nil).value.scalars[0])
                    : Double(distillationKL(student: Variable(x), teacher: teacher, temperature: 3, tape: nil).value.scalars[0])
            }
            let tape = Tape()
            let l = which == 0 ? softmaxCrossEntropy(v, labels: labels, labelSmoothing: eps, tape: tape)
                : distillationKL(student: v, teacher: teacher, temperature: 3, tape: tape)
            tape.backward(from: l)
            for i in 0..<12 {
                var up = logits, down = logits
                up.withUnsafeMutableBufferPointer { $0[i] += 1e-2 }
                down.withUnsafeMutableBufferPointer { $0[i] -= 1e-2 }
                let numeric = (value(up) - value(down)) / 2e-2
                #expect(abs(numeric - Double(v.grad!.scalars[i])) < 2e-3 + 2e-2 * abs(numeric), "loss \(which) [\(i)]")
            }
        }
        // KL of identical distributions is 0.
        #expect(abs(distillationKL(student: Variable(teacher), teacher: teacher, temperature: 2, tape: nil).value.scalars[0]) < 1e-6)
    }
}

@Suite struct TrainingPieceTests {
    /// Adam and AdamW against PyTorch's update written out by hand for two steps.
    @Test func adamMatchesTheFormula() {
        for decoupled in [false, true] {
            let p = Variable(Tensor(shape: [2], scalars: [1, -2]), requiresGrad: true)
            let opt = Optimizer(.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1, decoupled: decoupled), learningRate: 0.01)
            var w: [Double] = [1, -2], m = [0.0, 0], v = [0.0, 0]
            let grads: [[Float]] = [[0.5, -1], [0.25, 0.75]]
            for (t, g) in grads.enumerated() {
                p.accumulateGrad { for i in 0..<2 { $0[i] += g[i] } }
                opt.step([p])
                for i in 0..<2 {
                    var gi = Double(g[i])
                    if decoupled { w[i] *= 1 - 0.01 * 0.1 } else { gi += 0.1 * w[i] }
                    m[i] = 0.9 * m[i] + 0.1 * gi
                    v[i] = 0.999 * v[i] + 0.001 * gi * gi
                    let bc1 = 1 - pow(0.9, Double(t + 1)), bc2 = 1 - pow(0.999, Double(t + 1))
                    w[i] -= 0.01 / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
                }
            }
            #expect(zip(p.value.scalars, w).allSatisfy { abs(Double($0) - $1) < 1e-6 }, "decoupled \(decoupled): \(p.value.scalars) vs \(w)")
        }
    }

    /// The vector body (16 at a time) and the scalar tail give the same bits as the update
    /// written out one element at a time in Float, masked or not.
    @Test func vectorUpdatesEqualTheScalarFormula() {
        let n = 37
        let start = GemmTests.fill(n, seed: 3), grads = (0..<3).map { GemmTests.fill(n, seed: UInt32(10 + $0)) }
        let mask: [Float] = (0..<n).map { $0 % 5 == 2 ? 0 : 1 }
        let kinds: [OptimizerKind] = [
            .sgd(momentum: 0.9, nesterov: false, weightDecay: 0), .sgd(momentum: 0.9, nesterov: true, weightDecay: 0.01),
            .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1, decoupled: false),
            .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.1, decoupled: true),
        ]
        for kind in kinds {
            for masked in [false, true] {
                let p = Variable(Tensor(shape: [n], scalars: start), requiresGrad: true)
                let opt = Optimizer(kind, learningRate: 0.05)
                if masked { opt.setMask(mask, for: p) }
                var w = start, m = [Float](repeating: 0, count: n), v = [Float](repeating: 0, count: n)
                for (t, g) in grads.enumerated() {
                    p.accumulateGrad { for i in 0..<n { $0[i] += g[i] } }
                    opt.step([p])
                    let lr: Float = 0.05
                    for i in 0..<n {
                        var gi = masked && mask[i] == 0 ? 0 : g[i]
                        switch kind {
                        case let .sgd(mu, nesterov, wd):
                            if wd != 0 { gi = gi + wd * w[i] }
                            m[i] = mu * m[i] + gi
                            w[i] -= lr * (nesterov ? gi + mu * m[i] : m[i])
                        case let .adam(b1, b2, eps, wd, decoupled):
                            let bc1 = 1 - Float(powInt(Double(b1), t + 1)), bc2 = 1 - Float(powInt(Double(b2), t + 1))
                            if decoupled { w[i] *= 1 - lr * wd } else if wd != 0 { gi += wd * w[i] }
                            m[i] = b1 * m[i] + (1 - b1) * gi
                            v[i] = b2 * v[i] + (1 - b2) * gi * gi
                            w[i] -= (lr / bc1) * m[i] / (v[i].squareRoot() / bc2.squareRoot() + eps)
                        }
                        if masked && mask[i] == 0 { w[i] = 0 }
                    }
                }
                #expect(p.value.scalars.map(\.bitPattern) == w.map(\.bitPattern), "\(kind) masked \(masked)")
            }
        }
    }

    /// After `zeroGrad` the gradient is none, the next one starts from zeros in the kept buffer,
    /// and a gradient read before is left as it was.
    @Test func zeroGradKeepsTheBufferButNotTheValues() {
        let p = Variable(Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]), requiresGrad: true)
        p.accumulateGrad { for i in 0..<6 { $0[i] += Float(i) + 0.5 } }
        let before = p.grad!
        p.zeroGrad()
        #expect(p.grad == nil)
        p.accumulateGrad { $0[0] += -0.0; $0[5] += 2 }
        #expect(p.grad!.scalars.map(\.bitPattern) == [0, 0, 0, 0, 0, Float(2).bitPattern])
        #expect(before.scalars == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
        p.zeroGrad()
        p.accumulateGrad { $0[1] += 1 }
        #expect(p.grad!.scalars == [0, 1, 0, 0, 0, 0])
    }

    @Test func nesterovAndWeightDecayAndMasks() {
        let p = Variable(Tensor(shape: [3], scalars: [1, 2, 3]), requiresGrad: true)
        let opt = Optimizer(.sgd(momentum: 0.9, nesterov: true, weightDecay: 0.01), learningRate: 0.1)
        opt.setMask([1, 0, 1], for: p)
        p.update { $0[1] = 0 }
        var w = [1.0, 0, 3], buf = [0.0, 0, 0]
        for _ in 0..<3 {
            p.accumulateGrad { $0[0] += 1; $0[1] += 1; $0[2] += -2 }
            opt.step([p])
            for i in [0, 2] {
                let g = (i == 0 ? 1.0 : -2.0) + 0.01 * w[i]
                buf[i] = 0.9 * buf[i] + g
                w[i] -= 0.1 * (g + 0.9 * buf[i])
            }
        }
        #expect(abs(Double(p.value.scalars[0]) - w[0]) < 1e-5 && abs(Double(p.value.scalars[2]) - w[2]) < 1e-5)
        #expect(p.value.scalars[1] == 0 && p.value.scalars[1].sign == .plus)
    }

    @Test func schedulesFollowPyTorch() {
        #expect(LRSchedule.step(stepSize: 2, gamma: 0.5).rate(base: 1, step: 5) == 0.25)
        #expect(LRSchedule.multiStep(milestones: [2, 4], gamma: 0.1).rate(base: 1, step: 3) == 0.1)
        #expect(abs(LRSchedule.exponential(gamma: 0.9).rate(base: 1, step: 2) - 0.81) < 1e-15)
        // Cosine to 0 over 10 steps: half-way is half the rate, the end is 0.
        let cosine = LRSchedule.cosine(total: 10, warmup: 0, minLR: 0)
        #expect(abs(cosine.rate(base: 0.01, step: 5) - 0.005) < 1e-12 && abs(cosine.rate(base: 0.01, step: 10)) < 1e-15)
        for x in stride(from: -10.0, through: 10.0, by: 0.37) { #expect(abs(cos64(x) - cos(x)) < 1e-14 && abs(sin64(x) - sin(x)) < 1e-14) }
        // One-cycle: starts at lr/25, peaks at lr after 30 %, ends near lr/(25·10⁴).
        let one = LRSchedule.oneCycle(total: 100, pctStart: 0.3)
        #expect(abs(one.rate(base: 1, step: 0) - 0.04) < 1e-12 && abs(one.rate(base: 1, step: 29) - 1) < 1e-12)
        #expect(abs(one.rate(base: 1, step: 99) - 4e-6) < 1e-9)
        var plateau = PlateauState()
        let scales = [1.0, 0.9, 0.95, 0.92].map { plateau.record(loss: $0, factor: 0.5, patience: 1) }
        #expect(scales == [1, 1, 1, 0.5])
    }

    @Test func initializersHaveTheirVariance() {
        var rng = Philox(seed: 5)
        for (scheme, expected) in [(Initializer.kaimingNormal, 2.0 / 200), (.kaimingUniform, 2.0 / 200), (.xavierNormal, 2.0 / 300), (.xavierUniform, 2.0 / 300)] {
            let t = scheme.sample([100, 200], rng: &rng).scalars.map(Double.init)
            let mean = t.reduce(0, +) / Double(t.count)
            let variance = t.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(t.count)
            #expect(abs(mean) < 0.003 && abs(variance / expected - 1) < 0.05, "\(scheme): var \(variance), expected \(expected)")
        }
        var a = Philox(seed: 9), b = Philox(seed: 9)
        #expect(Initializer.kaimingNormal.sample([7, 3], rng: &a) == Initializer.kaimingNormal.sample([7, 3], rng: &b))
    }

    @Test func ownTranscendentalsMatchLibm() {
        for x in stride(from: -30.0, through: 30.0, by: 0.173) {
            #expect(abs(exp64(x) / Foundation.exp(x) - 1) < 1e-14)
            #expect(abs(tanh64(x) - Foundation.tanh(x)) < 1e-15)
            #expect(abs(erf64(x / 5) - Foundation.erf(x / 5)) < 1e-13)  // the series loses ~2 digits near 3
            if x > 0 { #expect(abs(log64(x) - Foundation.log(x)) < 1e-14) }
        }
        #expect(pow64(-2, 3) == -8 && abs(pow64(4, 0.5) - 2) < 1e-15 && pow64(2, -2) == 0.25)
    }

    /// The Float erf and exact GELU (what Erf and Gelu run on) against libm's Double erf and
    /// erfc: within 2 ulp of the Float result (erf); GELU within 16 ulp (10⁻⁶ relative; 9 measured), or in the far negative
    /// tail, Φ within 2⁻²⁶ absolutely; over every 1/4096 step of [−8, 8] and far beyond.
    @Test func floatErfAndGeluAreFaithful() {
        func ulps(_ got: Float, _ want: Double) -> Double {
            let w = Float(want)
            guard w != 0 else { return Double(abs(got)) / Double(Float.leastNonzeroMagnitude) }
            return abs(Double(got) - want) / Double(w.ulp)
        }
        var worstErf = 0.0, worstGelu = 0.0
        for i in -32768...32768 {
            let x = Float(i) / 4096
            worstErf = max(worstErf, ulps(erf32(x), Foundation.erf(Double(x))))
            let g = Double(x) * 0.5 * Foundation.erfc(-Double(x) / 2.0.squareRoot())
            // GELU: 16 ulp, or Φ(x) within 2⁻²⁶ absolutely where the value is a deep-tail sliver.
            let err = abs(Double(geluErf32(x)) - g)
            if err > Double(x.magnitude) * 0x1p-26 { worstGelu = max(worstGelu, ulps(geluErf32(x), g)) }
        }
        #expect(worstErf <= 2, "erf32: \(worstErf) ulp")
        #expect(worstGelu <= 16, "geluErf32: \(worstGelu) ulp")
        for x: Float in [-1e30, -50, 50, 1e30] { #expect(erf32(x) == (x < 0 ? -1 : 1)) }
        #expect(geluErf32(100) == 100 && geluErf32(-100) == 0 && geluErf32(0) == 0)
        #expect(erf32(.nan).isNaN && geluErf32(.nan).isNaN)
    }

    /// The sixteen-lane kernels give every lane the scalar function's bits: GELU, sigmoid and
    /// exp over a dense sweep, the range edges, infinities and NaN, and a scalar tail.
    @Test func laneKernelsMatchTheScalarFunctions() {
        var xs: [Float] = (-2400...2400).map { Float($0) / 16 }
        xs += [88.72283, 88.72284, -103.97208, -103.9721, 1e30, -1e30, .infinity, -.infinity, .nan, 0, -0.0,
               0.921875, -0.921875, Float(0.921875).nextUp, Float.leastNonzeroMagnitude, 3,
               -88, Float(-88).nextDown, Float(-88).nextUp, 87, Float(87).nextUp, -87.336, 86.9]
        // Every length up to two vectors and a tail: the partial last vector too.
        for count in Array(1...33) + [xs.count] {
            let part = Array(xs.suffix(count))
            var gelu = [Float](repeating: 0, count: count), sig = gelu, silu = part
            geluErfForward(part, count: count, out: &gelu)
            sigmoidForward(part, count: count, out: &sig)
            siluForward(&silu, count: count)
            for (i, x) in part.enumerated() {
                #expect(gelu[i].bitPattern == geluErf32(x).bitPattern, "gelu(\(x)): \(gelu[i]) vs \(geluErf32(x))")
                #expect(sig[i].bitPattern == sigmoid32(x).bitPattern, "sigmoid(\(x))")
                // (−∞ · 0: a NaN, its sign bit as the multiply gives it)
                let want = x * sigmoid32(x)
                #expect(silu[i].bitPattern == want.bitPattern || silu[i].isNaN && want.isNaN, "silu(\(x))")
            }
        }
        for start in stride(from: 0, to: xs.count - 16, by: 16) {
            let s = sigmoid32(Float16x(xs[start..<(start + 16)]))
            for k in 0..<16 { #expect(s[k].bitPattern == sigmoid32(xs[start + k]).bitPattern, "sigmoid(\(xs[start + k]))") }
            let v = expf32(Float16x(xs[start..<(start + 16)]))
            for k in 0..<16 { #expect(v[k].bitPattern == expf32(xs[start + k]).bitPattern, "exp(\(xs[start + k]))") }
        }
    }
}

extension TrainingPieceTests {
    /// `sigmoid32` is within 3 ulp of 1 / (1 + e^−x) in Double from −88 to 88 (every 1/1024 and
    /// every float near the clamps), 0 below −88, 1 where it rounds to 1, and carries a NaN.
    @Test func sigmoidIsWithinThreeUlpOfTheExactValue() {
        var xs: [Float] = (-88 * 1024...88 * 1024).map { Float($0) / 1024 }
        for edge: Float in [-88, 87, -17, 17, 0] {
            var v = edge, w = edge
            for _ in 0..<64 { v = v.nextUp; w = w.nextDown; xs += [v, w] }
        }
        var worst = 0.0
        for x in xs where x >= -88 {
            let exact = 1 / (1 + Foundation.exp(-Double(x)))
            let ulp = Double(Float(exact).ulp)
            worst = max(worst, abs(Double(sigmoid32(x)) - exact) / ulp)
        }
        #expect(worst <= 3, "worst error \(worst) ulp")
        #expect(sigmoid32(Float(-88).nextDown) == 0 && sigmoid32(-1e30) == 0 && sigmoid32(-.infinity) == 0)
        #expect(sigmoid32(88) == 1 && sigmoid32(1e30) == 1 && sigmoid32(.infinity) == 1)
        #expect(sigmoid32(.nan).isNaN)
    }
}

/// Pooling has a path per run length (vectors along a row, or eight planes at a time for short
/// rows) and, for training, a per-value path that keeps the argmax. All must give the same bits,
/// at any thread count, with ties, NaNs and infinities in the input.
@Suite struct PoolingPathTests {
    func run(_ op: String, _ x: Tensor, _ attributes: [String: Attribute], threads: Int, tape: Bool) throws -> [UInt32] {
        let node = Node(name: "pool", opType: op, inputs: ["x"], outputs: ["y"], attributes: attributes)
        let graph = Graph(nodes: [node], inputs: [GraphInput(name: "x", dtype: .float32, shape: x.shape)], outputs: ["y"],
                          initializers: [], opset: 17)
        let v = Variable(x, requiresGrad: tape)
        guard case .float(let y) = try graph.run([.float(v)], tape: tape ? Tape() : nil, threads: threads)[0] else { fatalError() }
        return y.value.scalars.map(\.bitPattern)
    }

    @Test func everyPathGivesTheSameBits() throws {
        var rng = Philox(seed: 5)
        let cases: [([Int], [String: Attribute])] = [
            ([3, 11, 10, 10], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]),        // rows of 5, output row by output row
            ([1, 6, 10, 10], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]),         // rows of 5, the plane's last outputs stored lane by lane
            ([8, 16, 28, 28], ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]),       // rows of 14 (8 + 6), threads split planes
            ([2, 9, 5, 5], [:]),                                                                 // global pooling (below): eight planes at a time
            ([3, 11, 9, 9], ["kernel_shape": .ints([3, 3]), "strides": .ints([3, 3])]),          // rows of 3: eight planes at a time, 1 left
            ([2, 3, 20, 20], ["kernel_shape": .ints([2, 2]), "strides": .ints([3, 3])]),         // rows of 7 at step 3: runs, gathered
            ([2, 5, 12, 12], ["kernel_shape": .ints([2, 2]), "dilations": .ints([2, 2])]),       // dilated rows of 10, one vector + a partial
            ([2, 3, 40, 40], ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]),      // rows of 40, padded
            ([4, 9, 40], ["kernel_shape": .ints([3]), "strides": .ints([2])]),                   // 1-D
        ]
        for (shape, attributes) in cases {
            let n = shape.reduce(1, *)
            // Few distinct values (ties everywhere), some NaN (two payloads), -inf, and zeros of
            // both signs: which of equal values a max keeps shows in the bits.
            let x = Tensor(shape: shape, scalars: (0..<n).map { _ in
                let r = rng.nextUnitFloat()
                return r < 0.02 ? .nan : r < 0.04 ? Float(nan: 5, signaling: false) : r < 0.06 ? -.infinity
                    : r < 0.16 ? -0.0 : Float(Int(r * 6)) - 2
            })
            for op in attributes.isEmpty ? ["GlobalMaxPool", "GlobalAveragePool"] : ["MaxPool", "AveragePool"] {
                let reference = try run(op, x, attributes, threads: 1, tape: true)
                for threads in [1, 2, 3] {
                    let got = try run(op, x, attributes, threads: threads, tape: false)
                    let first = got.indices.first { $0 >= reference.count || got[$0] != reference[$0] }
                    #expect(got.count == reference.count && first == nil,
                            "\(op) \(shape) threads \(threads): output \(first ?? -1) has bits \(first.map { got[$0] } ?? 0), expected \(first.map { reference[$0] } ?? 0)")
                }
            }
            // The max-pool values against the definition (any NaN in the window gives NaN).
            if shape.count == 4, attributes == ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])] {
                let y = try run("MaxPool", x, attributes, threads: 1, tape: false)
                let (h, w) = (shape[2], shape[3]), (oh, ow) = (h / 2, w / 2)
                for plane in 0..<(shape[0] * shape[1]) {
                    for i in 0..<oh {
                        for j in 0..<ow {
                            let window = [(0, 0), (0, 1), (1, 0), (1, 1)].map { x.scalars[plane * h * w + (2 * i + $0.0) * w + 2 * j + $0.1] }
                            let got = Float(bitPattern: y[plane * oh * ow + i * ow + j])
                            if window.contains(where: \.isNaN) { #expect(got.isNaN) } else { #expect(got == window.max()!) }
                        }
                    }
                }
            }
        }
    }
}

extension DirectConvTests {
    /// A Conv node that takes the direct kernel (one input channel, 5×5, pads 2) computes the
    /// reference chain plus the bias, for any thread count (the demo's LeNet-5 baselines check
    /// that the direct and the im2col + GEMM paths give the same bits).
    @Test func convNodesOnTheDirectPathKeepTheirBits() throws {
        let (batch, cout, side) = (5, 6, 12)
        let x = Tensor(shape: [batch, 1, side, side], scalars: GemmTests.fill(batch * side * side, seed: 5))
        let w = Tensor(shape: [cout, 1, 5, 5], scalars: GemmTests.fill(cout * 25, seed: 6))
        let bias = Tensor(shape: [cout], scalars: GemmTests.fill(cout, seed: 7))
        var expected: [Float] = []
        for n in 0..<batch {
            var y = [Float](repeating: 0, count: cout * side * side)
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer {
                    conv2dDirectReference(x: xp.baseAddress! + n * side * side, cin: 1, ih: side, iw: side, w: w.scalars, cout: cout, kh: 5, kw: 5,
                                          padTop: 2, padLeft: 2, oh: side, ow: side, y: $0.baseAddress!)
                }
            }
            for m in 0..<cout { for p in 0..<(side * side) { y[m * side * side + p] += bias.scalars[m] } }
            expected += y
        }
        for threads in [1, 2, 3] {
            let node = Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"],
                            attributes: ["kernel_shape": .ints([5, 5]), "pads": .ints([2, 2, 2, 2])])
            let graph = Graph(nodes: [node], inputs: [GraphInput(name: "x", dtype: .float32, shape: x.shape)], outputs: ["y"],
                              initializers: [("w", .float(w)), ("b", .float(bias))], opset: 17)
            guard case .float(let y) = try graph.run([.float(Variable(x))], threads: threads)[0] else { fatalError() }
            #expect(y.value.scalars.map(\.bitPattern) == expected.map(\.bitPattern), "threads \(threads)")
        }
    }
}

/// Inference applies a ReLU inside the Conv or Gemm before it (`Graph.reluFused`); training
/// (with a tape) runs the Relu node. Both must give the same bits.
@Suite struct ReluFusionTests {
    static func graph(direct: Bool, extraReader: Bool) -> (Graph, Tensor) {
        let (batch, cin, side, cout) = (3, direct ? 1 : 4, 9, 8)
        let x = Tensor(shape: [batch, cin, side, side], scalars: GemmTests.fill(batch * cin * side * side, seed: 11))
        let w = Tensor(shape: [cout, cin, 3, 3], scalars: GemmTests.fill(cout * cin * 9, seed: 12))
        let b = Tensor(shape: [cout], scalars: GemmTests.fill(cout, seed: 13))
        let fcIn = cout * side * side
        let fw = Tensor(shape: [10, fcIn], scalars: GemmTests.fill(10 * fcIn, seed: 14))
        let fb = Tensor(shape: [10], scalars: GemmTests.fill(10, seed: 15))
        var nodes = [
            Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: ["kernel_shape": .ints([3, 3]), "pads": .ints([1, 1, 1, 1])]),
            Node(name: "relu1", opType: "Relu", inputs: ["c"], outputs: ["r"], attributes: [:]),
            Node(name: "flatten", opType: "Flatten", inputs: ["r"], outputs: ["f"], attributes: [:]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fw", "fb"], outputs: ["g"], attributes: ["transB": .int(1)]),
            Node(name: "relu2", opType: "Relu", inputs: ["g"], outputs: ["y"], attributes: [:]),
        ]
        // A second reader of the Conv's output keeps its values unrectified: no fusion there.
        if extraReader { nodes.append(Node(name: "neg", opType: "Neg", inputs: ["c"], outputs: ["n"], attributes: [:])) }
        let graph = Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: x.shape)],
                          outputs: extraReader ? ["y", "n"] : ["y"],
                          initializers: [("w", .float(w)), ("b", .float(b)), ("fw", .float(fw)), ("fb", .float(fb))], opset: 17)
        return (graph, x)
    }

    @Test(arguments: [(true, false), (false, false), (false, true)])
    func inferenceGivesTheBitsOfTraining(direct: Bool, extraReader: Bool) throws {
        let (graph, x) = Self.graph(direct: direct, extraReader: extraReader)
        #expect(graph.reluFused == [!extraReader, false, false, true, false] + (extraReader ? [false] : []))
        let reference = try graph.run([.float(Variable(x, requiresGrad: true))], tape: Tape(), threads: 1)
        for threads in [1, 2, 3] {
            let got = try graph.run([.float(Variable(x))], threads: threads)
            #expect(got.count == reference.count)
            for (g, r) in zip(got, reference) {
                guard case .float(let gv) = g, case .float(let rv) = r else { Issue.record("not float"); continue }
                #expect(gv.value.scalars.map(\.bitPattern) == rv.value.scalars.map(\.bitPattern), "threads \(threads)")
                #expect(gv.value.scalars.contains { $0 == 0 } && gv.value.scalars.contains { $0 > 0 } || extraReader)
            }
        }
    }

    /// Inference writes a node's output into the buffer of its previous output when nothing
    /// else holds it; what a caller still holds (a result, an intermediate value) keeps its values.
    @Test func reusedOutputBuffersNeverOverwriteWhatACallerHolds() throws {
        let (graph, x1) = Self.graph(direct: false, extraReader: false)
        let x2 = Tensor(shape: x1.shape, scalars: x1.scalars.map { -$0 })
        let fresh = { (x: Tensor) in Self.graph(direct: false, extraReader: false).0.predict(x, threads: 1) }
        let want1 = fresh(x1), want2 = fresh(x2)
        #expect(want1 != want2)
        let held1 = graph.predict(x1, threads: 1)
        let inner = try graph.values(for: [.float(Variable(x1))], threads: 1)   // every intermediate, held
        guard case .float(let conv1)? = inner["c"] else { Issue.record("no conv output"); return }
        let convBefore = conv1.value.scalars
        #expect(convBefore.count == 3 * 8 * 81)
        let held2 = graph.predict(x2, threads: 1)
        #expect(held1.scalars.map(\.bitPattern) == want1.scalars.map(\.bitPattern))
        #expect(held2.scalars.map(\.bitPattern) == want2.scalars.map(\.bitPattern))
        for _ in 0..<3 { _ = graph.predict(x2, threads: 1) }
        #expect(conv1.value.scalars == convBefore)
        #expect(graph.predict(x1, threads: 1).scalars.map(\.bitPattern) == want1.scalars.map(\.bitPattern))
        // Steady state: the Gemm's and the Conv's outputs are the same objects run after run.
        _ = graph.predict(x1, threads: 1)
        let ids = graph.inferenceOutputs.map { $0.map(ObjectIdentifier.init) }
        _ = graph.predict(x2, threads: 1)
        #expect(graph.inferenceOutputs.map { $0.map(ObjectIdentifier.init) } == ids)
        #expect(ids[0] != nil && ids[3] != nil)
    }

    /// The initializers stay in the run's slots from one run to the next; replacing one is seen
    /// by the next run.
    /// A Conv's weights packed by an earlier inference run are packed again once an optimizer
    /// or pruning updates them in place (the packing is kept per weight and version).
    @Test(arguments: [true, false])
    func aConvWeightUpdatedInPlaceReachesTheNextRun(direct: Bool) throws {
        let (graph, x) = Self.graph(direct: direct, extraReader: false)
        let before = graph.predict(x, threads: 1)
        guard case .float(let w)? = graph.initializer("w") else { Issue.record("no w"); return }
        let scaled = Tensor(shape: w.value.shape, scalars: w.value.scalars.map { -2 * $0 })
        w.update { for i in $0.indices { $0[i] *= -2 } }
        let after = graph.predict(x, threads: 1)
        let (fresh, _) = Self.graph(direct: direct, extraReader: false)
        fresh.setInitializer("w", .float(scaled))
        #expect(after.scalars.map(\.bitPattern) == fresh.predict(x, threads: 1).scalars.map(\.bitPattern))
        #expect(after != before)
    }

    @Test func aReplacedInitializerReachesTheNextRun() throws {
        let (graph, x) = Self.graph(direct: false, extraReader: false)
        let before = graph.predict(x, threads: 1)
        guard case .float(let fw)? = graph.initializer("fw") else { Issue.record("no fw"); return }
        let scaled = Tensor(shape: fw.value.shape, scalars: fw.value.scalars.map { $0 * 2 })
        graph.setInitializer("fw", .float(scaled))
        let after = graph.predict(x, threads: 1)
        let (fresh, _) = Self.graph(direct: false, extraReader: false)
        fresh.setInitializer("fw", .float(scaled))
        #expect(after.scalars.map(\.bitPattern) == fresh.predict(x, threads: 1).scalars.map(\.bitPattern))
        #expect(after != before)
    }
}

extension DirectConvTests {
    /// A Conv of stride 1 without padding and a reduction too long for the direct kernel goes
    /// through im2col over full input rows (the columns past the output width are computed and
    /// dropped); it computes the reference chain plus the bias, in chunks of samples, for any
    /// thread count, also when a chunk and the batch do not divide.
    @Test func convNodesOverFullRowsKeepTheirBits() throws {
        for (batch, cin, side, k, cout) in [(5, 6, 14, 5, 16), (3, 5, 9, 3, 7), (1, 9, 12, 2, 3)] {
            let (o, n) = (side - k + 1, side * side)
            let x = Tensor(shape: [batch, cin, side, side], scalars: GemmTests.fill(batch * cin * n, seed: 21))
            let w = Tensor(shape: [cout, cin, k, k], scalars: GemmTests.fill(cout * cin * k * k, seed: 22))
            let bias = Tensor(shape: [cout], scalars: GemmTests.fill(cout, seed: 23))
            var expected: [Float] = []
            for s in 0..<batch {
                var y = [Float](repeating: 0, count: cout * o * o)
                x.scalars.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer {
                        conv2dDirectReference(x: xp.baseAddress! + s * cin * n, cin: cin, ih: side, iw: side, w: w.scalars, cout: cout, kh: k, kw: k,
                                              padTop: 0, padLeft: 0, oh: o, ow: o, y: $0.baseAddress!)
                    }
                }
                for m in 0..<cout { for p in 0..<(o * o) { y[m * o * o + p] += bias.scalars[m] } }
                expected += y
            }
            for threads in [1, 2, 3] {
                let node = Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"], attributes: ["kernel_shape": .ints([k, k])])
                let graph = Graph(nodes: [node], inputs: [GraphInput(name: "x", dtype: .float32, shape: x.shape)], outputs: ["y"],
                                  initializers: [("w", .float(w)), ("b", .float(bias))], opset: 17)
                guard case .float(let y) = try graph.run([.float(Variable(x))], threads: threads)[0] else { fatalError() }
                let got = y.value.scalars.map(\.bitPattern), want = expected.map(\.bitPattern)
                let first = got.indices.first { $0 >= want.count || got[$0] != want[$0] }
                #expect(got.count == want.count && first == nil, "\(batch)×\(cin)×\(side)², k \(k), threads \(threads): output \(first ?? -1) differs")
            }
        }
    }
}

/// `Graph.predict` runs a model that is a chain of Linear layers on raw buffers
/// (`LinearChain`), outside `Graph.run`: it must give run's bits for any batch and thread
/// count, and see every change to the weights.
@Suite struct LinearChainTests {
    /// x (B, 2, 3, 5), flattened (or x (B, 30)) → 30 → 17 (ReLU) → 9 (ReLU) → 4 (ReLU when
    /// `lastRelu`). `sparse` zeros about 6 in 7 weights, so the layers take the CSR kernels.
    static func mlp(flatten: Bool, lastRelu: Bool, sparse: Bool) -> Graph {
        let widths = [30, 17, 9, 4]
        var nodes: [Node] = [], initializers: [(String, TensorData)] = []
        var current = "x"
        if flatten {
            nodes.append(Node(name: "flatten", opType: "Flatten", inputs: ["x"], outputs: ["f"], attributes: ["axis": .int(1)]))
            current = "f"
        }
        for l in 0..<3 {
            var w = GemmTests.fill(widths[l + 1] * widths[l], seed: UInt32(40 + l))
            if sparse { for i in w.indices where i % 7 != 3 { w[i] = 0 } }
            initializers += [("w\(l)", .float(Tensor(shape: [widths[l + 1], widths[l]], scalars: w))),
                             ("b\(l)", .float(Tensor(shape: [widths[l + 1]], scalars: GemmTests.fill(widths[l + 1], seed: UInt32(50 + l)))))]
            nodes.append(Node(name: "fc\(l)", opType: "Gemm", inputs: [current, "w\(l)", "b\(l)"], outputs: ["g\(l)"], attributes: ["transB": .int(1)]))
            current = "g\(l)"
            if l < 2 || lastRelu {
                nodes.append(Node(name: "relu\(l)", opType: "Relu", inputs: [current], outputs: ["r\(l)"], attributes: [:]))
                current = "r\(l)"
            }
        }
        let shape: [Int?] = flatten ? [nil, 2, 3, 5] : [nil, 30]
        return Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: shape)], outputs: [current],
                     initializers: initializers, opset: 17)
    }

    static func input(_ batch: Int, flatten: Bool) -> Tensor {
        var x = GemmTests.fill(batch * 30, seed: UInt32(batch))
        for i in x.indices where (i / 4) % 3 == 0 { x[i] = 0 }  // zero inputs, which small batches skip
        return Tensor(shape: flatten ? [batch, 2, 3, 5] : [batch, 30], scalars: x)
    }

    static func viaRun(_ graph: Graph, _ x: Tensor, threads: Int) throws -> [UInt32] {
        guard case .float(let y) = try graph.run([.float(Variable(x))], threads: threads)[0] else { return [] }
        return y.value.scalars.map(\.bitPattern)
    }

    static func isChain(_ graph: Graph) -> Bool {
        if case .chain = graph.linearChainState { return true }
        return false
    }

    @Test(arguments: [(true, false, false), (false, false, true), (true, true, true), (false, true, false)])
    func predictGivesTheBitsOfARun(flatten: Bool, lastRelu: Bool, sparse: Bool) throws {
        let graph = Self.mlp(flatten: flatten, lastRelu: lastRelu, sparse: sparse)
        for batch in [1, 3, 8, 17] {
            let x = Self.input(batch, flatten: flatten)
            for threads in [1, 2, 3] {
                let got = graph.predict(x, threads: threads)
                #expect(Self.isChain(graph))
                #expect(got.shape == [batch, 4])
                #expect(got.scalars.map(\.bitPattern) == (try Self.viaRun(graph, x, threads: threads)), "batch \(batch), threads \(threads)")
                #expect(!lastRelu || got.scalars.allSatisfy { $0 >= 0 })
                #expect(lastRelu || got.scalars.contains { $0 < 0 })
            }
        }
    }

    /// LeNet-300-100 dense and pruned to 90 % (sparse fc1 and fc2, dense fc3).
    @Test func lenet300100GivesTheBitsOfARun() throws {
        let model = try LayerList.load(architecture: Repo.path("examples/models/lenet300100_mnist5k.json"),
                                       weights: Repo.path("examples/models/lenet300100_mnist5k.safetensors"))
        let (x, _) = try reference("lenet300100_mnist5k")
        for pruned in [false, true] {
            if pruned {
                let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
                applyMasks(MagnitudePruning.masks(for: weights, sparsity: 0.9, scope: .global), to: model)
            }
            for batch in [1, 16] {
                let xb = x.rows(0..<batch)
                for threads in [1, 2] {
                    let got = model.predict(xb, threads: threads)
                    #expect(Self.isChain(model))
                    #expect(got.scalars.map(\.bitPattern) == (try Self.viaRun(model, xb, threads: threads)), "pruned \(pruned), batch \(batch)")
                }
            }
        }
    }

    @Test func otherModelsAreNotChains() {
        let (conv, x) = ReluFusionTests.graph(direct: false, extraReader: false)
        _ = conv.predict(x, threads: 1)
        #expect(!Self.isChain(conv))
        // A hidden value that is also a graph output.
        let mlp = Self.mlp(flatten: false, lastRelu: false, sparse: false)
        let two = Graph(nodes: mlp.nodes, inputs: mlp.inputs, outputs: ["g2", "r0"],
                        initializers: mlp.initializerData, opset: 17)
        _ = two.predict(Self.input(2, flatten: false), threads: 1)
        #expect(!Self.isChain(two))
    }

    /// An input the first layer does not take is left to `Graph.run`, which names the problem.
    @Test func anInputOfAnotherShapeIsLeftToTheRun() {
        let graph = Self.mlp(flatten: false, lastRelu: false, sparse: false)
        _ = graph.predict(Self.input(2, flatten: false), threads: 1)
        guard case .chain(let chain) = graph.linearChainState else { Issue.record("not a chain"); return }
        #expect(chain.predict(Tensor(shape: [2, 29], scalars: [Float](repeating: 1, count: 58)), threads: 1) == nil)
        #expect(chain.predict(Tensor(shape: [2, 2, 15], scalars: [Float](repeating: 1, count: 60)), threads: 1) == nil)
        #expect(chain.predict(Tensor(shape: [0, 30], scalars: []), threads: 1) == nil)
        #expect(chain.predict(Self.input(2, flatten: false), threads: 1) != nil)
    }

    /// A weight updated in place (pruning, an optimizer step) and a replaced initializer both
    /// reach the next `predict`.
    @Test(arguments: [false, true])
    func changedWeightsReachTheNextPredict(sparse: Bool) throws {
        let graph = Self.mlp(flatten: true, lastRelu: false, sparse: sparse)
        let x = Self.input(3, flatten: true)
        let before = graph.predict(x, threads: 1)
        guard case .float(let w)? = graph.initializer("w1") else { Issue.record("no w1"); return }
        w.update { for i in $0.indices { $0[i] *= -2 } }
        let updated = graph.predict(x, threads: 1)
        #expect(updated != before)
        #expect(updated.scalars.map(\.bitPattern) == (try Self.viaRun(graph, x, threads: 1)))
        let replacement = Tensor(shape: [4, 9], scalars: GemmTests.fill(36, seed: 77))
        graph.setInitializer("w2", .float(replacement))
        let replaced = graph.predict(x, threads: 1)
        #expect(replaced != updated)
        #expect(Self.isChain(graph))
        let fresh = Self.mlp(flatten: true, lastRelu: false, sparse: sparse)
        guard case .float(let fw)? = fresh.initializer("w1") else { Issue.record("no w1"); return }
        fw.update { for i in $0.indices { $0[i] *= -2 } }
        fresh.setInitializer("w2", .float(replacement))
        #expect(replaced.scalars.map(\.bitPattern) == (try Self.viaRun(fresh, x, threads: 1)))
    }
}

extension DirectConvTests {
    /// One Conv node fed inputs of other sizes, so that it changes kernel (direct for rows of at
    /// most 16 outputs with AVX-512, im2col + GEMM for wider ones) and back: each run gives the
    /// reference's bits (the direct kernel's packed weights share the node's scratch with the
    /// columns, so they must be packed again after an im2col run).
    @Test func aConvSwitchingKernelsKeepsItsBits() throws {
        let (cin, cout, k) = (4, 8, 5)
        let w = Tensor(shape: [cout, cin, k, k], scalars: GemmTests.fill(cout * cin * k * k, seed: 31))
        let bias = Tensor(shape: [cout], scalars: GemmTests.fill(cout, seed: 32))
        let node = Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"],
                        attributes: ["kernel_shape": .ints([k, k]), "pads": .ints([2, 2, 2, 2])])
        let graph = Graph(nodes: [node], inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, cin, nil, nil])], outputs: ["y"],
                          initializers: [("w", .float(w)), ("b", .float(bias))], opset: 17)
        for (batch, side) in [(1, 12), (2, 20), (1, 12), (3, 7), (2, 20), (1, 12)] {
            let x = Tensor(shape: [batch, cin, side, side], scalars: GemmTests.fill(batch * cin * side * side, seed: UInt32(side)))
            var expected: [Float] = []
            for n in 0..<batch {
                var y = [Float](repeating: 0, count: cout * side * side)
                x.scalars.withUnsafeBufferPointer { xp in
                    y.withUnsafeMutableBufferPointer {
                        conv2dDirectReference(x: xp.baseAddress! + n * cin * side * side, cin: cin, ih: side, iw: side, w: w.scalars, cout: cout,
                                              kh: k, kw: k, padTop: 2, padLeft: 2, oh: side, ow: side, y: $0.baseAddress!)
                    }
                }
                for m in 0..<cout { for p in 0..<(side * side) { y[m * side * side + p] += bias.scalars[m] } }
                expected += y
            }
            let got = graph.predict(x, threads: 1)
            #expect(got.scalars.map(\.bitPattern) == expected.map(\.bitPattern), "batch \(batch), \(side)×\(side)")
        }
    }
}

/// `OpContext.convRows`: a narrow Conv at inference as rows (one per output position) times the
/// packed transposed weights. It must give the bits of the im2col path (which training runs).
@Suite struct ConvRowsTests {
    static func graph(cin: Int, cout: Int, kernel: [Int], strides: [Int], pads: [Int], relu: Bool) -> Graph {
        let w = Tensor(shape: [cout, cin] + kernel, scalars: GemmTests.fill(cout * cin * kernel.reduce(1, *), seed: 61))
        let b = Tensor(shape: [cout], scalars: GemmTests.fill(cout, seed: 62))
        var nodes = [Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"],
                          attributes: ["kernel_shape": .ints(kernel), "strides": .ints(strides), "pads": .ints(pads)])]
        nodes.append(Node(name: "out", opType: relu ? "Relu" : "Neg", inputs: ["c"], outputs: ["y"], attributes: [:]))
        return Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, cin] + kernel.map { _ in nil })],
                     outputs: ["y"], initializers: [("w", .float(w)), ("b", .float(b))], opset: 17)
    }

    /// cnn_mnist1d's three convolutions at batch 1 and 2, and a 2-D one with 3×3 outputs.
    @Test(arguments: [(1, 25, [5], [2], [1, 1], [40]), (25, 25, [3], [2], [1, 1], [19]), (25, 25, [3], [2], [1, 1], [10]),
                      (3, 20, [3, 3], [2, 2], [1, 0, 1, 0], [6, 6])])
    func givesTheBitsOfTheIm2colPath(cin: Int, cout: Int, kernel: [Int], strides: [Int], pads: [Int], spatial: [Int]) throws {
        for relu in [false, true] {
            let graph = Self.graph(cin: cin, cout: cout, kernel: kernel, strides: strides, pads: pads, relu: relu)
            for batch in [1, 2] {
                let count = batch * cin * spatial.reduce(1, *)
                let x = Tensor(shape: [batch, cin] + spatial, scalars: GemmTests.fill(count, seed: UInt32(count)))
                // The training forward (a tape) takes the im2col path.
                let trained = try graph.run([.float(Variable(x, requiresGrad: true))], tape: Tape(), threads: 1)
                guard case .float(let want) = trained[0] else { Issue.record("not float"); return }
                for threads in [1, 2, 3] {
                    let got = graph.predict(x, threads: threads)
                    #expect(got.shape == want.value.shape)
                    #expect(got.scalars.map(\.bitPattern) == want.value.scalars.map(\.bitPattern),
                            "\(cin)→\(cout), kernel \(kernel), batch \(batch), threads \(threads), relu \(relu)")
                }
                #expect(batch > 1 || graph.convRowsWeights[0] != nil, "batch 1 did not take the rows path")
            }
        }
    }

    /// Weights updated in place reach the next run (they are packed per version).
    @Test func anUpdatedWeightReachesTheNextRun() throws {
        let graph = Self.graph(cin: 25, cout: 25, kernel: [3], strides: [2], pads: [1, 1], relu: false)
        let x = Tensor(shape: [1, 25, 10], scalars: GemmTests.fill(250, seed: 5))
        let before = graph.predict(x, threads: 1)
        #expect(graph.convRowsWeights[0] != nil)
        guard case .float(let w)? = graph.initializer("w") else { Issue.record("no w"); return }
        w.update { for i in $0.indices { $0[i] *= -2 } }
        let after = graph.predict(x, threads: 1)
        let trained = try graph.run([.float(Variable(x, requiresGrad: true))], tape: Tape(), threads: 1)
        guard case .float(let want) = trained[0] else { Issue.record("not float"); return }
        #expect(after != before)
        #expect(after.scalars.map(\.bitPattern) == want.value.scalars.map(\.bitPattern))
    }
}

/// Pools and reshapes keep what they worked out for the last input shape (`Graph.windows`,
/// `Graph.reshapes`); a run with another shape, or after `setInitializer`, must not reuse it.
@Suite struct ShapeCacheTests {
    /// `graph` run on `x` (a float input, plus an optional second one), output shape and bits.
    static func output(_ graph: Graph, _ x: Tensor, _ z: Tensor? = nil) throws -> ([Int], [UInt32]) {
        let feeds: [Value] = [.float(Variable(x))] + (z.map { [.float(Variable($0))] } ?? [])
        guard case .float(let y) = try graph.run(feeds)[0] else { fatalError() }
        return (y.value.shape, y.value.scalars.map(\.bitPattern))
    }

    static func input(_ shape: [Int], seed: UInt32) -> Tensor {
        Tensor(shape: shape, scalars: GemmTests.fill(shape.reduce(1, *), seed: seed))
    }

    @Test(arguments: ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"])
    func aPoolFollowsItsInputSize(op: String) throws {
        let attributes: [String: Attribute] = op.hasPrefix("Global") ? [:] : ["kernel_shape": .ints([2, 2]), "strides": .ints([2, 2])]
        func graph() -> Graph {
            Graph(nodes: [Node(name: "pool", opType: op, inputs: ["x"], outputs: ["y"], attributes: attributes)],
                  inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 3, nil, nil])], outputs: ["y"], initializers: [], opset: 17)
        }
        let kept = graph()
        for (i, side) in [8, 12, 8, 6, 12].enumerated() {
            let x = Self.input([2, 3, side, side + 2], seed: UInt32(i))
            let got = try Self.output(kept, x), fresh = try Self.output(graph(), x)
            #expect(got.0 == fresh.0 && got.1 == fresh.1, "\(op) run \(i), input \(x.shape)")
        }
    }

    @Test func reshapesFollowTheirInputShape() throws {
        let cases: [(String, [String], [String: Attribute], [(String, TensorData)])] = [
            ("Reshape", ["x", "s"], [:], [("s", ints([0, -1]))]),
            ("Flatten", ["x"], ["axis": .int(2)], []),
            ("Squeeze", ["x"], [:], []),
            ("Unsqueeze", ["x", "a"], [:], [("a", ints([1]))]),
        ]
        for (op, inputs, attributes, initializers) in cases {
            func graph() -> Graph {
                Graph(nodes: [Node(name: "r", opType: op, inputs: inputs, outputs: ["y"], attributes: attributes)],
                      inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, nil, nil])], outputs: ["y"],
                      initializers: initializers, opset: 17)
            }
            let kept = graph()
            for (i, shape) in [[2, 3, 4], [2, 1, 6], [2, 3, 4], [5, 1, 1], [2, 3, 4]].enumerated() {
                let x = Self.input(shape, seed: UInt32(i))
                let got = try Self.output(kept, x), fresh = try Self.output(graph(), x)
                #expect(got.0 == fresh.0 && got.1 == fresh.1, "\(op) run \(i), input \(shape): \(got.0) against \(fresh.0)")
            }
        }
    }

    /// A new target through `setInitializer` reaches the next run.
    @Test func aReplacedTargetIsUsed() throws {
        let graph = Graph(nodes: [Node(name: "r", opType: "Reshape", inputs: ["x", "s"], outputs: ["y"], attributes: [:])],
                          inputs: [GraphInput(name: "x", dtype: .float32, shape: [2, 6])], outputs: ["y"],
                          initializers: [("s", ints([3, 4]))], opset: 17)
        let x = Self.input([2, 6], seed: 1)
        #expect(try Self.output(graph, x).0 == [3, 4])
        graph.setInitializer("s", ints([4, 3]))
        #expect(try Self.output(graph, x).0 == [4, 3])
    }

    /// A target computed in the graph (here the shape of a second input) is worked out on every
    /// run: the same input shape can go to another shape.
    @Test func aComputedTargetIsNotKept() throws {
        let graph = Graph(nodes: [Node(name: "shape", opType: "Shape", inputs: ["z"], outputs: ["s"], attributes: [:]),
                                  Node(name: "r", opType: "Reshape", inputs: ["x", "s"], outputs: ["y"], attributes: [:])],
                          inputs: [GraphInput(name: "x", dtype: .float32, shape: [2, 6]), GraphInput(name: "z", dtype: .float32, shape: [nil, nil])],
                          outputs: ["y"], initializers: [], opset: 17)
        let x = Self.input([2, 6], seed: 1)
        for target in [[3, 4], [4, 3], [12, 1], [3, 4]] {
            #expect(try Self.output(graph, x, Tensor(zeros: target)).0 == target)
        }
    }
}

@Suite struct OpRegistryTests {
    /// docs/operators.md shows exactly the registry's table (`make operators` rewrites it).
    @Test func operatorsDocMatchesTheRegistry() throws {
        let doc = try String(contentsOfFile: Repo.path("docs/operators.md"), encoding: .utf8)
        let begin = "<!-- operators:begin -->\n", end = "<!-- operators:end -->"
        guard let a = doc.range(of: begin), let b = doc.range(of: end) else {
            Issue.record("docs/operators.md has no operators:begin/end markers")
            return
        }
        #expect(String(doc[a.upperBound..<b.lowerBound]) == supportedOpsMarkdown(), "docs/operators.md is out of date: run `make operators`")
    }

    /// Every registered op is in the table once, under its family, and the importer's list is
    /// the registry's.
    @Test func tableListsEveryRegisteredOpOnce() {
        #expect(supportedOpTable.count == OpRegistry.all.count)
        #expect(Set(supportedOpTable.map(\.opType)) == supportedOps)
        #expect(supportedOps.count == OpRegistry.all.count)
        for op in OpRegistry.all { #expect(OpRegistry.byType[op.opType]?.family == op.family) }
    }

    /// A node whose op the registry lacks fails with the node, the op and the opset.
    @Test func unknownOpIsNamed() throws {
        let graph = Graph(nodes: [Node(name: "n1", opType: "NoSuchOp", inputs: ["x"], outputs: ["y"])],
                          inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 2])], outputs: ["y"], initializers: [], opset: 17)
        #expect(throws: GraphError(node: "n1", op: "NoSuchOp", "op 'NoSuchOp' is not supported (opset 17)")) {
            try graph.valueShapes(for: Tensor(zeros: [1, 2]))
        }
    }
}

/// Central-difference checks of the ops added for transformers and MobileNetV3 (issue 20).
@Suite struct NewOpGradientTests {
    @Test(arguments: ["Sin", "Cos", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Elu"])
    func unary(_ op: String) throws {
        try gradientCheck(op, inputs: [("x", spreadTensor([3, 4], seed: 11))])
    }

    @Test func preluPerChannel() throws {
        try gradientCheck("PRelu", inputs: [("x", spreadTensor([2, 3, 2], seed: 12)), ("slope", spreadTensor([3, 1], seed: 13))])
    }

    @Test func whereSplitsTheGradientByCondition() throws {
        let cond = TensorData.bool(IntTensor(shape: [2, 3], data: [1, 0, 1, 0, 0, 1]))
        try gradientCheck("Where", inputs: [("a", spreadTensor([2, 3], seed: 14)), ("b", spreadTensor([3], seed: 15))],
                          constants: [("c", cond)], order: ["c", "a", "b"])
    }

    @Test func movementAndIndexing() throws {
        let x = spreadTensor([2, 3], seed: 16)
        try gradientCheck("Expand", inputs: [("x", spreadTensor([3, 1], seed: 17))], constants: [("s", ints([2, 3, 4]))])
        try gradientCheck("Tile", inputs: [("x", x)], constants: [("r", ints([2, 2]))])
        try gradientCheck("Trilu", inputs: [("x", spreadTensor([3, 4], seed: 18))], constants: [("k", .int64(IntTensor(shape: [], data: [1])))],
                          attributes: ["upper": .int(0)])
        try gradientCheck("Split", inputs: [("x", spreadTensor([5, 2], seed: 19))], constants: [("s", ints([2, 3]))], opset: 13,
                          outputs: ["y", "z"])
        try gradientCheck("GatherElements", inputs: [("x", x)],
                          constants: [("i", .int64(IntTensor(shape: [2, 2], data: [2, 0, -1, 1])))], attributes: ["axis": .int(1)])
        try gradientCheck("GatherND", inputs: [("x", spreadTensor([2, 3, 2], seed: 20))],
                          constants: [("i", .int64(IntTensor(shape: [2, 1], data: [1, 0])))], attributes: ["batch_dims": .int(1)])
        try gradientCheck("ScatterND", inputs: [("x", spreadTensor([4, 2], seed: 21)), ("u", spreadTensor([2, 2], seed: 22))],
                          constants: [("i", .int64(IntTensor(shape: [2, 1], data: [3, 1])))], order: ["x", "i", "u"])
        try gradientCheck("ScatterND", inputs: [("x", spreadTensor([4, 2], seed: 21)), ("u", spreadTensor([2, 2], seed: 22))],
                          constants: [("i", .int64(IntTensor(shape: [2, 1], data: [3, 3])))], attributes: ["reduction": .string("add")],
                          order: ["x", "i", "u"])
    }

    @Test func scans() throws {
        let axis = TensorData.int64(IntTensor(shape: [], data: [1]))
        try gradientCheck("CumSum", inputs: [("x", spreadTensor([2, 4], seed: 23))], constants: [("a", axis)])
        try gradientCheck("CumSum", inputs: [("x", spreadTensor([2, 4], seed: 23))], constants: [("a", axis)],
                          attributes: ["exclusive": .int(1), "reverse": .int(1)])
    }

    @Test(arguments: ["ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp"])
    func reductions(_ op: String) throws {
        try gradientCheck(op, inputs: [("x", spreadTensor([2, 3, 2], seed: 24))], attributes: ["axes": .ints([1])])
    }

    @Test func logSumOfPositives() throws {
        try gradientCheck("ReduceLogSum", inputs: [("x", spreadTensor([2, 3], seed: 25, positive: true))], attributes: ["axes": .ints([1])])
    }
}

@Suite struct DepthwiseConvOpTests {
    /// A depthwise Conv (the direct kernel, at inference and with a tape) gives each output
    /// channel the bits of the reference kernel, the im2col chain, at one and two threads, with a
    /// fused ReLU too.
    @Test(arguments: [(1, 0, 1), (2, 1, 1), (1, 2, 2), (2, 0, 1)])
    func directKernelMatchesItsDefinition(stride: Int, pad: Int, dilation: Int) throws {
        let channels = 6, batch = 2, ih = 11, iw = 13
        let x = spreadTensor([batch, channels, ih, iw], seed: 31)
        let w = spreadTensor([channels, 1, 3, 3], seed: 32), b = spreadTensor([channels], seed: 33)
        let conv = Node(name: "dw", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"],
                        attributes: ["group": .int(channels), "strides": .ints([stride, stride]), "pads": .ints([pad, pad, pad, pad]),
                                     "dilations": .ints([dilation, dilation])])
        let relu = Node(name: "r", opType: "Relu", inputs: ["c"], outputs: ["y"])
        let oh = (ih + 2 * pad - dilation * 2 - 1) / stride + 1, ow = (iw + 2 * pad - dilation * 2 - 1) / stride + 1
        let g = DepthwiseGeometry(ih: ih, iw: iw, kh: 3, kw: 3, strideH: stride, strideW: stride, dilationH: dilation, dilationW: dilation,
                                  padTop: pad, padLeft: pad, oh: oh, ow: ow)
        var expected = [Float](repeating: .nan, count: batch * channels * oh * ow)
        for plane in 0..<(batch * channels) {
            let c = plane % channels
            x.scalars.withUnsafeBufferPointer { xp in
                Array(w.scalars[(c * 9)..<(c * 9 + 9)]).withUnsafeBufferPointer { wp in
                    expected.withUnsafeMutableBufferPointer { yp in
                        depthwiseConv2dReference(xp.baseAddress! + plane * ih * iw, weights: wp.baseAddress!, bias: b.scalars[c], geometry: g,
                                                 y: yp.baseAddress! + plane * oh * ow)
                    }
                }
            }
        }
        for nodes in [[conv], [conv, relu]] {
            let out = nodes.last!.outputs[0]
            let graph = Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, channels, ih, iw])], outputs: [out],
                              initializers: [("w", .float(w)), ("b", .float(b))], opset: 17)
            let want = nodes.count == 1 ? expected : expected.map { max($0, 0) }
            for threads in [1, 2] {
                for tape in [nil, Tape()] {
                    guard case .float(let got) = try graph.run([.float(Variable(x))], tape: tape, threads: threads)[0] else { fatalError() }
                    #expect(got.value.shape == [batch, channels, oh, ow])
                    let differing = zip(got.value.scalars, want).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differing == 0, "stride \(stride) pad \(pad) dilation \(dilation), \(nodes.count) nodes, \(threads) threads, tape \(tape != nil): \(differing) differ")
                }
            }
        }
    }

    /// A depthwise Conv's gradients (the backward kernel, channels split across threads) are the
    /// same bits at one and two threads, and those of the reference twin summed over the samples
    /// in order.
    @Test func backwardIsTheReferencePerChannel() throws {
        let channels = 5, batch = 3, ih = 9, iw = 12
        let x = spreadTensor([batch, channels, ih, iw], seed: 34)
        let w = spreadTensor([channels, 1, 3, 3], seed: 35), b = spreadTensor([channels], seed: 36)
        let conv = Node(name: "dw", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"],
                        attributes: ["group": .int(channels), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])])
        let graph = Graph(nodes: [conv], inputs: [("x", x), ("w", w), ("b", b)].map { GraphInput(name: $0.0, dtype: .float32, shape: $0.1.shape) },
                          outputs: ["y"], initializers: [], opset: 17)
        let oh = 5, ow = 6
        let g = DepthwiseGeometry(ih: ih, iw: iw, kh: 3, kw: 3, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, oh: oh, ow: ow)
        let dy = spreadTensor([batch, channels, oh, ow], seed: 37).scalars
        var grads: [[[UInt32]]] = []
        for threads in [1, 2] {
            let vx = Variable(x, requiresGrad: true), vw = Variable(w, requiresGrad: true), vb = Variable(b, requiresGrad: true)
            let tape = Tape()
            guard case .float(let y) = try graph.run([.float(vx), .float(vw), .float(vb)], tape: tape, threads: threads)[0] else { fatalError() }
            let l = Variable(Tensor(shape: [1], scalars: [0]), requiresGrad: true)
            tape.record { y.accumulateGrad { gy in for i in 0..<dy.count { gy[i] += dy[i] } } }
            tape.backward(from: l)
            grads.append([vx, vw, vb].map { $0.grad!.scalars.map(\.bitPattern) })
        }
        #expect(grads[0] == grads[1], "one and two threads differ")
        var ex = [Float](repeating: 0, count: x.count), ew = [Float](repeating: 0, count: w.count), eb = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            for n in 0..<batch {
                let plane = n * channels + c
                x.scalars.withUnsafeBufferPointer { xp in
                    dy.withUnsafeBufferPointer { dp in
                        w.scalars.withUnsafeBufferPointer { wp in
                            ex.withUnsafeMutableBufferPointer { exp in
                                ew.withUnsafeMutableBufferPointer { ewp in
                                    eb.withUnsafeMutableBufferPointer { ebp in
                                        depthwiseConv2dBackwardReference(x: xp.baseAddress! + plane * ih * iw, dy: dp.baseAddress! + plane * oh * ow,
                                                                         weights: wp.baseAddress! + c * 9, geometry: g, dw: ewp.baseAddress! + c * 9,
                                                                         db: ebp.baseAddress! + c, dx: exp.baseAddress! + plane * ih * iw)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        #expect(grads[0][0] == ex.map(\.bitPattern), "input gradient")
        #expect(grads[0][1] == ew.map(\.bitPattern), "weight gradient")
        #expect(grads[0][2] == eb.map(\.bitPattern), "bias gradient")
    }
}

@Suite struct ConvEpilogueTests {
    /// A Clip (ReLU6, bounds as initializers or, before opset 11, attributes) or a SiLU (Sigmoid,
    /// then Mul with either operand order) after a Conv is applied inside the Conv at inference
    /// with the bits of the separate ops (a run with a tape), on every Conv path: depthwise, the
    /// direct kernel, the rows path, im2col + GEMM whole and in bands; at one and two threads.
    @Test func fusedEpiloguesGiveTheSeparateOpsBits() throws {
        // (channels, weight shape, attributes, spatial)
        let convs: [(String, Int, [Int], [String: Attribute], Int)] = [
            ("depthwise", 6, [6, 1, 3, 3], ["group": .int(6), "strides": .ints([2, 2]), "pads": .ints([1, 1, 1, 1])], 11),
            ("direct", 2, [5, 2, 3, 3], ["pads": .ints([1, 1, 1, 1])], 12),
            ("rows", 3, [4, 3, 3, 3], ["strides": .ints([2, 2])], 5),
            ("im2col", 20, [24, 20, 1, 1], [:], 5),
            ("pointwise bands", 40, [24, 40, 1, 1], [:], 19),
            ("3 × 3 bands", 32, [8, 32, 3, 3], ["pads": .ints([1, 1, 1, 1])], 31),
        ]
        let epilogues: [(String, [Node], [(String, TensorData)], Int)] = [
            ("Clip", [Node(name: "k", opType: "Clip", inputs: ["c", "lo", "hi"], outputs: ["y"])],
             [("lo", .float(Tensor(shape: [], scalars: [0]))), ("hi", .float(Tensor(shape: [], scalars: [1.5])))], 17),
            ("Clip (opset 9)", [Node(name: "k", opType: "Clip", inputs: ["c"], outputs: ["y"], attributes: ["min": .float(-0.5), "max": .float(2)])], [], 9),
            ("SiLU", [Node(name: "s", opType: "Sigmoid", inputs: ["c"], outputs: ["s"]), Node(name: "m", opType: "Mul", inputs: ["c", "s"], outputs: ["y"])], [], 17),
            ("SiLU (s · c)", [Node(name: "s", opType: "Sigmoid", inputs: ["c"], outputs: ["s"]), Node(name: "m", opType: "Mul", inputs: ["s", "c"], outputs: ["y"])], [], 17),
        ]
        for (kind, channels, wShape, attributes, size) in convs {
            let x = Tensor(shape: [2, channels, size, size], scalars: spreadTensor([2, channels, size, size], seed: 61).scalars.map { $0 * 4 })
            let w = spreadTensor(wShape, seed: 62), b = spreadTensor([wShape[0]], seed: 63)
            let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["c"], attributes: attributes)
            for (name, after, constants, opset) in epilogues {
                let graph = Graph(nodes: [conv] + after, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, channels, size, size])],
                                  outputs: ["y"], initializers: [("w", .float(w)), ("b", .float(b))] + constants, opset: opset)
                #expect(graph.convEpilogues[0] != nil, "\(kind) + \(name): not fused")
                guard case .float(let reference) = try graph.run([.float(Variable(x))], tape: Tape(), threads: 1)[0] else { fatalError() }
                for threads in [1, 2] {
                    guard case .float(let fused) = try graph.run([.float(Variable(x))], threads: threads)[0] else { fatalError() }
                    #expect(fused.value.shape == reference.value.shape)
                    let differing = zip(fused.value.scalars, reference.value.scalars).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(differing == 0, "\(kind) + \(name), \(threads) threads: \(differing) of \(fused.value.count) differ")
                }
            }
        }
    }

    /// Not fused where the Conv's output has another reader or is a graph output, or a Clip's
    /// bound is computed: those runs still give the separate ops' bits.
    @Test func notFusedWhereTheOutputIsReadElsewhere() throws {
        let x = spreadTensor([1, 2, 6, 6], seed: 64), w = spreadTensor([3, 2, 3, 3], seed: 65)
        let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "w"], outputs: ["c"])
        let cases: [([Node], [String])] = [
            ([conv, Node(name: "k", opType: "Clip", inputs: ["c", "lo", "hi"], outputs: ["y"])], ["y", "c"]),
            ([conv, Node(name: "s", opType: "Sigmoid", inputs: ["c"], outputs: ["s"]), Node(name: "m", opType: "Mul", inputs: ["c", "s"], outputs: ["y"]),
              Node(name: "a", opType: "Add", inputs: ["y", "s"], outputs: ["z"])], ["z"]),
            ([conv, Node(name: "n", opType: "Neg", inputs: ["lo"], outputs: ["nlo"]), Node(name: "k", opType: "Clip", inputs: ["c", "nlo", "hi"], outputs: ["y"])], ["y"]),
        ]
        for (nodes, outputs) in cases {
            let graph = Graph(nodes: nodes, inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, 2, 6, 6])], outputs: outputs,
                              initializers: [("w", .float(w)), ("lo", .float(Tensor(shape: [], scalars: [0.1]))), ("hi", .float(Tensor(shape: [], scalars: [0.8])))],
                              opset: 17)
            #expect(graph.convEpilogues[0] == nil, "\(nodes.map(\.opType))")
            let reference = try graph.run([.float(Variable(x))], tape: Tape(), threads: 1)
            let fast = try graph.run([.float(Variable(x))], threads: 2)
            for (r, f) in zip(reference, fast) {
                guard case .float(let rv) = r, case .float(let fv) = f else { fatalError() }
                #expect(rv.value.scalars.map(\.bitPattern) == fv.value.scalars.map(\.bitPattern), "\(nodes.map(\.opType))")
            }
        }
    }
}

@Suite struct ConvBandTests {
    /// A Conv whose columns are built a band of output rows at a time (over 256K floats a
    /// sample) gives each output the chain of its definition: one FMA over (c, ky, kx) in
    /// increasing order from +0, then the bias. Strides 1 and 2 (the vector path of stride 2),
    /// padding, a dilation, two groups; batch 2, one and two threads, inference and training.
    @Test(arguments: [(1, 1, 1, 1), (2, 3, 1, 1), (1, 2, 2, 1), (1, 1, 1, 2)])
    func bandsGiveTheDefinitionsChain(stride: Int, pad: Int, dilation: Int, group: Int) throws {
        let (h, w) = stride == 2 ? (110, 101) : (70, 67)
        try check(cin: 16, cout: 6, k: 3, h: h, w: w, stride: stride, pad: pad, dilation: dilation, group: group, large: true)
    }

    /// Pointwise Convs take bands straight from the input's rows (any size of a sample of one
    /// chunk): more input channels than 32 and output channels than 16, and 16 or fewer of them.
    @Test(arguments: [(40, 24), (24, 8)])
    func pointwiseBandsGiveTheDefinitionsChain(cin: Int, cout: Int) throws {
        try check(cin: cin, cout: cout, k: 1, h: 23, w: 19, stride: 1, pad: 0, dilation: 1, group: 1, large: false)
    }

    /// A pointwise Conv of 32 or more outputs a sample runs one sample per GEMM at any batch
    /// (7 × 7 planes at batch 8, which went five samples to a GEMM through copies).
    @Test func pointwiseSmallPlanesRunASampleAtATime() throws {
        try check(cin: 40, cout: 24, k: 1, h: 7, w: 7, stride: 1, pad: 0, dilation: 1, group: 1, large: false, batch: 8)
    }

    /// At batch 1 with two threads the workers split a sample's bands (and groups): a 3 × 3
    /// layer whose bands do not divide its rows, two groups, a pointwise layer.
    @Test(arguments: [(16, 6, 3, 1, 1), (16, 6, 3, 1, 2), (40, 24, 1, 0, 1)])
    func bandsSplitAcrossThreadsAtBatchOne(cin: Int, cout: Int, k: Int, pad: Int, group: Int) throws {
        try check(cin: cin, cout: cout, k: k, h: k == 1 ? 60 : 70, w: k == 1 ? 50 : 67, stride: 1, pad: pad, dilation: 1, group: group,
                  large: k > 1 && group == 1, batch: 1)
    }

    /// The direct kernel at batch 1 with two threads splits the sample's blocks of eight output
    /// channels: a 3 × 3 layer and a pointwise one of 16 input channels.
    @Test(arguments: [(3, 20, 3, 1), (16, 40, 1, 0)])
    func directKernelSplitsChannelsAtBatchOne(cin: Int, cout: Int, k: Int, pad: Int) throws {
        try check(cin: cin, cout: cout, k: k, h: 40, w: 37, stride: 1, pad: pad, dilation: 1, group: 1, large: false, batch: 1)
    }

    func check(cin: Int, cout: Int, k: Int, h: Int, w: Int, stride: Int, pad: Int, dilation: Int, group: Int, large: Bool, batch: Int = 2) throws {
        let cg = cin / group, mg = cout / group
        let x = spreadTensor([batch, cin, h, w], seed: 71), wt = spreadTensor([cout, cg, k, k], seed: 72), b = spreadTensor([cout], seed: 73)
        let oh = (h + 2 * pad - dilation * (k - 1) - 1) / stride + 1, ow = (w + 2 * pad - dilation * (k - 1) - 1) / stride + 1
        if large { #expect(cg * k * k * oh * ow > 262_144, "the band path needs columns over 256K floats") }
        var expected = [Float](repeating: 0, count: batch * cout * oh * ow)
        for n in 0..<batch {
            for o in 0..<cout {
                let g = o / mg
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var acc: Float = 0
                        for c in 0..<cg {
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let iy = oy * stride - pad + ky * dilation, ix = ox * stride - pad + kx * dilation
                                    let v: Float = iy >= 0 && iy < h && ix >= 0 && ix < w ? x.scalars[((n * cin + g * cg + c) * h + iy) * w + ix] : 0
                                    acc = acc.addingProduct(wt.scalars[((o * cg + c) * k + ky) * k + kx], v)
                                }
                            }
                        }
                        expected[((n * cout + o) * oh + oy) * ow + ox] = acc + b.scalars[o]
                    }
                }
            }
        }
        let conv = Node(name: "conv", opType: "Conv", inputs: ["x", "w", "b"], outputs: ["y"],
                        attributes: ["strides": .ints([stride, stride]), "pads": .ints([pad, pad, pad, pad]),
                                     "dilations": .ints([dilation, dilation]), "group": .int(group)])
        let graph = Graph(nodes: [conv], inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, cin, h, w])], outputs: ["y"],
                          initializers: [("w", .float(wt)), ("b", .float(b))], opset: 17)
        for (threads, tape) in [(1, false), (2, false), (1, true)] {
            guard case .float(let y) = try graph.run([.float(Variable(x))], tape: tape ? Tape() : nil, threads: threads)[0] else { fatalError() }
            #expect(y.value.shape == [batch, cout, oh, ow])
            let differing = zip(y.value.scalars, expected).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "\(threads) threads, tape \(tape): \(differing) of \(expected.count) differ")
        }
    }
}

@Suite struct InferenceFastPathTests {
    /// Ops with an inference-only path give the bits of their general path (the one a run with
    /// a tape takes), at one and two threads: means and sums over trailing and middle axes,
    /// Where between an operand and a single value, Convs through im2col (weights prepacked at
    /// inference), Sigmoid, Clip, the elementwise broadcasts,
    /// Transpose, Gather; and ops whose rows split across threads
    /// (Softmax, LayerNormalization, GELU); small, and large enough to split (a ragged number of
    /// blocks).
    @Test(arguments: [[2, 5, 7, 3], [3, 43, 31, 29]])
    func fastPathsMatchTheGeneralPath(dims: [Int]) throws {
        let (d0, d1, d2, d3) = (dims[0], dims[1], dims[2], dims[3])
        let x = spreadTensor(dims, seed: 41)
        let cases: [(String, [String: Attribute], [(String, TensorData)])] = [
            ("ReduceMean", ["axes": .ints([2, 3]), "keepdims": .int(1)], []),
            ("ReduceMean", ["axes": .ints([1, 2, 3]), "keepdims": .int(0)], []),
            ("ReduceSum", [:], [("axes", ints([-1]))]),
            ("ReduceSum", [:], [("axes", ints([1]))]),
            ("ReduceMean", ["axes": .ints([1, 2]), "keepdims": .int(0)], []),
            ("ReduceSum", ["keepdims": .int(0)], [("axes", ints([2]))]),
            ("Where", ["swap": .int(1)], [("c", mask(dims)), ("o", .float(spreadTensor([], seed: 52)))]),
            ("Where", ["swap": .int(1)], [("c", mask([])), ("o", .float(spreadTensor(dims, seed: 53)))]),
            ("Conv", [:], [("w", .float(spreadTensor([23, d1, 1, 1], seed: 54))), ("b", .float(spreadTensor([23], seed: 55)))]),
            ("Conv", ["pads": .ints([1, 0, 1, 2])], [("w", .float(spreadTensor([9, d1, 3, 2], seed: 56)))]),
            ("Sigmoid", [:], []),
            ("Clip", [:], [("lo", .float(Tensor(shape: [], scalars: [-0.4]))), ("hi", .float(Tensor(shape: [], scalars: [0.6])))]),
            ("Mul", [:], [("s", .float(spreadTensor([d0, d1, 1, 1], seed: 42)))]),
            ("Div", [:], [("s", .float(spreadTensor([d1, d2, 1], seed: 43, positive: true)))]),
            ("Add", [:], [("s", .float(spreadTensor([], seed: 44)))]),
            ("Sub", [:], [("s", .float(spreadTensor(dims, seed: 45)))]),
            ("Mul", [:], [("s", .float(spreadTensor([d3], seed: 46)))]),
            ("Add", [:], [("s", .float(spreadTensor([d2, d3], seed: 47)))]),
            ("Div", [:], [("s", .float(spreadTensor([1, d2, d3], seed: 48, positive: true)))]),
            ("Sub", [:], [("s", .float(spreadTensor([d1, 1, d3], seed: 49)))]),
            ("Transpose", ["perm": .ints([0, 2, 1, 3])], []),
            ("Transpose", ["perm": .ints([0, 1, 3, 2])], []),
            ("Transpose", ["perm": .ints([3, 2, 1, 0])], []),
            ("Transpose", ["perm": .ints([0, 1, 2, 3])], []),
            ("Transpose", ["perm": .ints([0, 2, 3, 1])], []),
            ("Transpose", ["perm": .ints([3, 0, 1, 2])], []),
            ("Gather", ["axis": .int(1)], [("i", ints([2, 0, -1, 2]))]),
            ("Gather", ["axis": .int(3)], [("i", .int64(IntTensor(shape: [], data: [1])))]),
            ("Softmax", [:], []),
            ("Softmax", ["axis": .int(1)], []),
            ("LayerNormalization", ["axis": .int(-1)], [("g", .float(spreadTensor([d3], seed: 50))), ("b", .float(spreadTensor([d3], seed: 51)))]),
            ("Gelu", [:], []),
        ]
        // (Where's condition and other operand come first: Where(c, o, x).)
        func mask(_ shape: [Int]) -> TensorData {
            .bool(IntTensor(shape: shape, data: (0..<shape.reduce(1, *)).map { Int64($0 % 3 == 1 ? 1 : 0) }))
        }
        // Each binary case also with the constant first (the broadcast operand on the left).
        let swapped = cases.filter { ["Add", "Sub", "Mul", "Div"].contains($0.0) }.map { ($0.0, ["swap": Attribute.int(1)], $0.2) }
        for (op, attributes, constants) in cases + swapped {
            let swap = attributes["swap"] != nil
            let node = Node(name: "n", opType: op, inputs: swap ? constants.map(\.0) + ["x"] : ["x"] + constants.map(\.0), outputs: ["y"],
                            attributes: attributes.filter { $0.key != "swap" })
            let graph = Graph(nodes: [node], inputs: [GraphInput(name: "x", dtype: .float32, shape: [nil, d1, d2, d3])], outputs: ["y"],
                              initializers: constants, opset: 17)
            guard case .float(let general) = try graph.run([.float(Variable(x, requiresGrad: true))], tape: Tape())[0] else {
                Issue.record("\(op): not float"); continue
            }
            for threads in [1, 2] {
                guard case .float(let fast) = try graph.run([.float(Variable(x))], threads: threads)[0] else { Issue.record("\(op): not float"); continue }
                #expect(fast.value.shape == general.value.shape, "\(op)")
                #expect(fast.value.scalars.map(\.bitPattern) == general.value.scalars.map(\.bitPattern), "\(op) \(attributes), \(threads) threads")
            }
        }
    }
}

@Suite struct TransposeTests {
    /// Size-1 axes drop out and input axes that stay together merge; what is left moves the same
    /// elements.
    @Test func permutationsSimplify() {
        #expect(simplifiedPermutation(shape: [65, 1, 192], perm: [1, 0, 2]) == ([12480], [0]))
        #expect(simplifiedPermutation(shape: [1, 65, 8, 3, 192], perm: [3, 1, 2, 0, 4]) == ([520, 3, 192], [1, 0, 2]))
        #expect(simplifiedPermutation(shape: [2, 3, 4, 5], perm: [0, 2, 3, 1]) == ([2, 3, 20], [0, 2, 1]))
        #expect(simplifiedPermutation(shape: [2, 3, 4, 5], perm: [3, 2, 1, 0]) == ([2, 3, 4, 5], [3, 2, 1, 0]))
        #expect(simplifiedPermutation(shape: [1, 1], perm: [1, 0]) == ([], []))
        #expect(simplifiedPermutation(shape: [4, 0, 3], perm: [2, 1, 0]) == ([4, 0, 3], [2, 1, 0]))
    }

    /// Inference's Transpose (simplified axes, planes in blocks of sixteen, a move of nothing
    /// shared with its input) gives the elements of the general path (a run with a tape), on
    /// shapes with size-1 axes and planes of ragged sizes, at one and two threads (the last two
    /// large enough for two: planes, bands of one plane's rows, runs of blocks).
    @Test(arguments: [[1, 37, 1, 33], [2, 1, 40, 18], [3, 17, 1, 1], [1, 65, 48, 1], [2, 0, 3, 5], [2, 130, 1, 300], [1, 300, 259, 1]])
    func inferenceMatchesTheGeneralPath(dims: [Int]) throws {
        let x = spreadTensor(dims, seed: 61)
        for perm in [[0, 1, 2, 3], [2, 1, 0, 3], [0, 2, 1, 3], [1, 0, 3, 2], [3, 2, 1, 0], [0, 3, 1, 2], [2, 3, 0, 1], [3, 1, 2, 0]] {
            let graph = Graph(nodes: [Node(name: "t", opType: "Transpose", inputs: ["x"], outputs: ["y"], attributes: ["perm": .ints(perm)])],
                              inputs: [GraphInput(name: "x", dtype: .float32, shape: dims.map { $0 })], outputs: ["y"], initializers: [], opset: 17)
            guard case .float(let general) = try graph.run([.float(Variable(x, requiresGrad: true))], tape: Tape())[0] else {
                Issue.record("not float"); continue
            }
            #expect(general.value.shape == perm.map { dims[$0] })
            for threads in [1, 2] {
                guard case .float(let fast) = try graph.run([.float(Variable(x))], threads: threads)[0] else { Issue.record("not float"); continue }
                #expect(fast.value.shape == general.value.shape, "\(dims) \(perm)")
                #expect(fast.value.scalars.map(\.bitPattern) == general.value.scalars.map(\.bitPattern), "\(dims) \(perm), \(threads) threads")
            }
        }
    }

    /// `transposePlane` against its definition on planes of ragged sizes and strides wider than
    /// the plane.
    @Test func planesMatchTheirDefinition() {
        for (rows, cols) in [(1, 1), (15, 17), (16, 16), (33, 48), (65, 48), (7, 70)] {
            let srcStride = cols + 3, dstStride = rows + 5
            let src = (0..<rows * srcStride).map { Float($0) * 0.5 - 7 }
            var dst = [Float](repeating: -1, count: cols * dstStride)
            src.withUnsafeBufferPointer { s in
                dst.withUnsafeMutableBufferPointer { d in
                    transposePlane(s.baseAddress!, rows: rows, cols: cols, srcStride: srcStride, to: d.baseAddress!, dstStride: dstStride)
                }
            }
            var expected = [Float](repeating: -1, count: cols * dstStride)
            for i in 0..<rows { for j in 0..<cols { expected[j * dstStride + i] = src[i * srcStride + j] } }
            #expect(dst == expected, "\(rows) × \(cols)")
        }
    }
}

@Suite struct BatchedMatMulTests {
    /// A MatMul by a 2-D initializer keeps it packed at inference: the bits of the plain GEMM
    /// (a run with a tape) at one and two threads, for a batch of rows and a vector, and again
    /// after the weight is updated in place (packed anew).
    @Test func packedConstantWeightMatchesThePlainGemm() throws {
        let b = spreadTensor([37, 45], seed: 53)
        for aShape in [[3, 29, 37], [37]] {
            let a = spreadTensor(aShape, seed: 54)
            let g = Graph(nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                          inputs: [GraphInput(name: "x", dtype: .float32, shape: aShape.map { $0 })], outputs: ["y"],
                          initializers: [("w", .float(b))], opset: 17)
            #expect(g.matMulPacks[0] != nil)
            for round in 0..<2 {
                if round == 1, case .float(let w)? = g.initializers["w"] {
                    w.update { p in for i in 0..<p.count { p[i] = p[i] * 1.5 - 0.25 } }
                }
                guard case .float(let plain) = try g.run([.float(Variable(a))], tape: Tape(), threads: 1)[0] else { fatalError() }
                for threads in [1, 2] {
                    guard case .float(let packed) = try g.run([.float(Variable(a))], threads: threads)[0] else { fatalError() }
                    #expect(packed.value.shape == plain.value.shape)
                    #expect(packed.value.scalars.map(\.bitPattern) == plain.value.scalars.map(\.bitPattern), "\(aShape), round \(round), \(threads) threads")
                }
            }
        }
    }

    /// A MatMul by a constant followed by an Add of a constant bias (either operand order) and
    /// an exact Gelu takes them over at inference: the same bits as running the nodes (a run with
    /// a tape), at one to three threads; a MatMul whose output is read twice, an approximate
    /// Gelu, a bias of the wrong shape or a bias fed as an input are not taken over, and still
    /// give the nodes' bits.
    @Test func matMulTakesOverItsBiasAddAndGelu() throws {
        let x = spreadTensor([2, 33, 40], seed: 71), w = spreadTensor([40, 70], seed: 72), bias = spreadTensor([70], seed: 73)
        func graph(biasFirst: Bool, gelu: String?, extraReader: Bool, biasShape: [Int] = [70], biasAsInput: Bool = false) -> Graph {
            var nodes = [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"]),
                         Node(name: "add", opType: "Add", inputs: biasFirst ? ["b", "y"] : ["y", "b"], outputs: ["z"])]
            var outputs = ["z"]
            if let gelu {
                nodes.append(Node(name: "gelu", opType: "Gelu", inputs: ["z"], outputs: ["g"], attributes: gelu == "none" ? [:] : ["approximate": .string(gelu)]))
                outputs = ["g"]
            }
            if extraReader { nodes.append(Node(name: "neg", opType: "Neg", inputs: ["y"], outputs: ["n"])); outputs.append("n") }
            let b = Tensor(shape: biasShape, scalars: Array(bias.scalars.prefix(biasShape.reduce(1, *))))
            var inputs = [GraphInput(name: "x", dtype: .float32, shape: [2, 33, 40])]
            if biasAsInput { inputs.append(GraphInput(name: "b", dtype: .float32, shape: biasShape.map { $0 })) }
            return Graph(nodes: nodes, inputs: inputs, outputs: outputs, initializers: [("w", .float(w)), ("b", .float(b))], opset: 20)
        }
        let cases: [(String, Graph, Bool, Bool)] = [
            ("bias", graph(biasFirst: false, gelu: nil, extraReader: false), true, false),
            ("bias first", graph(biasFirst: true, gelu: nil, extraReader: false), true, false),
            ("bias and gelu", graph(biasFirst: false, gelu: "none", extraReader: false), true, true),
            ("tanh gelu", graph(biasFirst: true, gelu: "tanh", extraReader: false), true, false),
            ("output read twice", graph(biasFirst: false, gelu: "none", extraReader: true), false, false),
            ("bias (1, N)", graph(biasFirst: false, gelu: nil, extraReader: false, biasShape: [1, 70]), false, false),
            ("bias an input", graph(biasFirst: false, gelu: "none", extraReader: false, biasAsInput: true), false, false),
        ]
        for (name, g, fused, withGelu) in cases {
            #expect((g.matMulEpilogues[0] != nil) == fused, "\(name)")
            #expect((g.matMulEpilogues[0]?.gelu ?? false) == withGelu, "\(name)")
            let feeds: [Value] = g.inputs.count == 2 ? [.float(Variable(x)), .float(Variable(Tensor(shape: [1, 70], scalars: Array(bias.scalars))))]
                : [.float(Variable(x))]
            let plain = try g.run(feeds.map { v in if case .float(let t) = v { return .float(Variable(t.value)) }; return v }, tape: Tape(), threads: 1)
            for threads in [1, 2, 3] {
                let fast = try g.run(feeds, threads: threads)
                for (p, f) in zip(plain, fast) {
                    guard case .float(let pv) = p, case .float(let fv) = f else { fatalError() }
                    #expect(fv.value.shape == pv.value.shape)
                    #expect(fv.value.scalars.map(\.bitPattern) == pv.value.scalars.map(\.bitPattern), "\(name), \(threads) threads")
                }
            }
        }
    }

    /// Attention chains (Q · K, elementwise steps, Softmax, NaNs filled, · V) run fused at
    /// inference with the bits of the nodes run one by one (fusion off, and a run with a tape),
    /// at one to three threads: a plain chain, a masked one with -inf rows (NaN probabilities
    /// filled by Where(IsNaN)), steps of every op with the scores on either side and operands
    /// broadcasting over batch, heads, rows or columns, broadcast batch axes or none, and rows in
    /// several blocks. Chains that do not qualify (an intermediate read twice, V made after the
    /// first MatMul, a Where that keeps NaNs) are not found; a Softmax over another axis falls back.
    @Test func attentionChainsRunFusedWithTheNodesBits() throws {
        struct Case {
            let name: String, q: [Int], k: [Int], v: [Int]
            var steps: [(op: String, shape: [Int], scoresFirst: Bool)] = []
            var fill = false, axis = -1, extraReader = false, lateV = false, keepNaN = false
            let fused: Bool
        }
        let cases = [
            Case(name: "plain", q: [2, 4, 65, 48], k: [2, 4, 48, 65], v: [2, 4, 65, 48], fused: true),
            Case(name: "masked", q: [2, 3, 33, 16], k: [2, 3, 16, 33], v: [2, 3, 33, 8],
                 steps: [("Add", [2, 1, 33, 33], false)], fill: true, fused: true),
            Case(name: "steps", q: [1, 4, 300, 24], k: [3, 4, 24, 200], v: [4, 200, 40],
                 steps: [("Div", [], true), ("Mul", [4, 1, 1], false), ("Sub", [3, 1, 1, 200], false), ("Add", [300, 1], true),
                         ("Sub", [1], true), ("Div", [3, 4, 300, 200], false)], fused: true),
            Case(name: "3-D", q: [5, 17, 9], k: [9, 70], v: [5, 70, 3], steps: [("Mul", [1], true)], fill: true, fused: true),
            Case(name: "2-D", q: [17, 9], k: [9, 40], v: [40, 5], steps: [("Add", [40], true)], fused: true),
            Case(name: "axis 2", q: [2, 2, 20, 8], k: [2, 2, 8, 20], v: [2, 2, 20, 8], axis: 2, fused: true),
            Case(name: "scores read twice", q: [2, 2, 20, 8], k: [2, 2, 8, 20], v: [2, 2, 20, 8], extraReader: true, fused: false),
            Case(name: "V made later", q: [2, 2, 20, 8], k: [2, 2, 8, 20], v: [2, 2, 20, 8], lateV: true, fused: false),
            Case(name: "NaN kept", q: [2, 2, 20, 8], k: [2, 2, 8, 20], v: [2, 2, 20, 8], fill: true, keepNaN: true, fused: false),
        ]
        for c in cases {
            var nodes: [Node] = [], inputs: [GraphInput] = [], feeds: [Value] = [], inits: [(String, TensorData)] = []
            var outputs: [String] = []
            func input(_ name: String, _ t: Tensor) {
                inputs.append(GraphInput(name: name, dtype: .float32, shape: t.shape.map { $0 }))
                feeds.append(.float(Variable(t)))
            }
            input("q", spreadTensor(c.q, seed: 81)); input("k", spreadTensor(c.k, seed: 82))
            if c.lateV {
                inits.append(("v0", .float(spreadTensor(c.v, seed: 83))))
            } else {
                input("v", spreadTensor(c.v, seed: 83))
            }
            nodes.append(Node(name: "qk", opType: "MatMul", inputs: ["q", "k"], outputs: ["s0"]))
            if c.lateV { nodes.append(Node(name: "neg", opType: "Neg", inputs: ["v0"], outputs: ["v"])) }
            if c.extraReader { nodes.append(Node(name: "abs", opType: "Abs", inputs: ["s0"], outputs: ["a"])); outputs.append("a") }
            var current = "s0"
            for (j, step) in c.steps.enumerated() {
                var operand = spreadTensor(step.shape, seed: 90 + UInt64(j), positive: step.op == "Div")
                if step.op == "Add" && c.fill {
                    // -inf over a few positions and over one whole row of the second slice.
                    var values = operand.scalars
                    for e in stride(from: 0, to: values.count, by: 7) { values[e] = -.infinity }
                    for e in 0..<33 { values[33 * 33 + 5 * 33 + e] = -.infinity }
                    operand = Tensor(shape: operand.shape, scalars: values)
                }
                input("m\(j)", operand)
                nodes.append(Node(name: "step\(j)", opType: step.op, inputs: step.scoresFirst ? [current, "m\(j)"] : ["m\(j)", current],
                                  outputs: ["s\(j + 1)"]))
                current = "s\(j + 1)"
            }
            nodes.append(Node(name: "softmax", opType: "Softmax", inputs: [current], outputs: ["p"], attributes: ["axis": .int(c.axis)]))
            current = "p"
            if c.fill {
                inits.append(("zero", .float(Tensor(shape: [], scalars: [0.25]))))
                nodes.append(Node(name: "isnan", opType: "IsNaN", inputs: ["p"], outputs: ["nan"]))
                nodes.append(Node(name: "where", opType: "Where", inputs: c.keepNaN ? ["nan", "p", "zero"] : ["nan", "zero", "p"], outputs: ["pf"]))
                current = "pf"
            }
            nodes.append(Node(name: "pv", opType: "MatMul", inputs: [current, "v"], outputs: ["y"]))
            outputs.insert("y", at: 0)
            let g = Graph(nodes: nodes, inputs: inputs, outputs: outputs, initializers: inits, opset: 17)
            #expect((g.attentionChains[0] != nil) == c.fused, "\(c.name)")
            let unfused = Graph(nodes: nodes, inputs: inputs, outputs: outputs, initializers: inits, opset: 17)
            unfused.fusesAttention = false
            let withTape = try g.run(feeds.map { v in if case .float(let t) = v { return .float(Variable(t.value)) }; return v }, tape: Tape(), threads: 1)
            for threads in [1, 2, 3] {
                let plain = try unfused.run(feeds, threads: threads), fast = try g.run(feeds, threads: threads)
                for (reference, (p, f)) in zip(withTape, zip(plain, fast)) {
                    guard case .float(let rv) = reference, case .float(let pv) = p, case .float(let fv) = f else { fatalError() }
                    #expect(fv.value.shape == pv.value.shape && pv.value.shape == rv.value.shape, "\(c.name)")
                    let r = rv.value.scalars
                    let unfusedDiffer = zip(pv.value.scalars, r).filter { $0.bitPattern != $1.bitPattern }.count
                    let fusedDiffer = zip(fv.value.scalars, r).filter { $0.bitPattern != $1.bitPattern }.count
                    #expect(unfusedDiffer == 0, "\(c.name), \(threads) threads, unfused: \(unfusedDiffer) of \(r.count) differ")
                    #expect(fusedDiffer == 0, "\(c.name), \(threads) threads, fused: \(fusedDiffer) of \(r.count) differ")
                }
            }
            if c.name == "masked" {
                // The -inf row's probabilities were NaN and are the fill value's products now.
                guard case .float(let y) = try g.run(feeds, threads: 1)[0] else { fatalError() }
                #expect(!y.value.scalars.contains { $0.isNaN })
            }
        }
    }

    /// Two batched inputs (attention's per-head products), slices small enough to go to the
    /// threads whole: every slice has the bits of its own reference product, at one to three
    /// threads, with a broadcast batch axis on either side.
    @Test func smallSlicesSplitAcrossThreadsMatchTheReference() throws {
        for (aShape, bShape) in [([2, 4, 65, 48], [2, 4, 48, 65]), ([1, 4, 65, 48], [3, 4, 48, 33]), ([3, 4, 33, 48], [4, 48, 65])] {
            let a = spreadTensor(aShape, seed: 61), b = spreadTensor(bShape, seed: 62)
            let m = aShape[aShape.count - 2], k = aShape[aShape.count - 1], n = bShape[bShape.count - 1]
            let batchA = Array(aShape.dropLast(2)), batchB = Array(bShape.dropLast(2))
            let batch = broadcastShape(batchA, batchB)!
            let ia = broadcastSourceIndex(batchA, to: batch), ib = broadcastSourceIndex(batchB, to: batch)
            let count = batch.reduce(1, *)
            var expected = [Float](repeating: 0, count: count * m * n)
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    expected.withUnsafeMutableBufferPointer { c in
                        for t in 0..<count {
                            gemmReference(m: m, n: n, k: k, a: ap.baseAddress! + ia[t] * m * k, lda: k, transposeA: false,
                                          b: bp.baseAddress! + ib[t] * k * n, ldb: n, transposeB: false,
                                          c: c.baseAddress! + t * m * n, ldc: n, accumulate: false)
                        }
                    }
                }
            }
            let g = Graph(nodes: [Node(name: "mm", opType: "MatMul", inputs: ["a", "b"], outputs: ["y"])],
                          inputs: [GraphInput(name: "a", dtype: .float32, shape: aShape.map { $0 }),
                                   GraphInput(name: "b", dtype: .float32, shape: bShape.map { $0 })], outputs: ["y"], initializers: [], opset: 17)
            for threads in [1, 2, 3] {
                guard case .float(let y) = try g.run([.float(Variable(a)), .float(Variable(b))], threads: threads)[0] else { fatalError() }
                #expect(y.value.shape == batch + [m, n])
                let differing = zip(y.value.scalars, expected).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(differing == 0, "\(aShape) · \(bShape), \(threads) threads: \(differing) differ")
            }
        }
    }

    /// (B, S, K) · (K, N) as one GEMM of B·S rows gives the bits of B separate (S, K) · (K, N)
    /// products, at one and two threads; a broadcast (1, K, N) right side too.
    @Test func rowsOfAllSlicesInOneGemmMatchSliceBySlice() throws {
        let a = spreadTensor([3, 37, 20], seed: 51), b = spreadTensor([20, 33], seed: 52)
        func matMul(_ x: Tensor, _ w: Tensor, threads: Int) throws -> Tensor {
            let g = Graph(nodes: [Node(name: "mm", opType: "MatMul", inputs: ["x", "w"], outputs: ["y"])],
                          inputs: [GraphInput(name: "x", dtype: .float32, shape: x.shape.map { $0 })], outputs: ["y"],
                          initializers: [("w", .float(w))], opset: 17)
            guard case .float(let y) = try g.run([.float(Variable(x))], threads: threads)[0] else { fatalError() }
            return y.value
        }
        var expected: [Float] = []
        for s in 0..<3 { expected += try matMul(Tensor(shape: [37, 20], scalars: Array(a.scalars[(s * 740)..<((s + 1) * 740)])), b, threads: 1).scalars }
        for threads in [1, 2] {
            let whole = try matMul(a, b, threads: threads)
            #expect(whole.shape == [3, 37, 33])
            #expect(whole.scalars.map(\.bitPattern) == expected.map(\.bitPattern), "\(threads) threads")
            let broadcast = try matMul(a, Tensor(shape: [1, 20, 33], scalars: b.scalars), threads: threads)
            #expect(broadcast.scalars.map(\.bitPattern) == expected.map(\.bitPattern), "(1, K, N), \(threads) threads")
        }
    }
}

@Suite struct BroadcastBinaryTests {
    /// Add, Sub, Mul and Div at inference, for operands that broadcast in every way the fast
    /// paths take (the same shape, a trailing row, values repeated over trailing blocks) and
    /// the strided one takes (an attention mask over heads, both operands broadcast, a size-1
    /// middle, a scalar-like operand, an empty output), equal the broadcasting definition bit
    /// for bit at one and two threads (the mask case has enough rows to split, and one value
    /// against 60K splits its one row).
    @Test func inferenceMatchesTheDefinition() throws {
        let cases: [([Int], [Int])] = [
            ([2, 3, 4], [2, 3, 4]), ([2, 3, 4], [4]), ([2, 3, 4], [2, 3, 1]),
            ([8, 12, 32, 32], [8, 1, 32, 32]), ([8, 12, 32, 32], [8, 1, 1, 32]), ([2, 1, 4], [1, 3, 1]),
            ([4, 1, 3], [5, 1]), ([1], [2, 3]), ([3, 1, 1], [1, 1, 1]), ([2, 0, 3], [1, 1, 3]), ([5, 1, 7], [5, 6, 1]),
            ([300, 201], [1]), ([1], [201, 300]),
        ]
        for (sa, sb) in cases {
            let rank = max(sa.count, sb.count)
            let pa = [Int](repeating: 1, count: rank - sa.count) + sa, pb = [Int](repeating: 1, count: rank - sb.count) + sb
            let out = zip(pa, pb).map { $0 == 1 ? $1 : $0 }
            let a = spreadTensor(sa, seed: UInt64(sa.reduce(7, *)), positive: true)
            let b = spreadTensor(sb, seed: UInt64(sb.reduce(11, *) + 1), positive: true)
            /// Element `flat` of the output read from an operand of padded shape `p`.
            func source(_ flat: Int, _ p: [Int]) -> Int {
                var rest = flat, index = 0, size = 1
                for d in stride(from: rank - 1, through: 0, by: -1) {
                    let k = rest % out[d]
                    rest /= out[d]
                    index += (p[d] == 1 ? 0 : k) * size
                    size *= p[d]
                }
                return index
            }
            for op in ["Add", "Sub", "Mul", "Div"] {
                let want: [Float] = (0..<out.reduce(1, *)).map { i in
                    let x = a.scalars[source(i, pa)], y = b.scalars[source(i, pb)]
                    switch op {
                    case "Add": return x + y
                    case "Sub": return x - y
                    case "Mul": return x * y
                    default: return x / y
                    }
                }
                let node = Node(name: "op", opType: op, inputs: ["a", "b"], outputs: ["y"], attributes: [:])
                let graph = Graph(nodes: [node], inputs: [GraphInput(name: "a", dtype: .float32, shape: sa), GraphInput(name: "b", dtype: .float32, shape: sb)],
                                  outputs: ["y"], initializers: [], opset: 17)
                for threads in [1, 2] {
                    guard case .float(let y) = try graph.run([.float(Variable(a)), .float(Variable(b))], threads: threads)[0] else { fatalError() }
                    #expect(y.value.shape == out, "\(op) \(sa) \(sb)")
                    #expect(y.value.scalars.map(\.bitPattern) == want.map(\.bitPattern), "\(op) \(sa) \(sb), \(threads) threads")
                }
            }
        }
    }
}
