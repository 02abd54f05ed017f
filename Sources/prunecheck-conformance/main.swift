import Foundation
import Conformance
import TensorEngine

// `make conformance`: runs ONNX's backend node tests (a copy lives in the test fixtures)
// through the importer and the engine, prints `N passed, M failed` and lists failures.
// `make operators`: with `--operators`, prints docs/operators.md's table of supported ops, which
// the engine's op registry derives.

if CommandLine.arguments.dropFirst().first == "--operators" {
    print(supportedOpsMarkdown(), terminator: "")
    exit(0)
}
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
