import Foundation
import TensorEngine

/// Builds a model from an architecture file in the `layer-list/v1` form (an ordered list of
/// layers) and a weights file (safetensors) whose keys the layers name.
public enum LayerList {
    public static func load(architecture path: String, weights weightsPath: String, limits: IOLimits = .default) throws -> Sequential {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
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
        var layers: [Layer] = []
        var shape = inputShape
        for (index, spec) in layerList.enumerated() {
            let name = spec["name"] as? String ?? "layers[\(index)]"
            let type = spec["type"] as? String ?? "?"
            func field<T>(_ key: String) throws -> T {
                guard let v = spec[key] as? T else { throw ModelIOError(file: path, "layer \(name): field '\(key)' is missing or has the wrong type") }
                return v
            }
            func tensor(_ role: String, expected: [Int]) throws -> Tensor {
                let params: [String: Any] = try field("params")
                guard let p = params[role] as? [String: Any], let key = p["key"] as? String else {
                    throw ModelIOError(file: path, "layer \(name): params.\(role).key is missing")
                }
                guard let t = weights[key] else {
                    throw ModelIOError(file: weightsPath, "has no tensor '\(key)' (needed by layer \(name) of \(path))")
                }
                guard t.shape == expected else {
                    throw ModelIOError(file: weightsPath, "tensor \(key) has shape \(t.shape), layer \(name) expects \(expected)")
                }
                return t
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
                layers.append(.linear(LinearLayer(name: name, weight: w, bias: b)))
                shape = [outF]
            case "relu":
                layers.append(.relu(name: name))
            case "flatten":
                let start = spec["start_dim"] as? Int ?? 1, end = spec["end_dim"] as? Int ?? -1
                guard start == 1, end == -1 else {
                    throw ModelIOError(file: path, "layer \(name): flatten supports start_dim 1 and end_dim -1, found \(start) and \(end)")
                }
                layers.append(.flatten(name: name))
                shape = [shape.reduce(1, *)]
            default:
                throw ModelIOError(file: path, "layer \(name): type '\(type)' is not supported yet (supported: linear, relu, flatten)")
            }
        }
        return Sequential(layers: layers, inputShape: inputShape)
    }
}
