// Inference of a model that is a chain of Linear layers (an MLP, after an optional Flatten).
//
// `Graph.predict` runs such a model here: each layer's kernel (`linearInfer`, the same one the
// graph's Linear fast path calls, so the outputs are the same bit for bit) goes straight from
// the last layer's buffer to the next, without the run's slots, values, output variables and
// per-node bookkeeping. At batch 1 that bookkeeping was about a third of LeNet-300-100's time
// when 90 % sparse (160 retains and releases per call). Training (a tape) and every other
// model go through `Graph.run`.
import Dispatch

/// Whether a graph is a Linear chain, worked out once (`Graph.makeLinearChain`).
enum LinearChainState {
    case unknown
    case none
    case chain(LinearChain)
}

final class LinearChain {
    /// A class: the loop over the layers then retains one object per layer, not its four.
    final class Layer {
        let name: String
        let weight: Variable
        let bias: Variable?
        let cache: LinearCache
        /// The ReLU after the layer, applied by its kernel (`Graph.reluFused`).
        let relu: Bool
        var inFeatures: Int { weight.value.shape[1] }
        var outFeatures: Int { weight.value.shape[0] }

        init(name: String, weight: Variable, bias: Variable?, cache: LinearCache, relu: Bool) {
            (self.name, self.weight, self.bias, self.cache, self.relu) = (name, weight, bias, cache, relu)
        }
    }

    let layers: [Layer]
    /// Whether the input passes through a Flatten (axis 1) first.
    let flattens: Bool
    /// The widest hidden layer: the two halves of `scratch` hold a batch of it each.
    private let hiddenWidth: Int
    /// The hidden layers' outputs, alternating between two halves; grown to the largest batch.
    private var scratch: [Float] = []

    init(layers: [Layer], flattens: Bool) {
        precondition(!layers.isEmpty, "a Linear chain needs a layer")
        self.layers = layers
        self.flattens = flattens
        hiddenWidth = layers.dropLast().map(\.outFeatures).max() ?? 0
    }

    /// The model's output for `x`, or nil when x does not have the shape the first layer takes
    /// (or is an empty batch): `Graph.run` then reports the problem, or runs it.
    func predict(_ x: Tensor, threads: Int, profile: NodeProfile? = nil) -> Tensor? {
        let s = x.shape, first = layers[0]
        if flattens {
            guard s.count >= 2, s.dropFirst().reduce(1, *) == first.inFeatures else { return nil }
        } else {
            guard s.count == 2, s[1] == first.inFeatures else { return nil }
        }
        let rows = s[0], half = rows * hiddenWidth
        guard rows > 0 else { return nil }
        if scratch.count < 2 * half { scratch = [Float](repeating: 0, count: 2 * half) }
        let last = layers.count - 1
        return x.withUnsafeBufferPointer { xp in
            scratch.withUnsafeMutableBufferPointer { hidden in
                Tensor(shape: [rows, layers[last].outFeatures]) { out in
                    var input = xp.baseAddress!
                    for (i, layer) in layers.enumerated() {
                        let t0 = profile != nil ? DispatchTime.now().uptimeNanoseconds : 0
                        let y = i == last ? out.baseAddress! : hidden.baseAddress! + (i % 2) * half
                        linearInfer(input, rows: rows, weight: layer.weight, bias: layer.bias, cache: layer.cache, threads: threads,
                                    relu: layer.relu, into: y)
                        input = UnsafePointer(y)
                        if let profile { profile.add(layer.name, since: t0) }
                    }
                }
            }
        }
    }
}
