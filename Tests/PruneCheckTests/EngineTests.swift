import Common
import Testing
@testable import TensorEngine

@Suite struct PhiloxTests {
    /// Known-answer vectors of Random123's kat_vectors for philox4x32-10.
    @Test func knownAnswers() {
        let zero = Philox.block(key: (0, 0), counter: (0, 0, 0, 0))
        #expect([zero.0, zero.1, zero.2, zero.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let ones = Philox.block(key: (0xffff_ffff, 0xffff_ffff), counter: (0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff))
        #expect([ones.0, ones.1, ones.2, ones.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let pi = Philox.block(key: (0xa409_3822, 0x299f_31d0), counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344))
        #expect([pi.0, pi.1, pi.2, pi.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test func permutationIsAPermutationAndSeeded() {
        var a = Philox(seed: 42), b = Philox(seed: 42), c = Philox(seed: 43)
        let p = a.permutation(1000)
        #expect(p.sorted() == Array(0..<1000))
        #expect(p == b.permutation(1000))
        #expect(p != c.permutation(1000))
    }
}

@Suite struct GradientTests {
    /// Central differences of the mean cross-entropy of a 2-layer MLP with respect to every
    /// input, weight and bias, against the tape's gradients. The ops are float32, so the step
    /// and the tolerance are sized for float rounding.
    @Test func mlpGradientsMatchCentralDifferences() {
        var rng = Philox(seed: 7)
        func randomTensor(_ shape: [Int], scale: Float) -> Tensor {
            Tensor(shape: shape, scalars: (0..<shape.reduce(1, *)).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale })
        }
        var builder = GraphBuilder(inputShape: [2, 3])
        builder.flatten("flatten")
        builder.linear("fc1", weight: randomTensor([5, 6], scale: 0.8), bias: randomTensor([5], scale: 0.3))
        builder.relu("relu")
        builder.linear("fc2", weight: randomTensor([3, 5], scale: 0.8), bias: randomTensor([3], scale: 0.3))
        let model = builder.build()
        let x = Variable(randomTensor([4, 2, 3], scale: 1), requiresGrad: true)
        let labels: [Int32] = [0, 2, 1, 2]
        func loss() -> Float {
            softmaxCrossEntropy(model.forward(Variable(x.value), tape: nil, threads: 1), labels: labels, tape: nil).value.scalars[0]
        }
        let tape = Tape()
        let l = softmaxCrossEntropy(model.forward(x, tape: tape, threads: 1), labels: labels, tape: tape)
        tape.backward(from: l)
        let targets: [(String, Variable)] = [("input", x)] + model.parameters.map { ($0.name, $0.variable) }
        for (name, v) in targets {
            let analytic = v.grad!.scalars
            for i in 0..<v.value.count {
                let h: Float = 1e-2
                let original = v.value.scalars[i]
                v.update { $0[i] = original + h }
                let up = loss()
                v.update { $0[i] = original - h }
                let down = loss()
                v.update { $0[i] = original }
                let numeric = (up - down) / (2 * h)
                #expect(abs(numeric - analytic[i]) <= 2e-3 + 2e-2 * abs(numeric),
                        "\(name)[\(i)]: analytic \(analytic[i]), numeric \(numeric)")
            }
        }
    }

    @Test func sgdKeepsMaskedWeightsExactlyZero() {
        let layer = (weight: Variable(Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), requiresGrad: true), name: "fc")
        let mask: [Float] = [1, 0, 0, 1]
        layer.weight.update { for i in 0..<4 { $0[i] *= mask[i] } }
        let sgd = SGD(learningRate: 0.1, momentum: 0.9)
        sgd.setMask(mask, for: layer.weight)
        for _ in 0..<3 {
            let tape = Tape()
            let y = linear(Variable(Tensor(shape: [1, 2], scalars: [1, -1])), weight: layer.weight, bias: nil, tape: tape, threads: 1)
            let loss = softmaxCrossEntropy(y, labels: [1], tape: tape)
            tape.backward(from: loss)
            sgd.step([layer.weight])
        }
        let w = layer.weight.value.scalars
        #expect(w[1].bitPattern == 0 && w[2].bitPattern == 0, "masked weights changed: \(w)")
        #expect(w[0] != 1 && w[3] != 4, "unmasked weights did not train: \(w)")
    }
}
