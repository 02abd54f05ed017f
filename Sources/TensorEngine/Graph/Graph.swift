import Common
import Dispatch
import Kernels

/// A node attribute, as ONNX stores it.
public enum Attribute: Equatable {
    case int(Int)
    case float(Float)
    case string(String)
    case ints([Int])
    case floats([Float])
    case tensor(TensorData)
}

/// A constant tensor of any supported element type (initializers, Constant values).
public enum TensorData: Equatable {
    case float(Tensor)
    case int64(IntTensor)
    case bool(IntTensor)

    public var shape: [Int] {
        switch self {
        case .float(let t): return t.shape
        case .int64(let t), .bool(let t): return t.shape
        }
    }

    public var dtype: DType {
        switch self {
        case .float: return .float32
        case .int64: return .int64
        case .bool: return .bool
        }
    }

    func value(requiresGrad: Bool = false) -> Value {
        switch self {
        case .float(let t): return .float(Variable(t, requiresGrad: requiresGrad))
        case .int64(let t): return .int64(t)
        case .bool(let t): return .bool(t)
        }
    }
}

/// A failure inside a graph: an op given inputs or attributes it cannot run with. It names the
/// node and the op, since the graph usually comes from a file.
public struct GraphError: UserFacingError, Equatable {
    public let node: String
    public let op: String
    public let message: String
    public init(node: String, op: String, _ message: String) {
        self.node = node
        self.op = op
        self.message = message
    }
    public var description: String { "node '\(node)' (\(op)): \(message)" }
}

/// One operation: ONNX's op type, its inputs and outputs by value name ("" for an absent
/// optional input) and its attributes.
public struct Node: Equatable {
    public var name: String
    public var opType: String
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [String: Attribute]

    public init(name: String, opType: String, inputs: [String], outputs: [String], attributes: [String: Attribute] = [:]) {
        self.name = name
        self.opType = opType
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }
}

