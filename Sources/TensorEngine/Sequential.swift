import Kernels

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

    /// At or below this density, inference multiplies by the weight's nonzeros only.
    // NOTE: on LeNet-300-100 pruned to 90 % (10 % density) the CSR path cut p50 latency from
    // 276 to 30 µs at batch 1 and from 776 to 351 µs at batch 64. The 25 % crossover is a
    // conservative guess until `make bench` measures it per shape.
    public static let sparseDensityThreshold = 0.25

    private var sparse: (version: Int, matrix: CSRMatrix?)?
    private var packed: (version: Int, matrix: PackedB)?

    /// The weight packed for `gemm` once (rebuilt after every update).
    // NOTE: packing the 300×784 weight on every call dominated batch-1 inference of
    // LeNet-300-100; see docs/performance.md for the effect.
    var packedWeight: PackedB {
        if let packed, packed.version == weight.version { return packed.matrix }
        let matrix = weight.value.withUnsafeBufferPointer {
            PackedB(b: $0.baseAddress!, ldb: inFeatures, transposeB: true, k: inFeatures, n: outFeatures)
        }
        packed = (weight.version, matrix)
        return matrix
    }

    /// The weight in CSR form when sparse enough to pay, rebuilt after every update.
    public var sparseWeight: CSRMatrix? {
        if let sparse, sparse.version == weight.version { return sparse.matrix }
        let matrix = weight.value.withUnsafeBufferPointer { p -> CSRMatrix? in
            let nonzeros = p.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            guard Double(nonzeros) <= LinearLayer.sparseDensityThreshold * Double(p.count) else { return nil }
            return CSRMatrix(dense: p, rows: outFeatures, cols: inFeatures)
        }
        sparse = (weight.version, matrix)
        return matrix
    }

    /// Inference only: y = x · Wᵀ + b through the sparse kernel when the weight is sparse.
    func infer(_ x: Tensor, threads: Int) -> Tensor {
        precondition(x.shape.count == 2 && x.shape[1] == inFeatures, "linear \(name): input \(x.shape) for weight \(weight.value.shape)")
        var y = Tensor(zeros: [x.shape[0], outFeatures])
        guard let csr = sparseWeight else {
            let w = packedWeight
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    gemm(m: x.shape[0], a: xp.baseAddress!, lda: inFeatures, transposeA: false, packed: w,
                         c: yp.baseAddress!, ldc: outFeatures, accumulate: false, threads: threads)
                    if let b = bias?.value {
                        b.withUnsafeBufferPointer { addRowVector($0.baseAddress!, rows: x.shape[0], cols: outFeatures, out: yp.baseAddress!) }
                    }
                }
            }
            return y
        }
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                csrLinearForward(csr, x: xp.baseAddress!, batch: x.shape[0], y: yp.baseAddress!, threads: threads)
                if let b = bias?.value {
                    b.withUnsafeBufferPointer { addRowVector($0.baseAddress!, rows: x.shape[0], cols: outFeatures, out: yp.baseAddress!) }
                }
            }
        }
        return y
    }
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

    /// Inference: logits `(B, classes)` for input `(B, inputShape…)`. Sparse weights go
    /// through the CSR kernel (same results as dense, see Kernels/Sparse.swift).
    public func predict(_ x: Tensor, threads: Int) -> Tensor {
        var h = x
        for layer in layers {
            switch layer {
            case .linear(let l): h = l.infer(h, threads: threads)
            case .relu:
                h.withUnsafeMutableBufferPointer { reluForward($0.baseAddress!, count: $0.count, out: $0.baseAddress!) }
            case .flatten: h = h.reshaped([h.shape[0], h.shape.dropFirst().reduce(1, *)])
            }
        }
        return h
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
