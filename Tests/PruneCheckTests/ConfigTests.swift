import Testing
@testable import Configuration
@testable import Regression
import Pruning

@Suite struct ConfigTests {
    static let valid = """
        version: 1
        baselines: base
        defaults:
          seed: 4
          threads: 2
          latency: {batch_sizes: [1, 64], warmup: 3, min_runs: 5, max_seconds: 0.5}
          tolerances: {accuracy: 0.005, f1_macro: 0.01, latency_p50: 0.25}
        models:
          - name: m1
            model: models/m.safetensors
            architecture: models/m.json
            data:
              file: data/d.npz
              train: [x_train, y_train]
              eval: [x_test, y_test]
              scale: 0.5
            prune:
              method: magnitude
              scope: layer
              granularity: unstructured
              sparsity: 0.9
              finetune: {epochs: 3, batch_size: 64, optimizer: sgd, lr: 0.01, momentum: 0.9}
            tolerances: {accuracy: 0.02}
        """

    @Test func parsesTheDocumentedExample() throws {
        let c = try CheckConfig.parse(Self.valid, file: "/repo/prunecheck.yml")
        #expect(c.baselines == "/repo/base")
        #expect(c.baselinePath(for: "m1") == "/repo/base/m1.json")
        let m = c.models[0]
        #expect(m.model == "/repo/models/m.safetensors" && m.architecture == "/repo/models/m.json")
        #expect(m.data.file == "/repo/data/d.npz" && m.data.scale == 0.5 && m.data.eval.labels == "y_test")
        #expect(m.seed == 4 && m.threads == 2)
        #expect(m.latency.batchSizes == [1, 64] && m.latency.maxSeconds == 0.5)
        #expect(m.recipe.scope == .layer && m.recipe.sparsity == 0.9 && m.recipe.finetune?.epochs == 3)
        #expect(m.tolerances.tolerance(for: "accuracy") == 0.02)
        #expect(m.tolerances.tolerance(for: "latency_p50@b64") == 0.25)
        #expect(m.tolerances.tolerance(for: "latency_p90@b1") == nil)
    }

    func error(_ text: String) -> ConfigError? {
        #expect(throws: ConfigError.self) { try CheckConfig.parse(text, file: "p.yml") }
    }

    @Test func unknownKeyNamesLineAndKey() {
        let e = error(Self.valid.replacingOccurrences(of: "      sparsity: 0.9", with: "      sparsty: 0.9"))
        #expect(e?.line == 21)
        #expect(e?.key == "models[0].prune.sparsty")
        #expect(e?.description.hasPrefix("p.yml:21: models[0].prune.sparsty: unknown key") == true)
    }

    @Test func wrongTypesAndValuesAreErrors() {
        let e1 = error(Self.valid.replacingOccurrences(of: "epochs: 3", with: "epochs: three"))
        #expect(e1?.key == "models[0].prune.finetune.epochs")
        let e2 = error(Self.valid.replacingOccurrences(of: "sparsity: 0.9", with: "sparsity: 1.0"))
        #expect(e2?.problem.contains("outside [0, 1)") == true)
        let e3 = error(Self.valid.replacingOccurrences(of: "method: magnitude", with: "method: voodoo"))
        #expect(e3?.problem.contains("expected one of: magnitude") == true)
        let e4 = error(Self.valid.replacingOccurrences(of: "tolerances: {accuracy: 0.02}", with: "tolerances: {acuracy: 0.02}"))
        #expect(e4?.key == "models[0].tolerances.acuracy")
        let e5 = error(Self.valid.replacingOccurrences(of: "version: 1", with: "version: 2"))
        #expect(e5?.line == 1)
    }

    @Test func brokenYAMLReportsItsLine() {
        let e = error("version: 1\nmodels:\n  - name: [unclosed\n")
        #expect(e?.line != nil)
        #expect(e?.problem.hasPrefix("invalid YAML") == true)
    }

    @Test func missingPiecesAreNamed() {
        #expect(error("models: []\n")?.key == "version")
        #expect(error("version: 1\n")?.key == "models")
        let noArch = Self.valid.replacingOccurrences(of: "    architecture: models/m.json\n", with: "")
        #expect(error(noArch)?.key == "models[0].architecture")
        let twice = Self.valid + "\n" + Self.valid.components(separatedBy: "models:\n")[1]
        #expect(error(twice)?.problem.contains("unique") == true)
    }
}

@Suite struct RecipeConfigTests {
    func parse(_ text: String) throws -> CheckConfig { try CheckConfig.parse(text, file: "p.yml") }