/// A graph input: its name, element type and shape (nil for a symbolic dimension such as batch).
public struct GraphInput: Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int?]
    public init(name: String, dtype: DType, shape: [Int?]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// A model as a graph of ops in topological order (the form of ONNX). Float initializers are
/// the parameters; those that training may change are `Variable`s with `requiresGrad`.
///
/// Execution resolves value names to slots once; each run fills the slots in node order.
public final class Graph {
    public let nodes: [Node]
    public let inputs: [GraphInput]
    public let outputs: [String]
    /// Constant tensors by name, in the order they were given (initializers).
    public let initializerNames: [String]
    public private(set) var initializers: [String: Value]
    /// The default-domain opset the graph was written for.
    public let opset: Int
    /// When true, Dropout drops and BatchNormalization uses batch statistics (and updates its
    /// running statistics), as in PyTorch's `train()` mode.
    public var training = false
    /// Seeds Dropout masks in training mode; advanced by every training forward pass.
    public var dropoutSeed: UInt64 = 0
    var dropoutCounter: UInt64 = 0

    // NOTE: what a run only reads is `let`: a `var` of a class costs a dynamic exclusivity
    // check on every access, several per node and run.
    private let slotOf: [String: Int]
    private let nodeSlots: [(inputs: [Int], outputs: [Int])]
    /// Per node: the slots of a Linear Gemm's x, w, b (-1: none) and y, for the inference fast
    /// path, and of a fused Relu's input and output (its producer applied it; see `reluFused`).
    /// Read as plain integers, so the fast paths do not copy (retain and release) the node's
    /// slot lists.
    private let linearSlots: [(x: Int, w: Int, b: Int, y: Int)?]
    private let passSlots: [(from: Int, to: Int)?]
    private let inputSlots: [Int]
    private let outputSlots: [Int]
    private var constantSlots: [(slot: Int, value: Value)]
    /// Per slot: whether a run leaves it as it is (an initializer that is not also an input).
    private let keepsSlot: [Bool]
    /// Per node, the slots it is the last to read (not inputs, constants or graph outputs):
    /// inference lets them go right after it, so a run holds the live values only.
    private let releasedAfter: [[Int]]
    /// The last run's slots with only the initializers left in them, for the next run (empty
    /// before the first run, after a run that threw, and after `setInitializer`).
    private var spareSlots: [Value?] = []
    /// The last run's argument list, emptied, kept for its buffer (empty before the first run
    /// and after a run that threw).
    private var spareArgs: [Value?] = []
    /// Per node: the Linear fast path's cache (nil when the node is not a Linear Gemm).
    let linearCaches: [LinearCache?]
    /// Per node: a MatMul by a 2-D float initializer keeps it packed for GEMM at inference
    /// (nil for other nodes), within `packBudget`.
    let matMulPacks: [MatMulPack?]
    /// Per node: the bias Add (and Gelu) after a MatMul by a constant, which the MatMul applies
    /// to its output at inference (`MatMulEpilogue`).
    let matMulEpilogues: [MatMulEpilogue?]
    /// Bytes that packed copies of MatMul weights may still take: an eighth of the initializers'
    /// bytes, at least 64 MiB. Beyond it a MatMul packs its weight on every call, as before, so
    /// a large model's peak memory stays near its weights.
    // NOTE: with a quarter, BERT-base (417 MiB of weights) peaked at 708 MiB in `eval` against the
    // 721 MiB bound of Tests/realmodels/peak_memory.py; MiniLM-L6's encoder (42 MB) fits in 64 MiB.
    var packBudget: Int
    /// Per node: its op resolved once (nil when unsupported), so a run does not look up op-type
    /// strings.
    let ops: [OpDefinition?]
    /// Per node: a Conv or Gemm whose output only the next node, a Relu, reads. Inference
    /// (no tape) applies the ReLU inside the producer, on each block of output while it is in
    /// cache, and the Relu node passes the value on. ReLU is exact, so the bits are the same.
    let reluFused: [Bool]
    /// Per node: a Conv followed by a Clip (ReLU6) or a SiLU (Sigmoid, then Mul of the Conv's
    /// output and the Sigmoid's) that alone read its output. Inference applies it inside the
    /// Conv, on each block of output while it is in cache (`OpContext.finish`), with
    /// the bits of the separate ops; the Clip or Mul passes the value on and the Sigmoid is
    /// skipped.
    // NOTE: the separate passes read and wrote activations that no longer fit in cache:
    // EfficientNet-B0's Sigmoid and Mul were 23-31 % of its batch-1 inference, MobileNetV2's
    // Clip 8-11 %.
    let convEpilogues: [ConvEpilogue?]
    /// Per node: a Sigmoid whose SiLU the Conv before it applies (see `convEpilogues`).
    private let skippedAtInference: [Bool]
    /// Per node: the attention chain (scores, mask, Softmax, P · V) inference runs at this
    /// MatMul in blocks (`AttentionChain`, Attention.swift), nil for other nodes.
    let attentionChains: [AttentionChain?]
    /// Per node: the node whose attention chain it belongs to (after its first MatMul), or -1.
    private let attentionMember: [Int]
    /// Per node: whether this run's fused attention starting there ran (else its members run).
    private var attentionRan: [Bool]
    /// Whether inference fuses attention chains (`attentionChains`; PRUNECHECK_ATTENTION=0
    /// turns it off for every graph, for A/B timing). The bits are the same either way.
    public var fusesAttention = AttentionChain.fusedByDefault
    /// The most inputs any node has (a run's one argument list is that long).
    let maxNodeInputs: Int
    /// Per node: the Conv/pool window of the last input shape it saw (the table is the costly
    /// part of a small convolution).
    var windows: [(spatial: [Int], geometry: WindowGeometry)?] = []
    /// Per node: a Reshape, Flatten, Squeeze or Unsqueeze's output shape for the last input
    /// shape it saw, when its target comes from attributes or initializers (so it is the same
    /// for the same input shape); `setInitializer` clears them. A run then builds no shape.
    var reshapes: [(input: [Int], output: [Int])?] = []
    /// Per node: a scratch buffer reused across runs (a Conv's columns, one block per worker),
    /// so steady-state inference does not allocate (and fault in) megabytes per call.
    var scratchColumns: [[Float]] = []
    /// Per node: a Conv's weights packed for the direct kernel, with the weight and version they
    /// were packed from, so inference packs them once, not per call. Their own buffer: the
    /// node's scratch serves whichever kernel runs (a node switches kernels when its input
    /// changes size). A strong reference: the identity cannot pass to a new weight while it is
    /// kept here.
    var packedConvWeights: [(weight: Variable, version: Int, packed: [Float])?] = []
    /// Per node: a Conv's weights as the packed right-hand side of `OpContext.convRows` (W
    /// transposed), with the weight and version they were packed from.
    var convRowsWeights: [(weight: Variable, version: Int, packed: PackedB)?] = []
    /// Per node: a one-group Conv's weights as the prepacked left-hand side of its im2col GEMM
    /// at inference (`PackedA`, AVX-512 only), with the weight and version they were packed from.
    var convPackedA: [(weight: Variable, version: Int, packed: PackedA)?] = []
    /// Per node: a 3 × 3 Conv's weights transformed for Winograd's F(2 × 2, 3 × 3)
    /// (`OpContext.convWinograd`), with the weight and version they came from: unpacked for
    /// channels-major products, or packed (`winogradPackWeights`) for tiles-major ones, one form
    /// at a time (a node switching kernels with its batch size transforms them again).
    var winogradWeights: [(weight: Variable, version: Int, u: [Float], packed: [PackedB]?)?] = []
    /// What the Convs' backward steps share (`ChunkScratch`).
    let backwardChunks = ChunkScratch()
    /// Per node: its output of the last inference run, whose buffer the next run writes again
    /// when nothing else holds it (`OpContext.outputBuffer`), so steady-state inference does
    /// not allocate its outputs.
    var inferenceOutputs: [Variable?] = []
    /// While true, every training run (one with a tape) keeps each node's output and backward
    /// step, and the next training run that gives the node the same input Variables with the
    /// same shapes writes that output again and records that step again: a fine-tuning loop
    /// then allocates no output, gradient or closure per op (`FineTuning` turns it on for its
    /// loop). Turning it off lets the kept steps go.
    // NOTE: Gemm, Conv, pools, Relu and the reshapes keep their steps (what the fixture models
    // train with); the other ops allocate per run as before.
    public var keepsTrainingSteps = false {
        didSet { if !keepsTrainingSteps { trainingSteps = Array(repeating: nil, count: nodes.count) } }
    }
    /// Per node: its step from the last training run while `keepsTrainingSteps`.
    var trainingSteps: [NodeStep?] = []
    /// Per node: whether its output Variable can leave the graph: a graph output, read by an op
    /// that may pass it on as its own output, or a node with several outputs. A kept step of
    /// such a node is reused only when nothing outside holds its output any more.
    let outputEscapes: [Bool]
    /// The model as a chain of Linear layers, when it is one (`LinearChain`): worked out on the
    /// first `predict`, again after `setInitializer`.
    var linearChainState: LinearChainState = .unknown

    /// Per-node wall time of inference runs while set, for `make bench` diagnostics only.
    public var nodeProfile: NodeProfile?

    /// Whether inference may run a depthwise-separable graph in blocks of sixteen channels
    /// (`BlockedPlan`; PRUNECHECK_BLOCKED=0 turns it off for every graph).
    public var usesBlockedLayout = true {
        didSet { blockedState = .unknown }
    }
    /// The blocked form, worked out on the first inference run, again after `setInitializer`
    /// and when a weight it packed has changed.
    var blockedState: BlockedState = .unknown
    enum BlockedState { case unknown, none, plan(BlockedPlan) }

    /// The blocked graph inference runs, when there is one.
    private func blockedGraph() -> Graph? {
        if case .plan(let p) = blockedState, p.isCurrent { return p.graph }
        if case .none = blockedState { return nil }
        let plan = usesBlockedLayout ? BlockedPlan.make(for: self) : nil
        blockedState = plan.map { BlockedState.plan($0) } ?? BlockedState.none
        return plan?.graph
    }

    /// Initializer `name` as `value` (the original graph's Variable, for a blocked graph).
    func share(_ name: String, _ value: Value) {
        initializers[name] = value
        if let s = slotOf[name], let i = constantSlots.firstIndex(where: { $0.slot == s }) { constantSlots[i].value = value }
        spareSlots = []
    }

    public convenience init(nodes: [Node], inputs: [GraphInput], outputs: [String], initializers: [(String, TensorData)], opset: Int) {
        self.init(nodes: nodes, inputs: inputs, outputs: outputs, initializers: initializers, opset: opset, blockedOps: false)
    }

    /// `blockedOps`: the graph is a `BlockedPlan`'s, whose nodes may also be its own ops
    /// (`OpRegistry.blocked`).
    init(nodes: [Node], inputs: [GraphInput], outputs: [String], initializers: [(String, TensorData)], opset: Int, blockedOps: Bool) {
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.opset = opset
        // Trainable: the float initializers at an op's parameter positions
        // (`OpDefinition.parameterInputs`), and those named like a PyTorch module's parameters
        // (`….weight`, `….bias`: exporters keep those names) that a differentiable op reads
        // (RMSNorm's Mul, an embedding's Gather). Never a scalar: exporters write constants
        // such as a norm's epsilon as scalar initializers, and training one breaks the model.
        var trainable = Set<String>()
        for n in nodes {
            guard let def = OpRegistry.byType[n.opType] else { continue }
            for p in def.parameterInputs where p < n.inputs.count { trainable.insert(n.inputs[p]) }
            if def.differentiable {
                for name in n.inputs where name.contains(".") && (name.hasSuffix(".weight") || name.hasSuffix(".bias")) { trainable.insert(name) }
            }
        }
        for (name, data) in initializers where data.shape.isEmpty { trainable.remove(name) }
        let frozen = Set(initializers.map(\.0)).subtracting(trainable)
        var values: [String: Value] = [:]
        var names: [String] = []
        for (name, data) in initializers {
            if values[name] == nil { names.append(name) }
            values[name] = data.value(requiresGrad: data.dtype == .float32 && !frozen.contains(name))
        }
        self.initializers = values
        self.initializerNames = names
        var slotOf: [String: Int] = [:]
        func slot(_ name: String) -> Int {
            if let s = slotOf[name] { return s }
            let s = slotOf.count
            slotOf[name] = s
            return s
        }
        inputSlots = inputs.map { slot($0.name) }
        constantSlots = names.map { (slot($0), values[$0]!) }
        nodeSlots = nodes.map { n in
            (n.inputs.map { $0.isEmpty ? -1 : slot($0) }, n.outputs.map { $0.isEmpty ? -1 : slot($0) })
        }
        outputSlots = outputs.map { slot($0) }
        self.slotOf = slotOf
        var keeps = [Bool](repeating: false, count: slotOf.count)
        for (s, _) in constantSlots { keeps[s] = true }
        for s in inputSlots { keeps[s] = false }
        keepsSlot = keeps
        var lastReader = [Int](repeating: -1, count: slotOf.count)
        for (i, (ins, _)) in nodeSlots.enumerated() { for s in ins where s >= 0 { lastReader[s] = i } }
        var released = [[Int]](repeating: [], count: nodes.count)
        let pinned = Set(outputSlots + inputSlots + constantSlots.map(\.0))
        for (s, i) in lastReader.enumerated() where i >= 0 && !pinned.contains(s) { released[i].append(s) }
        for (i, (_, outs)) in nodeSlots.enumerated() {
            for s in outs where s >= 0 && lastReader[s] < 0 && !pinned.contains(s) { released[i].append(s) }  // never read
        }
        releasedAfter = released
        linearCaches = nodes.map { n in n.opType == "Gemm" && LinearCache.applies(to: n, initializers: values) ? LinearCache() : nil }
        matMulPacks = nodes.map { n in
            guard n.opType == "MatMul", n.inputs.count == 2, case .float(let w)? = values[n.inputs[1]], w.value.shape.count == 2 else { return nil }
            return MatMulPack()
        }
        let initializerBytes = values.values.reduce(0) { total, v in if case .float(let w) = v { return total + 4 * w.value.count }; return total }
        packBudget = max(64 << 20, initializerBytes / 8)
        ops = nodes.map { OpRegistry.byType[$0.opType] ?? (blockedOps ? OpRegistry.blocked[$0.opType] : nil) }
        let graphOutputs = Set(outputs)
        var passedOn = Set<String>()
        for (n, op) in zip(nodes, ops) where op?.keepsTrainingStep != true { passedOn.formUnion(n.inputs) }
        outputEscapes = nodes.map { n in n.outputs.count != 1 || graphOutputs.contains(n.outputs[0]) || passedOn.contains(n.outputs[0]) }
        trainingSteps = Array(repeating: nil, count: nodes.count)
        maxNodeInputs = nodes.map(\.inputs.count).max() ?? 0
        var readers: [String: Int] = [:]
        for n in nodes { for i in n.inputs where !i.isEmpty { readers[i, default: 0] += 1 } }
        reluFused = nodes.indices.map { i in
            let n = nodes[i]
            guard ["Conv", "Gemm"].contains(n.opType), n.outputs.count == 1, i + 1 < nodes.count else { return false }
            let next = nodes[i + 1], y = n.outputs[0]
            return next.opType == "Relu" && next.inputs == [y] && readers[y] == 1 && !outputs.contains(y)
        }
        let epilogues = ConvEpilogue.find(nodes: nodes, readers: readers, outputs: Set(outputs), initializers: values, opset: opset)
        convEpilogues = epilogues
        let matMulEpilogues = MatMulEpilogue.find(nodes: nodes, readers: readers, outputs: Set(outputs),
                                                  initializers: values, inputs: Set(inputs.map(\.name)), packs: matMulPacks)
        self.matMulEpilogues = matMulEpilogues
        skippedAtInference = nodes.indices.map { i in i >= 1 && epilogues[i - 1] == .silu }
        var chains = AttentionChain.find(nodes: nodes, outputs: graphOutputs, slotOf: slotOf, packs: matMulPacks, epilogues: matMulEpilogues)
        var member = [Int](repeating: -1, count: nodes.count)
        for i in chains.indices {
            guard let chain = chains[i] else { continue }
            // (A chain may not start inside another one.)
            if member[i] >= 0 { chains[i] = nil; continue }
            for j in chain.members { member[j] = i }
        }
        attentionChains = chains
        attentionMember = member
        attentionRan = Array(repeating: false, count: nodes.count)
        linearSlots = nodes.indices.map { [nodeSlots, linearCaches] i in
            let (ins, outs) = nodeSlots[i]
            guard linearCaches[i] != nil, ins.count >= 2, ins[0] >= 0, ins[1] >= 0, outs.count == 1, outs[0] >= 0 else { return nil }
            return (ins[0], ins[1], ins.count > 2 ? ins[2] : -1, outs[0])
        }
        passSlots = nodes.indices.map { [nodeSlots, reluFused] i in
            let (ins, outs) = nodeSlots[i]
            guard let to = outs.first, to >= 0 else { return nil }
            if i > 0, reluFused[i - 1] || epilogues[i - 1]?.isClip == true, let from = ins.first, from >= 0 { return (from, to) }
            // The SiLU's Mul: the Conv's output, whichever input of the Mul it is.
            if i > 1, epilogues[i - 2] == .silu, let y = nodeSlots[i - 2].outputs.first { return (y, to) }
            // A MatMul's bias Add, and the Gelu after it: the MatMul's output, passed on by the Add.
            if i > 0, matMulEpilogues[i - 1] != nil, let y = nodeSlots[i - 1].outputs.first { return (y, to) }
            if i > 1, matMulEpilogues[i - 2]?.gelu == true, let z = nodeSlots[i - 1].outputs.first { return (z, to) }
            return nil
        }
        windows = Array(repeating: nil, count: nodes.count)
        reshapes = Array(repeating: nil, count: nodes.count)
        scratchColumns = Array(repeating: [], count: nodes.count)
        packedConvWeights = Array(repeating: nil, count: nodes.count)
        convRowsWeights = Array(repeating: nil, count: nodes.count)
        convPackedA = Array(repeating: nil, count: nodes.count)
        winogradWeights = Array(repeating: nil, count: nodes.count)
        inferenceOutputs = Array(repeating: nil, count: nodes.count)
        cachedCounts = Array(repeating: 0, count: nodes.count)
        cachedFloats = 0
    }

    /// Node `index`'s last inference output, taken out of its Variable, when nothing else holds
    /// the Variable and `fits` accepts the tensor (the storage's only holder is then the result).
    private func reusableOutput(node index: Int, where fits: (Tensor) -> Bool) -> Tensor? {
        guard isKnownUniquelyReferenced(&inferenceOutputs[index]), let v = inferenceOutputs[index], fits(v.value) else { return nil }
        let t = v.value
        v.value = .placeholder
        return t
    }

    /// `outputBuffer(node:_:)` for a (rows, cols) output, without building the shape when the
    /// buffer already has it (an array per call was a heap allocation per Linear layer).
    func outputBuffer(node index: Int, rows: Int, cols: Int) -> Tensor {
        reusableOutput(node: index) { $0.shape.count == 2 && $0.shape[0] == rows && $0.shape[1] == cols }
            ?? outputBuffer(node: index, [rows, cols])
    }

    /// `outputBuffer(node:_:)` for an (n, c, spatial…) output (a Conv's, a pool's), without
    /// building the shape when the buffer already has it.
    func outputBuffer(node index: Int, n: Int, c: Int, spatial: [Int]) -> Tensor {
        reusableOutput(node: index) { t in
            t.shape.count == spatial.count + 2 && t.shape[0] == n && t.shape[1] == c && t.shape[2...].elementsEqual(spatial)
        } ?? outputBuffer(node: index, [n, c] + spatial)
    }

    /// An inference output buffer for node `index` (see `OpContext.outputBuffer`).
    func outputBuffer(node index: Int, _ shape: [Int]) -> Tensor {
        guard var t = reusableOutput(node: index, where: { $0.count == shape.reduce(1, *) }) else { return Tensor(uninitialized: shape) }
        if t.shape != shape { t.setShape(shape) }
        return t
    }

    /// Node `index`'s inference output as a value (see `OpContext.inferenceValue`).
    func inferenceValue(node index: Int, _ y: Tensor, requiresGrad: Bool) -> Value {
        if isKnownUniquelyReferenced(&inferenceOutputs[index]), let v = inferenceOutputs[index], v.requiresGrad == requiresGrad {
            v.value = y
            cacheAccount(index, y.count)
            return .float(v)
        }
        let v = Variable(y, requiresGrad: requiresGrad)
        inferenceOutputs[index] = cacheAccount(index, y.count) ? v : nil
        return .float(v)
    }

    /// Counts node `index`'s output of `count` floats against `cachedFloatsLimit`; whether it
    /// may be kept for the next run.
    // NOTE: keeping every node's output for the next run saves an allocation and its page
    // faults per node (a good part of a small model's time at batch 1), but holds every
    // activation of the last run: BERT-base at batch 8 × 128 tokens kept 1.8 GB beside its
    // 0.44 GB of weights. Past the budget, outputs live only as long as a reader needs them.
    // A budget of 64 MiB (BERT-base's peak 0.83 → 0.61 GB) made MobileNetV2 at batch 8 33 %
    // slower (145 → 195 ms): its outputs were allocated and faulted in anew every run.
    // NOTE: every output kept, each node wrote into a buffer of its own, out of the caches by
    // the next run (the ViT at batch 8 writes tens of megabytes a run), where a buffer freed a few
    // nodes earlier is still in L2 or L3: glibc's heap (never trimmed, mapped only from 32 MiB)
    // hands those out again without a fault. Medium outputs now go back to it: ViT batch 8
    // 25.2-25.9 → 23.3-23.9 ms, EfficientNet-B0 and MobileNetV2 batch 1 7-9 % faster; small ones
    // (a LeNet's) and mapped ones stay kept. Kept up to 64 KiB, the ViT's batch-1 outputs of 65 ×
    // 192 stayed cold too: 3.37-3.53 ms against 3.10-3.12 with 16 KiB.
    @discardableResult
    private func cacheAccount(_ index: Int, _ count: Int) -> Bool {
        cachedFloats -= cachedCounts[index]
        let keep = (count <= Graph.cachedFloatsSmall || count >= Graph.cachedFloatsLarge) && cachedFloats + count <= cachedFloatsLimit
        cachedCounts[index] = keep ? count : 0
        cachedFloats += cachedCounts[index]
        if !keep { inferenceOutputs[index] = nil }
        return keep
    }

    /// Floats of inference outputs kept between runs: 256 MiB less the weights, at least 64 MiB,
    /// so that a large model's resident memory stays near its weights plus what a run holds.
    // NOTE: BERT-base (435 MB of weights, external data) at batch 8 × 128 tokens peaked at 798 MB
    // resident under a flat 256 MiB (1.83× the weights), 595 MB under 64 MiB (1.37×);
    // MobileNetV2 (14 MB of weights) keeps its 256 MiB, whose batch-8 inference was a third
    // slower under 64 MiB (outputs allocated and faulted in anew every run).
    lazy var cachedFloatsLimit: Int = {
        let weightFloats = initializers.values.reduce(0) { total, v in
            if case .float(let w) = v { return total + w.value.count }
            return total
        }
        return max(16 << 20, (64 << 20) - weightFloats)
    }()
    /// Outputs kept between runs: up to this many floats (16 KiB), whose allocation would cost
    /// more than the cache they hold, and from `cachedFloatsLarge` (32 MiB, what glibc maps
    /// and unmaps per allocation under `prunecheck_tune_allocator`).
    static let cachedFloatsSmall = 4_096, cachedFloatsLarge = 8 << 20
    private var cachedFloats = 0
    private var cachedCounts: [Int] = []

    /// A Linear Gemm at inference, straight from its input values: `OpContext.gemmOp` without
    /// the context. Nil when the inputs do not fit (the general path then reports why).
    func linearInference(node index: Int, x: Value?, w: Value?, b: Value??, cache: LinearCache, threads: Int) -> Value? {
        guard case .float(let xv)? = x, case .float(let wv)? = w else { return nil }
        var bias: Variable? = nil
        if let b { guard case .float(let bv)? = b else { return nil }; bias = bv }
        let s = xv.value.shape
        guard s.count == 2, s[1] == wv.value.shape[1] else { return nil }
        return linearInference(node: index, x: xv, w: wv, bias: bias, cache: cache, threads: threads, relu: reluFused[index])
    }

    /// A Linear Gemm at inference on checked inputs (x is (B, in), w is (out, in)), into the
    /// node's reused output.
    func linearInference(node index: Int, x: Variable, w: Variable, bias: Variable?, cache: LinearCache, threads: Int, relu: Bool) -> Value {
        var y = outputBuffer(node: index, rows: x.value.shape[0], cols: w.value.shape[0])
        linearInfer(x.value, weight: w, bias: bias, cache: cache, threads: threads, relu: relu, into: &y)
        return inferenceValue(node: index, y, requiresGrad: false)
    }

    /// The value an initializer holds.
    public func initializer(_ name: String) -> Value? { initializers[name] }

    /// Replaces the tensor of a float initializer (same shape not required; used by import
    /// and by structural pruning before the graph is rebuilt).
    public func setInitializer(_ name: String, _ data: TensorData) {
        let value = data.value(requiresGrad: {
            if case .float(let v)? = initializers[name] { return v.requiresGrad }
            return false
        }())
        initializers[name] = value
        if let s = slotOf[name], let i = constantSlots.firstIndex(where: { $0.slot == s }) { constantSlots[i].value = value }
        spareSlots = []
        trainingSteps = Array(repeating: nil, count: nodes.count)
        linearChainState = .unknown
        blockedState = .unknown
        reshapes = Array(repeating: nil, count: nodes.count)
    }

    /// Runs the graph. `feeds` bind the graph inputs in order. Throws a `GraphError` naming
    /// the node when an op cannot run on what it was given.
    public func run(_ feeds: [Value], tape: Tape? = nil, threads: Int = 1) throws -> [Value] {
        guard feeds.count == inputs.count else {
            throw GraphError(node: "(graph)", op: "inputs", "the graph has \(inputs.count) inputs, \(feeds.count) were given")
        }
        return try run(feed: { feeds[$0] }, tape: tape, threads: threads) { slots in
            try outputSlots.enumerated().map { i, s in
                guard let v = slots[s] else { throw GraphError(node: "(graph)", op: "outputs", "graph output '\(outputs[i])' is never produced") }
                return v
            }
        }
    }

    /// `run` with input `i` given by `feed(i)` (one per graph input), returning what `collect`
    /// takes from the slots: `forward` takes its one output without building the arrays of
    /// feeds and outputs (two allocations per training step).
    private func run<R>(feed: (Int) -> Value, tape: Tape?, threads: Int, collect: ([Value?]) throws -> R) throws -> R {
        if tape == nil, !training, let blocked = blockedGraph() {
            blocked.nodeProfile = nodeProfile
            let values = try blocked.run(inputs.indices.map(feed), threads: threads)
            var slots = [Value?](repeating: nil, count: slotOf.count)
            for (k, s) in outputSlots.enumerated() { slots[s] = values[k] }
            return try collect(slots)
        }
        // NOTE: the initializers stay in their slots from one run to the next (filling them
        // took a retain and a release each per run, and the slots an allocation).
        var slots: [Value?]
        if spareSlots.count == slotOf.count {
            slots = spareSlots
            spareSlots = []
        } else {
            slots = [Value?](repeating: nil, count: slotOf.count)
            for (s, value) in constantSlots { slots[s] = value }
        }
        for (i, s) in inputSlots.enumerated() { slots[s] = feed(i) }
        // NOTE: by index, without copying a node, with one argument list for all nodes, and
        // none for a node that does not need it: at batch 1 the per-node bookkeeping is a good
        // part of a small model's time.
        var args = spareArgs  // the last run's list (its buffer), so no allocation per run
        var live = 0  // bytes of the values computed in this run and still held
        spareArgs = []
        args.reserveCapacity(maxNodeInputs)
        let profile = nodeProfile
        for index in nodes.indices {
            if tape == nil, skippedAtInference[index] {
                // The SiLU's Sigmoid: the Conv before it applied the SiLU.
                for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil }
                continue
            }
            if tape == nil, attentionMember[index] >= 0, attentionRan[attentionMember[index]] {
                // The fused attention at the chain's first MatMul computed this node's part.
                for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil }
                continue
            }
            if tape == nil, let chain = attentionChains[index] {
                attentionRan[index] = false
                if fusesAttention {
                    let t0 = profile != nil ? DispatchTime.now().uptimeNanoseconds : 0
                    if let y = runAttention(chain, slots, threads: threads) {
                        attentionRan[index] = true
                        slots[chain.output] = y
                        live += AllocationLimit.bytes(y)
                        if let profile { profile.add(nodes[index].name, since: t0) }
                        for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil }
                        continue
                    }
                }
            }
            if tape == nil, let pass = passSlots[index], let v = slots[pass.from] {
                // The producer applied this ReLU already (see `reluFused`).
                slots[pass.to] = v
                live += AllocationLimit.bytes(v)
                for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil }
                continue
            }
            let t0 = profile != nil ? DispatchTime.now().uptimeNanoseconds : 0
            if tape == nil, let l = linearSlots[index], let cache = linearCaches[index],
               let y = linearInference(node: index, x: slots[l.x], w: slots[l.w], b: l.b >= 0 ? .some(slots[l.b]) : nil,
                                       cache: cache, threads: threads) {
                // NOTE: a Linear layer at inference skips the context: at batch 1 its argument
                // list, context and input checks were a good part of a small layer's time.
                slots[l.y] = y
                live += AllocationLimit.bytes(y)
                if let profile { profile.add(nodes[index].name, since: t0) }
                for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil }
                continue
            }
            let ins = nodeSlots[index].inputs, outs = nodeSlots[index].outputs
            args.removeAll(keepingCapacity: true)  // unique again once the last node's context is gone
            for s in ins {
                if s < 0 { args.append(nil); continue }
                guard let v = slots[s] else {
                    let node = nodes[index]
                    throw GraphError(node: node.name, op: node.opType, "input '\(node.inputs[args.count])' has no value (not produced by an earlier node, an input or an initializer)")
                }
                args.append(v)
            }
            var ctx = OpContext(graph: self, index: index, op: ops[index], inputs: args, tape: tape, threads: threads,
                                fuseRelu: tape == nil && reluFused[index])
            if tape == nil { ctx.epilogue = convEpilogues[index] }
            if tape != nil && keepsTrainingSteps { ctx.reusable = reusableStep(node: index, args, threads: threads) }
            let results = try ctx.execute()
            if let profile { profile.add(nodes[index].name, since: t0) }
            for (k, s) in outs.enumerated() where s >= 0 {
                guard k < results.count else {
                    let node = nodes[index]
                    throw GraphError(node: node.name, op: node.opType, "output \(k) ('\(node.outputs[k])') is not produced by this implementation")
                }
                slots[s] = results[k]
                live += AllocationLimit.bytes(results[k])
            }
            // Every value alive at once stays within the total cap (many tensors each under the
            // per-tensor cap must not add up to the machine's memory).
            if live > AllocationLimit.maxLiveBytes {
                let node = nodes[index]
                throw GraphError(node: node.name, op: node.opType, AllocationLimit.liveProblem(live))
            }
            if tape == nil { for s in releasedAfter[index] { if let r = slots[s] { live -= AllocationLimit.bytes(r) }; slots[s] = nil } }
        }
        let results = try collect(slots)
        for s in slots.indices where !keepsSlot[s] { slots[s] = nil }
        for (s, value) in constantSlots where !keepsSlot[s] { slots[s] = value }  // an input that shadowed an initializer
        spareSlots = slots
        args.removeAll(keepingCapacity: true)
        spareArgs = args
        return results
    }

    /// Node `index`'s kept step, when this run may record it again: nothing but the graph holds
    /// it (no tape will replay it), it was made for these input Variables with these shapes and
    /// this thread count, and its output, if it can leave the graph, is held by nothing else.
    private func reusableStep(node index: Int, _ args: [Value?], threads: Int) -> NodeStep? {
        guard isKnownUniquelyReferenced(&trainingSteps[index]), let step = trainingSteps[index],
              step.threads == threads, step.inputs.count == args.count else { return nil }
        for (k, arg) in args.enumerated() {
            var v: Variable? = nil
            if case .float(let x)? = arg { v = x }
            guard v === step.inputs[k], v == nil || v!.value.shape == step.shapes[k] else { return nil }
        }
        if outputEscapes[index] && !isKnownUniquelyReferenced(&step.output) { return nil }
        return step
    }

    // MARK: the model interface (float input, one float output)

    /// The first input's shape without the batch dimension.
    public var inputShape: [Int] { inputs.first.map { $0.shape.dropFirst().map { $0 ?? 1 } } ?? [] }

    /// Runs the model on `x` (B, inputShape…) and records backward steps when `tape` is given.
    public func forward(_ x: Variable, tape: Tape?, threads: Int) -> Variable {
        precondition(inputs.count == 1, "forward(x) needs a graph of one input; this one has \(inputs.count)")
        return forward(feed: { _ in .float(x) }, tape: tape, threads: threads)
    }

    /// Runs the model on `feeds` (one per graph input, in order) and records backward steps
    /// when `tape` is given: the first output.
    public func forward(_ feeds: [Value], tape: Tape?, threads: Int) -> Variable {
        precondition(feeds.count == inputs.count, "the graph has \(inputs.count) inputs, \(feeds.count) were given")
        return forward(feed: { feeds[$0] }, tape: tape, threads: threads)
    }

    private func forward(feed: (Int) -> Value, tape: Tape?, threads: Int) -> Variable {
        do {
            precondition(!outputSlots.isEmpty, "forward needs a graph with an output")
            let first = outputSlots[0]
            let y = try run(feed: feed, tape: tape, threads: threads) { slots in slots[first] }
            guard case .float(let v)? = y else {
                if y == nil { throw GraphError(node: "(graph)", op: "outputs", "graph output '\(outputs[0])' is never produced") }
                preconditionFailure("model output is not float")
            }
            return v
        } catch {
            preconditionFailure("model failed on inputs of shape \(inputs.indices.map { feed($0).shape }) after validation: \(error)")
        }
    }

    /// Inference: the first output for input `x`.
    public func predict(_ x: Tensor, threads: Int) -> Tensor {
        if case .unknown = linearChainState { linearChainState = makeLinearChain().map { .chain($0) } ?? .none }
        if case .chain(let chain) = linearChainState, let y = chain.predict(x, threads: threads, profile: nodeProfile) { return y }
        return forward(Variable(x), tape: nil, threads: threads).value
    }

    /// Inference: the first output for `feeds` (one per graph input).
    public func predict(_ feeds: [Value], threads: Int) -> Tensor {
        if feeds.count == 1, case .float(let x) = feeds[0] { return predict(x.value, threads: threads) }
        return forward(feeds, tape: nil, threads: threads).value
    }

    /// One example of zeros for every input (a symbolic dimension taken as 1): what shape
    /// inference and cost analysis run the graph on.
    public func sampleFeeds(batch: Int = 1) -> [Value] {
        inputs.map { input in
            let shape = [batch] + input.shape.dropFirst().map { $0 ?? 1 }
            switch input.dtype {
            case .float32: return .float(Variable(Tensor(zeros: shape)))
            case .int64: return .int64(IntTensor(shape: shape, data: [Int64](repeating: 0, count: AllocationLimit.checkedCount(shape, bytesPerElement: 8))))
            case .bool: return .bool(IntTensor(shape: shape, data: [Int64](repeating: 0, count: AllocationLimit.checkedCount(shape, bytesPerElement: 8))))
            }
        }
    }

    /// The Linear chain this graph is (see `LinearChain`), or nil: an input (Flatten at axis 1
    /// first, or not), Linear Gemms whose weight and bias are initializers, each output read
    /// only by the next layer or by its fused Relu, and the last layer's output the graph's
    /// only output.
    private func makeLinearChain() -> LinearChain? {
        guard inputSlots.count == 1, outputSlots.count == 1 else { return nil }
        var constants: [Int: Value] = [:]
        for (s, v) in constantSlots where !inputSlots.contains(s) { constants[s] = v }
        var current = inputSlots[0], flattens = false, awaitingRelu = false
        var layers: [LinearChain.Layer] = []
        for index in nodes.indices {
            let (ins, outs) = nodeSlots[index]
            if index == 0, nodes[index].opType == "Flatten", ins == [current], outs.count == 1, outs[0] >= 0,
               nodes[index].attributes["axis"].map({ $0 == .int(1) }) ?? true {
                flattens = true
                current = outs[0]
                continue
            }
            if awaitingRelu {
                // The Relu the last layer applied already.
                guard let pass = passSlots[index], pass.from == current else { return nil }
                current = pass.to
                awaitingRelu = false
                continue
            }
            guard let l = linearSlots[index], l.x == current, let cache = linearCaches[index],
                  case .float(let w)? = constants[l.w], w.value.shape.count == 2 else { return nil }
            var bias: Variable? = nil
            if l.b >= 0 {
                guard case .float(let b)? = constants[l.b], b.value.shape == [w.value.shape[0]] else { return nil }
                bias = b
            }
            if let last = layers.last, last.outFeatures != w.value.shape[1] { return nil }
            layers.append(.init(name: nodes[index].name, weight: w, bias: bias, cache: cache, relu: reluFused[index]))
            current = l.y
            awaitingRelu = reluFused[index]
        }
        guard !layers.isEmpty, !awaitingRelu, current == outputSlots[0] else { return nil }
        return LinearChain(layers: layers, flattens: flattens)
    }

    /// Every trainable parameter with its name, in initializer order.
    public var parameters: [(name: String, variable: Variable)] {
        initializerNames.compactMap { name in
            guard case .float(let v)? = initializers[name], v.requiresGrad else { return nil }
            return (name, v)
        }
    }

    /// The weights pruning applies to: the weight input of every Gemm, MatMul and Conv that is
    /// a float initializer of rank ≥ 2, in node order.
    public var prunableWeights: [(name: String, variable: Variable)] {
        var seen = Set<String>(), out: [(name: String, variable: Variable)] = []
        for n in nodes where ["Gemm", "MatMul", "Conv"].contains(n.opType) && n.inputs.count > 1 {
            let name = n.inputs[1]
            guard !seen.contains(name), case .float(let v)? = initializers[name], v.value.shape.count >= 2, v.requiresGrad else { continue }
            seen.insert(name)
            out.append((name, v))
        }
        return out
    }

    /// Float and int initializers as tensor data (current values), in order.
    public var initializerData: [(String, TensorData)] {
        initializerNames.map { name in
            switch initializers[name]! {
            case .float(let v): return (name, .float(v.value))
            case .int64(let t): return (name, .int64(t))
            case .bool(let t): return (name, .bool(t))
            }
        }
    }

    /// A deep copy with its own parameter storage.
    public func copy() -> Graph {
        let g = Graph(nodes: nodes, inputs: inputs, outputs: outputs, initializers: initializerData, opset: opset)
        g.training = training
        g.dropoutSeed = dropoutSeed
        return g
    }

    /// The same graph with other nodes or initializers (structural edits).
    public func rebuilt(nodes: [Node]? = nil, initializers: [(String, TensorData)]? = nil) -> Graph {
        Graph(nodes: nodes ?? self.nodes, inputs: inputs, outputs: outputs, initializers: initializers ?? initializerData, opset: opset)
    }

    /// Runs the graph once on `x` and returns every value's shape by name (for cost
    /// analysis and inspection).
    public func valueShapes(for x: Tensor) throws -> [String: [Int]] {
        try values(for: [.float(Variable(x))], threads: 1).mapValues(\.shape)
    }

    /// Every value's shape by name for one run on `feeds` (`sampleFeeds()` when nil).
    public func valueShapes(feeds: [Value]? = nil) throws -> [String: [Int]] {
        try values(for: feeds ?? sampleFeeds(), threads: 1).mapValues(\.shape)
    }

    /// Every value's shape, and the integer values (shape arithmetic, indices) by name, for one
    /// run on `feeds`.
    public func shapesAndIntegers(feeds: [Value]) throws -> (shapes: [String: [Int]], integers: [String: IntTensor]) {
        let all = try values(for: feeds, threads: 1)
        var integers: [String: IntTensor] = [:]
        for (name, v) in all { if case .int64(let t) = v { integers[name] = t } }
        return (all.mapValues(\.shape), integers)
    }

    /// Every value of one run on `feeds` (no tape) by name: initializers, the inputs, and each
    /// node's outputs. A second pass through `run` that keeps every slot would duplicate it;
    /// this runs node by node instead.
    func values(for feeds: [Value], threads: Int) throws -> [String: Value] {
        guard feeds.count == inputs.count else {
            throw GraphError(node: "(graph)", op: "inputs", "the graph has \(inputs.count) inputs, \(feeds.count) were given")
        }
        var env: [String: Value] = initializers
        for (input, feed) in zip(inputs, feeds) { env[input.name] = feed }
        for (index, node) in nodes.enumerated() {
            let args = node.inputs.map { $0.isEmpty ? nil : env[$0] }
            let ctx = OpContext(graph: self, index: index, op: ops[index], inputs: args, tape: nil, threads: threads)
            let results = try ctx.execute()
            for (k, name) in node.outputs.enumerated() where !name.isEmpty && k < results.count { env[name] = results[k] }
        }
        return env
    }
}

