import Common
import Foundation
import Testing
import Checking
import ModelIO
import Regression

/// End to end: the built binary in a scratch git repository with the bundled examples.
@Suite(.serialized) struct CLITests {
    static let config = """
        version: 1
        baselines: baselines
        defaults:
          seed: 0
          threads: 2
          latency: {batch_sizes: [1, 8], warmup: 2, min_runs: 5, max_seconds: 0.2}
          tolerances: {accuracy: 0.005, f1_macro: 0.01, sparsity: 0, latency_p50: 5.0}
        models:
          - name: digits-global80
            model: examples/models/mlp_digits.safetensors
            architecture: examples/models/mlp_digits.json
            data:
              file: examples/data/digits.npz
              train: [x_train, y_train]
              eval: [x_test, y_test]
            prune:
              method: magnitude
              scope: global
              sparsity: 0.8
              finetune: {epochs: 2, batch_size: 32, lr: 0.05, momentum: 0.9}
        """

    /// A git repository holding the config and the digits example, committed.
    static func makeRepository() throws -> String {
        let dir = try scratchFolder("prunecheck-cli")
        let fm = FileManager.default
        try fm.createDirectory(atPath: "\(dir)/examples/models", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "\(dir)/examples/data", withIntermediateDirectories: true)
        for f in ["examples/models/mlp_digits.safetensors", "examples/models/mlp_digits.json", "examples/data/digits.npz"] {
            try fm.copyItem(atPath: Repo.path(f), toPath: "\(dir)/\(f)")
        }
        try config.write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        try git(["init", "-q"], in: dir)
        try git(["add", "-A"], in: dir)
        try git(["commit", "-qm", "examples"], in: dir)
        return dir
    }

    func prunecheck(_ args: [String], in dir: String) throws -> ProcessResult {
        try run(Repo.binary, args, in: dir)
    }

    @Test func checkRegressionAndBaselineUpdateCycle() throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // No baseline yet: exit 3 with the remedy, and the reports are still written.
        let missing = try prunecheck(["check", "--junit", "r.xml"], in: dir)
        #expect(missing.status == 3, "\(missing.stdout)\n\(missing.stderr)")
        #expect(missing.stdout.contains("baseline update"))

        let update = try prunecheck(["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stderr)")
        let head = try git(["rev-parse", "HEAD"], in: dir)
        let baselinePath = "\(dir)/baselines/digits-global80.json"
        let baseline = try Baseline.read(path: baselinePath)
        #expect(baseline.recorded.commit == head)
        #expect(baseline.recorded.branch == "main")
        #expect(baseline.recorded.dirty == false)
        #expect(abs(baseline.metrics["sparsity"]! - 0.8) <= 1.0 / 2368, "within one of the 2368 prunable weights")
        #expect(baseline.metrics.keys.contains("latency_p50@b8"))

        let pass = try prunecheck(["check", "--junit", "r.xml", "--json", "r.json"], in: dir)
        #expect(pass.status == 0, "\(pass.stdout)\n\(pass.stderr)")
        let valid = try xmllintValidate("\(dir)/r.xml", schema: "\(Repo.fixtures)/junit/xunit-plugin-junit-10.xsd")
        #expect(valid.status == 0, "\(valid.stderr)")
        // Same commit, same numbers: the deterministic metrics equal the baseline exactly.
        let report = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/r.json"))))
        guard case .array(let models)? = report["models"], case .array(let metrics)? = models.first?["metrics"] else {
            Issue.record("report has no metrics"); return
        }
        for m in metrics where !(m["name"]?.string?.hasPrefix("latency") ?? true) {
            #expect(m["current"] == m["baseline"], "\(m["name"]?.string ?? "?") changed between identical runs")
        }

        // Raise the accepted accuracy above what the model reaches: a regression, exit 1.
        var raised = baseline
        raised.metrics["accuracy"] = 0.999
        try raised.write(path: baselinePath)
        let fail = try prunecheck(["check", "--junit", "r.xml"], in: dir)
        #expect(fail.status == 1, "\(fail.stdout)\n\(fail.stderr)")
        let xml = try String(contentsOfFile: "\(dir)/r.xml", encoding: .utf8)
        #expect(xml.contains("<failure message=\"accuracy "), "\(xml)")
        #expect(xml.contains("&lt; baseline 0.9990 - tolerance 0.0050"))
        #expect(try xmllintValidate("\(dir)/r.xml", schema: "\(Repo.fixtures)/junit/xunit-plugin-junit-10.xsd").status == 0)

        // Accepting the change makes the check pass again.
        #expect(try prunecheck(["baseline", "update", "--only", "digits-global80"], in: dir).status == 0)
        #expect(try prunecheck(["check"], in: dir).status == 0)
    }

