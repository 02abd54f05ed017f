/// A fully connected layer's parameters, PyTorch layout.
public final class LinearLayer {
    public let name: String
    /// `(out, in)`.
    public let weight: Variable
    /// `(out)`.
    public let bias: Variable?

    public init(name: String, weight: Tensor, bias: Tensor?) {
        precondition(weight.shape.count == 2, "linear \(name): weight must be 2-D, got \(weight.shape)")
        if let bias { precondition(bias.shape == [weight.shape[0]], "linear \(name): bias \(bias.shape) for weight \(weight.shape)") }
        self.name = name
        self.weight = Variable(weight, requiresGrad: true)
        self.bias = bias.map { Variable($0, requiresGrad: true) }
    }

    public var inFeatures: Int { weight.value.shape[1] }
    public var outFeatures: Int { weight.value.shape[0] }
}

/// One step of a `Sequential` model.
public enum Layer {
    case linear(LinearLayer)
    case relu(name: String)
    /// Flattens every dimension after the batch into one.
    case flatten(name: String)

    public var name: String {
        switch self {
        case .linear(let l): return l.name
        case .relu(let n), .flatten(let n): return n
        }
    }
}

/// A model as an ordered list of layers applied in sequence.
public final class Sequential {
    public let layers: [Layer]
    /// The input shape without the batch dimension.
    public let inputShape: [Int]

    public init(layers: [Layer], inputShape: [Int]) {
        self.layers = layers
        self.inputShape = inputShape
    }

    /// Runs the model on `x` `(B, inputShape…)`; records backward steps when `tape` is given.
    public func forward(_ x: Variable, tape: Tape?, threads: Int) -> Variable {
        var h = x
        for layer in layers {
            switch layer {
            case .linear(let l):
                h = linear(h, weight: l.weight, bias: l.bias, tape: tape, threads: threads)
            case .relu:
                h = relu(h, tape: tape)
            case .flatten:
                let s = h.value.shape
                h = reshape(h, to: [s[0], s.dropFirst().reduce(1, *)], tape: tape)
            }
        }
        return h
    }

    /// Inference: logits `(B, classes)` for input `(B, inputShape…)`.
    public func predict(_ x: Tensor, threads: Int) -> Tensor {
        forward(Variable(x), tape: nil, threads: threads).value
    }

    /// Every trainable parameter with its name (`fc1.weight`, `fc1.bias`, …), in layer order.
    public var parameters: [(name: String, variable: Variable)] {
        layers.flatMap { layer -> [(name: String, variable: Variable)] in
            guard case .linear(let l) = layer else { return [] }
            return [(l.name + ".weight", l.weight)] + (l.bias.map { [(l.name + ".bias", $0)] } ?? [])
        }
    }

    /// The weights that pruning applies to (every Linear weight, not biases), in layer order.
    public var prunableWeights: [(name: String, variable: Variable)] {
        layers.compactMap { layer in
            guard case .linear(let l) = layer else { return nil }
            return (l.name + ".weight", l.weight)
        }
    }

    /// A deep copy with its own parameter storage.
    public func copy() -> Sequential {
        Sequential(
            layers: layers.map { layer in
                guard case .linear(let l) = layer else { return layer }
                return .linear(LinearLayer(name: l.name, weight: l.weight.value, bias: l.bias?.value))
            },
            inputShape: inputShape)
    }
}
