// The one list of the ops a graph can run. The importer's check, the conformance harness and
// docs/operators.md are derived from it; adding an op is one entry here and its function in the
// file of its family.

/// The family an op belongs to: one file each in this folder.
public enum OpFamily: String, CaseIterable, Sendable {
    case tensors = "Tensors and types"
    case elementwise = "Elementwise and activations"
    case logical = "Comparison and logic"
    case movement = "Movement"
    case indexing = "Indexing"
    case reduction = "Reductions and scans"
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
    /// The attributes the op reads; the importer refuses any other by name.
    let attributes: Set<String>
    let run: (OpContext) throws -> NodeOutputs

    init(_ opType: String, _ family: OpFamily, differentiable: Bool = true, keepsTrainingStep: Bool = false,
         parameterInputs: [Int] = [], attributes: Set<String> = [], _ run: @escaping (OpContext) throws -> NodeOutputs) {
        self.opType = opType
        self.family = family
        self.differentiable = differentiable
        self.keepsTrainingStep = keepsTrainingStep
        self.parameterInputs = parameterInputs
        self.attributes = attributes
        self.run = run
    }
}

enum OpRegistry {
    /// The blocked graph's own ops (`BlockedPlan`), run only in a graph built with them.
    static let blocked: [String: OpDefinition] = {
        typealias D = OpDefinition
        func one(_ f: @escaping (OpContext) throws -> Value) -> (OpContext) throws -> NodeOutputs { { try NodeOutputs(f($0)) } }
        let all = [
            D(BlockedPlan.reorderIn, .convolution, differentiable: false, attributes: ["channels"], one { try $0.reorderIn16() }),
            D(BlockedPlan.reorderOut, .convolution, differentiable: false, attributes: ["channels"], one { try $0.reorderOut16() }),
            D(BlockedPlan.conv, .convolution, differentiable: false,
              attributes: ["kind", "cin", "cout", "mode", "lo", "hi", "geometry"], one { try $0.conv16() }),
            D(BlockedPlan.mean, .convolution, differentiable: false, one { try $0.mean16() }),
            D(BlockedPlan.mul, .convolution, differentiable: false, one { try $0.mul16() }),
        ]
        return Dictionary(uniqueKeysWithValues: all.map { ($0.opType, $0) })
    }()