    @Test func badInputGivesExitTwoAndLeavesFilesAlone() throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try prunecheck(["baseline", "update"], in: dir).status == 0)
        let baselinePath = "\(dir)/baselines/digits-global80.json"
        let before = try Data(contentsOf: URL(fileURLWithPath: baselinePath))

        // Truncated model file.
        let model = "\(dir)/examples/models/mlp_digits.safetensors"
        let weights = try Data(contentsOf: URL(fileURLWithPath: model))
        try weights.prefix(weights.count - 100).write(to: URL(fileURLWithPath: model))
        let truncated = try prunecheck(["baseline", "update"], in: dir)
        #expect(truncated.status == 2)
        #expect(truncated.stderr.contains("mlp_digits.safetensors"), "\(truncated.stderr)")
        #expect(truncated.stderr.contains("truncated"), "\(truncated.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: baselinePath)) == before, "a failed update changed the baseline")
        try weights.write(to: URL(fileURLWithPath: model))

        // Broken YAML names the file and line.
        try "version: 1\nmodels:\n  - name: [oops\n".write(toFile: "\(dir)/bad.yml", atomically: true, encoding: .utf8)
        let yaml = try prunecheck(["check", "--config", "bad.yml"], in: dir)
        #expect(yaml.status == 2)
        #expect(yaml.stderr.contains("bad.yml:"), "\(yaml.stderr)")

        // Data that does not fit the model.
        let wrongData = Self.config.replacingOccurrences(of: "eval: [x_test, y_test]", with: "eval: [y_test, y_test]")
        try wrongData.write(toFile: "\(dir)/wrong.yml", atomically: true, encoding: .utf8)
        let shapes = try prunecheck(["check", "--config", "wrong.yml"], in: dir)
        #expect(shapes.status == 2)
        #expect(shapes.stderr.contains("digits.npz"), "\(shapes.stderr)")

        // Missing data file.
        let noData = Self.config.replacingOccurrences(of: "examples/data/digits.npz", with: "examples/data/gone.npz")
        try noData.write(toFile: "\(dir)/nodata.yml", atomically: true, encoding: .utf8)
        let gone = try prunecheck(["check", "--config", "nodata.yml"], in: dir)
        #expect(gone.status == 2)
        #expect(gone.stderr.contains("gone.npz"), "\(gone.stderr)")
        // It stops before any model runs, and the reports say where.
        let kept = try prunecheck(["check", "--config", "nodata.yml", "--junit", "stop.xml", "--json", "stop.json"], in: dir)
        #expect(kept.status == 2 && !kept.stderr.contains("[1/"), "\(kept.stderr)")
        let xml = try String(contentsOfFile: "\(dir)/stop.xml", encoding: .utf8)
        #expect(xml.contains("<error message=\"examples/data/gone.npz: no such file") && xml.contains("type=\"input\""), "\(xml)")
        #expect(try xmllintValidate("\(dir)/stop.xml", schema: "\(Repo.fixtures)/junit/xunit-plugin-junit-10.xsd").status == 0)
        #expect(try String(contentsOfFile: "\(dir)/stop.json", encoding: .utf8).contains("\"status\": \"error\""))

        // Corrupt baseline: exit 3.
        try "{ not json".write(toFile: baselinePath, atomically: true, encoding: .utf8)
        let corrupt = try prunecheck(["check"], in: dir)
        #expect(corrupt.status == 3)

        // Unknown option and unknown model: usage errors, exit 2.
        #expect(try prunecheck(["check", "--bogus"], in: dir).status == 2)
        #expect(try prunecheck(["check", "--only", "nope"], in: dir).status == 2)
        #expect(try prunecheck(["--help"], in: dir).status == 0)
    }

    @Test func runsOutsideGitAndRecordsNoCommit() throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.removeItem(atPath: "\(dir)/.git")
        let update = try prunecheck(["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stderr)")
        #expect(update.stderr.contains("not in a git repository"))
        #expect(try Baseline.read(path: "\(dir)/baselines/digits-global80.json").recorded.commit == nil)
        #expect(try prunecheck(["check"], in: dir).status == 0)
        // A named base outside git is an error; `auto` (a CI template run outside a checkout) a note.
        let base = try prunecheck(["check", "--base", "main"], in: dir)
        #expect(base.status == 2)
        #expect(base.stderr.contains("--base main: not in a git repository"), "\(base.stderr)")
        let auto = try WorkflowTests.prunecheck(["check", "--base", "auto"], in: dir, environment: ["GITHUB_BASE_REF": "main"])
        #expect(auto.status == 0)
        #expect(auto.stderr.contains("not a git repository; using the working tree's baselines"), "\(auto.stderr)")
        #expect(try prunecheck(["hook", "install"], in: dir).status == 2)
    }

    @Test func evalPrintsTheDenseModelsMetrics() throws {
        let r = try run(Repo.binary, ["eval", "--model", Repo.path("examples/models/mlp_digits.safetensors"),
                                      "--architecture", Repo.path("examples/models/mlp_digits.json"),
                                      "--data", Repo.path("examples/data/digits.npz"), "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(Array(r.stdout.utf8))
        #expect(json["metrics"]?["accuracy"]?.double == 0.975)  // PyTorch: 351/360
    }

    /// `infer` feeds int64 token ids and masks by their graph input names, writes every output
    /// under its own name, and refuses an array of the wrong type with exit 2 naming both.
    @Test func inferRunsATwoInputEncoderAndRefusesAWrongArray() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = Repo.path("Tests/PruneCheckTests/Fixtures/real-models/bert_tiny.onnx")
        let data = Repo.path("Tests/PruneCheckTests/Fixtures/real-models/bert_tiny.npz")
        let r = try run(Repo.binary, ["infer", "--model", model, "--data", data, "--batch-size", "3", "--out", "\(dir)/out.npz"])
        #expect(r.status == 0, "\(r.stderr)")
        let out = try NPZ.read(path: "\(dir)/out.npz")
        #expect(out["sentence_embedding"]?.shape == [4, 64])
        let reference = try NPZ.read(path: Repo.path("Tests/PruneCheckTests/Fixtures/real-models/bert_tiny.ref.npz"))
        #expect(maxAbsDiff(out["sentence_embedding"]!.floats(), reference["sentence_embedding"]!.floats()) <= 1e-3)

        var arrays = try NPZ.read(path: data)
        arrays["ids"] = NPYArray(floats: arrays["input_ids"]!.floats(), shape: arrays["input_ids"]!.shape)
        arrays["input_ids"] = nil
        try NPZ.write(arrays, to: "\(dir)/bad.npz")
        let missing = try run(Repo.binary, ["infer", "--model", model, "--data", "\(dir)/bad.npz", "--out", "\(dir)/x.npz"])
        #expect(missing.status == 2 && missing.stderr.contains("bad.npz") && missing.stderr.contains("'input_ids'"), "\(missing.stderr)")
        let wrong = try run(Repo.binary, ["infer", "--model", model, "--data", "\(dir)/bad.npz", "--input", "input_ids=ids", "--out", "\(dir)/x.npz"])
        #expect(wrong.status == 2 && wrong.stderr.contains("'ids'") && wrong.stderr.contains("float32") && wrong.stderr.contains("int64"),
                "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/x.npz"), "no output after an error")
    }

    /// `latency` times a two-input encoder from its arrays and a classifier's training step,
    /// reports the machine, and refuses what it cannot time with exit 2.
    @Test func latencyTimesAnyModelAndSaysWhereItRan() throws {
        let folder = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")
        let quick = ["--warmup", "1", "--min-runs", "5", "--max-seconds", "0.05", "--json"]
        let r = try run(Repo.binary, ["latency", "--model", "\(folder)/bert_tiny.onnx", "--data", "\(folder)/bert_tiny.npz",
                                      "--batch-sizes", "1,3"] + quick)
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(Array(r.stdout.utf8))
        guard case .array(let results)? = json["results"] else { Issue.record("no results: \(r.stdout)"); return }
        #expect(results.compactMap { $0["batch"]?.double } == [1, 3])
        #expect(results.allSatisfy { ($0["p50_us"]?.double ?? 0) > 0 && $0["mode"]?.string == "inference" })
        #expect(json["machine"]?["isa"]?.string?.isEmpty == false)

        let train = try run(Repo.binary, ["latency", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--train-step"] + quick)
        #expect(train.status == 0, "\(train.stderr)")
        #expect(train.stdout.contains("train_step"))

        let missing = try run(Repo.binary, ["latency", "--model", "\(folder)/bert_tiny.onnx", "--data", "\(folder)/bert_tiny.npz",
                                            "--input", "input_ids=tokens"])
        #expect(missing.status == 2 && missing.stderr.contains("tokens"), "\(missing.stderr)")
        let badSizes = try run(Repo.binary, ["latency", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--batch-sizes", "0"])
        #expect(badSizes.status == 2, "\(badSizes.stderr)")
    }

    /// With both streams on one pipe (every CI runner), the reports' paths on standard error
    /// never split a row of the table on standard output.
    @Test func notesNeverSplitTheTableInOneLog() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run("/bin/sh", ["-c", "'\(Repo.binary)' check --json \(dir)/r.json --junit \(dir)/r.xml 2>&1"],
                        in: Repo.root)
        #expect(r.status == 0, "\(r.stdout)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("JSON report:") } && lines.contains { $0.hasPrefix("JUnit report:") }, "\(r.stdout)")
        #expect(!lines.contains { $0.contains("report:") && !$0.hasPrefix("JSON report:") && !$0.hasPrefix("JUnit report:") }, "\(r.stdout)")
    }

    @Test func binaryLinksLibgit2AndLibxml2() throws {
        let r = try run("/usr/bin/env", ["ldd", Repo.binary])
        #expect(r.stdout.contains("libgit2"), "\(r.stdout)")
        #expect(r.stdout.contains("libxml2"), "\(r.stdout)")
    }
}

/// `prunecheck prune` and `inspect` on the bundled ONNX models.
@Suite struct PruneCommandTests {
    @Test func prunesFineTunesAndWritesONNX() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/p.onnx"
        let r = try run(Repo.binary, ["prune", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--data", Repo.path("examples/data/digits.npz"),
                                      "--granularity", "2:4", "--finetune-epochs", "2", "--out", out, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONValue.parse(Array(r.stdout.utf8))
        #expect(abs((json["sparsity"]?.double ?? 0) - 0.5) < 0.01)
        #expect((json["accuracy_finetuned"]?.double ?? 0) > 0.9)
        let back = try run(Repo.binary, ["inspect", out, "--json"])
        #expect(back.status == 0)
        guard case .array(let nodes)? = try JSONValue.parse(Array(back.stdout.utf8))["nodes"] else { Issue.record("no nodes"); return }
        #expect(nodes.compactMap { $0["op"]?.string } == ["Gemm", "Relu", "Gemm"])
        #expect(nodes.first?["sparsity"]?.double ?? 0 > 0.45)
    }

    @Test func badRequestsExitTwoAndWriteNothing() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = ["prune", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--data", Repo.path("examples/data/digits.npz")]
        for (extra, message) in [(["--sparsity", "1.5"], "outside [0, 1)"), (["--granularity", "4:2"], "N:M"),
                                 (["--sparsity", "0.5", "--method", "voodoo"], "magnitude")] {
            let r = try run(Repo.binary, base + extra + ["--out", dir + "/x.onnx"])
            #expect(r.status == 2 && r.stderr.contains(message), "\(extra): \(r.status) \(r.stderr)")
        }
        let corrupt = dir + "/corrupt.onnx"
        try Data([0x08, 0x07, 0xff, 0xff, 0x12]).write(to: URL(fileURLWithPath: corrupt))
        let r = try run(Repo.binary, ["prune", "--model", corrupt, "--data", Repo.path("examples/data/digits.npz"), "--sparsity", "0.5", "--out", dir + "/y.onnx"])
        #expect(r.status == 2 && r.stderr.contains("corrupt.onnx"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["corrupt.onnx"])
    }
}

/// The catalogue through the CLI: methods, schedules and their refusals.
@Suite struct PruneCatalogueCommandTests {
    let base = ["prune", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--data", Repo.path("examples/data/digits.npz")]

    @Test func calibrationMethodsAndStructuredLRPRunEndToEnd() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sgpt = try run(Repo.binary, base + ["--method", "sparsegpt", "--sparsity", "0.5", "--out", dir + "/s.onnx", "--json"])
        #expect(sgpt.status == 0, "\(sgpt.stderr)")
        let s = try JSONValue.parse(Array(sgpt.stdout.utf8))
        #expect(s["method"]?.string == "sparsegpt" && s["scope"]?.string == "layer")
        #expect(abs((s["sparsity"]?.double ?? 0) - 0.5) <= 1.0 / 2368)
        #expect((s["accuracy_finetuned"]?.double ?? 0) > 0.9, "SparseGPT at 50 % without fine-tuning: \(s["accuracy_finetuned"]?.double ?? 0)")
        let inspect = try run(Repo.binary, ["inspect", dir + "/s.onnx", "--json"])
        #expect(inspect.status == 0)
        let lrp = try run(Repo.binary, base + ["--method", "lrp", "--granularity", "neuron", "--sparsity", "0.5", "--finetune-epochs", "1",
                                               "--schedule", "iterative:2", "--out", dir + "/l.onnx", "--json"])
        #expect(lrp.status == 0, "\(lrp.stderr)")
        let l = try JSONValue.parse(Array(lrp.stdout.utf8))
        #expect((l["params_after"]?.double ?? 0) < 0.6 * (l["params_before"]?.double ?? 0))
    }

    @Test func impossibleRecipesExitTwoNamingTheOption() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (extra, message) in [(["--method", "lrp", "--sparsity", "0.5"], "--granularity: lrp ranks units"),
                                 (["--method", "auto", "--sparsity", "0.9"], "--max-latency-p50-us"),
                                 (["--method", "energy", "--sparsity", "0.9", "--max-latency-p50-us", "30"], "for auto"),
                                 (["--method", "auto", "--sparsity", "0.9", "--latency-batch-size", "8"], "--max-latency-p50-us"),
                                 // No model runs in a nanosecond: out of reach (found after the sensitivity scan).
                                 (["--method", "auto", "--sparsity", "0.9", "--max-latency-p50-us", "0.001"], "prune.budget.max_latency_p50_us"),
                                 (["--method", "snip", "--sparsity", "0.9"], "--finetune"),
                                 (["--sparsity", "0.5", "--schedule", "sometimes"], "--schedule"),
                                 (["--sparsity", "0.5", "--distill", "4"], "--distill"),
                                 (["--sparsity", "0.5", "--initializer", "zeros"], "kaiming_uniform"),
                                 (["--sparsity", "0.5", "--schedule", "gradual:5:1.5"], "--schedule"),
                                 (["--sparsity", "0.5", "--norm", "l3"], "--norm"),
                                 (["--method", "sparsegpt", "--sparsity", "0.5", "--damping", "0"], "--damping"),
                                 (["--sparsity", "0.5", "--teacher", "t.onnx"], "--distill"),
                                 (["--sparsity", "0.5", "--finetune-epochs", "1", "--distill", "4,0.5", "--teacher", "t.safetensors"],
                                  "--teacher-architecture")] {
            let r = try run(Repo.binary, base + extra + ["--out", dir + "/x.onnx"])
            #expect(r.status == 2 && r.stderr.contains(message), "\(extra): \(r.status) \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }
}

/// The settings the config has and the CLI now takes too reach the pipeline: the same command
/// writes the same bytes, a different teacher, norm, dampening or schedule end writes others.
@Suite struct PruneOptionTests {
    let base = ["prune", "--model", Repo.path("examples/models/mlp_digits.onnx"), "--data", Repo.path("examples/data/digits.npz")]

    @Test func eachNewOptionChangesTheResult() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func bytes(_ extra: [String], _ name: String) throws -> Data {
            let r = try run(Repo.binary, base + extra + ["--out", "\(dir)/\(name).onnx"])
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            return try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name).onnx"))
        }
        // A 90 %-pruned copy of the model as a second teacher.
        let teacher = try run(Repo.binary, base + ["--sparsity", "0.9", "--out", dir + "/teacher.onnx"])
        #expect(teacher.status == 0, "\(teacher.stderr)")
        let distill = ["--sparsity", "0.5", "--finetune-epochs", "1", "--distill", "2,0.5"]
        let dense = try bytes(distill, "a"), again = try bytes(distill, "b")
        #expect(dense == again)
        #expect(try bytes(distill + ["--teacher", dir + "/teacher.onnx"], "c") != dense)

        let units = ["--granularity", "neuron", "--sparsity", "0.5"]
        #expect(try bytes(units + ["--norm", "l1"], "d") != (try bytes(units + ["--norm", "l2"], "e")))

        let sgpt = ["--method", "sparsegpt", "--sparsity", "0.5"]
        #expect(try bytes(sgpt + ["--damping", "0.5"], "f") != (try bytes(sgpt, "g")))
        // Taylor scores sum gradients batch by batch (SparseGPT's Hessian is the same sum
        // whatever the batching, so it would not show the option).
        let taylor = ["--method", "taylor", "--sparsity", "0.5", "--calibration-samples", "50"]
        #expect(try bytes(taylor + ["--calibration-batch-size", "7"], "h") != (try bytes(taylor, "i")))

        let gradual = ["--sparsity", "0.8", "--finetune-epochs", "1", "--schedule"]
        #expect(try bytes(gradual + ["gradual:2:0:0.3"], "j") != (try bytes(gradual + ["gradual:2"], "k")))
    }
}

/// A distillation teacher file is an input like the model: changing it re-runs the model.
@Suite(.serialized) struct TeacherFileTests {
    @Test func aChangedTeacherMakesTheModelRunAgain() throws {
        let dir = try CLITests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: Repo.path("examples/models/mlp_digits.onnx"), toPath: dir + "/examples/models/teacher.onnx")
        let config = CLITests.config.replacingOccurrences(
            of: "finetune: {epochs: 2, batch_size: 32, lr: 0.05, momentum: 0.9}",
            with: "finetune: {epochs: 2, batch_size: 32, lr: 0.05, momentum: 0.9}\n      distill: {temperature: 2, alpha: 0.5, teacher: examples/models/teacher.onnx}")
        try config.write(toFile: dir + "/prunecheck.yml", atomically: true, encoding: .utf8)
        let update = try run(Repo.binary, ["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stderr)")
        try git(["add", "-A"], in: dir)
        try git(["commit", "-qm", "teacher"], in: dir)
        let same = try run(Repo.binary, ["check", "--changed-only"], in: dir)
        #expect(same.status == 0 && same.stdout.contains("unchanged"), "\(same.stdout)\n\(same.stderr)")
        // A different teacher: the same architecture with 90 % of its weights pruned.
        let pruned = try run(Repo.binary, ["prune", "--model", dir + "/examples/models/teacher.onnx", "--data", dir + "/examples/data/digits.npz",
                                           "--sparsity", "0.9", "--out", dir + "/examples/models/teacher.onnx"])
        #expect(pruned.status == 0, "\(pruned.stderr)")
        let changed = try run(Repo.binary, ["check", "--changed-only"], in: dir)
        #expect((changed.stdout + changed.stderr).contains("teacher.onnx changed"), "\(changed.stdout)\n\(changed.stderr)")
    }
}

@Suite(.serialized) struct CheckExportTests {
    /// `check --export-onnx DIR` writes each pruned model; the file loads with the pruned zeros.
    @Test func checkWritesThePrunedModels() throws {
        let dir = try CLITests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try run(Repo.binary, ["check", "--export-onnx", "exported"], in: dir)
        #expect(FileManager.default.fileExists(atPath: dir + "/exported/digits-global80.onnx"), "\(r.stderr)")
        let inspect = try run(Repo.binary, ["inspect", dir + "/exported/digits-global80.onnx", "--json"])
        #expect(inspect.status == 0)
        let json = try JSONValue.parse(Array(inspect.stdout.utf8))
        let total = json["params_total"]?.double ?? 0, nonzero = json["params_nonzero"]?.double ?? 0
        #expect(total == 2410 && nonzero < 0.3 * total, "\(total) \(nonzero)")
    }
}