    @Test func finetuneOptimizersAndSchedules() throws {
        let text = ConfigTests.valid.replacingOccurrences(
            of: "finetune: {epochs: 3, batch_size: 64, optimizer: sgd, lr: 0.01, momentum: 0.9}",
            with: "finetune: {epochs: 3, optimizer: adamw, lr: 0.001, weight_decay: 0.01, label_smoothing: 0.1, lr_schedule: {kind: multistep, milestones: [1, 2], gamma: 0.5}}")
        let f = try parse(text).models[0].recipe.finetune!
        #expect(f.optimizer == .adamw && f.weightDecay == 0.01 && f.labelSmoothing == 0.1)
        #expect(f.schedule == .multistep && f.milestones == [1, 2] && f.gamma == 0.5)
        let short = ConfigTests.valid.replacingOccurrences(of: "momentum: 0.9}", with: "momentum: 0.9, nesterov: true, lr_schedule: cosine}")
        let g = try parse(short).models[0].recipe.finetune!
        #expect(g.nesterov && g.schedule == .cosine)
        // The recipe text of a plain SGD recipe is what it was before these keys existed.
        #expect(try parse(ConfigTests.valid).models[0].recipe.canonicalDescription
                == "method=magnitude;scope=layer;granularity=unstructured;sparsity=0.9;finetune(epochs=3;batch_size=64;optimizer=sgd;lr=0.01;momentum=0.9)")
    }

    @Test func nmGranularity() throws {
        let nm = ConfigTests.valid.replacingOccurrences(of: "granularity: unstructured", with: "granularity: \"2:4\"")
            .replacingOccurrences(of: "sparsity: 0.9", with: "sparsity: 0.5")
        let r = try parse(nm).models[0].recipe
        #expect(r.granularity == .nm(n: 2, m: 4) && r.sparsity == 0.5)
        for bad in ["\"4:4\"", "\"0:4\"", "\"2:x\"", "channelish"] {
            let text = ConfigTests.valid.replacingOccurrences(of: "granularity: unstructured", with: "granularity: \(bad)")
            #expect(throws: ConfigError.self) { try parse(text) }
            do { _ = try parse(text) } catch let e as ConfigError {
                #expect(e.key == "models[0].prune.granularity" && e.problem.contains("N:M"), "\(e)")
            }
        }
        let contradicting = ConfigTests.valid.replacingOccurrences(of: "granularity: unstructured", with: "granularity: \"2:4\"")
        do { _ = try parse(contradicting); Issue.record("sparsity 0.9 with 2:4 accepted") } catch let e as ConfigError {
            #expect(e.key == "models[0].prune.sparsity")
        }
        let badSchedule = ConfigTests.valid.replacingOccurrences(of: "momentum: 0.9}", with: "momentum: 0.9, lr_schedule: sometimes}")
        #expect(throws: ConfigError.self) { try parse(badSchedule) }
    }
}

@Suite struct CatalogueConfigTests {
    /// The valid example with its `prune:` block replaced.
    static func withPrune(_ block: String) -> String {
        let lines = ConfigTests.valid.components(separatedBy: "\n")
        let start = lines.firstIndex { $0.hasPrefix("    prune:") }!
        let end = lines.firstIndex { $0.hasPrefix("    tolerances:") }!
        return (Array(lines[..<start]) + ["    prune:"] + block.split(separator: "\n").map { "      " + $0 } + Array(lines[end...])).joined(separator: "\n")
    }

    func error(_ block: String) -> ConfigError? {
        #expect(throws: ConfigError.self) { try CheckConfig.parse(Self.withPrune(block), file: "p.yml") }
    }

    @Test func everyNewKeyParses() throws {
        let text = Self.withPrune("""
            method: sparsegpt
            sparsity: 0.8
            calibration: {samples: 256, batch_size: 64}
            damping: 0.05
            schedule: {kind: iterative, steps: 4}
            regularize: {group_lasso: 0.001, epochs: 2}
            distill: {temperature: 3, alpha: 0.7, teacher: models/t.onnx}
            finetune: {epochs: 4}
            """)
        let r = try CheckConfig.parse(text, file: "/repo/p.yml").models[0].recipe
        #expect(r.method == .sparsegpt && r.scope == .layer)   // layer-wise by default
        #expect(r.calibration == .init(samples: 256, batchSize: 64) && r.damping == 0.05)
        #expect(r.schedule == .iterative(steps: 4))
        #expect(r.regularize == .init(kind: .groupLasso, lambda: 0.001, epochs: 2))
        #expect(r.distill == .init(temperature: 3, alpha: 0.7, teacher: "/repo/models/t.onnx"))
        #expect(r.canonicalDescription.contains("schedule=iterative(steps=4)") && r.canonicalDescription.contains("distill=T3.0,alpha=0.7,teacher=t.onnx"))
        let g = try CheckConfig.parse(Self.withPrune("method: magnitude\nsparsity: 0.9\nschedule: {kind: gradual, frequency: 50, end: 0.5}\nfinetune: {epochs: 2}"),
                                      file: "p.yml").models[0].recipe
        #expect(g.schedule == .gradual(frequency: 50, initial: 0, end: 0.5))
        let a = try CheckConfig.parse(Self.withPrune("method: auto\nsparsity: 0.95\nbudget: {max_accuracy_drop: 0.01}"), file: "p.yml").models[0].recipe
        #expect(a.budget == .init(maxAccuracyDrop: 0.01) && a.calibration.samples == 512)
        let t = try CheckConfig.parse(Self.withPrune("method: auto\nsparsity: 0.95\nbudget: {max_latency_p50_us: 40, batch_size: 8}"), file: "p.yml").models[0].recipe
        #expect(t.budget == .init(maxLatencyP50: 40, latencyBatchSize: 8))
        #expect(t.canonicalDescription.hasSuffix(";budget=max_latency_p50_us:40.0,batch_size:8"))
        #expect(a.canonicalDescription.hasSuffix(";budget=max_accuracy_drop:0.01"))   // as recorded before latency budgets
        let s = try CheckConfig.parse(Self.withPrune("method: snip\nsparsity: 0.95\ninit: kaiming_normal\nfinetune: {epochs: 20}"), file: "p.yml").models[0].recipe
        #expect(s.initializer == .kaimingNormal && s.calibration.samples == 1000 && s.calibration.batchSize == 100)
        #expect(s.canonicalDescription.contains(";calibration=1000x100"))
        let l = try CheckConfig.parse(Self.withPrune("method: taylor\ngranularity: layer\nsparsity: 0.5\nfinetune: {epochs: 1}"), file: "p.yml").models[0].recipe
        #expect(l.granularity == .layer && l.method == .taylor)
    }

