import Common
import Configuration
import Foundation
import ModelIO
import TensorEngine
import GitKit
import Regression

/// A content-addressed store of model results under `.prunecheck/cache`. The key hashes
/// everything a result depends on: the input files' contents, the recipe and settings, the
/// tool version and build (the executable's content hash) and the machine. Entries are written
/// atomically, so concurrent runs cannot leave a torn file; a corrupt entry is ignored and
/// rebuilt.
///
/// The cache folder sits in the repository, so a pull request can commit entries of its own
/// making ("no regression" where a real run finds four). Every entry and stored model carries an
/// HMAC-SHA256 under a secret the repository cannot contain (`CacheSecret`): an entry without
/// a valid one is ignored and rebuilt.
public struct ResultCache {
    public let folder: String
    let secret: [UInt8]

    public init(folder: String, secret: [UInt8] = CacheSecret.load()) {
        self.folder = folder
        self.secret = secret
    }

    /// The bytes of an entry as written: `{"mac":"<64 hex>","entry":<entry>}`, the MAC taken
    /// over the entry's bytes exactly.
    func sealed(_ entry: [UInt8]) -> [UInt8] {
        Array("{\"mac\":\"\(SHA256.hmacHex(key: secret, entry))\",\"entry\":".utf8) + entry + Array("}".utf8)
    }

    /// The entry's bytes when `file` is sealed with this machine's secret, else nil.
    func opened(_ file: [UInt8]) -> [UInt8]? {
        let head = Array("{\"mac\":\"".utf8), mid = Array("\",\"entry\":".utf8)
        let start = head.count + 64 + mid.count
        guard file.count > start, file.last == UInt8(ascii: "}"), Array(file[..<head.count]) == head,
              Array(file[(head.count + 64)..<start]) == mid else { return nil }
        let mac = String(decoding: file[head.count..<(head.count + 64)], as: UTF8.self)
        let entry = Array(file[start..<(file.count - 1)])
        return SHA256.hmacHex(key: secret, entry) == mac ? entry : nil
    }

    public static let schema = "prunecheck-cache/3"

    /// What a cache entry holds: a model run without the live model.
    public struct Entry {
        var metrics: [String: Double]
        var evidence: Evidence
        var folds: [[String: Double]]
        var confusion: [[Int]]
        var modelSHA256: String?
        var devices: [String: String] = [:]
        var dense: [String: Double] = [:]
    }

    /// The key of `spec` with the given local input files, nil when an input is unreadable
    /// (the run then reports that file's problem itself).
    public func key(for spec: ModelSpec, files: [String], machine: MachineDescription) -> String? {
        guard let build = Self.buildIdentity else { return nil }
        var parts = ["tool=\(toolVersion)", "build=\(build)", "machine=\(machine.cpu)|\(machine.arch)|\(machine.cores)|\(machine.os)",
                     "recipe=\(spec.recipe.canonicalDescription)", "seed=\(spec.seed)", "threads=\(spec.threads)",
                     "latency=\(spec.latency)", "cv=\(spec.cvFolds ?? 0)", "task=\(spec.task.rawValue)",
                     "data=\(spec.data.train)|\(spec.data.eval)|\(spec.data.scale)|\(spec.data.evalSets.sorted { $0.key < $1.key })"]
        for file in files {
            guard let blob = gitBlobID(ofFile: file) else { return nil }
            parts.append("file=\(blob)")
        }
        return SHA256.hex(Array(parts.joined(separator: "\n").utf8))
    }

    /// The running executable's content hash (a git blob id), computed once per process. A
    /// rebuilt or upgraded PruneCheck may compute other numbers with the same version string, so
    /// its results must not come from another build's entries. Nil when the executable cannot be
    /// read; the cache is then not used. Hashing the 29 MB release binary takes about 0.1 s, once
    /// per run that uses the cache.
    public static let buildIdentity: String? = Bundle.main.executablePath.flatMap { gitBlobID(ofFile: $0) }

    public func path(_ key: String) -> String { (folder as NSString).appendingPathComponent("\(key).json") }

    /// The pruned model stored under `key` (for paired timing), nil when there is none.
    public func modelFile(_ key: String) -> String? {
        let p = (folder as NSString).appendingPathComponent("\(key).onnx")
        guard let model = FileManager.default.contents(atPath: p),
              let mac = FileManager.default.contents(atPath: p + ".mac"),
              String(decoding: mac, as: UTF8.self) == SHA256.hmacHex(key: secret, [UInt8](model)) else { return nil }
        return p
    }

    /// Keeps the pruned model under `key` (written whole or not at all).
    public func storeModel(_ key: String, _ model: Graph) {
        let p = (folder as NSString).appendingPathComponent("\(key).onnx")
        do {
            try ONNXModel.save(model, to: p)
            guard let bytes = FileManager.default.contents(atPath: p) else { throw InputError("\(p): cannot read it back") }
            try writeFileAtomically(SHA256.hmacHex(key: secret, [UInt8](bytes)), to: p + ".mac")
        } catch {
            note("note: could not keep the pruned model in the result cache (\(error))")
        }
    }

