import Foundation
import ModelIO

// `make conformance`: runs ONNX's backend node tests (a copy lives in the test fixtures)
// through the importer and the engine, prints `N passed, M failed` and lists failures.
let directory = CommandLine.arguments.dropFirst().first ?? "Tests/PruneCheckTests/Fixtures/onnx-node-tests"
let outcomes = ONNXConformance.runAll(directory: directory)
guard !outcomes.isEmpty else {
    FileHandle.standardError.write(Data("no test_* folders under \(directory)\n".utf8))
    exit(2)
}
let failed = outcomes.filter { $0.failure != nil }
for f in failed { print("FAIL \(f.name): \(f.failure!)") }
print("\(outcomes.count - failed.count) passed, \(failed.count) failed")
exit(failed.isEmpty ? 0 : 1)
