import Common
import Foundation
import SwiftProtobuf
import TensorEngine

/// ONNX models in and out: decoding with the swift-protobuf code generated from ONNX's own
/// `onnx.proto3` (`make proto`), into the engine's `Graph`, and back.
///
/// Everything read is treated as hostile: element counts are checked against the bytes present
/// and against `IOLimits` before anything is allocated, external data may not leave the
/// model's folder, and every unsupported op or attribute is an error naming the node.
public enum ONNXModel {
    /// ONNX TensorProto.DataType values used here.
    static let float = Int32(1), int32 = Int32(6), int64 = Int32(7), bool = Int32(9), double = Int32(11)

    public static func load(path: String, limits: IOLimits = .default) throws -> Graph {
        try FileConfinement.check(path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        return try decode(data, file: path, limits: limits)
    }

    /// Decodes a serialized ModelProto. `file` names the model in errors and anchors
    /// external-data paths.
    public static func decode(_ data: Data, file: String, limits: IOLimits = .default) throws -> Graph {
        guard data.count <= limits.maxTotalBytes else {
            throw ModelIOError(file: file, "is \(data.count) bytes, over the limit of \(limits.maxTotalBytes)")
        }
        let model: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = 64
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw ModelIOError(file: file, "is not a valid ONNX model (protobuf decoding failed: \(error))")
        }
        guard model.hasGraph else { throw ModelIOError(file: file, "has no graph (is it an ONNX model?)") }
        var opset: Int?
        for o in model.opsetImport where o.domain.isEmpty || o.domain == "ai.onnx" { opset = Int(o.version) }
        guard let opset else { throw ModelIOError(file: file, "imports no opset of the default ONNX domain") }
        guard opset >= 6 else { throw ModelIOError(file: file, "opset \(opset) is too old (supported: 6 and newer)") }
        return try graph(from: model.graph, opset: opset, file: file, limits: limits)
    }

    static func graph(from g: Onnx_GraphProto, opset: Int, file: String, limits: IOLimits) throws -> Graph {
        var initializers: [(String, TensorData)] = []
        var total = 0
        var initNames = Set<String>()
        for t in g.initializer {
            let data = try tensor(t, file: file, limits: limits, total: &total)
            initializers.append((t.name, data))
            initNames.insert(t.name)
        }
        var inputs: [GraphInput] = []
        for vi in g.input where !initNames.contains(vi.name) {
            guard case .tensorType(let tt)? = vi.type.value else {
                throw ModelIOError(file: file, "graph input '\(vi.name)' is not a tensor")
            }
            let dtype = try elementType(tt.elemType, file: file, what: "graph input '\(vi.name)'")
            let shape: [Int?] = tt.shape.dim.map { d in
                if case .dimValue(let v)? = d.value, v >= 0 { return Int(v) }
                return nil
            }
            inputs.append(GraphInput(name: vi.name, dtype: dtype, shape: shape))
        }
        var nodes: [Node] = []
        var modules: [String: String] = [:]
        for (i, n) in g.node.enumerated() {
            let name = n.name.isEmpty ? "\(n.opType)_\(i)" : n.name
            if let scopes = n.metadataProps.first(where: { $0.key == "pkg.torch.onnx.name_scopes" })?.value { modules[name] = moduleName(scopes) }
            guard n.domain.isEmpty || n.domain == "ai.onnx" else {
                throw ModelIOError(file: file, "node '\(name)': op \(n.opType) of domain '\(n.domain)' is not supported (only the default ONNX domain): "
                                   + "it comes from a runtime's graph optimizer (such as ONNX Runtime's fusions); export the model from the framework without it, "
                                   + "or save it before optimization (see docs/operators.md)")
            }
            guard let allowed = supportedAttributes(of: n.opType) else {
                throw ModelIOError(file: file, "node '\(name)': op \(n.opType) (opset \(opset)) is not supported (see docs/operators.md)")
            }
            var attributes: [String: Attribute] = [:]
            for a in n.attribute {
                guard allowed.contains(a.name) else {
                    throw ModelIOError(file: file, "node '\(name)': attribute '\(a.name)' of \(n.opType) (opset \(opset)) is not supported")
                }
                attributes[a.name] = try attribute(a, node: name, file: file, limits: limits, total: &total)
            }
            nodes.append(Node(name: name, opType: n.opType, inputs: n.input, outputs: n.output, attributes: attributes))
        }
        let outputs = g.output.map(\.name)
        guard !outputs.isEmpty else { throw ModelIOError(file: file, "graph has no outputs") }
        let folded = foldConstants(nodes: nodes, initializers: initializers, outputs: outputs, opset: opset)
        let named = nameWeights(folded, modules: modules)
        return Graph(nodes: named.nodes, inputs: inputs, outputs: outputs, initializers: named.initializers, opset: opset)
    }

