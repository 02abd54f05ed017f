import ArgumentParser
import Checking
import Common
import Configuration
import Evaluation
import Foundation
import ModelIO
import Pruning
import Regression
import TensorEngine

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a model's ops, shapes, parameter counts and sparsity per layer.")

    @Argument(help: "The model file (.onnx, or .safetensors with --architecture).")
    var file: String

    @Option(help: "The architecture file (layer-list JSON) for a .safetensors model.")
    var architecture: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        let m = try loadModel(path: file, architecture: architecture)
        let shapes = try m.valueShapes()
        let cost = CostAnalysis.analyze(m)
        var rows: [(name: String, op: String, output: [Int], params: Int, nonzero: Int)] = []
        for n in m.nodes {
            var params = 0, nonzero = 0
            for i in n.inputs where !i.isEmpty {
                if case .float(let v)? = m.initializer(i), v.requiresGrad {
                    params += v.value.count
                    nonzero += v.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
                }
            }
            rows.append((n.name, n.opType, n.outputs.first.flatMap { shapes[$0] } ?? [], params, nonzero))
        }
        func shapeText(_ s: [Int]) -> String { "[" + (["batch"] + s.dropFirst().map(String.init)).joined(separator: ", ") + "]" }
        if json {
            Console.out(JSONValue.object([
                ("file", .string(file)), ("opset", .number(Double(m.opset))),
                ("input", .array(([1] + m.inputShape).map { .number(Double($0)) })),
                ("params_total", .number(Double(cost.paramsTotal))), ("params_nonzero", .number(Double(cost.paramsNonzero))),
                ("macs", .number(Double(cost.macs))), ("macs_nonzero", .number(Double(cost.macsNonzero))),
                ("nodes", .array(rows.map { r in
                    .object([("name", .string(r.name)), ("op", .string(r.op)), ("output_shape", .array(r.output.map { .number(Double($0)) })),
                             ("params", .number(Double(r.params))), ("params_nonzero", .number(Double(r.nonzero))),
                             ("sparsity", .number(r.params == 0 ? 0 : 1 - Double(r.nonzero) / Double(r.params)))])
                })),
            ]).rendered(), terminator: "")
            return
        }
        Console.out("\(file): opset \(m.opset), input \(shapeText([1] + m.inputShape)), \(m.nodes.count) nodes")
        let table = [["node", "op", "output", "params", "sparsity"]] + rows.map { r in
            [r.name, r.op, shapeText(r.output), r.params == 0 ? "" : "\(r.params)",
             r.params == 0 ? "" : String(format: "%.2f%%", 100 * (1 - Double(r.nonzero) / Double(r.params)))]
        }
        TextColumns.render(table, rightAligned: [3, 4], indent: "  ").forEach { Console.out($0) }
        Console.out("  total: \(cost.paramsTotal) parameters, \(cost.paramsNonzero) nonzero; \(cost.macs) MACs per example (\(cost.macsNonzero) on nonzero weights)")
    }
}