    /// Every op, by family.
    static let all: [OpDefinition] = {
        typealias D = OpDefinition
        func one(_ f: @escaping (OpContext) throws -> Value) -> (OpContext) throws -> NodeOutputs { { try NodeOutputs(f($0)) } }
        func many(_ f: @escaping (OpContext) throws -> [Value]) -> (OpContext) throws -> NodeOutputs { { try NodeOutputs(all: f($0)) } }
        let unary = one { try $0.unary() }, binary = one { try $0.binary($0.node.opType, $0.value(0), $0.value(1)) }
        let variadic = one { try $0.variadic() }, reshape = one { try $0.reshapeLike() }
        let reduce = one { try $0.reduce() }, pool: (OpContext) throws -> NodeOutputs = { try $0.pool() }
        let reduceAttributes: Set<String> = ["axes", "keepdims", "noop_with_empty_axes"]
        let window: Set<String> = ["auto_pad", "dilations", "kernel_shape", "pads", "strides"]
        let compare = one { try $0.compare() }, logical = one { try $0.logical() }, special = one { try $0.isSpecial() }
        return [
            D("Identity", .tensors, one { try $0.value(0) }),
            D("Constant", .tensors, differentiable: false, attributes: ["value", "value_float", "value_floats", "value_int", "value_ints"],
              one { try $0.constant() }),
            D("ConstantOfShape", .tensors, differentiable: false, attributes: ["value"], one { try $0.constantOfShape() }),
            D("Range", .tensors, differentiable: false, one { try $0.range() }),
            D("Shape", .tensors, differentiable: false, attributes: ["start", "end"], one { try $0.shape() }),
            D("Cast", .tensors, attributes: ["to", "saturate", "round_mode"], one { try $0.cast() }),
            D("CastLike", .tensors, attributes: ["saturate", "round_mode"], one { try $0.castLike() }),
            D("Size", .tensors, differentiable: false, one { try $0.size() }),

            D("Relu", .elementwise, keepsTrainingStep: true, one { try $0.reluOp() }),
            D("LeakyRelu", .elementwise, attributes: ["alpha"], unary), D("Gelu", .elementwise, attributes: ["approximate"], unary),
            D("Sigmoid", .elementwise, unary), D("Tanh", .elementwise, unary), D("Exp", .elementwise, unary),
            D("Log", .elementwise, unary), D("Sqrt", .elementwise, unary), D("Erf", .elementwise, unary),
            D("Abs", .elementwise, unary), D("Neg", .elementwise, unary), D("Reciprocal", .elementwise, unary),
            D("Sin", .elementwise, unary), D("Cos", .elementwise, unary),
            D("HardSigmoid", .elementwise, attributes: ["alpha", "beta"], unary), D("HardSwish", .elementwise, unary),
            D("Softplus", .elementwise, unary), D("Softsign", .elementwise, unary), D("Elu", .elementwise, attributes: ["alpha"], unary),
            D("Sign", .elementwise, unary), D("Floor", .elementwise, unary), D("Ceil", .elementwise, unary),
            D("Round", .elementwise, unary),
            D("Clip", .elementwise, attributes: ["min", "max"], one { try $0.clip() }),
            D("PRelu", .elementwise, one { try $0.prelu() }),
            D("Add", .elementwise, parameterInputs: [0, 1], binary), D("Sub", .elementwise, binary), D("Mul", .elementwise, binary),
            D("Div", .elementwise, binary), D("Pow", .elementwise, binary),
            D("Mod", .elementwise, differentiable: false, attributes: ["fmod"], one { try $0.mod() }),
            D("Sum", .elementwise, variadic), D("Max", .elementwise, variadic), D("Min", .elementwise, variadic),
            D("Mean", .elementwise, variadic),
            D("Softmax", .elementwise, attributes: ["axis"], one { try $0.softmax(log: false) }),
            D("LogSoftmax", .elementwise, attributes: ["axis"], one { try $0.softmax(log: true) }),

            D("Equal", .logical, differentiable: false, compare), D("Less", .logical, differentiable: false, compare),
            D("LessOrEqual", .logical, differentiable: false, compare), D("Greater", .logical, differentiable: false, compare),
            D("GreaterOrEqual", .logical, differentiable: false, compare),
            D("And", .logical, differentiable: false, logical), D("Or", .logical, differentiable: false, logical),
            D("Xor", .logical, differentiable: false, logical), D("Not", .logical, differentiable: false, logical),
            D("IsNaN", .logical, differentiable: false, special),
            D("IsInf", .logical, differentiable: false, attributes: ["detect_negative", "detect_positive"], special),
            D("Where", .logical, one { try $0.whereOp() }),

            D("Reshape", .movement, keepsTrainingStep: true, attributes: ["allowzero"], reshape),
            D("Flatten", .movement, keepsTrainingStep: true, attributes: ["axis"], reshape),
            D("Squeeze", .movement, keepsTrainingStep: true, attributes: ["axes"], reshape),
            D("Unsqueeze", .movement, keepsTrainingStep: true, attributes: ["axes"], reshape),
            D("Transpose", .movement, attributes: ["perm"], one { try $0.transpose() }),
            D("Concat", .movement, attributes: ["axis"], one { try $0.concat() }),
            D("Split", .movement, attributes: ["axis", "split", "num_outputs"], many { try $0.split() }),
            D("Slice", .movement, attributes: ["starts", "ends", "axes"], one { try $0.slice() }),
            D("Pad", .movement, attributes: ["mode", "pads", "value"], one { try $0.pad() }),
            D("Expand", .movement, one { try $0.expand() }),
            D("Tile", .movement, one { try $0.tile() }),
            D("Resize", .movement, attributes: ["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                                                "extrapolation_value", "antialias", "axes", "keep_aspect_ratio_policy"], one { try $0.resize() }),
            D("Trilu", .movement, attributes: ["upper"], one { try $0.trilu() }),

            D("Gather", .indexing, attributes: ["axis"], one { try $0.gather() }),
            D("GatherElements", .indexing, attributes: ["axis"], one { try $0.gatherElementsOp() }),
            D("GatherND", .indexing, attributes: ["batch_dims"], one { try $0.gatherND() }),
            D("ScatterND", .indexing, attributes: ["reduction"], one { try $0.scatterND() }),

            D("ReduceSum", .reduction, attributes: reduceAttributes, reduce), D("ReduceMean", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceMax", .reduction, attributes: reduceAttributes, reduce), D("ReduceMin", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceProd", .reduction, attributes: reduceAttributes, reduce), D("ReduceL1", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceL2", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceSumSquare", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceLogSum", .reduction, attributes: reduceAttributes, reduce),
            D("ReduceLogSumExp", .reduction, attributes: reduceAttributes, reduce),
            D("CumSum", .reduction, attributes: ["exclusive", "reverse"], one { try $0.cumSum() }),
            D("ArgMax", .reduction, differentiable: false, attributes: ["axis", "keepdims", "select_last_index"], one { try $0.argMax() }),

            D("Gemm", .linearAlgebra, keepsTrainingStep: true, parameterInputs: [0, 1, 2], attributes: ["alpha", "beta", "transA", "transB"],
              one { try $0.gemmOp() }),
            D("MatMul", .linearAlgebra, parameterInputs: [0, 1], one { try $0.matMul() }),
            D("Einsum", .linearAlgebra, attributes: ["equation"], one { try $0.einsum() }),

            D("Conv", .convolution, keepsTrainingStep: true, parameterInputs: [0, 1, 2], attributes: window.union(["group"]),
              one { try $0.conv() }),

            D("MaxPool", .pooling, keepsTrainingStep: true, attributes: window.union(["ceil_mode", "storage_order"]), pool),
            D("AveragePool", .pooling, keepsTrainingStep: true, attributes: window.union(["ceil_mode", "count_include_pad"]), pool),
            D("GlobalAveragePool", .pooling, keepsTrainingStep: true, pool), D("GlobalMaxPool", .pooling, keepsTrainingStep: true, pool),

            D("BatchNormalization", .normalization, parameterInputs: [1, 2], attributes: ["epsilon", "momentum", "training_mode", "spatial"],
              one { try $0.batchNorm() }),
            D("LayerNormalization", .normalization, parameterInputs: [1, 2], attributes: ["axis", "epsilon", "stash_type"],
              many { try $0.layerNorm() }),
            D("Dropout", .normalization, attributes: ["seed", "ratio"], many { try $0.dropout() }),
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

/// The attributes an op reads (nil for an op the engine does not run): the importer refuses
/// any other, by name.
public func supportedAttributes(of opType: String) -> Set<String>? { OpRegistry.byType[opType]?.attributes }

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
