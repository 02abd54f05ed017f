import Common
import Foundation
import TensorEngine

/// Builds a model from an architecture file in the `layer-list/v1` form (an ordered list of
/// layers) and a weights file (safetensors) whose keys the layers name.
public enum LayerList {
    public static func load(architecture path: String, weights weightsPath: String, limits: IOLimits = .default) throws -> Graph {
        try FileConfinement.check(path)
        try FileConfinement.check(weightsPath)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        guard let root = (try? JSONValue.parse(data))?.foundationObject as? [String: Any] else {
            throw ModelIOError(file: path, "is not a JSON object")
        }
        guard (root["format"] as? String) == "layer-list/v1" else {
            throw ModelIOError(file: path, "field 'format': expected \"layer-list/v1\", found \(root["format"].map { "\($0)" } ?? "nothing")")
        }
        guard let input = root["input"] as? [String: Any], let inShape = input["shape"] as? [Any], inShape.count >= 2 else {
            throw ModelIOError(file: path, "field 'input.shape': expected a list like [\"N\", 784]")
        }
        let inputShape = try inShape.dropFirst().enumerated().map { (i, v) -> Int in
            guard let d = v as? Int, d > 0 else { throw ModelIOError(file: path, "field 'input.shape[\(i + 1)]': expected a positive integer") }
            return d
        }
        guard let layerList = root["layers"] as? [[String: Any]] else {
            throw ModelIOError(file: path, "field 'layers': expected a list of layer objects")
        }
        let weights = try Safetensors.read(path: weightsPath, limits: limits)
        var builder = GraphBuilder(inputShape: inputShape)
        var shape = inputShape
        for (index, spec) in layerList.enumerated() {
            let name = spec["name"] as? String ?? "layers[\(index)]"
            let type = spec["type"] as? String ?? "?"
            func field<T>(_ key: String) throws -> T {
                guard let v = spec[key] as? T else { throw ModelIOError(file: path, "layer \(name): field '\(key)' is missing or has the wrong type") }
                return v
            }
            func key(_ role: String) throws -> String {
                let params: [String: Any] = try field("params")
                guard let p = params[role] as? [String: Any], let key = p["key"] as? String else {
                    throw ModelIOError(file: path, "layer \(name): params.\(role).key is missing")
                }
                return key
            }
            func tensor(_ role: String, expected: [Int]) throws -> Tensor {
                let key = try key(role)
                guard let t = weights[key] else {
                    throw ModelIOError(file: weightsPath, "has no tensor '\(key)' (needed by layer \(name) of \(path))")
                }
                guard t.shape == expected else {
                    throw ModelIOError(file: weightsPath, "tensor \(key) has shape \(t.shape), layer \(name) expects \(expected)")
                }
                return t
            }
            func positiveList(_ key: String, count: Int, minimum: Int = 1) throws -> [Int] {
                let v: [Int] = try field(key)
                guard v.count == count, v.allSatisfy({ $0 >= minimum }) else {
                    throw ModelIOError(file: path, "layer \(name): '\(key)' must be \(count) integers ≥ \(minimum), found \(v)")
                }
                return v
            }
            switch type {
            case "linear":
                let inF: Int = try field("in_features"), outF: Int = try field("out_features")
                let hasBias = spec["bias"] as? Bool ?? true
                guard shape.reduce(1, *) == inF, shape.count == 1 else {
                    throw ModelIOError(file: path, "layer \(name): in_features \(inF) does not fit its input of shape \(shape)")
                }
                let w = try tensor("weight", expected: [outF, inF])
                let b = hasBias ? try tensor("bias", expected: [outF]) : nil
                builder.linear(name, weight: w, bias: b, weightKey: try key("weight"), biasKey: hasBias ? try key("bias") : nil)
                shape = [outF]
            case "conv1d", "conv2d":
                let d = type == "conv1d" ? 1 : 2
                let cin: Int = try field("in_channels"), cout: Int = try field("out_channels")
                let groups = spec["groups"] as? Int ?? 1
                let kernel = try positiveList("kernel_size", count: d), stride = try positiveList("stride", count: d)
                let padding = try positiveList("padding", count: d, minimum: 0), dilation = try positiveList("dilation", count: d)
                guard shape.count == d + 1, shape[0] == cin, groups > 0, cin % groups == 0, cout % groups == 0 else {
                    throw ModelIOError(file: path, "layer \(name): in_channels \(cin), groups \(groups) do not fit its input of shape \(shape)")
                }
                let hasBias = spec["bias"] as? Bool ?? true
                let w = try tensor("weight", expected: [cout, cin / groups] + kernel)
                let b = hasBias ? try tensor("bias", expected: [cout]) : nil
                var out = [cout]
                for i in 0..<d {
                    let span = shape[i + 1] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1
                    guard span >= 0 else { throw ModelIOError(file: path, "layer \(name): kernel \(kernel) is larger than its padded input \(shape)") }
                    out.append(span / stride[i] + 1)
                }
                builder.conv(name, weight: w, bias: b, stride: stride, padding: padding, dilation: dilation, groups: groups,
                             weightKey: try key("weight"), biasKey: hasBias ? try key("bias") : nil)
                shape = out
            case "maxpool1d", "maxpool2d":
                let d = type == "maxpool1d" ? 1 : 2
                let kernel = try positiveList("kernel_size", count: d)
                let stride = spec["stride"] == nil ? kernel : try positiveList("stride", count: d)
                let padding = spec["padding"] == nil ? [Int](repeating: 0, count: d) : try positiveList("padding", count: d, minimum: 0)
                let dilation = spec["dilation"] == nil ? [Int](repeating: 1, count: d) : try positiveList("dilation", count: d)
                let ceil = spec["ceil_mode"] as? Bool ?? false
                guard shape.count == d + 1 else { throw ModelIOError(file: path, "layer \(name): input of shape \(shape) is not \(d)-D with channels") }
                var out = [shape[0]]
                for i in 0..<d {
                    let span = shape[i + 1] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1
                    guard span >= 0 else { throw ModelIOError(file: path, "layer \(name): kernel \(kernel) is larger than its input \(shape)") }
                    var o = (ceil ? (span + stride[i] - 1) / stride[i] : span / stride[i]) + 1
                    if ceil && (o - 1) * stride[i] >= shape[i + 1] + padding[i] { o -= 1 }
                    out.append(o)
                }
                builder.maxPool(name, kernel: kernel, stride: stride, padding: padding, dilation: dilation, ceil: ceil)
                shape = out
            case "relu":
                builder.relu(name)
            case "flatten":
                let start = spec["start_dim"] as? Int ?? 1, end = spec["end_dim"] as? Int ?? -1
                guard start == 1, end == -1 else {
                    throw ModelIOError(file: path, "layer \(name): flatten supports start_dim 1 and end_dim -1, found \(start) and \(end)")
                }
                builder.flatten(name)
                shape = [shape.reduce(1, *)]
            case "unflatten":
                let dim = spec["dim"] as? Int ?? 1
                let sizes: [Int] = try field("sizes")
                guard dim == 1, shape.count == 1, sizes.allSatisfy({ $0 > 0 }), sizes.reduce(1, *) == shape[0] else {
                    throw ModelIOError(file: path, "layer \(name): unflatten dim \(dim) to \(sizes) does not fit its input of shape \(shape)")
                }
                builder.reshape(name, to: sizes)
                shape = sizes
            default:
                throw ModelIOError(file: path, "layer \(name): type '\(type)' is not supported (supported: linear, conv1d, conv2d, maxpool1d, maxpool2d, relu, flatten, unflatten)")
            }
            if let expected = spec["output_shape"] as? [Int], expected != shape {
                throw ModelIOError(file: path, "layer \(name): output_shape \(expected) differs from the computed \(shape)")
            }
        }
        return builder.build()
    }
}
