// The one list of the ops a graph can run. The importer's check, the conformance harness and
// docs/operators.md are derived from it; adding an op is one entry here and its function in the
// file of its family.

/// The family an op belongs to: one file each in this folder.
public enum OpFamily: String, CaseIterable, Sendable {
    case tensors = "Tensors and types"
    case elementwise = "Elementwise and activations"
    case movement = "Movement"
    case reduction = "Reductions"
    case linearAlgebra = "Linear algebra"
    case convolution = "Convolution"
    case pooling = "Pooling"
    case normalization = "Normalization and dropout"
}

/// How a graph runs one ONNX op type.
struct OpDefinition {
    let opType: String
    let family: OpFamily
    /// Whether the op passes gradients to its float inputs in training.
    let differentiable: Bool
    /// Whether the op keeps its backward step between training runs (`Graph.keepsTrainingSteps`):
    /// its backward closure captures only its input Variables and what their shapes and the
    /// node's attributes determine, and it makes a new output Variable.
    let keepsTrainingStep: Bool
    /// The input positions whose float initializers are the layer's parameters, which training
    /// changes (weights and biases, the normalizations' scale and shift, a bias added to a
    /// MatMul's output); other initializers stay fixed.
    let parameterInputs: [Int]
    let run: (OpContext) throws -> NodeOutputs

    init(_ opType: String, _ family: OpFamily, differentiable: Bool = true, keepsTrainingStep: Bool = false,
         parameterInputs: [Int] = [], _ run: @escaping (OpContext) throws -> NodeOutputs) {
        self.opType = opType
        self.family = family
        self.differentiable = differentiable
        self.keepsTrainingStep = keepsTrainingStep
        self.parameterInputs = parameterInputs
        self.run = run
    }
}

enum OpRegistry {
    /// Every op, by family.
    static let all: [OpDefinition] = {
        typealias D = OpDefinition
        func one(_ f: @escaping (OpContext) throws -> Value) -> (OpContext) throws -> NodeOutputs { { try NodeOutputs(f($0)) } }
        func many(_ f: @escaping (OpContext) throws -> [Value]) -> (OpContext) throws -> NodeOutputs { { try NodeOutputs(all: f($0)) } }
        let unary = one { try $0.unary() }, binary = one { try $0.binary($0.node.opType, $0.value(0), $0.value(1)) }
        let variadic = one { try $0.variadic() }, reshape = one { try $0.reshapeLike() }
        let reduce = one { try $0.reduce() }, pool: (OpContext) throws -> NodeOutputs = { try $0.pool() }
        return [
            D("Identity", .tensors, one { try $0.value(0) }),
            D("Constant", .tensors, differentiable: false, one { try $0.constant() }),
            D("Shape", .tensors, differentiable: false, one { try $0.shape() }),
            D("Cast", .tensors, one { try $0.cast() }),

            D("Relu", .elementwise, keepsTrainingStep: true, one { try $0.reluOp() }),
            D("LeakyRelu", .elementwise, unary), D("Gelu", .elementwise, unary), D("Sigmoid", .elementwise, unary),
            D("Tanh", .elementwise, unary), D("Exp", .elementwise, unary), D("Log", .elementwise, unary),
            D("Sqrt", .elementwise, unary), D("Erf", .elementwise, unary), D("Abs", .elementwise, unary),
            D("Neg", .elementwise, unary), D("Reciprocal", .elementwise, unary),
            D("Clip", .elementwise, one { try $0.clip() }),
            D("Add", .elementwise, parameterInputs: [0, 1], binary), D("Sub", .elementwise, binary), D("Mul", .elementwise, binary),
            D("Div", .elementwise, binary), D("Pow", .elementwise, binary),
            D("Sum", .elementwise, variadic), D("Max", .elementwise, variadic), D("Min", .elementwise, variadic),
            D("Mean", .elementwise, variadic),
            D("Softmax", .elementwise, one { try $0.softmax(log: false) }),
            D("LogSoftmax", .elementwise, one { try $0.softmax(log: true) }),

            D("Reshape", .movement, keepsTrainingStep: true, reshape), D("Flatten", .movement, keepsTrainingStep: true, reshape),
            D("Squeeze", .movement, keepsTrainingStep: true, reshape), D("Unsqueeze", .movement, keepsTrainingStep: true, reshape),
            D("Transpose", .movement, one { try $0.transpose() }),
            D("Concat", .movement, one { try $0.concat() }),
            D("Slice", .movement, one { try $0.slice() }),
            D("Pad", .movement, one { try $0.pad() }),
            D("Gather", .movement, one { try $0.gather() }),

            D("ReduceSum", .reduction, reduce), D("ReduceMean", .reduction, reduce), D("ReduceMax", .reduction, reduce),
            D("ArgMax", .reduction, differentiable: false, one { try $0.argMax() }),

            D("Gemm", .linearAlgebra, keepsTrainingStep: true, parameterInputs: [0, 1, 2], one { try $0.gemmOp() }),
            D("MatMul", .linearAlgebra, parameterInputs: [0, 1], one { try $0.matMul() }),

            D("Conv", .convolution, keepsTrainingStep: true, parameterInputs: [0, 1, 2], one { try $0.conv() }),

            D("MaxPool", .pooling, keepsTrainingStep: true, pool), D("AveragePool", .pooling, keepsTrainingStep: true, pool),
            D("GlobalAveragePool", .pooling, keepsTrainingStep: true, pool), D("GlobalMaxPool", .pooling, keepsTrainingStep: true, pool),

            D("BatchNormalization", .normalization, parameterInputs: [1, 2], one { try $0.batchNorm() }),
            D("LayerNormalization", .normalization, parameterInputs: [1, 2], many { try $0.layerNorm() }),
            D("Dropout", .normalization, many { try $0.dropout() }),
        ]
    }()

    /// The ops by ONNX op type.
    static let byType: [String: OpDefinition] = {
        var table: [String: OpDefinition] = [:]
        for op in all {
            precondition(table[op.opType] == nil, "op \(op.opType) is registered twice")
            table[op.opType] = op
        }
        return table
    }()
}

/// The ops a graph can run, by ONNX op type. Everything else is rejected at import with the
/// node's name, the op and the opset.
public let supportedOps: Set<String> = Set(OpRegistry.byType.keys)

/// One row of the supported-op table (docs/operators.md).
public struct SupportedOp: Sendable, Equatable {
    public let opType: String
    public let family: OpFamily
    public let differentiable: Bool
}

/// Every supported op, family by family in `OpFamily` order, alphabetically within a family.
public let supportedOpTable: [SupportedOp] = OpRegistry.all
    .map { SupportedOp(opType: $0.opType, family: $0.family, differentiable: $0.differentiable) }
    .sorted { a, b in
        let fa = OpFamily.allCases.firstIndex(of: a.family)!, fb = OpFamily.allCases.firstIndex(of: b.family)!
        return fa != fb ? fa < fb : a.opType < b.opType
    }

/// docs/operators.md's table: one row per family with its ops (a † marks ops without a gradient).
public func supportedOpsMarkdown() -> String {
    var lines = ["| family | ops |", "|---|---|"]
    for family in OpFamily.allCases {
        let ops = supportedOpTable.filter { $0.family == family }
        guard !ops.isEmpty else { continue }
        lines.append("| \(family.rawValue) | " + ops.map { $0.differentiable ? $0.opType : "\($0.opType) †" }.joined(separator: ", ") + " |")
    }
    return lines.joined(separator: "\n") + "\n"
}
