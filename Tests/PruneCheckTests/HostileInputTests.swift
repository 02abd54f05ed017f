import Common
import Foundation
import SwiftProtobuf
@testable import ModelIO
import Regression
import Testing

/// A pull request's files are the attacker's (issue 27): each case must end in its documented
/// exit code with a message naming the file, leak nothing from outside the repository, write
/// nothing a CI runner executes, and never replace what is not a regular file.
@Suite(.serialized) struct HostileInputTests {
    func prunecheck(_ args: [String], in dir: String, environment: [String: String] = [:]) throws -> ProcessResult {
        try WorkflowTests.prunecheck(args, in: dir, environment: environment)
    }

    /// A one-model config on the digits MLP with `data` as its data block.
    func config(data: String = "{file: examples/data/digits.npz, train: [x_train, y_train], eval: [x_test, y_test]}",
                model: String = "model: examples/models/mlp_digits.safetensors\n    architecture: examples/models/mlp_digits.json",
                extra: String = "") -> String {
        """
        version: 1
        defaults:
          latency: {batch_sizes: [1], warmup: 1, min_runs: 3, max_seconds: 0.05}
        models:
          - name: digits
            \(model)
            data: \(data)
            prune: {method: magnitude, sparsity: 0.5, finetune: {epochs: 1, batch_size: 64, lr: 0.05}}
        \(extra)
        """
    }

