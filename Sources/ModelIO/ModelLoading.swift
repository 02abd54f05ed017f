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

    /// One float input of rank ≥ 2 with fixed non-batch dimensions, one output; and a run on
    /// a batch of two zero examples succeeds (this catches shapes that only fit batch 1).
    public static func validate(_ graph: Graph, file: String) throws {
        guard graph.inputs.count == 1, let input = graph.inputs.first else {
            throw ModelIOError(file: file, "the model has \(graph.inputs.count) inputs; PruneCheck needs exactly one (the examples)")
        }
        guard input.dtype == .float32, input.shape.count >= 2 else {
            throw ModelIOError(file: file, "input '\(input.name)' must be float32 with a batch dimension first, found \(input.dtype.rawValue) \(input.shape.map { $0.map(String.init) ?? "?" })")
        }
        guard input.shape.dropFirst().allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ModelIOError(file: file, "input '\(input.name)' has a symbolic dimension other than the batch: \(input.shape.map { $0.map(String.init) ?? "?" })")
        }
        guard graph.outputs.count == 1 else {
            throw ModelIOError(file: file, "the model has \(graph.outputs.count) outputs; PruneCheck needs exactly one")
        }
        do {
            let out = try graph.run([.float(Variable(Tensor(zeros: [2] + graph.inputShape)))])
            guard case .float(let y) = out[0], y.value.shape.first == 2 else {
                throw ModelIOError(file: file, "the output must be float32 with the batch dimension first, found shape \(out[0].shape)")
            }
        } catch let e as GraphError {
            throw ModelIOError(file: file, "does not run on a batch of 2: \(e)")
        }
    }
}
