import Foundation
import Testing

/// Paths inside the repository, found from this file's location (tests never read ../shared).
enum Repo {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()
    static func path(_ relative: String) -> String { (root as NSString).appendingPathComponent(relative) }
    static var fixtures: String { path("Tests/PruneCheckTests/Fixtures") }
    /// The `prunecheck` binary of the build these tests run from: it is built beside the test
    /// bundle (`swift build --build-tests`), so a debug test run uses the debug binary and no
    /// run can pick up a stale one from another configuration.
    static let binary: String = {
        let runner = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var folder = URL(fileURLWithPath: runner).deletingLastPathComponent()
        // On Linux the runner is the bundle itself; elsewhere it sits inside Foo.xctest/Contents/MacOS.
        while folder.path != "/" && folder.pathComponents.contains(where: { $0.hasSuffix(".xctest") }) { folder.deleteLastPathComponent() }
        let binary = folder.appendingPathComponent("prunecheck").path
        precondition(FileManager.default.isExecutableFile(atPath: binary),
                     "no prunecheck binary beside the test runner \(runner): build it with `swift build --build-tests` (make build)")
        return binary
    }()
}

/// A fresh temporary folder, removed by the caller with `cleanup`.
func scratchFolder(_ name: String = "prunecheck-test") throws -> String {
    let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs an executable and waits for it, capturing both streams.
@discardableResult
func run(_ executable: String, _ arguments: [String], in directory: String? = nil, environment: [String: String]? = nil) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    // Read both pipes before waiting so a full pipe cannot block the child.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    let errData = errBox.data
    p.waitUntilExit()
    return ProcessResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs `git` (test set-up only: the product itself reads git through libgit2).
@discardableResult
func git(_ arguments: [String], in directory: String) throws -> String {
    let r = try run("/usr/bin/env", ["git", "-c", "user.name=PruneCheck Tests", "-c", "user.email=tests@example.invalid",
                                     "-c", "init.defaultBranch=main"] + arguments, in: directory)
    guard r.status == 0 else { throw TestFailure("git \(arguments.joined(separator: " ")) failed: \(r.stderr)") }
    return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Validates an XML file against an XSD with xmllint (libxml2's own validator).
func xmllintValidate(_ file: String, schema: String) throws -> ProcessResult {
    try run("/usr/bin/env", ["xmllint", "--noout", "--schema", schema, file])
}