/// Wall time per node name, summed over runs (`Graph.nodeProfile`).
public final class NodeProfile {
    public private(set) var totals: [String: UInt64] = [:]
    public init() {}
    func add(_ node: String, since t0: UInt64) { totals[node, default: 0] += DispatchTime.now().uptimeNanoseconds - t0 }
}

/// The prepacked and sparse forms of a Gemm's weight, rebuilt when the weight changes.
final class LinearCache {
    /// At or below this density, inference multiplies by the weight's nonzeros only.
    // NOTE: on LeNet-300-100 pruned to 90 % (10 % density) the CSR path cut p50 latency from
    // 276 to 30 µs at batch 1 and from 776 to 351 µs at batch 64. The 25 % crossover is a
    // conservative guess until `make bench` measures it per shape.
    public static let sparseDensityThreshold = 0.25
    /// Batches of 8 and more take every nonzero weight (only batches below 8 also skip zero
    /// inputs), so they use the sparse form only at or below this density.
    // NOTE: measured on LeNet-300-100 pruned to 90 % globally, batch 64: fc1 (8.7 % dense) took
    // 175 µs sparse against 266 dense; fc2 (18.9 %) 54 against 47.
    public static let sparseBatchDensityThreshold = 0.15

    /// The forms of one version of one weight (out × in).
    final class Forms {
        // The weight they were built from (initializers can be replaced, not only updated).
        let owner: ObjectIdentifier
        let version: Int
        let outFeatures: Int, inFeatures: Int
        /// The nonzero fraction of the weight.
        let density: Double
        /// The nonzeros, when the density is at most `sparseDensityThreshold`.
        let sparse: CSRMatrix?
        /// The weight prepacked for GEMM, built on first use.
        var packed: PackedB?

