import Common
import Foundation
import TensorEngine

extension Safetensors {
    /// Writes the graph's trainable parameters (and BatchNorm statistics) as safetensors,
    /// atomically.
    public static func write(_ graph: Graph, to path: String) throws {
        var tensors: [String: Tensor] = [:]
        for (name, data) in graph.initializerData { if case .float(let t) = data { tensors[name] = t } }
        try writeDataAtomically(Data(serialize(tensors)), to: path)
    }
}

extension LayerList {
    /// Writes `graph` as a `layer-list/v1` architecture (the form `load` reads) whose params
    /// name the safetensors keys. Only graphs of the layer-list vocabulary can be written:
    /// Linear Gemm, Conv (symmetric padding), MaxPool, Relu, Flatten, and a Reshape to
    /// (batch, sizes…); anything else is an error naming the node.
    public static func write(_ graph: Graph, to path: String) throws {
        let shapes: [String: [Int]]
        do { shapes = try graph.valueShapes() } catch {
            throw ModelIOError(file: path, "the model does not run: \(error)")
        }
        func ints(_ n: Node, _ key: String, _ d: Int, _ fallback: Int) -> [Int] {
            if case .ints(let v)? = n.attributes[key] { return v }
            return [Int](repeating: fallback, count: d)
        }
        func param(_ name: String) -> [String: Any] {
            ["key": name, "shape": graph.initializer(name)?.shape ?? [], "dtype": "float32"]
        }
        var layers: [[String: Any]] = []
        for n in graph.nodes {
            var layer: [String: Any] = ["name": n.name, "output_shape": Array((shapes[n.outputs[0]] ?? []).dropFirst())]
            switch n.opType {
            case "Gemm":
                guard case .float(let w)? = graph.initializer(n.inputs[1]), n.attributes["transB"] == .int(1) else {
                    throw ModelIOError(file: path, "node '\(n.name)': only Linear Gemms (transB = 1, weight an initializer) can be written as a layer list")
                }
                layer["type"] = "linear"
                layer["in_features"] = w.value.shape[1]
                layer["out_features"] = w.value.shape[0]
                let hasBias = n.inputs.count > 2 && !n.inputs[2].isEmpty
                layer["bias"] = hasBias
                layer["params"] = hasBias ? ["weight": param(n.inputs[1]), "bias": param(n.inputs[2])] : ["weight": param(n.inputs[1])]
            case "Conv":
                guard case .float(let w)? = graph.initializer(n.inputs[1]) else {
                    throw ModelIOError(file: path, "node '\(n.name)': the Conv weight is not an initializer")
                }
                let d = w.value.shape.count - 2
                let pads = ints(n, "pads", 2 * d, 0)
                guard Array(pads[..<d]) == Array(pads[d...]), n.attributes["auto_pad"] == nil || n.attributes["auto_pad"] == .string("NOTSET") else {
                    throw ModelIOError(file: path, "node '\(n.name)': asymmetric or automatic padding has no layer-list form")
                }
                let groups: Int = { if case .int(let g)? = n.attributes["group"] { return g }; return 1 }()
                layer["type"] = d == 1 ? "conv1d" : "conv2d"
                layer["in_channels"] = w.value.shape[1] * groups
                layer["out_channels"] = w.value.shape[0]
                layer["kernel_size"] = Array(w.value.shape[2...])
                layer["stride"] = ints(n, "strides", d, 1)
                layer["padding"] = Array(pads[..<d])
                layer["dilation"] = ints(n, "dilations", d, 1)
                layer["groups"] = groups
                let hasBias = n.inputs.count > 2 && !n.inputs[2].isEmpty
                layer["bias"] = hasBias
                layer["params"] = hasBias ? ["weight": param(n.inputs[1]), "bias": param(n.inputs[2])] : ["weight": param(n.inputs[1])]
            case "MaxPool":
                guard case .ints(let k)? = n.attributes["kernel_shape"] else { throw ModelIOError(file: path, "node '\(n.name)': MaxPool without kernel_shape") }
                let pads = ints(n, "pads", 2 * k.count, 0)
                layer["type"] = k.count == 1 ? "maxpool1d" : "maxpool2d"
                layer["kernel_size"] = k
                layer["stride"] = ints(n, "strides", k.count, 1)
                layer["padding"] = Array(pads[..<k.count])
                layer["dilation"] = ints(n, "dilations", k.count, 1)
                layer["ceil_mode"] = n.attributes["ceil_mode"] == .int(1)
            case "Relu":
                layer["type"] = "relu"
            case "Flatten":
                layer["type"] = "flatten"
                layer["start_dim"] = 1
                layer["end_dim"] = -1
            case "Reshape":
                let out = Array((shapes[n.outputs[0]] ?? []).dropFirst())
                layer["type"] = out.count == 1 ? "flatten" : "unflatten"
                if out.count == 1 { layer["start_dim"] = 1; layer["end_dim"] = -1 } else { layer["dim"] = 1; layer["sizes"] = out }
            default:
                throw ModelIOError(file: path, "node '\(n.name)': op \(n.opType) has no layer-list form; write the model as ONNX instead")
            }
            layers.append(layer)
        }
        let root: [String: Any] = [
            "format": "layer-list/v1",
            "input": ["name": graph.inputs.first?.name ?? "input", "dtype": "float32", "shape": ["N"] + graph.inputShape.map { $0 as Any }],
            "layers": layers,
        ]
        let data = Data((JSONValue(foundation: root)?.rendered() ?? "").utf8)
        try writeDataAtomically(data, to: path)
    }
}
