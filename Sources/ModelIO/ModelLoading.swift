import Foundation
import TensorEngine

/// Loads a model file of any supported form and checks that it runs as a classifier or
/// regressor would use it: one float input (batch first), one float output (batch first).
public enum ModelLoading {
    public static func load(path: String, architecture: String?, limits: IOLimits = .default) throws -> Graph {
        let graph = try loadGraph(path: path, architecture: architecture, limits: limits)
        try validate(graph, file: path)
        return graph
    }

    /// The model as a graph, with any inputs and outputs (`infer`, `inspect`).
    public static func loadGraph(path: String, architecture: String?, limits: IOLimits = .default) throws -> Graph {
        if path.hasSuffix(".onnx") { return try ONNXModel.load(path: path, limits: limits) }
        guard let architecture else {
            throw ModelIOError(file: path, "a .safetensors model needs its architecture file (architecture: FILE.json, or --architecture)")
        }
        return try LayerList.load(architecture: architecture, weights: path, limits: limits)
    }

    /// Inputs (any number: float32 examples, int64 token ids, bool masks) with the batch
    /// first, a single float input's other dimensions fixed (list-form data is reshaped to
    /// them); a float first output, the one PruneCheck scores; and a run on a batch of two
    /// zero examples succeeds (this catches shapes that only fit batch 1).
    public static func validate(_ graph: Graph, file: String) throws {
        guard !graph.inputs.isEmpty else { throw ModelIOError(file: file, "the model has no inputs") }
        for input in graph.inputs where input.shape.isEmpty {
            throw ModelIOError(file: file, "input '\(input.name)' is a scalar; every input needs a batch dimension first")
        }
        if graph.inputs.count == 1, let input = graph.inputs.first, input.dtype == .float32 {
            guard input.shape.count >= 2 else {
                throw ModelIOError(file: file, "input '\(input.name)' must have a batch dimension and the example's, found \(input.shape.map { $0.map(String.init) ?? "?" })")
            }
            guard input.shape.dropFirst().allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw ModelIOError(file: file, "input '\(input.name)' has a symbolic dimension other than the batch: \(input.shape.map { $0.map(String.init) ?? "?" })")
            }
        }
        guard !graph.outputs.isEmpty else { throw ModelIOError(file: file, "the model has no outputs") }
        for input in graph.inputs {
            let shape = [2] + input.shape.dropFirst().map { $0 ?? 1 }
            guard AllocationLimit.count(shape, bytesPerElement: 8) != nil else {
                throw ModelIOError(file: file, "input '\(input.name)' of shape \(input.shape.map { $0.map(String.init) ?? "?" }) is over the limit of \(AllocationLimit.maxTensorBytes) bytes per tensor (PRUNECHECK_MAX_TENSOR_BYTES)")
            }
        }
        do {
            let out = try graph.run(graph.sampleFeeds(batch: 2))
            guard case .float(let y) = out[0], y.value.shape.first == 2 else {
                throw ModelIOError(file: file, "the output '\(graph.outputs[0])' must be float32 with the batch dimension first, found \(out[0].dtype.rawValue) of shape \(out[0].shape)")
            }
        } catch let e as GraphError {
            throw ModelIOError(file: file, "does not run on a batch of 2: \(e)")
        }
    }
}