    /// The module a node came from, from the dynamo exporter's `name_scopes` metadata
    /// (`['', 'lm', …, 'lm.model.layers.0.self_attn.q_proj', 'linear']`): the last scope
    /// before the op's own.
    static func moduleName(_ scopes: String) -> String? {
        let items = scopes.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",").map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: " '\""))
        }
        guard items.count >= 2, !items[items.count - 2].isEmpty else { return nil }
        return items[items.count - 2]
    }

    /// The dynamo exporter writes a Linear layer's weight transposed under a generated name
    /// (`val_110`); reports and `protect` name layers by their weights. Such a weight, read
    /// by one MatMul, Gemm or Conv only, takes its module's name (`lm.model.layers.0.
    /// self_attn.q_proj.weight`) when that name is free.
    static func nameWeights(_ g: (nodes: [Node], initializers: [(String, TensorData)]), modules: [String: String]) -> (nodes: [Node], initializers: [(String, TensorData)]) {
        guard !modules.isEmpty else { return g }
        var readers: [String: Int] = [:]
        for n in g.nodes { for i in n.inputs where !i.isEmpty { readers[i, default: 0] += 1 } }
        var taken = Set(g.initializers.map(\.0) + g.nodes.flatMap(\.outputs))
        var renamed: [String: String] = [:]
        var nodes = g.nodes
        for k in nodes.indices where ["MatMul", "Gemm", "Conv"].contains(nodes[k].opType) && nodes[k].inputs.count > 1 {
            let w = nodes[k].inputs[1]
            guard w.hasPrefix("val_"), Int(w.dropFirst(4)) != nil, readers[w] == 1, let module = modules[nodes[k].name] else { continue }
            let name = module + ".weight"
            guard !taken.contains(name), g.initializers.contains(where: { $0.0 == w }) else { continue }
            taken.insert(name)
            renamed[w] = name
            nodes[k].inputs[1] = name
        }
        return (nodes, g.initializers.map { (renamed[$0.0] ?? $0.0, $0.1) })
    }

    /// Runs, once at import, every node whose inputs are all constants and whose outputs are
    /// int64 (shape arithmetic: Shape of a constant, Gather, Concat, Unsqueeze …) or that is a
    /// Constant node, and replaces it by initializers.
    static func foldConstants(nodes: [Node], initializers: [(String, TensorData)], outputs: [String], opset: Int) -> (nodes: [Node], initializers: [(String, TensorData)]) {
        var known: [String: TensorData] = [:]
        for (n, d) in initializers { known[n] = d }
        var extra: [(String, TensorData)] = []
        var kept: [Node] = []
        for node in nodes {
            let constantInputs = node.inputs.allSatisfy { $0.isEmpty || known[$0] != nil }
            guard constantInputs, node.opType != "Dropout",
                  node.opType == "Constant" || node.inputs.contains(where: { !$0.isEmpty }) else { kept.append(node); continue }
            let sub = Graph(nodes: [node], inputs: [], outputs: node.outputs.filter { !$0.isEmpty },
                            initializers: node.inputs.filter { !$0.isEmpty }.map { ($0, known[$0]!) }, opset: opset)
            guard let results = try? sub.run([]) else { kept.append(node); continue }
            let datas = results.map { v -> TensorData in
                switch v {
                case .float(let x): return .float(x.value)
                case .int64(let t): return .int64(t)
                case .bool(let t): return .bool(t)
                }
            }
            let isShapeArithmetic = datas.allSatisfy { $0.dtype != .float32 }
            guard node.opType == "Constant" || isShapeArithmetic else { kept.append(node); continue }
            for (name, d) in zip(node.outputs.filter { !$0.isEmpty }, datas) {
                known[name] = d
                extra.append((name, d))
            }
        }
        // Keep only the initializers something still reads (folded chains leave orphans).
        let used = Set(kept.flatMap(\.inputs) + outputs)
        let all = initializers + extra
        return (kept, all.filter { used.contains($0.0) })
    }

    static func elementType(_ t: Int32, file: String, what: String) throws -> DType {
        switch t {
        case float: return .float32
        case int64: return .int64
        case bool: return .bool
        default: throw ModelIOError(file: file, "\(what): element type \(t) is not supported (float32 = 1, int64 = 7, bool = 9)")
        }
    }

    static func attribute(_ a: Onnx_AttributeProto, node: String, file: String, limits: IOLimits, total: inout Int) throws -> Attribute {
        switch a.type {
        case .int: return .int(Int(clamping: a.i))
        case .float: return .float(a.f)
        case .string:
            guard let s = String(data: a.s, encoding: .utf8) else { throw ModelIOError(file: file, "node '\(node)': attribute \(a.name) is not UTF-8") }
            return .string(s)
        case .ints: return .ints(a.ints.map { Int(clamping: $0) })
        case .floats: return .floats(a.floats)
        case .tensor: return .tensor(try tensor(a.t, file: file, limits: limits, total: &total))
        default:
            throw ModelIOError(file: file, "node '\(node)': attribute \(a.name) has type \(a.type), which is not supported")
        }
    }

    /// Decodes a TensorProto from raw_data or the typed fields, after checking its size.
    public static func tensor(_ t: Onnx_TensorProto, file: String, limits: IOLimits = .default, total: inout Int) throws -> TensorData {
        let what = "tensor '\(t.name)'"
        let shape = t.dims.map { Int(clamping: $0) }
        guard let count = elementCount(shape) else { throw ModelIOError(file: file, "\(what): dims \(t.dims) are negative or overflow") }
        let dtype = try elementType(t.dataType, file: file, what: what)
        let width = dtype == .bool ? 1 : (dtype == .float32 ? 4 : 8)
        let (bytes, overflow) = count.multipliedReportingOverflow(by: width)
        guard !overflow, bytes <= limits.maxTensorBytes else {
            throw ModelIOError(file: file, "\(what): \(shape) of \(dtype.rawValue) is over the tensor limit of \(limits.maxTensorBytes) bytes")
        }
        total += bytes
        guard total <= limits.maxTotalBytes else { throw ModelIOError(file: file, "tensors total over the limit of \(limits.maxTotalBytes) bytes") }
        var raw = t.rawData
        if t.dataLocation == .external {
            if dtype == .float32 {
                // Straight into the tensor's storage: a Data buffer per tensor doubled the peak
                // while loading and, freed, stayed in the heap (BERT-base: +0.3 GB resident).
                let source = try externalSource(t, file: file, expected: bytes)
                var failed = false
                let out = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    let got = buffer.withMemoryRebound(to: UInt8.self) { b -> Int in
                        var done = 0
                        while done < bytes {
                            let n = pread(source.descriptor, b.baseAddress! + done, bytes - done, off_t(source.offset + done))
                            if n <= 0 { break }
                            done += n
                        }
                        return done
                    }
                    failed = got != bytes
                    initialized = failed ? 0 : count
                }
                close(source.descriptor)
                guard !failed else { throw ModelIOError(file: source.path, "\(what): could not read \(bytes) bytes at offset \(source.offset)") }
                #if _endian(big)
                return .float(Tensor(shape: shape, scalars: out.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }))
                #else
                return .float(Tensor(shape: shape, scalars: out))
                #endif
            }
            raw = try externalData(t, file: file, expected: bytes)
        }
        if !raw.isEmpty || t.dataLocation == .external || (count > 0 && t.floatData.isEmpty && t.int64Data.isEmpty && t.int32Data.isEmpty) {
            guard raw.count == bytes else {
                throw ModelIOError(file: file, "\(what): raw_data has \(raw.count) bytes, \(shape) of \(dtype.rawValue) needs \(bytes)")
            }
            switch dtype {
            case .float32:
                var out = [Float](repeating: 0, count: count)
                out.withUnsafeMutableBytes { dst in raw.withUnsafeBytes { src in dst.copyMemory(from: src) } }
                #if _endian(big)
                out = out.map { Float(bitPattern: UInt32(littleEndian: $0.bitPattern)) }
                #endif
                return .float(Tensor(shape: shape, scalars: out))
            case .int64:
                var out = [Int64](repeating: 0, count: count)
                out.withUnsafeMutableBytes { dst in raw.withUnsafeBytes { src in dst.copyMemory(from: src) } }
                return .int64(IntTensor(shape: shape, data: out.map { Int64(littleEndian: $0) }))
            case .bool:
                return .bool(IntTensor(shape: shape, data: raw.map { $0 != 0 ? 1 : 0 }))
            }
        }
        switch dtype {
        case .float32:
            guard t.floatData.count == count else { throw ModelIOError(file: file, "\(what): float_data has \(t.floatData.count) values, \(shape) needs \(count)") }
            return .float(Tensor(shape: shape, scalars: t.floatData))
        case .int64:
            guard t.int64Data.count == count else { throw ModelIOError(file: file, "\(what): int64_data has \(t.int64Data.count) values, \(shape) needs \(count)") }
            return .int64(IntTensor(shape: shape, data: t.int64Data))
        case .bool:
            guard t.int32Data.count == count else { throw ModelIOError(file: file, "\(what): int32_data has \(t.int32Data.count) values, \(shape) needs \(count)") }
            return .bool(IntTensor(shape: shape, data: t.int32Data.map { $0 != 0 ? 1 : 0 }))
        }
    }

    /// Where a tensor's external data is: an open descriptor of the file (the caller closes
    /// it), the offset and the path, after refusing locations outside the model's folder
    /// (absolute paths, `..`, symbolic links that lead out) and ranges past the file's end.
    static func externalSource(_ t: Onnx_TensorProto, file: String, expected: Int) throws -> (descriptor: Int32, offset: Int, path: String) {
        var entries: [String: String] = [:]
        for e in t.externalData { entries[e.key] = e.value }
        let what = "tensor '\(t.name)'"
        guard let location = entries["location"], !location.isEmpty else { throw ModelIOError(file: file, "\(what): external data without a location") }
        let folder = URL(fileURLWithPath: file).deletingLastPathComponent().standardizedFileURL.resolvingSymlinksInPath()
        let target = URL(fileURLWithPath: location, relativeTo: folder).standardizedFileURL.resolvingSymlinksInPath()
        guard !location.hasPrefix("/"), target.path.hasPrefix(folder.path + "/") else {
            throw ModelIOError(file: file, "\(what): external data location '\(location)' leaves the model's folder; refused")
        }
        let offset = Int(entries["offset"] ?? "0") ?? -1
        let length = Int(entries["length"] ?? "\(expected)") ?? -1
        guard offset >= 0, length == expected else {
            throw ModelIOError(file: file, "\(what): external data offset \(entries["offset"] ?? "0") / length \(entries["length"] ?? "-") do not give the \(expected) bytes needed")
        }
        try FileConfinement.check(target.path)
        let fd = open(target.path, O_RDONLY)
        guard fd >= 0 else { throw ModelIOError(file: file, "\(what): cannot read external data file '\(location)'") }
        var info = stat()
        let size = fstat(fd, &info) == 0 ? Int(info.st_size) : 0
        // Compared without adding: an offset of 2⁶³−1 must not overflow (it used to crash here).
        guard length <= size, offset <= size - length else {
            close(fd)
            throw ModelIOError(file: file, "\(what): external data '\(location)' needs \(length) bytes at offset \(offset), the file has \(size)")
        }
        return (fd, offset, target.path)
    }

    /// Reads a tensor's external data (see `externalSource`).
    static func externalData(_ t: Onnx_TensorProto, file: String, expected: Int) throws -> Data {
        let source = try externalSource(t, file: file, expected: expected)
        let handle = FileHandle(fileDescriptor: source.descriptor, closeOnDealloc: true)
        try handle.seek(toOffset: UInt64(source.offset))
        return handle.readData(ofLength: expected)
    }

    // MARK: export

    /// Serializes `graph` as an ONNX model (IR version 8, the graph's opset). Float tensors go
    /// to raw_data; output shapes come from a run on one example of `exampleInput`'s shape.
    public static func encode(_ graph: Graph, producer: String = "prunecheck") throws -> Data {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = producer
        var op = Onnx_OperatorSetIdProto()
        op.domain = ""
        op.version = Int64(max(graph.opset, 13))
        model.opsetImport = [op]
        var g = Onnx_GraphProto()
        g.name = "prunecheck"
        for (name, data) in graph.initializerData { g.initializer.append(proto(data, name: name)) }
        for n in graph.nodes {
            var p = Onnx_NodeProto()
            p.name = n.name
            p.opType = n.opType
            p.input = n.inputs
            p.output = n.outputs
            for key in n.attributes.keys.sorted() { p.attribute.append(proto(n.attributes[key]!, name: key)) }
            g.node.append(p)
        }
        for inp in graph.inputs { g.input.append(valueInfo(inp.name, dtype: inp.dtype, shape: inp.shape)) }
        var outShapes: [String: [Int]] = [:]
        if graph.inputs.count == 1, graph.inputs[0].dtype == .float32 {
            outShapes = (try? graph.valueShapes()) ?? [:]
        }
        let batchSymbolic = graph.inputs.first?.shape.first.map { $0 == nil } ?? false
        for o in graph.outputs {
            let s = outShapes[o].map { dims -> [Int?] in dims.enumerated().map { i, d in i == 0 && batchSymbolic ? nil : d } }
            g.output.append(valueInfo(o, dtype: .float32, shape: s))
        }
        model.graph = g
        return try model.serializedBytes()
    }

    public static func save(_ graph: Graph, to path: String) throws {
        let data = try encode(graph)
        try writeDataAtomically(data, to: path)
    }

    static func valueInfo(_ name: String, dtype: DType, shape: [Int?]?) -> Onnx_ValueInfoProto {
        var vi = Onnx_ValueInfoProto()
        vi.name = name
        var tt = Onnx_TypeProto.Tensor()
        tt.elemType = dtype == .float32 ? float : (dtype == .int64 ? int64 : bool)
        if let shape {
            var sp = Onnx_TensorShapeProto()
            sp.dim = shape.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                if let d { dim.dimValue = Int64(d) } else { dim.dimParam = "batch" }
                return dim
            }
            tt.shape = sp
        }
        var type = Onnx_TypeProto()
        type.tensorType = tt
        vi.type = type
        return vi
    }

    static func proto(_ data: TensorData, name: String) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dims = data.shape.map { Int64($0) }
        switch data {
        case .float(let x):
            t.dataType = float
            t.rawData = x.withUnsafeBufferPointer { Data(buffer: $0) }
        case .int64(let x):
            t.dataType = int64
            t.rawData = x.data.withUnsafeBufferPointer { Data(buffer: $0) }
        case .bool(let x):
            t.dataType = bool
            t.rawData = Data(x.data.map { $0 != 0 ? 1 : 0 })
        }
        return t
    }

    static func proto(_ a: Attribute, name: String) -> Onnx_AttributeProto {
        var p = Onnx_AttributeProto()
        p.name = name
        switch a {
        case .int(let v): p.type = .int; p.i = Int64(v)
        case .float(let v): p.type = .float; p.f = v
        case .string(let v): p.type = .string; p.s = Data(v.utf8)
        case .ints(let v): p.type = .ints; p.ints = v.map { Int64($0) }
        case .floats(let v): p.type = .floats; p.floats = v
        case .tensor(let t): p.type = .tensor; p.t = proto(t, name: name)
        }
        return p
    }
}

/// Writes `data` atomically (Common's `writeFileAtomically`: a temporary, then rename; a
/// device is written in place, a symlink refused).
func writeDataAtomically(_ data: Data, to path: String) throws {
    try writeFileAtomically(bytes: [UInt8](data), to: path)
}
