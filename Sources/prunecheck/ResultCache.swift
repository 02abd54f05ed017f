import Configuration
import Foundation
import GitKit
import Regression

/// A content-addressed store of model results under `.prunecheck/cache`. The key hashes
/// everything a result depends on: the input files' contents, the recipe and settings, the
/// tool version and the machine. Entries are written atomically, so concurrent runs cannot
/// leave a torn file; a corrupt entry is ignored and rebuilt.
struct ResultCache {
    let folder: String

    static let schema = "prunecheck-cache/1"

    /// The key of `spec` with the given local input files, nil when an input is unreadable
    /// (the run then reports that file's problem itself).
    func key(for spec: ModelSpec, files: [String], machine: MachineDescription) -> String? {
        var parts = ["tool=\(toolVersion)", "machine=\(machine.cpu)|\(machine.arch)|\(machine.cores)|\(machine.os)",
                     "recipe=\(spec.recipe.canonicalDescription)", "seed=\(spec.seed)", "threads=\(spec.threads)",
                     "latency=\(spec.latency)", "data=\(spec.data.train)|\(spec.data.eval)|\(spec.data.scale)"]
        for file in files {
            guard let blob = gitBlobID(ofFile: file) else { return nil }
            parts.append("file=\(blob)")
        }
        return SHA256.hex(Array(parts.joined(separator: "\n").utf8))
    }

    func path(_ key: String) -> String { (folder as NSString).appendingPathComponent("\(key).json") }

    func lookup(_ key: String) -> [String: Double]? {
        guard let data = FileManager.default.contents(atPath: path(key)) else { return nil }
        guard let json = try? JSONValue.parse(data), json["schema"]?.string == Self.schema, json["key"]?.string == key,
              case .object(let pairs)? = json["metrics"], !pairs.isEmpty else {
            note("note: ignoring a corrupt cache entry \(path(key)); it will be rebuilt")
            try? FileManager.default.removeItem(atPath: path(key))
            return nil
        }
        var metrics: [String: Double] = [:]
        for (k, v) in pairs {
            guard let d = v.double else { return nil }
            metrics[k] = d
        }
        return metrics
    }

    func store(_ key: String, metrics: [String: Double]) {
        let json = JSONValue.object([
            ("schema", .string(Self.schema)), ("key", .string(key)),
            ("metrics", .object(metrics.keys.sorted().map { ($0, .number(metrics[$0]!)) })),
        ])
        do {
            // The cache folder ignores itself, so it never shows up in `git status`.
            let ignore = ((folder as NSString).deletingLastPathComponent as NSString).appendingPathComponent(".gitignore")
            if !FileManager.default.fileExists(atPath: ignore) { try writeFileAtomically("*\n", to: ignore) }
            try writeFileAtomically(json.rendered(), to: path(key))
        } catch {
            note("note: could not write the result cache (\(error)); continuing without it")
        }
    }
}