    /// The recipe hash of a plain magnitude recipe is what it was before the catalogue grew,
    /// so recorded baselines keep matching.
    @Test func existingRecipeHashesStay() {
        let r = PruneRecipe(method: .magnitude, scope: .global, granularity: .unstructured, sparsity: 0.9,
                            finetune: FineTuneSettings(epochs: 3, batchSize: 64, optimizer: .sgd, learningRate: 0.01, momentum: 0.9))
        #expect(r.canonicalDescription == "method=magnitude;scope=global;granularity=unstructured;sparsity=0.9;finetune(epochs=3;batch_size=64;optimizer=sgd;lr=0.01;momentum=0.9)")
    }

    @Test func impossibleCombinationsNameTheKey() {
        #expect(error("method: lrp\nsparsity: 0.5")?.key == "models[0].prune.granularity")
        #expect(error("method: obd\ngranularity: layer\nsparsity: 0.5")?.problem.contains("magnitude, random or taylor") == true)
        #expect(error("method: wanda\ngranularity: neuron\nsparsity: 0.5")?.problem.contains("single weights") == true)
        #expect(error("method: auto\nsparsity: 0.9")?.key == "models[0].prune.budget")
        #expect(error("method: magnitude\nsparsity: 0.9\nbudget: {max_accuracy_drop: 0.01}")?.key == "models[0].prune.budget")
        #expect(error("method: auto\nsparsity: 0.9\nbudget: {}")?.problem.contains("max_latency_p50_us") == true)
        #expect(error("method: auto\nsparsity: 0.9\nbudget: {max_latency_p50_us: 0}")?.key == "models[0].prune.budget.max_latency_p50_us")
        #expect(error("method: auto\nsparsity: 0.9\nbudget: {max_accuracy_drop: 0.01, batch_size: 8}")?.key == "models[0].prune.budget.batch_size")
        #expect(error("method: energy\nsparsity: 0.9\nbudget: {max_latency_p50_us: 40}")?.problem.contains("for auto") == true)
        #expect(error("method: auto\nsparsity: 0.9\nbudget: {max_latency: 40}")?.problem.contains("max_latency_p50_us") == true)
        #expect(error("method: snip\nsparsity: 0.9")?.key == "models[0].prune.finetune")
        #expect(error("method: obs\nsparsity: 0.9\nschedule: {kind: gradual}\nfinetune: {epochs: 1}")?.key == "models[0].prune.schedule")
        #expect(error("method: magnitude\ngranularity: \"2:4\"\nschedule: {kind: iterative, steps: 2}")?.key == "models[0].prune.schedule")
        #expect(error("method: magnitude\nsparsity: 0.9\nschedule: {kind: gradual, steps: 3}\nfinetune: {epochs: 1}")?.key == "models[0].prune.schedule.steps")
        #expect(error("method: magnitude\nsparsity: 0.9\nschedule: sometimes")?.problem.contains("oneshot, iterative, gradual") == true)
        #expect(error("method: magnitude\nsparsity: 0.9\nregularize: {l1: 0.1, group_lasso: 0.1}")?.key == "models[0].prune.regularize")
        #expect(error("method: magnitude\nsparsity: 0.9\ndistill: {alpha: 2}\nfinetune: {epochs: 1}")?.key == "models[0].prune.distill.alpha")
        #expect(error("method: magnitude\nsparsity: 0.9\ndistill: {teacher: t.safetensors}\nfinetune: {epochs: 1}")?.key == "models[0].prune.distill.teacher_architecture")
        #expect(error("method: magnitude\nsparsity: 0.9\ndistill: {temperature: 2}")?.key == "models[0].prune.distill")
        #expect(error("method: magnitude\nsparsity: 0.9\ninit: zeros")?.problem.contains("kaiming_uniform") == true)
        #expect(error("method: magnitude\ngranularity: \"4:2\"")?.problem.contains("0 < N < M") == true)
        #expect(error("method: magnitude\nsparsity: -0.1")?.problem.contains("outside [0, 1)") == true)
    }
}