        init(_ weight: Variable) {
            owner = ObjectIdentifier(weight)
            version = weight.version
            let value = weight.value
            (outFeatures, inFeatures) = (value.shape[0], value.shape[1])
            let (out, inF) = (outFeatures, inFeatures)
            (density, sparse) = value.withUnsafeBufferPointer { p in
                let density = Double(p.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }) / Double(max(p.count, 1))
                return (density, density <= sparseDensityThreshold ? CSRMatrix(dense: p, rows: out, cols: inF) : nil)
            }
        }
    }

    /// The forms last built (one read per call on the inference path: each read of a class's
    /// variable is a dynamic exclusivity check).
    private var current: Forms?

    /// The forms of `weight` as it is now: built again when the weight was replaced or updated.
    func forms(for weight: Variable) -> Forms {
        if let f = current, f.owner == ObjectIdentifier(weight), f.version == weight.version { return f }
        let f = Forms(weight)
        current = f
        return f
    }

    /// A Gemm that is a Linear layer: transB = 1, alpha = beta = 1, weight an initializer,
    /// bias absent or a 1-D initializer.
    static func applies(to n: Node, graph: Graph) -> Bool { applies(to: n, initializers: graph.initializers) }

    static func applies(to n: Node, initializers: [String: Value]) -> Bool {
        guard n.inputs.count >= 2, case .float? = initializers[n.inputs[1]] else { return false }
        if case .int(let t)? = n.attributes["transB"], t == 1 {} else { return false }
        if case .int(let t)? = n.attributes["transA"], t != 0 { return false }
        if case .float(let a)? = n.attributes["alpha"], a != 1 { return false }
        if case .float(let b)? = n.attributes["beta"], b != 1 { return false }
        if n.inputs.count > 2, !n.inputs[2].isEmpty {
            guard case .float(let c)? = initializers[n.inputs[2]], c.value.shape.count == 1 else { return false }
        }
        return true
    }
}

