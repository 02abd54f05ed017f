import Common
import Testing
@testable import TensorEngine
import Pruning

/// A training loop's steps reuse each node's output, gradient and backward step
/// (`Graph.keepsTrainingSteps`), and give the bits of a loop that makes them anew.
@Suite struct KeptTrainingStepsTests {
    /// What the fixture models train with: Conv, Relu, MaxPool, Flatten, Gemm.
    static func model() -> Graph {
        var b = GraphBuilder(inputShape: [1, 8, 8])
        b.conv("conv", weight: spreadTensor([4, 1, 3, 3], seed: 1), bias: spreadTensor([4], seed: 2), stride: [1, 1], padding: [1, 1],
               dilation: [1, 1], groups: 1)
        b.relu("relu1")
        b.maxPool("pool", kernel: [2, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], ceil: false)
        b.flatten("flatten")
        b.linear("fc1", weight: spreadTensor([10, 64], seed: 3), bias: spreadTensor([10], seed: 4))
        b.relu("relu2")
        b.linear("fc2", weight: spreadTensor([3, 10], seed: 5), bias: spreadTensor([3], seed: 6))
        return b.build()
    }

    /// 20 examples: batches of 8 end with one of 4.
    static let data = LabeledData(inputs: spreadTensor([20, 1, 8, 8], seed: 7), labels: (0..<20).map { Int32($0 % 3) })

    static func bits(_ graph: Graph) -> [[UInt32]] { graph.parameters.map { $0.variable.value.scalars.map(\.bitPattern) } }

    @Test func fineTuningGivesTheWeightsOfStepsMadeAnew() {
        let settings = FineTuneSettings(epochs: 3, batchSize: 8, learningRate: 0.05, momentum: 0.9)
        let kept = Self.model()
        FineTuning.run(model: kept, masks: [:], data: Self.data, settings: settings, seed: 3, threads: 1)
        #expect(!kept.keepsTrainingSteps && kept.trainingSteps.allSatisfy { $0 == nil }, "the loop lets its steps go")

        // FineTuning's loop as it was: a new tape, input Variable, batch and loss every step.
        let fresh = Self.model()
        fresh.training = true
        let optimizer = FineTuning.optimizer(settings)
        var rng = Philox(seed: 3, stream: 1)
        for _ in 0..<settings.epochs {
            let order = rng.permutation(Self.data.count)
            var start = 0
            while start < order.count {
                let batch = Self.data.subset(Array(order[start..<min(start + 8, order.count)]))
                let tape = Tape()
                let output = fresh.forward(Variable(batch.inputs), tape: tape, threads: 1)
                tape.backward(from: softmaxCrossEntropy(output, labels: batch.labels, tape: tape))
                optimizer.step(fresh.parameters.map(\.variable))
                start += 8
            }
        }
        #expect(Self.bits(kept) == Self.bits(fresh))
        #expect(Self.bits(kept) != Self.bits(Self.model()), "training moved the weights")
    }

    /// Every node's output Variable, and the addresses of its value and gradient buffers.
    static func buffers(_ graph: Graph) -> [(ObjectIdentifier, UnsafeRawPointer?, UnsafeRawPointer?)] {
        graph.trainingSteps.map { step in
            let out = step!.output
            return (ObjectIdentifier(out), out.value.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) },
                    out.grad?.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) })
        }
    }

    @Test func aSecondStepWritesTheSameBuffers() throws {
        let graph = Self.model(), reference = Self.model()
        graph.keepsTrainingSteps = true
        let tape = Tape(), input = Variable(Tensor(zeros: [0])), loss = CrossEntropyLoss()
        var labels: [Int32] = [], targets = Tensor(zeros: [0]), feeds: [Value] = [.float(input)]
        var first: [(ObjectIdentifier, UnsafeRawPointer?, UnsafeRawPointer?)] = []
        for (i, rows) in [Array(0..<8), Array(8..<16), Array(12..<20)].enumerated() {
            Self.data.gather(rows[...], into: &feeds, labels: &labels, targets: &targets)
            let output = graph.forward(input, tape: tape, threads: 1)
            let value = output.value.scalars.map(\.bitPattern)
            tape.backward(from: loss(output, labels: labels, tape: tape))
            // The same forward pass and gradients as a graph that keeps nothing.
            let refTape = Tape()
            let refOutput = reference.forward(Variable(input.value), tape: refTape, threads: 1)
            #expect(value == refOutput.value.scalars.map(\.bitPattern), "step \(i)")
            refTape.backward(from: softmaxCrossEntropy(refOutput, labels: labels, tape: refTape))
            for (p, r) in zip(graph.parameters, reference.parameters) {
                #expect(p.variable.grad?.scalars.map(\.bitPattern) == r.variable.grad?.scalars.map(\.bitPattern), "step \(i) \(p.name)")
                p.variable.zeroGrad()
                r.variable.zeroGrad()
            }
            let now = Self.buffers(graph)
            #expect(now.count == graph.nodes.count)
            if i == 0 { first = now; continue }
            for (node, (a, b)) in zip(graph.nodes, zip(first, now)) {
                #expect(a.0 == b.0 && a.1 == b.1 && a.2 == b.2, "step \(i): \(node.name) made a new output or buffer")
            }
        }
    }

    @Test func aStepDoesNotReuseWhatIsStillHeld() throws {
        let graph = Self.model()
        graph.keepsTrainingSteps = true
        let input = Variable(Self.data.inputs.rows(0..<8))
        // The caller keeps the first output: the second step must not write it.
        let tape1 = Tape()
        let first = graph.forward(input, tape: tape1, threads: 1)
        let held = first.value.scalars
        tape1.backward(from: softmaxCrossEntropy(first, labels: Array(Self.data.labels[0..<8]), tape: tape1))
        input.update { x in for i in 0..<x.count { x[i] *= 0.5 } }
        let second = graph.forward(input, tape: Tape(), threads: 1)
        #expect(second !== first && first.value.scalars == held)
        // A tape not yet replayed holds its steps: a new run makes its own.
        let pending = Tape()
        _ = graph.forward(input, tape: pending, threads: 1)
        let steps = graph.trainingSteps.map { $0.map(ObjectIdentifier.init) }
        _ = graph.forward(input, tape: Tape(), threads: 1)
        #expect(zip(steps, graph.trainingSteps.map { $0.map(ObjectIdentifier.init) }).allSatisfy { $0 != $1 })
        // Another batch size: new steps, the same values as a graph that keeps nothing.
        let small = Variable(Self.data.inputs.rows(0..<3))
        let got = graph.forward(small, tape: Tape(), threads: 1).value.scalars.map(\.bitPattern)
        #expect(got == Self.model().forward(small, tape: Tape(), threads: 1).value.scalars.map(\.bitPattern))
    }
}