    public func lookup(_ key: String) -> Entry? {
        guard let data = FileManager.default.contents(atPath: path(key)) else { return nil }
        guard let entry = opened([UInt8](data)) else {
            note("note: ignoring the cache entry \(relativeToCwd(path(key))): it was not written by PruneCheck on this machine "
                 + "(its MAC does not verify: committed or copied entries are never trusted); it will be rebuilt")
            return nil
        }
        guard let json = try? JSONValue.parse(entry), json["schema"]?.string == Self.schema, json["key"]?.string == key,
              let metrics = numbers(json["metrics"]), !metrics.isEmpty else {
            note("note: ignoring a corrupt cache entry \(path(key)); it will be rebuilt")
            try? FileManager.default.removeItem(atPath: path(key))
            return nil
        }
        var evidence = Evidence()
        if case .object(let pairs)? = json["latency_samples"] {
            for (k, v) in pairs {
                guard let b = Int(k), case .array(let items) = v else { continue }
                evidence.currentLatency[b] = items.compactMap(\.double)
            }
        }
        if case .array(let bits)? = json["eval_correct"] { evidence.currentCorrect = bits.map { $0.bool ?? false } }
        var folds: [[String: Double]] = []
        if case .array(let f)? = json["folds"] { folds = f.compactMap(numbers) }
        var confusion: [[Int]] = []
        if case .array(let rows)? = json["confusion"] {
            confusion = rows.map { row in if case .array(let cells) = row { return cells.map { Int($0.double ?? 0) } } else { return [] } }
        }
        var devices: [String: String] = [:]
        if case .object(let pairs)? = json["devices"] { for (k, v) in pairs { devices[k] = v.string } }
        return Entry(metrics: metrics, evidence: evidence, folds: folds, confusion: confusion, modelSHA256: json["model_sha256"]?.string, devices: devices,
                     dense: numbers(json["dense"]) ?? [:])
    }

    private func numbers(_ v: JSONValue?) -> [String: Double]? {
        guard case .object(let pairs)? = v else { return nil }
        var out: [String: Double] = [:]
        for (k, x) in pairs {
            guard let d = x.double else { return nil }
            out[k] = d
        }
        return out
    }

    public func store(_ key: String, entry: Entry) {
        // A device that could not be reached is measured next time, not remembered as skipped.
        guard !entry.devices.values.contains(where: { $0.hasPrefix("skipped") }) else { return }
        func object(_ m: [String: Double]) -> JSONValue { .object(m.keys.sorted().map { ($0, .number(m[$0]!)) }) }
        let json = JSONValue.object([
            ("schema", .string(Self.schema)), ("key", .string(key)),
            ("metrics", object(entry.metrics)),
            ("latency_samples", .object(entry.evidence.currentLatency.keys.sorted().map { b in
                (String(b), .array(entry.evidence.currentLatency[b]!.map(JSONValue.number)))
            })),
            ("eval_correct", entry.evidence.currentCorrect.map { .array($0.map(JSONValue.bool)) } ?? .null),
            ("folds", .array(entry.folds.map(object))),
            ("confusion", .array(entry.confusion.map { .array($0.map { .number(Double($0)) }) })),
            ("model_sha256", entry.modelSHA256.map(JSONValue.string) ?? .null),
            ("devices", .object(entry.devices.keys.sorted().map { ($0, .string(entry.devices[$0]!)) })),
            ("dense", object(entry.dense)),
        ])
        do {
            // The cache folder ignores itself, so it never shows up in `git status`.
            let ignore = ((folder as NSString).deletingLastPathComponent as NSString).appendingPathComponent(".gitignore")
            if !FileManager.default.fileExists(atPath: ignore) { try writeFileAtomically("*\n", to: ignore) }
            try writeFileAtomically(bytes: sealed(Array(json.rendered().utf8)), to: path(key))
        } catch {
            note("note: could not write the result cache (\(error)); continuing without it")
        }
    }
}

extension ResultCache {
    /// `spec`'s run from the cache when its inputs are unchanged (`cached` true; no live model
    /// then), else run now and stored.
    public func run(_ spec: ModelSpec, machine: MachineDescription, progress: Progress) throws -> (result: ModelRunResult, cached: Bool) {
        let key = key(for: spec, files: inputFiles(of: spec), machine: machine)
        if let key, let hit = lookup(key) {
            return (ModelRunResult(metrics: hit.metrics, evidence: hit.evidence, folds: hit.folds, confusion: hit.confusion,
                                   seconds: 0, remeasure: nil, modelSHA256: hit.modelSHA256, devices: hit.devices, dense: hit.dense), true)
        }
        let result = try runModel(spec, progress: progress)
        if let key {
            store(key, entry: .init(metrics: result.metrics, evidence: result.evidence, folds: result.folds, confusion: result.confusion,
                                    modelSHA256: result.modelSHA256, devices: result.devices, dense: result.dense))
        }
        return (result, false)
    }
}

/// The secret that seals the result cache: PRUNECHECK_CACHE_SECRET when set (a CI secret, so
/// that a cache restored on another runner is trusted), else a random key made once per user
/// in `$XDG_CACHE_HOME/prunecheck/cache-secret` (or `~/.cache/…`), readable by its owner only.
/// Neither can come from the repository under test.
public enum CacheSecret {
    public static func load(environment: [String: String] = ProcessInfo.processInfo.environment) -> [UInt8] {
        if let s = environment["PRUNECHECK_CACHE_SECRET"], !s.isEmpty { return Array(s.utf8) }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["HOME"] ?? NSHomeDirectory()) as NSString).appendingPathComponent(".cache")
        let file = ((base as NSString).appendingPathComponent("prunecheck") as NSString).appendingPathComponent("cache-secret")
        if let data = FileManager.default.contents(atPath: file), data.count >= 32 { return [UInt8](data) }
        var generator = SystemRandomNumberGenerator()
        let fresh = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        do {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try writeFilesAtomically([(file, fresh)], mode: 0o600)
            // Another run may have made one at the same moment: the file's content wins.
            if let data = FileManager.default.contents(atPath: file), data.count >= 32 { return [UInt8](data) }
        } catch {
            note("note: cannot keep a cache secret in \(file) (\(error)); this run's cache entries will not be reused")
        }
        return fresh
    }
}
