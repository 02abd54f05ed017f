import Foundation
import ModelIO
import SwiftProtobuf
import TensorEngine

/// Runs ONNX backend node tests (`test_*/model.onnx` with `test_data_set_0/input_*.pb` and
/// `output_*.pb`) and compares as ONNX's own runner does: same output count, shapes and
/// element types; floats within |actual − expected| ≤ atol + rtol·|expected| (rtol 1e-3,
/// atol 1e-7), NaN only where NaN is expected, infinities exact; int64 and bool exact.
public enum ONNXConformance {
    public struct Outcome: Sendable {
        public let name: String
        /// nil when the test passed.
        public let failure: String?
    }

    public static let rtol: Float = 1e-3
    public static let atol: Float = 1e-7

    /// Every test folder under `directory`, in name order.
    public static func runAll(directory: String) -> [Outcome] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("test_") }.sorted()
        return names.map { run(test: directory + "/" + $0) }
    }

    public static func run(test folder: String) -> Outcome {
        let name = URL(fileURLWithPath: folder).lastPathComponent
        do {
            let graph = try ONNXModel.load(path: folder + "/model.onnx")
            let dataDir = folder + "/test_data_set_0"
            let feeds = try graph.inputs.indices.map { i in try readTensor(dataDir + "/input_\(i).pb") }
            let values = try graph.run(feeds.map(value), threads: 1)
            let fm = FileManager.default
            var expected: [TensorData] = []
            while fm.fileExists(atPath: dataDir + "/output_\(expected.count).pb") {
                expected.append(try readTensor(dataDir + "/output_\(expected.count).pb"))
            }
            guard values.count == expected.count else {
                return Outcome(name: name, failure: "\(values.count) outputs, expected \(expected.count)")
            }
            for (j, (v, e)) in zip(values, expected).enumerated() {
                if let problem = compare(v, e) { return Outcome(name: name, failure: "output \(j): \(problem)") }
            }
            return Outcome(name: name, failure: nil)
        } catch {
            return Outcome(name: name, failure: "\(error)")
        }
    }

    static func readTensor(_ path: String) throws -> TensorData {
        guard let data = FileManager.default.contents(atPath: path) else { throw ModelIOError(file: path, "cannot read the file") }
        let proto: Onnx_TensorProto
        do { proto = try Onnx_TensorProto(serializedBytes: data) } catch {
            throw ModelIOError(file: path, "is not a serialized TensorProto (\(error))")
        }
        var total = 0
        return try ONNXModel.tensor(proto, file: path, total: &total)
    }

    static func value(_ t: TensorData) -> Value {
        switch t {
        case .float(let x): return .float(Variable(x))
        case .int64(let x): return .int64(x)
        case .bool(let x): return .bool(x)
        }
    }

    public static func compare(_ v: Value, _ e: TensorData) -> String? {
        guard v.dtype == e.dtype else { return "element type \(v.dtype.rawValue), expected \(e.dtype.rawValue)" }
        guard v.shape == e.shape else { return "shape \(v.shape), expected \(e.shape)" }
        switch (v, e) {
        case (.float(let a), .float(let b)):
            let x = a.value.scalars, y = b.scalars
            for i in 0..<y.count {
                let (p, q) = (x[i], y[i])
                if q.isNaN { if !p.isNaN { return "element \(i) is \(p), expected NaN" }; continue }
                if q.isInfinite { if p != q { return "element \(i) is \(p), expected \(q)" }; continue }
                if !(abs(p - q) <= atol + rtol * abs(q)) { return "element \(i) is \(p), expected \(q)" }
            }
            return nil
        case (.int64(let a), .int64(let b)), (.bool(let a), .bool(let b)):
            if let i = (0..<b.data.count).first(where: { a.data[$0] != b.data[$0] }) {
                return "element \(i) is \(a.data[i]), expected \(b.data[i])"
            }
            return nil
        default: return "element types differ"
        }
    }
}