/// A MatMul's constant right side packed for GEMM (`PackedB`), built on first use and again
/// when the weight is replaced or updated; the same bits as packing it on every call.
// NOTE: a transformer's Linear layers export as MatMul by a (K, N) initializer; packing it on
// every call cost about a third of MiniLM-L6's MatMul time at batch 1 (32 rows).
final class MatMulPack {
    private var owner: ObjectIdentifier?
    private var version = -1
    private var packed: PackedB?
    /// Whether the budget refused this node (then it never asks again).
    private var refused = false

    /// The packed weight, or nil when the graph's budget has no room for it.
    func packed(for weight: Variable, graph: Graph) -> PackedB? {
        if let p = packed, owner == ObjectIdentifier(weight), version == weight.version { return p }
        if refused { return nil }
        let shape = weight.value.shape
        if packed == nil {
            let bytes = 4 * weight.value.count
            guard graph.packBudget >= bytes else { refused = true; return nil }
            graph.packBudget -= bytes
        }
        let p = weight.value.withUnsafeBufferPointer { PackedB(b: $0.baseAddress!, ldb: shape[1], transposeB: false, k: shape[0], n: shape[1]) }
        (packed, owner, version) = (p, ObjectIdentifier(weight), weight.version)
        return p
    }
}

/// What a MatMul by a constant applies to its output at inference in place of the nodes after
/// it: the Add of a constant bias of one value per column, then possibly an exact Gelu. Both are
/// elementwise, so the bits are those of the nodes.
// NOTE: a transformer's Linear layers export as MatMul, Add (and Gelu); the Adds ran as passes of
// their own over every Linear output, on one thread below 32K values.
struct MatMulEpilogue: Equatable {
    /// The bias initializer's name.
    let bias: String
    let gelu: Bool

