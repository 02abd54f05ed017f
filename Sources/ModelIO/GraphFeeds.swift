import Foundation
import TensorEngine

/// Binds arrays (from an .npz or a folder of .npy) to a graph's inputs, and graph values back to
/// arrays: token ids and attention masks are data like pixels.
public enum GraphFeeds {
    /// The array each graph input reads: the one named in `mapping` (graph input → array), else
    /// the one of the input's own name. Checks each array against its input: element type
    /// (float inputs take float arrays, int64 inputs integer or bool arrays, bool inputs bool
    /// arrays), rank, every fixed dimension, and one shared batch length; an error names the
    /// file, the input and the array (`available`: every array the file has, for the message).
    /// `mappingSyntax` writes how input X is mapped to another
    /// array, for messages (`--input X=ARRAY`, or a config key).
    public static func bind(_ graph: Graph, arrays: [String: NPYArray], mapping: [String: String] = [:], file: String,
                            mappingSyntax: (String) -> String = { "--input \($0)=ARRAY" }, available: [String]? = nil) throws -> [Value] {
        let known = Set(graph.inputs.map(\.name))
        if let stray = mapping.keys.sorted().first(where: { !known.contains($0) }) {
            throw ModelIOError(file: file, "\(mappingSyntax(stray)): the model has no input '\(stray)' (inputs: \(graph.inputs.map(\.name).joined(separator: ", ")))")
        }
        var batch: (length: Int, input: String)?
        let values = try graph.inputs.map { input -> Value in
            let name = mapping[input.name] ?? input.name
            guard let array = arrays[name] else {
                throw ModelIOError(file: file, "has no array '\(name)' for the model's input '\(input.name)' (arrays: \((available ?? Array(arrays.keys)).sorted().joined(separator: ", "))); map another with \(mappingSyntax(input.name))")
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
        try checkLookups(graph, values, file: file, arrayName: { mapping[$0] ?? $0 })
        return values
    }

    /// Token ids index embedding tables: an int64 input that a Gather looks up in an
    /// initializer must hold indices that exist there (the run would stop at the first one
    /// that does not, far from the data that holds it).
    static func checkLookups(_ graph: Graph, _ values: [Value], file: String, arrayName: (String) -> String) throws {
        for (k, input) in graph.inputs.enumerated() {
            guard case .int64(let ids) = values[k] else { continue }
            for node in graph.nodes where node.opType == "Gather" && node.inputs.count > 1 && node.inputs[1] == input.name {
                guard let table = graph.initializer(node.inputs[0]) else { continue }
                var axis = 0
                if case .int(let a)? = node.attributes["axis"] { axis = a < 0 ? a + table.shape.count : a }
                guard axis >= 0 && axis < table.shape.count else { continue }
                let rows = Int64(table.shape[axis])
                if let bad = ids.data.firstIndex(where: { $0 < -rows || $0 >= rows }) {
                    throw ModelIOError(file: file, "array '\(arrayName(input.name))' for input '\(input.name)' holds \(ids.data[bad]) at flat index \(bad); node '\(node.name)' (Gather) looks it up in '\(node.inputs[0])', which has \(rows) entries (ids 0..<\(rows))")
                }
            }
        }
    }

    /// One split for `graph` from the file at `path`: every graph input from its array (the
    /// one `mapping` names, else the one of the input's name), checked as `bind` checks them,
    /// float inputs multiplied by `scale`; and the array `labels`, when named.
    public static func loadSplit(
        path: String, graph: Graph, mapping: [String: String], labels: String?, scale: Float,
        mappingSyntax: @escaping (String) -> String, limits: IOLimits = .default
    ) throws -> (features: [FeatureArray], labels: NPYArray?) {
        var wanted = Set(graph.inputs.map { mapping[$0.name] ?? $0.name })
        if let labels { wanted.insert(labels) }
        var isFolder: ObjCBool = false
        var available: [String]?
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
            // Read only the arrays that exist: `bind` then says which input lacks one and how to map it.
            let keys = try NPZ.keys(path: path)
            available = keys
            if let l = labels, !keys.contains(l) {
                throw ModelIOError(file: path, "has no array '\(l)' for the labels (arrays: \(keys.sorted().joined(separator: ", ")))")
            }
            wanted.formIntersection(keys)
        }
        var arrays = try ArrayFiles.read(path: path, names: wanted.sorted(), limits: limits)
        let label = labels.flatMap { arrays[$0] }
        if let labels, !graph.inputs.contains(where: { (mapping[$0.name] ?? $0.name) == labels }) { arrays[labels] = nil }
        let values = try bind(graph, arrays: arrays, mapping: mapping, file: path, mappingSyntax: mappingSyntax, available: available)
        let features = values.map { v -> FeatureArray in
            guard scale != 1, case .float(let x) = v else { return FeatureArray(v) }
            return .float(Tensor(shape: x.value.shape, scalars: x.value.scalars.map { $0 * scale }))
        }
        if let label, let n = features.first?.count, label.shape.first != n {
            throw ModelIOError(file: path, "array '\(labels!)' has \(label.shape.first ?? 0) rows, the inputs have \(n) examples")
        }
        return (features, label)
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
