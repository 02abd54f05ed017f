import Foundation
import TensorEngine

/// Binds arrays (from an .npz or a folder of .npy) to a graph's inputs, and graph values back to
/// arrays: token ids and attention masks are data like pixels.
public enum GraphFeeds {
    /// The array each graph input reads: the one named in `mapping` (graph input → array), else
    /// the one of the input's own name. Checks each array against its input: element type
    /// (float inputs take float arrays, int64 inputs integer or bool arrays, bool inputs bool
    /// arrays), rank, every fixed dimension, and one shared batch length; an error names the
    /// file, the input and the array.
    public static func bind(_ graph: Graph, arrays: [String: NPYArray], mapping: [String: String] = [:], file: String) throws -> [Value] {
        let known = Set(graph.inputs.map(\.name))
        if let stray = mapping.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelIOError(file: file, "--input \(stray)=…: the model has no input '\(stray)' (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
        }
        var batch: (length: Int, input: String)?
        return try graph.inputs.map { input in
            let name = mapping[input.name] ?? input.name
            guard let array = arrays[name] else {
                throw ModelIOError(file: file, "has no array '\(name)' for the model's input '\(input.name)' (arrays: \(arrays.keys.sorted().joined(separator: ", "))); map another with --input \(input.name)=ARRAY")
            }
            let what = "array '\(name)' for input '\(input.name)'"
            guard array.shape.count == input.shape.count else {
                throw ModelIOError(file: file, "\(what) has shape \(array.shape), the input has rank \(input.shape.count) (\(describe(input.shape)))")
            }
            for (a, d) in zip(array.shape, input.shape) where d != nil && d != a {
                throw ModelIOError(file: file, "\(what) has shape \(array.shape), the input expects \(describe(input.shape))")
            }
            if let first = array.shape.first {
                if let b = batch, b.length != first {
                    throw ModelIOError(file: file, "\(what) has \(first) examples, input '\(b.input)' has \(b.length)")
                }
                batch = batch ?? (first, input.name)
            }
            switch (input.dtype, array.dtype) {
            case (.float32, .float32), (.float32, .float64):
                return .float(Variable(Tensor(shape: array.shape, scalars: array.floats())))
            case (.int64, .int64), (.int64, .int32), (.int64, .uint8), (.int64, .bool):
                return .int64(IntTensor(shape: array.shape, data: array.integers()!))
            case (.bool, .bool):
                return .bool(IntTensor(shape: array.shape, data: array.integers()!))
            default:
                throw ModelIOError(file: file, "\(what) is \(array.dtype.numpyName), the input takes \(input.dtype.rawValue)")
            }
        }
    }

    /// A graph value as an array of its own element type.
    public static func array(_ v: Value) -> NPYArray {
        switch v {
        case .float(let x): return NPYArray(floats: x.value.scalars, shape: x.value.shape)
        case .int64(let t): return NPYArray(integers: t.data, shape: t.shape)
        case .bool(let t): return NPYArray(integers: t.data, shape: t.shape, dtype: .bool)
        }
    }

    /// Runs `graph` on `feeds` in chunks of at most `batchSize` examples along the first axis
    /// (0: all at once), and joins each output's chunks along its first axis. Every output
    /// must then have the chunk's length first.
    public static func run(_ graph: Graph, feeds: [Value], batchSize: Int, threads: Int) throws -> [Value] {
        let total = feeds.first?.shape.first ?? 0
        guard batchSize > 0, total > batchSize, feeds.allSatisfy({ $0.shape.first == total }) else {
            return try graph.run(feeds, threads: threads)
        }
        var chunks: [[Value]] = []
        for start in stride(from: 0, to: total, by: batchSize) {
            let range = start..<min(start + batchSize, total)
            let results = try graph.run(feeds.map { rows(of: $0, range) }, threads: threads)
            for (k, r) in results.enumerated() where r.shape.first != range.count {
                throw GraphError(node: "(graph)", op: "outputs", "output '\(graph.outputs[k])' has shape \(r.shape), not \(range.count) examples first: run it with --batch-size 0")
            }
            chunks.append(results)
        }
        return (0..<graph.outputs.count).map { k in concatenate(chunks.map { $0[k] }) }
    }

    static func rows(of v: Value, _ range: Range<Int>) -> Value {
        let per = v.shape.dropFirst().reduce(1, *)
        var shape = v.shape
        shape[0] = range.count
        switch v {
        case .float(let x): return .float(Variable(x.value.rows(range)))
        case .int64(let t): return .int64(IntTensor(shape: shape, data: Array(t.data[(range.lowerBound * per)..<(range.upperBound * per)])))
        case .bool(let t): return .bool(IntTensor(shape: shape, data: Array(t.data[(range.lowerBound * per)..<(range.upperBound * per)])))
        }
    }

    static func concatenate(_ parts: [Value]) -> Value {
        var shape = parts[0].shape
        shape[0] = parts.reduce(0) { $0 + $1.shape[0] }
        switch parts[0] {
        case .float: return .float(Variable(Tensor(shape: shape, scalars: parts.flatMap { if case .float(let x) = $0 { return x.value.scalars } else { return [] } })))
        case .int64: return .int64(IntTensor(shape: shape, data: parts.flatMap { if case .int64(let t) = $0 { return t.data } else { return [] } }))
        case .bool: return .bool(IntTensor(shape: shape, data: parts.flatMap { if case .bool(let t) = $0 { return t.data } else { return [] } }))
        }
    }

    static func describe(_ shape: [Int?]) -> String { "[" + shape.map { $0.map(String.init) ?? "batch" }.joined(separator: ", ") + "]" }
}

extension NPYDType {
    /// NumPy's name of the type (float32, int64, …).
    public var numpyName: String {
        switch self {
        case .float32: return "float32"
        case .float64: return "float64"
        case .uint8: return "uint8"
        case .int32: return "int32"
        case .int64: return "int64"
        case .bool: return "bool"
        }
    }
}
