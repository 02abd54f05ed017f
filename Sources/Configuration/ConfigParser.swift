import Evaluation
import Foundation
import ModelIO
import Pruning
import Regression
import enum TensorEngine.Initializer
import Yams

extension CheckConfig {
    /// Reads and validates `path`. Every error names the file, the line and the key.
    public static func load(path: String) throws -> CheckConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: nil, key: nil,
                              FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file; create one (see README, \"Configuration\")")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: nil, key: nil, "is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    /// Parses config text; relative paths resolve against `file`'s folder.
    public static func parse(_ text: String, file: String) throws -> CheckConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw ConfigError(file: file, line: yamlErrorLine(e), key: nil, "invalid YAML: \(yamlErrorSummary(e))")
        } catch {
            throw ConfigError(file: file, line: nil, key: nil, "invalid YAML: \(error)")
        }
        guard let root else { throw ConfigError(file: file, line: nil, key: nil, "is empty; it needs at least 'version: 1' and 'models'") }
        let p = Parser(file: file)
        let top = try p.mapping(root, "", allowed: ["version", "baselines", "defaults", "models"])
        guard let versionNode = top["version"] else {
            throw ConfigError(file: file, line: root.mark?.line, key: "version", "is missing; add 'version: 1'")
        }
        let version = try p.int(versionNode, "version")
        guard version == 1 else { throw p.error(versionNode, "version", "version \(version) is not supported (this PruneCheck reads version 1)") }
        let folder = (file as NSString).deletingLastPathComponent
        func resolve(_ path: String) -> String {
            path.hasPrefix("/") ? path : ((folder.isEmpty ? "." : folder) as NSString).appendingPathComponent(path)
        }
        let baselines = try top["baselines"].map { try p.string($0, "baselines") } ?? "baselines"

        var defaults = Defaults()
        if let d = top["defaults"] { defaults = try p.defaults(d, "defaults", base: defaults) }

        guard let modelsNode = top["models"] else {
            throw ConfigError(file: file, line: root.mark?.line, key: "models", "is missing; list at least one model")
        }
        let items = try p.sequence(modelsNode, "models")
        guard !items.isEmpty else { throw p.error(modelsNode, "models", "is empty; list at least one model") }
        var models: [ModelSpec] = []
        var names: Set<String> = []
        for (i, item) in items.enumerated() {
            let spec = try p.model(item, "models[\(i)]", defaults: defaults, resolve: resolve)
            guard names.insert(spec.name).inserted else {
                throw p.error(item, "models[\(i)].name", "'\(spec.name)' is used by an earlier model; names must be unique")
            }
            models.append(spec)
        }
        return CheckConfig(file: file, baselines: resolve(baselines), models: models)
    }

    static func yamlErrorLine(_ e: YamlError) -> Int? {
        switch e {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): return mark.line
        default: return nil
        }
    }

    static func yamlErrorSummary(_ e: YamlError) -> String {
        switch e {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): return problem
        default: return "\(e)"
        }
    }
}

/// Settings that `defaults:` gives every model.
struct Defaults {
    var seed: UInt64 = 0
    var threads = 1
    var latency = LatencySettings()
    var tolerances = Tolerances()
    var latencyGate = LatencyGate.paired
}

/// Typed access to YAML nodes with errors that carry file, line and key.
struct Parser {
    let file: String