    /// Per node: the epilogue a MatMul by a 2-D float initializer (K, N) takes over. The next
    /// node is an Add of its output and a float initializer of shape (N) (no graph input of that
    /// name); the MatMul's output has no other reader and is no graph output; likewise the
    /// Add's when an exact Gelu of it follows.
    static func find(nodes: [Node], readers: [String: Int], outputs: Set<String>, initializers: [String: Value],
                     inputs: Set<String>, packs: [MatMulPack?]) -> [MatMulEpilogue?] {
        nodes.indices.map { i in
            let n = nodes[i]
            guard packs[i] != nil, n.outputs.count == 1, i + 1 < nodes.count, case .float(let w)? = initializers[n.inputs[1]] else { return nil }
            let y = n.outputs[0], add = nodes[i + 1]
            guard add.opType == "Add", add.inputs.count == 2, add.outputs.count == 1, add.inputs.contains(y), readers[y] == 1,
                  !outputs.contains(y) else { return nil }
            let c = add.inputs[0] == y ? add.inputs[1] : add.inputs[0]
            guard c != y, !inputs.contains(c), case .float(let b)? = initializers[c], b.value.shape == [w.value.shape[1]] else { return nil }
            let z = add.outputs[0]
            var gelu = false
            if i + 2 < nodes.count, nodes[i + 2].opType == "Gelu", nodes[i + 2].inputs == [z], nodes[i + 2].outputs.count == 1,
               readers[z] == 1, !outputs.contains(z), (nodes[i + 2].attributes["approximate"] ?? .string("none")) == .string("none") {
                gelu = true
            }
            return MatMulEpilogue(bias: c, gelu: gelu)
        }
    }
}

