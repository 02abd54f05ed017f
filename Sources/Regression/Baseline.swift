import Foundation

/// Where and how a baseline was recorded.
public struct RecordingContext: Equatable, Sendable {
    /// Full SHA of HEAD, nil outside a git repository or before the first commit.
    public var commit: String?
    /// Branch name, nil for a detached HEAD or outside git.
    public var branch: String?
    /// Whether tracked files differed from HEAD.
    public var dirty: Bool
    public var toolVersion: String
    public var machine: MachineDescription
    public var threads: Int

    public init(commit: String?, branch: String?, dirty: Bool, toolVersion: String, machine: MachineDescription, threads: Int) {
        self.commit = commit
        self.branch = branch
        self.dirty = dirty
        self.toolVersion = toolVersion
        self.machine = machine
        self.threads = threads
    }
}

/// The machine a result was measured on.
public struct MachineDescription: Equatable, Sendable {
    public var cpu: String
    public var arch: String
    public var cores: Int
    public var os: String

    /// Whether timings from `other` can be compared with timings from this machine.
    public func isSameMachine(as other: MachineDescription) -> Bool {
        cpu == other.cpu && arch == other.arch && cores == other.cores && os == other.os
    }

    public init(cpu: String, arch: String, cores: Int, os: String) {
        self.cpu = cpu
        self.arch = arch
        self.cores = cores
        self.os = os
    }
}

/// A problem with a baseline file (exit code 3).
public struct BaselineError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let problem: String
    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }
    public var description: String { "\(file): \(problem)" }
}

/// The accepted results of one model: `baselines/<model>.json`.
public struct Baseline: Equatable, Sendable {
    public static let schema = "prunecheck-baseline/1"

    public var model: String
    public var recipeSHA256: String
    public var metrics: [String: Double]
    public var recorded: RecordingContext

    public init(model: String, recipeSHA256: String, metrics: [String: Double], recorded: RecordingContext) {
        self.model = model
        self.recipeSHA256 = recipeSHA256
        self.metrics = metrics
        self.recorded = recorded
    }

    /// The file's JSON: fixed key order, metrics sorted by name.
    public var json: JSONValue {
        .object([
            ("schema", .string(Baseline.schema)),
            ("model", .string(model)),
            ("recipe_sha256", .string(recipeSHA256)),
            ("metrics", .object(metrics.keys.sorted().map { ($0, .number(metrics[$0]!)) })),
            ("recorded", .object([
                ("commit", recorded.commit.map(JSONValue.string) ?? .null),
                ("branch", recorded.branch.map(JSONValue.string) ?? .null),
                ("dirty", .bool(recorded.dirty)),
                ("tool_version", .string(recorded.toolVersion)),
                ("threads", .number(Double(recorded.threads))),
                ("machine", .object([
                    ("cpu", .string(recorded.machine.cpu)),
                    ("arch", .string(recorded.machine.arch)),
                    ("cores", .number(Double(recorded.machine.cores))),
                    ("os", .string(recorded.machine.os)),
                ])),
            ])),
        ])
    }

    /// Parses a baseline file's contents; `file` names it in errors.
    public init(data: Data, file: String) throws {
        let json: JSONValue
        do {
            json = try JSONValue.parse(data)
        } catch {
            throw BaselineError(file: file, "\(error) (corrupt or truncated?)")
        }
        guard json["schema"]?.string == Baseline.schema else {
            throw BaselineError(file: file, "field 'schema': expected \"\(Baseline.schema)\"")
        }
        guard let model = json["model"]?.string else { throw BaselineError(file: file, "field 'model': expected a string") }
        guard let recipe = json["recipe_sha256"]?.string else { throw BaselineError(file: file, "field 'recipe_sha256': expected a string") }
        guard case .object(let pairs)? = json["metrics"] else { throw BaselineError(file: file, "field 'metrics': expected an object") }
        var metrics: [String: Double] = [:]
        for (k, v) in pairs {
            guard let d = v.double else { throw BaselineError(file: file, "field 'metrics.\(k)': expected a number") }
            metrics[k] = d
        }
        let r = json["recorded"]
        let m = r?["machine"]
        self.init(
            model: model, recipeSHA256: recipe, metrics: metrics,
            recorded: RecordingContext(
                commit: r?["commit"]?.string, branch: r?["branch"]?.string, dirty: r?["dirty"]?.bool ?? false,
                toolVersion: r?["tool_version"]?.string ?? "unknown",
                machine: MachineDescription(cpu: m?["cpu"]?.string ?? "unknown", arch: m?["arch"]?.string ?? "unknown",
                                            cores: Int(m?["cores"]?.double ?? 0), os: m?["os"]?.string ?? "unknown"),
                threads: Int(r?["threads"]?.double ?? 0)))
    }

    /// Reads `path`; a missing file is a `BaselineError` naming the command that records it.
    public static func read(path: String) throws -> Baseline {
        guard FileManager.default.fileExists(atPath: path) else {
            throw BaselineError(file: path, "baseline is missing; record it with `prunecheck baseline update`")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BaselineError(file: path, "baseline cannot be read")
        }
        return try Baseline(data: data, file: path)
    }

    /// Writes the baseline atomically.
    public func write(path: String) throws {
        try writeFileAtomically(json.rendered(), to: path)
    }
}