    func error(_ node: Node, _ key: String, _ problem: String) -> ConfigError {
        ConfigError(file: file, line: node.mark?.line, key: key.isEmpty ? nil : key, problem)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func join(_ key: String, _ sub: String) -> String { key.isEmpty ? sub : "\(key).\(sub)" }

    /// A path from the config: `~/` is the home folder, a relative path the config's folder's.
    func resolvePath(_ path: String) -> String {
        if path.hasPrefix("~/") { return (NSHomeDirectory() as NSString).appendingPathComponent(String(path.dropFirst(2))) }
        if path.hasPrefix("/") { return path }
        let folder = (file as NSString).deletingLastPathComponent
        return ((folder.isEmpty ? "." : folder) as NSString).appendingPathComponent(path)
    }

    /// A mapping's values by key; an unknown or repeated key is an error naming what is allowed.
    func mapping(_ node: Node, _ key: String, allowed: [String]) throws -> [String: Node] {
        guard case .mapping(let m) = node else { throw error(node, key, "expected a mapping, found \(describe(node))") }
        var out: [String: Node] = [:]
        for (k, v) in m {
            guard case .scalar(let ks) = k else { throw error(k, key, "keys must be plain names") }
            guard allowed.contains(ks.string) else {
                throw error(k, join(key, ks.string), "unknown key; allowed here: \(allowed.joined(separator: ", "))")
            }
            guard out[ks.string] == nil else { throw error(k, join(key, ks.string), "appears twice") }
            out[ks.string] = v
        }
        return out
    }

    func sequence(_ node: Node, _ key: String) throws -> [Node] {
        guard case .sequence(let s) = node else { throw error(node, key, "expected a list, found \(describe(node))") }
        return Array(s)
    }

    func string(_ node: Node, _ key: String) throws -> String {
        guard case .scalar(let s) = node, !s.string.isEmpty else { throw error(node, key, "expected a string, found \(describe(node))") }
        return s.string
    }

    func int(_ node: Node, _ key: String, min: Int? = nil) throws -> Int {
        guard case .scalar(let s) = node, let v = Int(s.string) else { throw error(node, key, "expected an integer, found \(describe(node))") }
        if let min, v < min { throw error(node, key, "must be at least \(min), found \(v)") }
        return v
    }

    func bool(_ node: Node, _ key: String) throws -> Bool {
        guard case .scalar(let s) = node, let v = ["true": true, "false": false][s.string] else {
            throw error(node, key, "expected true or false, found \(describe(node))")
        }
        return v
    }

    func double(_ node: Node, _ key: String) throws -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string), v.isFinite else {
            throw error(node, key, "expected a number, found \(describe(node))")
        }
        return v
    }

    func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, _: E.Type) throws -> E where E.RawValue == String {
        let s = try string(node, key)
        guard let v = E(rawValue: s) else {
            throw error(node, key, "'\(s)' is not allowed; expected one of: \(E.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return v
    }

    func defaults(_ node: Node, _ key: String, base: Defaults) throws -> Defaults {
        let m = try mapping(node, key, allowed: ["seed", "threads", "latency", "latency_gate", "tolerances"])
        var d = base
        if let n = m["latency_gate"] { d.latencyGate = try choice(n, join(key, "latency_gate"), LatencyGate.self) }
        if let n = m["seed"] { d.seed = UInt64(try int(n, join(key, "seed"), min: 0)) }
        if let n = m["threads"] { d.threads = try int(n, join(key, "threads"), min: 1) }
        if let n = m["latency"] { d.latency = try latency(n, join(key, "latency"), base: d.latency) }
        if let n = m["tolerances"] { d.tolerances = d.tolerances.merging(try tolerances(n, join(key, "tolerances"))) }
        return d
    }

    func latency(_ node: Node, _ key: String, base: LatencySettings) throws -> LatencySettings {
        let m = try mapping(node, key, allowed: ["batch_sizes", "warmup", "min_runs", "max_seconds", "noise_floor_us", "target", "targets",
                                                 "identity_file", "known_hosts", "remote_command", "target_timeout_s", "on_unreachable"])
        var l = base
        if let n = m["batch_sizes"] {
            let k = join(key, "batch_sizes")
            l.batchSizes = try sequence(n, k).enumerated().map { try int($1, "\(k)[\($0)]", min: 1) }
            guard !l.batchSizes.isEmpty else { throw error(n, k, "list at least one batch size") }
            guard Set(l.batchSizes).count == l.batchSizes.count else { throw error(n, k, "has a batch size twice") }
        }
        if let n = m["warmup"] { l.warmup = try int(n, join(key, "warmup"), min: 0) }
        if let n = m["min_runs"] { l.minRuns = try int(n, join(key, "min_runs"), min: 1) }
        if let n = m["max_seconds"] {
            l.maxSeconds = try double(n, join(key, "max_seconds"))
            guard l.maxSeconds > 0 else { throw error(n, join(key, "max_seconds"), "must be positive") }
        }
        if let n = m["noise_floor_us"] {
            l.noiseFloorMicroseconds = try double(n, join(key, "noise_floor_us"))
            guard l.noiseFloorMicroseconds >= 0 else { throw error(n, join(key, "noise_floor_us"), "cannot be negative") }
        }
        let form = "local or ssh://user@host[:port]"
        if let n = m["target"] {
            guard m["targets"] == nil else { throw error(n, join(key, "target"), "give target or targets, not both") }
            let text = try string(n, join(key, "target"))
            guard let t = LatencyTarget.parse(text) else { throw error(n, join(key, "target"), "'\(text)' is not \(form)") }
            l.targets = t.isLocal ? [] : [t]
        }
        if let n = m["targets"] {
            let k = join(key, "targets")
            guard case .mapping(let pairs) = n, !pairs.isEmpty else { throw error(n, k, "expected a mapping of name: \(form)") }
            l.targets = try pairs.map { name, value in
                let label = try string(name, k)
                guard !label.isEmpty, label.allSatisfy({ $0.isLetter || $0.isNumber || "_-".contains($0) }) else {
                    throw error(name, join(k, label), "a target name uses only letters, digits, '_' and '-' (it names metrics: latency_p50@b1[\(label)])")
                }
                let text = try string(value, join(k, label))
                guard let t = LatencyTarget.parse(text, name: label) else { throw error(value, join(k, label), "'\(text)' is not \(form)") }
                return t
            }.sorted { $0.name! < $1.name! }
        }
        if let n = m["identity_file"] { l.remote.identityFile = resolvePath(try string(n, join(key, "identity_file"))) }
        if let n = m["known_hosts"] { l.remote.knownHosts = resolvePath(try string(n, join(key, "known_hosts"))) }
        if let n = m["remote_command"] {
            let c = try string(n, join(key, "remote_command"))
            guard !c.isEmpty, !c.hasPrefix("-") else { throw error(n, join(key, "remote_command"), "name the device's prunecheck (a command or path)") }
            l.remote.remoteCommand = c
        }
        if let n = m["target_timeout_s"] {
            l.remote.timeoutSeconds = try double(n, join(key, "target_timeout_s"))
            guard l.remote.timeoutSeconds > 0 else { throw error(n, join(key, "target_timeout_s"), "must be positive") }
        }
        if let n = m["on_unreachable"] {
            let v = try string(n, join(key, "on_unreachable"))
            guard ["error", "skip"].contains(v) else { throw error(n, join(key, "on_unreachable"), "'\(v)' is not error or skip") }
            l.remote.skipUnreachable = v == "skip"
        }
        return l
    }

    func tolerances(_ node: Node, _ key: String) throws -> Tolerances {
        guard case .mapping(let m) = node else { throw error(node, key, "expected a mapping of metric: tolerance, found \(describe(node))") }
        var out: [String: Double] = [:]
        for (k, v) in m {
            let name = try string(k, key)
            guard MetricNames.isKnown(name) else {
                throw error(k, join(key, name), "unknown metric; known: \(MetricNames.knownDescription)")
            }
            let t = try double(v, join(key, name))
            guard t >= 0 else { throw error(v, join(key, name), "a tolerance cannot be negative") }
            out[name] = t
        }
        return Tolerances(out)
    }

    func model(_ node: Node, _ key: String, defaults: Defaults, resolve: (String) -> String) throws -> ModelSpec {
        let m = try mapping(node, key, allowed: ["name", "model", "architecture", "data", "prune", "seed", "threads", "latency",
                                                 "latency_gate", "tolerances", "cv", "task"])
        func required(_ k: String) throws -> Node {
            guard let n = m[k] else { throw error(node, join(key, k), "is missing") }
            return n
        }
        let nameNode = try required("name")
        let name = try string(nameNode, join(key, "name"))
        guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }), !name.hasPrefix(".") else {
            throw error(nameNode, join(key, "name"), "'\(name)' must use only letters, digits, '.', '_' and '-' (it names the baseline file)")
        }
        let modelPath = try string(try required("model"), join(key, "model"))
        let architecture = try m["architecture"].map { try string($0, join(key, "architecture")) }
        if !modelPath.hasSuffix(".onnx") && architecture == nil {
            throw error(node, join(key, "architecture"), "is missing; a .safetensors model needs its architecture file (layer-list JSON)")
        }
        let data = try dataSpec(try required("data"), join(key, "data"), resolve: resolve)
        let recipe = try prune(try required("prune"), join(key, "prune"), resolve: resolve)
        var latency = defaults.latency
        if let n = m["latency"] { latency = try self.latency(n, join(key, "latency"), base: latency) }
        var tolerances = defaults.tolerances
        if let n = m["tolerances"] { tolerances = tolerances.merging(try self.tolerances(n, join(key, "tolerances"))) }
        var cvFolds: Int?
        if let n = m["cv"] {
            let cm = try mapping(n, join(key, "cv"), allowed: ["folds"])
            guard let f = cm["folds"] else { throw error(n, join(key, "cv.folds"), "is missing; e.g. cv: {folds: 5}") }
            cvFolds = try int(f, join(key, "cv.folds"), min: 2)
        }
        let task = try m["task"].map { try choice($0, join(key, "task"), Task.self) } ?? .classification
        if task != .classification, [.lrp, .auto, .energy].contains(recipe.method) {
            throw error(m["prune"]!, join(key, "prune.method"), "\(recipe.method.rawValue) needs class labels (task: classification)")
        }
        if task == .languageModel || task == .embedding, cvFolds != nil {
            throw error(m["cv"]!, join(key, "cv"), "cross-validation is for classification and regression")
        }
        if task == .embedding, recipe.distill != nil {
            throw error(m["prune"]!, join(key, "prune.distill"), "an embedding model is fine-tuned towards the dense model's outputs already; remove distill")
        }
        let splits = [("train", data.train), ("eval", data.eval)] + data.evalSets.sorted { $0.key < $1.key }.map { ("eval_sets.\($0.key)", $0.value) }
        for (k, split) in splits where split.labels == nil && task != .embedding {
            throw error(m["data"]!, join(key, "data.\(k).labels"), "is missing; task \(task.rawValue) needs labels")
        }
        for name in tolerances.values.keys {
            if let set = MetricNames.evalSet(of: name), data.evalSets[set] == nil {
                throw error(m["tolerances"] ?? node, join(key, "tolerances.\(name)"), "no eval set '\(set)' in data.eval_sets")
            }
        }
        return ModelSpec(
            name: name, model: resolve(modelPath), architecture: architecture.map(resolve), data: data, recipe: recipe,
            seed: try m["seed"].map { UInt64(try int($0, join(key, "seed"), min: 0)) } ?? defaults.seed,
            threads: try m["threads"].map { try int($0, join(key, "threads"), min: 1) } ?? defaults.threads,
            latency: latency, tolerances: tolerances,
            latencyGate: try m["latency_gate"].map { try choice($0, join(key, "latency_gate"), LatencyGate.self) } ?? defaults.latencyGate,
            cvFolds: cvFolds, task: task,
            line: node.mark?.line)
    }

    func dataSpec(_ node: Node, _ key: String, resolve: (String) -> String) throws -> DataSpec {
        let m = try mapping(node, key, allowed: ["file", "train", "eval", "eval_sets", "scale"])
        guard let f = m["file"] else { throw error(node, join(key, "file"), "is missing") }
        func split(_ n: Node, _ k: String) throws -> SplitSource {
            if case .mapping(let items) = n {
                // {graph input: array, …, labels: array}
                var arrays: [String: String] = [:], labels: String?
                for (kn, vn) in items {
                    let input = try string(kn, k)
                    let array = try string(vn, "\(k).\(input)")
                    if input == "labels" { labels = array } else { arrays[input] = array }
                }
                return SplitSource(arrays: arrays, labels: labels)
            }
            guard case .sequence = n else {
                throw error(n, k, "expected [inputs, labels] array names, or a mapping of graph input names to arrays (plus labels)")
            }
            let names = try sequence(n, k)
            guard names.count == 2 else { throw error(n, k, "expected [inputs, labels], found \(names.count) names") }
            return SplitSource(inputs: try string(names[0], k + "[0]"), labels: try string(names[1], k + "[1]"))
        }
        func split(_ k: String) throws -> SplitSource {
            guard let n = m[k] else {
                throw error(node, join(key, k), "is missing; give [inputs, labels] array names, or {input name: array, …, labels: array}")
            }
            return try split(n, join(key, k))
        }
        let scale = try m["scale"].map { try double($0, join(key, "scale")) } ?? 1
        var evalSets: [String: SplitSource] = [:]
        if let n = m["eval_sets"] {
            guard case .mapping(let sets) = n else { throw error(n, join(key, "eval_sets"), "expected a mapping of name: [inputs, labels]") }
            for (k, v) in sets {
                let name = try string(k, join(key, "eval_sets"))
                guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                    throw error(k, join(key, "eval_sets.\(name)"), "eval set names use letters, digits, '_' and '-'")
                }
                evalSets[name] = try split(v, join(key, "eval_sets.\(name)"))
            }
        }
        return DataSpec(file: resolve(try string(f, join(key, "file"))), train: try split("train"), eval: try split("eval"), scale: scale,
                        evalSets: evalSets)
    }

    func prune(_ node: Node, _ key: String, resolve: (String) -> String) throws -> PruneRecipe {
        let m = try mapping(node, key, allowed: ["method", "scope", "granularity", "sparsity", "finetune", "protect", "norm", "schedule",
                                                 "regularize", "distill", "calibration", "init", "budget", "damping"])
        let method = try m["method"].map { try choice($0, join(key, "method"), PruneRecipe.Method.self) } ?? .magnitude
        // OBS and SparseGPT prune each layer to the same sparsity: that is their default scope.
        let scope = try m["scope"].map { try choice($0, join(key, "scope"), PruneRecipe.Scope.self) } ?? (method.isLayerwise ? .layer : .global)
        let granularity = try m["granularity"].map { g in
            try recipeField(node, key) { try PruneRecipe.granularity(from: try string(g, join(key, "granularity"))) }
        } ?? .unstructured
        let sparsity = try recipeField(node, key) {
            try PruneRecipe.sparsity(try m["sparsity"].map { try double($0, join(key, "sparsity")) }, granularity: granularity)
        }
        var finetune: FineTuneSettings?
        if let f = m["finetune"] {
            let fk = join(key, "finetune")
            let fm = try mapping(f, fk, allowed: ["epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                                                  "label_smoothing", "lr_schedule"])
            var s = FineTuneSettings(epochs: 1)
            if let n = fm["epochs"] { s.epochs = try int(n, join(fk, "epochs"), min: 0) }
            if let n = fm["batch_size"] { s.batchSize = try int(n, join(fk, "batch_size"), min: 1) }
            if let n = fm["optimizer"] { s.optimizer = try choice(n, join(fk, "optimizer"), FineTuneSettings.Optimizer.self) }
            if let n = fm["lr"] { s.learningRate = try double(n, join(fk, "lr")) }
            if let n = fm["momentum"] { s.momentum = try double(n, join(fk, "momentum")) }
            if let n = fm["nesterov"] { s.nesterov = try bool(n, join(fk, "nesterov")) }
            if let n = fm["weight_decay"] { s.weightDecay = try double(n, join(fk, "weight_decay")) }
            if let n = fm["label_smoothing"] { s.labelSmoothing = try double(n, join(fk, "label_smoothing")) }
            if let n = fm["lr_schedule"] { try schedule(n, join(fk, "lr_schedule"), into: &s) }
            try recipeField(node, key) { try s.check() }
            finetune = s
        }
        var recipe = PruneRecipe(method: method, scope: scope, granularity: granularity, sparsity: sparsity, finetune: finetune)
        if let p = m["protect"] {
            recipe.protect = try sequence(p, join(key, "protect")).enumerated().map { try string($0.element, join(key, "protect[\($0.offset)]")) }
        }
        if let n = m["norm"] { recipe.norm = try choice(n, join(key, "norm"), PruneRecipe.Norm.self) }
        if let n = m["init"] { recipe.initializer = try choice(n, join(key, "init"), Initializer.self) }
        if let n = m["damping"] {
            let d = try double(n, join(key, "damping"))
            recipe.damping = try recipeField(node, key) { try PruneRecipe.checkedDamping(d) }
        }
        if let n = m["schedule"] { recipe.schedule = try pruneSchedule(n, join(key, "schedule")) }
        if let n = m["regularize"] { recipe.regularize = try regularize(n, join(key, "regularize"), finetune: finetune, recipe: node, recipeKey: key) }
        if let n = m["distill"] { recipe.distill = try distill(n, join(key, "distill"), resolve: resolve, recipe: node, recipeKey: key) }
        if let n = m["calibration"] {
            let k = join(key, "calibration")
            let cm = try mapping(n, k, allowed: ["samples", "batch_size"])
            if let v = cm["samples"] { recipe.calibration.samples = try int(v, join(k, "samples"), min: 1) }
            if let v = cm["batch_size"] { recipe.calibration.batchSize = try int(v, join(k, "batch_size"), min: 1) }
        }
        if let n = m["budget"] {
            let k = join(key, "budget")
            let bm = try mapping(n, k, allowed: ["max_accuracy_drop", "max_latency_p50_us", "batch_size"])
            let drop = try bm["max_accuracy_drop"].map { try double($0, join(k, "max_accuracy_drop")) }
            let us = try bm["max_latency_p50_us"].map { try double($0, join(k, "max_latency_p50_us")) }
            let batch = try bm["batch_size"].map { try int($0, join(k, "batch_size"), min: 1) }
            recipe.budget = try recipeField(node, key) { try PruneRecipe.Budget.checked(maxAccuracyDrop: drop, maxLatencyP50: us, batchSize: batch) }
        }
        if let (k, problem) = recipe.problem { throw error(m[k] ?? m["method"] ?? node, join(key, k), problem) }
        return recipe
    }

    /// `schedule: oneshot` or `{kind: oneshot|iterative|gradual, steps, frequency, initial_sparsity, end}`.
    func pruneSchedule(_ node: Node, _ key: String) throws -> PruneRecipe.Schedule {
        let kinds = ["oneshot", "iterative", "gradual"]
        let kindNode: Node
        var m: [String: Node] = [:]
        if case .scalar = node { kindNode = node } else {
            m = try mapping(node, key, allowed: ["kind", "steps", "frequency", "initial_sparsity", "end"])
            guard let k = m["kind"] else { throw error(node, join(key, "kind"), "is missing; one of: \(kinds.joined(separator: ", "))") }
            kindNode = k
        }
        let kind = try string(kindNode, join(key, "kind"))
        func refuse(_ keys: [String]) throws {
            if let k = keys.first(where: { m[$0] != nil }) { throw error(m[k]!, join(key, k), "does not apply to kind \(kind)") }
        }
        switch kind {
        case "oneshot": try refuse(["steps", "frequency", "initial_sparsity", "end"])
        case "iterative": try refuse(["frequency", "initial_sparsity", "end"])
        case "gradual": try refuse(["steps"])
        default: break
        }
        let steps = try m["steps"].map { try int($0, join(key, "steps"), min: 1) }
        let frequency = try m["frequency"].map { try int($0, join(key, "frequency"), min: 1) }
        let initial = try m["initial_sparsity"].map { try double($0, join(key, "initial_sparsity")) }
        let end = try m["end"].map { try double($0, join(key, "end")) }
        do {
            return try PruneRecipe.Schedule.checked(kind: kind, steps: steps, frequency: frequency, initialSparsity: initial, end: end)
        } catch let e as RecipeFieldError {
            let field = String(e.key.dropFirst("schedule.".count))
            throw error(field == "kind" ? kindNode : m[field] ?? node, join(key, field), e.problem)
        }
    }

    /// `regularize: {l1: λ}` or `{group_lasso: λ}`, with `epochs` (default: the finetune epochs).
    func regularize(_ node: Node, _ key: String, finetune: FineTuneSettings?, recipe: Node, recipeKey: String) throws -> PruneRecipe.Regularization {
        let m = try mapping(node, key, allowed: ["l1", "group_lasso", "epochs"])
        let given = PruneRecipe.Regularization.Kind.allCases.filter { m[$0.rawValue] != nil }
        guard given.count == 1, let kind = given.first else {
            throw error(node, key, "give exactly one of l1: λ or group_lasso: λ")
        }
        let lambda = try double(m[kind.rawValue]!, join(key, kind.rawValue))
        let epochs = try m["epochs"].map { try int($0, join(key, "epochs"), min: 1) }
        return try recipeField(recipe, recipeKey) {
            try PruneRecipe.Regularization.checked(kind: kind, lambda: lambda, epochs: epochs, finetuneEpochs: finetune?.epochs)
        }
    }

    /// `distill: {temperature: T, alpha: a, teacher: FILE, teacher_architecture: FILE}`.
    func distill(_ node: Node, _ key: String, resolve: (String) -> String, recipe: Node, recipeKey: String) throws -> PruneRecipe.Distillation {
        let m = try mapping(node, key, allowed: ["temperature", "alpha", "teacher", "teacher_architecture"])
        let t = try m["temperature"].map { try double($0, join(key, "temperature")) }
        let a = try m["alpha"].map { try double($0, join(key, "alpha")) }
        let teacher = try m["teacher"].map { resolve(try string($0, join(key, "teacher"))) }
        let architecture = try m["teacher_architecture"].map { resolve(try string($0, join(key, "teacher_architecture"))) }
        return try recipeField(recipe, recipeKey) {
            try PruneRecipe.Distillation.checked(temperature: t, alpha: a, teacher: teacher, teacherArchitecture: architecture)
        }
    }

    /// Runs a check of `RecipeFields`; its error becomes a ConfigError at the YAML node of the
    /// field (or the nearest enclosing one that exists) under the recipe's key.
    func recipeField<T>(_ recipe: Node, _ recipeKey: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as RecipeFieldError {
            var at = recipe
            for part in e.key.split(separator: ".") {
                guard let child = at[String(part)] else { break }
                at = child
            }
            throw error(at, join(recipeKey, e.key), e.problem)
        }
    }

    /// `lr_schedule: NAME` or `{kind: NAME, step_size, milestones, gamma, warmup_steps, min_lr, patience}`.
    func schedule(_ node: Node, _ key: String, into s: inout FineTuneSettings) throws {
        if case .scalar = node {
            s.schedule = try choice(node, key, FineTuneSettings.ScheduleKind.self)
            return
        }
        let m = try mapping(node, key, allowed: ["kind", "step_size", "milestones", "gamma", "warmup_steps", "min_lr", "patience"])
        guard let k = m["kind"] else { throw error(node, join(key, "kind"), "is missing") }
        s.schedule = try choice(k, join(key, "kind"), FineTuneSettings.ScheduleKind.self)
        if let n = m["step_size"] { s.stepSize = try int(n, join(key, "step_size"), min: 1) }
        if let n = m["milestones"] {
            s.milestones = try sequence(n, join(key, "milestones")).enumerated().map { try int($0.element, join(key, "milestones[\($0.offset)]"), min: 0) }
        }
        if let n = m["gamma"] {
            s.gamma = try double(n, join(key, "gamma"))
            guard s.gamma > 0 && s.gamma <= 1 else { throw error(n, join(key, "gamma"), "must be in (0, 1]") }
        }
        if let n = m["warmup_steps"] { s.warmupSteps = try int(n, join(key, "warmup_steps"), min: 0) }
        if let n = m["min_lr"] {
            s.minLearningRate = try double(n, join(key, "min_lr"))
            guard s.minLearningRate >= 0 else { throw error(n, join(key, "min_lr"), "must be ≥ 0") }
        }
        if let n = m["patience"] { s.patience = try int(n, join(key, "patience"), min: 0) }
    }
}