/// What a Conv applies to its output at inference in place of the node(s) after it
/// (`Graph.convEpilogues`).
enum ConvEpilogue: Equatable {
    /// Clip to [lo, hi] (ReLU6: 0 and 6).
    case clip(Float, Float)
    /// x · sigmoid(x), written as a Sigmoid and a Mul.
    case silu

    var isClip: Bool { if case .clip = self { return true } else { return false } }

    /// Per node: the epilogue a Conv takes over. A Clip right after the Conv whose bounds are
    /// attributes (opset < 11) or scalar initializers; a Sigmoid of the Conv's output right
    /// after it and then a Mul of the two. The Conv's (and Sigmoid's) output has no other
    /// reader and is no graph output.
    static func find(nodes: [Node], readers: [String: Int], outputs: Set<String>, initializers: [String: Value], opset: Int) -> [ConvEpilogue?] {
        func scalar(_ name: String) -> Float?? {
            if name.isEmpty { return .some(nil) }
            guard case .float(let v)? = initializers[name], v.value.count == 1 else { return nil }
            return .some(v.value.scalars[0])
        }
        return nodes.indices.map { i in
            let n = nodes[i]
            guard n.opType == "Conv", n.outputs.count == 1, i + 1 < nodes.count else { return nil }
            let y = n.outputs[0], next = nodes[i + 1]
            guard !outputs.contains(y), next.inputs.first == y else { return nil }
            if next.opType == "Clip", readers[y] == 1, next.outputs.count == 1 {
                var lo = -Float.infinity, hi = Float.infinity
                if opset < 11 {
                    if case .float(let v)? = next.attributes["min"] { lo = v }
                    if case .float(let v)? = next.attributes["max"] { hi = v }
                } else {
                    if next.inputs.count > 1 { guard let v = scalar(next.inputs[1]) else { return nil }; lo = v ?? lo }
                    if next.inputs.count > 2 { guard let v = scalar(next.inputs[2]) else { return nil }; hi = v ?? hi }
                }
                return .clip(lo, hi)
            }
            if next.opType == "Sigmoid", next.inputs == [y], next.outputs.count == 1, readers[y] == 2, i + 2 < nodes.count {
                let s = next.outputs[0], mul = nodes[i + 2]
                guard !outputs.contains(s), readers[s] == 1, mul.opType == "Mul", mul.outputs.count == 1,
                      mul.inputs == [y, s] || mul.inputs == [s, y] else { return nil }
                return .silu
            }
            return nil
        }
    }
}

extension GemmEpilogue.Activation {
    /// A Conv's fused Clip or SiLU as the GEMM applies it.
    init(_ epilogue: ConvEpilogue?) {
        switch epilogue {
        case .clip(let lo, let hi)?: self = .clip(lo: lo, hi: hi)
        case .silu?: self = .silu
        case nil: self = .none
        }
    }
}