    @Test func pathsAndSymlinksOutsideTheRepositoryAreRefusedWithoutQuotingThem() throws {
        let dir = try WorkflowTests.makeRepository()
        let outside = try scratchFolder("prunecheck-secret")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: outside) }
        let secret = "SECRET_TOKEN=hunter2\u{0}SHELL=/bin/bash\u{0}"
        try secret.write(toFile: "\(outside)/environ", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: "\(dir)/examples/data/digits.npz", toPath: "\(outside)/digits.npz")
        try FileManager.default.createDirectory(atPath: "\(dir)/evil", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/evil/env.csv", withDestinationPath: "\(outside)/environ")
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/evil/model.onnx", withDestinationPath: "\(outside)/environ")
        let cases = [
            config(data: "{file: evil, train: [env.csv, 'env.csv#label'], eval: [env.csv, 'env.csv#label']}"),
            config(data: "{file: \(outside)/environ, train: [a, b], eval: [a, b]}"),
            config(data: "{file: ../\((outside as NSString).lastPathComponent)/environ, train: [a, b], eval: [a, b]}"),
            config(model: "model: evil/model.onnx"),
        ]
        for (i, text) in cases.enumerated() {
            try text.write(toFile: "\(dir)/evil.yml", atomically: true, encoding: .utf8)
            for command in [["check", "-c", "evil.yml", "--no-cache", "--json", "r.json"], ["baseline", "update", "-c", "evil.yml", "--no-cache"]] {
                let r = try prunecheck(command, in: dir)
                #expect(r.status == 2, "case \(i) \(command[0]): \(r.stdout)\(r.stderr)")
                #expect(r.stderr.contains("outside the repository"), "case \(i): \(r.stderr)")
                #expect(!(r.stdout + r.stderr).contains("hunter2"), "case \(i): the secret leaked: \(r.stderr)")
            }
            #expect(!(try String(contentsOfFile: "\(dir)/r.json", encoding: .utf8)).contains("hunter2"))
        }
        // A committed config that is itself a symlink out of the repository.
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/linked.yml", withDestinationPath: "\(outside)/environ")
        let linked = try prunecheck(["check", "-c", "linked.yml"], in: dir)
        #expect(linked.status == 2 && !linked.stderr.contains("hunter2"), "\(linked.stderr)")
        // Opting out reads a file outside on purpose.
        try config(data: "{file: \(outside)/digits.npz, train: [x_train, y_train], eval: [x_test, y_test]}")
            .write(toFile: "\(dir)/outside.yml", atomically: true, encoding: .utf8)
        #expect(try prunecheck(["check", "-c", "outside.yml", "--no-cache"], in: dir).status == 2)
        let allowed = try prunecheck(["check", "-c", "outside.yml", "--no-cache", "--allow-outside-repository"], in: dir)
        #expect(allowed.status == 3, "runs, and only lacks its baseline: \(allowed.stdout)\(allowed.stderr)")
    }

    @Test func aCommittedCacheEntryIsNotTrusted() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try prunecheck(["check"], in: dir).status == 0)
        // The attacker's branch makes digits-a much worse and commits cache entries that say
        // all is well: the forged bytes of an honest entry, with the metrics of the baseline.
        try WorkflowTests.config(sparsityA: "0.97").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let honest = try prunecheck(["check", "--no-cache"], in: dir)
        #expect(honest.status == 1)
        let cache = "\(dir)/.prunecheck/cache"
        let secret = try String(contentsOfFile: "\(dir)/baselines/digits-a.json", encoding: .utf8)
        let metrics = try JSONValue.parse(Array(secret.utf8))["metrics"]!
        let worse = try prunecheck(["check"], in: dir)  // writes this machine's entries for the new recipe
        #expect(worse.status == 1)
        for sealed in [false, true] {
            // Every entry at once: each check rebuilds the entries it rejected.
            for entry in try FileManager.default.contentsOfDirectory(atPath: cache) where entry.hasSuffix(".json") {
                let key = String(entry.dropLast(5))
                let forged = JSONValue.object([("schema", .string("prunecheck-cache/3")), ("key", .string(key)), ("metrics", metrics)]).rendered()
                let text = sealed ? "{\"mac\":\"\(String(repeating: "0", count: 64))\",\"entry\":\(forged)}" : forged
                try text.write(toFile: "\(cache)/\(entry)", atomically: true, encoding: .utf8)
            }
            let r = try prunecheck(["check"], in: dir)
            #expect(r.status == 1, "a forged cache entry turned the gate off: \(r.stdout)")
            #expect(r.stderr.contains("never trusted"), "\(r.stderr)")
        }
    }

    @Test func namesFromFilesCannotInjectWorkflowCommandsOrTerminalControls() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let evil = "x\n::add-mask::pwned\n::error file=a.py::owned\u{1B}[2J\u{1B}]0;title\u{07}"
        var outputs: [String] = []
        let gh = ["GITHUB_ACTIONS": "true"]
        // A tolerance key.
        let key = evil.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\u{1B}", with: "\\e").replacingOccurrences(of: "\u{07}", with: "\\a")
        try config(extra: "    tolerances: {\"\(key)\": 0.1}").write(toFile: "\(dir)/t.yml", atomically: true, encoding: .utf8)
        let t = try prunecheck(["check", "-c", "t.yml"], in: dir, environment: gh)
        #expect(t.status == 2, "\(t.stderr)")
        outputs.append(t.stdout + t.stderr)
        // An ONNX node name in an error.
        var m = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: URL(fileURLWithPath: exampleModel("mlp_digits", "onnx"))))
        m.graph.node[0].name = evil
        m.graph.node[0].opType = "NotAnOp"
        try (m.serializedBytes() as Data).write(to: URL(fileURLWithPath: "\(dir)/evil.onnx"))
        try config(model: "model: evil.onnx").write(toFile: "\(dir)/n.yml", atomically: true, encoding: .utf8)
        let n = try prunecheck(["check", "-c", "n.yml", "--junit", "n.xml", "--markdown", "n.md"], in: dir, environment: gh)
        #expect(n.status == 2, "\(n.stderr)")
        #expect(n.stderr.contains("NotAnOp"), "\(n.stderr)")
        outputs.append(n.stdout + n.stderr)
        // A commit message that changed a baseline, in the table, the Markdown and the step summary.
        try git(["checkout", "-qb", "evil"], in: dir)
        try WorkflowTests.config(sparsityA: "0.97").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        #expect(try prunecheck(["baseline", "update", "--only", "digits-a"], in: dir).status == 0)
        try git(["commit", "-qam", "<script>alert(1)</script> \(evil)"], in: dir)
        try "".write(toFile: "\(dir)/summary.md", atomically: true, encoding: .utf8)
        let c = try prunecheck(["check", "--base", "main", "--markdown", "c.md"], in: dir,
                               environment: gh.merging(["GITHUB_STEP_SUMMARY": "\(dir)/summary.md"]) { $1 })
        #expect(c.status == 0, "\(c.stdout)\(c.stderr)")
        outputs.append(c.stdout + c.stderr)
        for output in outputs {
            for line in output.split(separator: "\n") {
                let body = line.drop { $0 == " " || $0 == "\t" }
                let ours = body.hasPrefix("::group::") || body.hasPrefix("::endgroup::") || body.hasPrefix("::error file=baselines/")
                #expect(!(body.hasPrefix("::") || body.hasPrefix("##[")) || ours, "a line a runner executes: \(line)")
            }
            #expect(!output.contains("\u{1B}[2J") && !output.contains("\u{1B}]0;") && !output.contains("\u{07}"), "a terminal control passed: \(output)")
        }
        for file in ["c.md", "summary.md", "n.md"] {
            let md = try String(contentsOfFile: "\(dir)/\(file)", encoding: .utf8)
            #expect(!md.contains("<script>") && !md.contains("\u{1B}") && !md.contains("\n::"), "\(file): \(md)")
        }
        #expect(try String(contentsOfFile: "\(dir)/c.md", encoding: .utf8).contains("&lt;script&gt;"))
        #expect(try xmllintValidate("\(dir)/n.xml", schema: WorkflowTests.schema).status == 0)
    }

    @Test func reportPathsThatAreNotRegularFilesAreNeverReplaced() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let null = try prunecheck(["check", "--json", "/dev/null", "--junit", "/dev/null"], in: dir)
        #expect(null.status == 0, "\(null.stderr)")
        var info = stat()
        #expect(lstat("/dev/null", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR, "/dev/null is no longer a device")
        let full = try prunecheck(["check", "--json", "/dev/full"], in: dir)
        #expect(full.status == 2 && full.stderr.contains("error: /dev/full: cannot write: No space left on device"), "\(full.stderr)")
        #expect(lstat("/dev/full", &info) == 0 && (info.st_mode & S_IFMT) == S_IFCHR)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/link.json", withDestinationPath: "\(dir)/target.json")
        let link = try prunecheck(["check", "--json", "link.json"], in: dir)
        #expect(link.status == 2 && link.stderr.contains("link.json: is a symbolic link"), "\(link.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/target.json"))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "\(dir)/link.json")) == "\(dir)/target.json")
        // A report under a regular file: the system's words, not an NSError dump.
        let under = try prunecheck(["check", "--json", "prunecheck.yml/r.json"], in: dir)
        #expect(under.status == 2 && under.stderr.contains("error: prunecheck.yml/r.json: ") && !under.stderr.contains("Domain="), "\(under.stderr)")
    }

    @Test func baselinesWithImpossibleValuesOrRepeatedKeysAreErrors() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/baselines/digits-a.json"
        let good = try String(contentsOfFile: path, encoding: .utf8)
        let accuracy = try #require(good.range(of: #""accuracy": [0-9.e-]+"#, options: .regularExpression))
        for (value, phrase) in [("-5", "outside [0, 1]"), ("-1e400", "out of range"), ("1e400", "out of range"), ("1.5", "outside [0, 1]")] {
            try good.replacingCharacters(in: accuracy, with: "\"accuracy\": \(value)").write(toFile: path, atomically: true, encoding: .utf8)
            let r = try prunecheck(["check", "--json", "r.json"], in: dir)
            #expect(r.status == 3, "accuracy \(value): \(r.stdout)\(r.stderr)")
            #expect(r.stdout.contains("digits-a.json") && r.stdout.contains(phrase), "accuracy \(value): \(r.stdout)")
        }
        try good.replacingCharacters(in: accuracy, with: "\"accuracy\": 0.1, \"accuracy\": 0.9").write(toFile: path, atomically: true, encoding: .utf8)
        let twice = try prunecheck(["check"], in: dir)
        #expect(twice.status == 3 && twice.stdout.contains("appears twice"), "\(twice.stdout)")
    }

    @Test func baselineUpdateWritesAllOrNothingAndCleansStaleTemporaries() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // What a run killed in the middle of its writes leaves: a temporary of a dead process.
        let tmp = "\(dir)/baselines/.prunecheck-tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        try "*\n".write(toFile: "\(tmp)/.gitignore", atomically: true, encoding: .utf8)
        try "{".write(toFile: "\(tmp)/digits-a.json.999999999", atomically: true, encoding: .utf8)
        #expect(try git(["status", "--porcelain"], in: dir).isEmpty, "a stale temporary shows in git status")
        // One target that cannot be written (a folder where digits-b's baseline goes): nothing
        // changes, digits-a included.
        try WorkflowTests.config(sparsityA: "0.8", sparsityB: "0.8").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let before = try String(contentsOfFile: "\(dir)/baselines/digits-a.json", encoding: .utf8)
        try FileManager.default.moveItem(atPath: "\(dir)/baselines/digits-b.json", toPath: "\(dir)/b.json")
        try FileManager.default.createDirectory(atPath: "\(dir)/baselines/digits-b.json", withIntermediateDirectories: true)
        let blocked = try prunecheck(["baseline", "update"], in: dir)
        #expect(blocked.status == 2 && blocked.stderr.contains("digits-b.json: is a folder"), "\(blocked.stderr)")
        #expect(try String(contentsOfFile: "\(dir)/baselines/digits-a.json", encoding: .utf8) == before)
        try FileManager.default.removeItem(atPath: "\(dir)/baselines/digits-b.json")
        try FileManager.default.moveItem(atPath: "\(dir)/b.json", toPath: "\(dir)/baselines/digits-b.json")
        let update = try prunecheck(["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tmp), "the stale temporary and its folder are gone")
        #expect(try String(contentsOfFile: "\(dir)/baselines/digits-a.json", encoding: .utf8) != before)
    }

    @Test func aHugeOneLineCSVIsRefusedAtItsFirstMegabyte() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/wide.csv"
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        let chunk = Data(String(repeating: "1,", count: 1 << 19).utf8)
        for _ in 0..<24 { handle.write(chunk) }  // 24 MiB, no newline
        try handle.close()
        let start = Date()
        #expect(throws: ModelIOError.self) { _ = try CSV.read(path: path) }
        do { _ = try CSV.read(path: path) } catch { #expect("\(error)".contains("longer than"), "\(error)") }
        #expect(Date().timeIntervalSince(start) < 30)
        // A streamed file gives what the whole-text parser gives.
        try "a, b,label\r\n1,2.5,0\r\n3,4,1\n\n".write(toFile: "\(dir)/ok.csv", atomically: true, encoding: .utf8)
        let streamed = try CSV.read(path: "\(dir)/ok.csv")
        #expect(streamed.header == ["a", "b", "label"] && streamed.rowCount == 2)
        #expect(try streamed.column("label", file: "ok.csv").integers() == [Int64(0), 1])
        #expect(try streamed.features(excluding: "label", file: "ok.csv").floats() == [1, 2.5, 3, 4])
    }

    @Test func aGrowingGraphStopsAtTheCapWithExitTwo() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, width) in [("pad-grows", 4), ("expand-grows", 1)] {
            try NPZ.write(["x": NPYArray(floats: [Float](repeating: 1, count: width), shape: [1, width])], to: "\(dir)/d.npz")
            let r = try run(Repo.binary, ["infer", "--model", Repo.fixtures + "/malformed/\(name).onnx", "--data", "\(dir)/d.npz", "--out", "\(dir)/o.npz"])
            #expect(r.status == 2, "\(name): \(r.stderr)")
            #expect(r.stderr.contains("node 'grow'") && r.stderr.contains("PRUNECHECK_MAX_TENSOR_BYTES"), "\(name): \(r.stderr)")
        }
        // Many tensors, each under the per-tensor cap, alive at once: the total cap stops them.
        try NPZ.write(["x": NPYArray(floats: [1], shape: [1, 1])], to: "\(dir)/d.npz")
        let many = try run(Repo.binary, ["infer", "--model", Repo.fixtures + "/malformed/many-expands.onnx", "--data", "\(dir)/d.npz", "--out", "\(dir)/o.npz"],
                           environment: ProcessInfo.processInfo.environment.merging(["PRUNECHECK_MAX_TOTAL_BYTES": "150000000"]) { $1 })
        #expect(many.status == 2 && many.stderr.contains("values alive") && many.stderr.contains("PRUNECHECK_MAX_TOTAL_BYTES"), "\(many.stderr)")
        // The same models in a check: the load-time run stops them, with reports written.
        try FileManager.default.createDirectory(atPath: "\(dir)/examples", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Repo.fixtures + "/malformed/pad-grows.onnx", toPath: "\(dir)/pad.onnx")
        try NPZ.write(["x": NPYArray(floats: [Float](repeating: 1, count: 32), shape: [8, 4]),
                       "y": NPYArray(integers: [Int64](repeating: 0, count: 8), shape: [8])], to: "\(dir)/d.npz")
        try """
            version: 1
            models:
              - name: pad
                model: pad.onnx
                data: {file: d.npz, train: [x, y], eval: [x, y]}
                prune: {method: magnitude, sparsity: 0.5}
            """.write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let r = try run(Repo.binary, ["check", "--json", "r.json"], in: dir)
        #expect(r.status == 2 && r.stderr.contains("pad.onnx") && r.stderr.contains("PRUNECHECK_MAX_TENSOR_BYTES"), "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: "\(dir)/r.json"))
    }

    @Test func safetensorsWithOverlappingOrStrayBytesAreRefused() throws {
        func file(_ header: String, data: Int) -> [UInt8] {
            var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init)
            return bytes + Array(header.utf8) + [UInt8](repeating: 0, count: data)
        }
        let overlap = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12)
        #expect(throws: ModelIOError.self) { _ = try Safetensors.parse(overlap, file: "o.safetensors") }
        let stray = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 12)
        #expect(throws: ModelIOError.self) { _ = try Safetensors.parse(stray, file: "s.safetensors") }
        let twice = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 8)
        #expect(throws: ModelIOError.self) { _ = try Safetensors.parse(twice, file: "t.safetensors") }
        let fine = file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#, data: 12)
        #expect(try Safetensors.parse(fine, file: "f.safetensors").count == 2)
    }
}
