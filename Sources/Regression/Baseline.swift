import Common
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
    /// GFLOP/s of the fixed reference workload, measured in the same process (nil if unknown).
    public var calibration: Double?

    public init(commit: String?, branch: String?, dirty: Bool, toolVersion: String, machine: MachineDescription, threads: Int,
                calibration: Double? = nil) {
        self.calibration = calibration
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
    /// The widest vector instruction set in use: `avx512`, `avx2`, `neon`, …
    public var isa: String

    /// Whether timings from `other` can be compared with timings from this machine (same CPU
    /// model, cores, architecture, OS and instruction set; an unknown ISA is not held against it).
    public func isSameMachine(as other: MachineDescription) -> Bool {
        cpu == other.cpu && arch == other.arch && cores == other.cores && os == other.os
            && (isa == other.isa || isa == "unknown" || other.isa == "unknown")
    }

    public init(cpu: String, arch: String, cores: Int, os: String, isa: String = "unknown") {
        self.isa = isa
        self.cpu = cpu
        self.arch = arch
        self.cores = cores
        self.os = os
    }
}

/// A problem with a baseline file (exit code 3).
public struct BaselineError: UserFacingError, Equatable {
    public var exitStatus: ExitStatus { .baselineError }
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
    /// 50 evenly spaced quantiles of each batch size's latency samples (µs), for the rank test.
    public var latencySamples: [Int: [Double]]
    /// Per-example correctness on the eval set, for McNemar's test.
    public var evalCorrect: [Bool]?
    /// SHA-256 of the pruned model (its ONNX encoding): a current model with the same hash is
    /// the one the baseline measured (nil in baselines from before it was recorded).
    public var modelSHA256: String?
    /// The devices remote latency targets measured on, by target name ("" for `target:`).
    public var latencyDevices: [String: String] = [:]

    public init(model: String, recipeSHA256: String, metrics: [String: Double], recorded: RecordingContext,
                latencySamples: [Int: [Double]] = [:], evalCorrect: [Bool]? = nil, modelSHA256: String? = nil) {
        self.modelSHA256 = modelSHA256
        self.latencySamples = latencySamples
        self.evalCorrect = evalCorrect
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
            ("model_sha256", modelSHA256.map(JSONValue.string) ?? .null),
            ("metrics", .object(metrics.keys.sorted().map { ($0, .number(metrics[$0]!)) })),
            ("recorded", .object([
                ("commit", recorded.commit.map(JSONValue.string) ?? .null),
                ("branch", recorded.branch.map(JSONValue.string) ?? .null),
                ("dirty", .bool(recorded.dirty)),
                ("tool_version", .string(recorded.toolVersion)),
                ("threads", .number(Double(recorded.threads))),
                ("calibration_gflops", recorded.calibration.map(JSONValue.number) ?? .null),
                ("machine", .object([
                    ("cpu", .string(recorded.machine.cpu)),
                    ("arch", .string(recorded.machine.arch)),
                    ("cores", .number(Double(recorded.machine.cores))),
                    ("os", .string(recorded.machine.os)),
                    ("isa", .string(recorded.machine.isa)),
                ])),
            ] + (latencyDevices.isEmpty ? [] : [("latency_devices", .object(latencyDevices.keys.sorted().map { ($0, .string(latencyDevices[$0]!)) }))]))),
            ("evidence", .object([
                ("eval_correct", evalCorrect.map { c in
                    .object([("n", .number(Double(c.count))), ("bits", .string(CorrectnessBits.encode(c)))])
                } ?? .null),
                ("latency_quantiles_us", .object(latencySamples.keys.sorted().map { b in
                    ("b\(b)", .array(latencySamples[b]!.map { .number(($0 * 100).rounded() / 100) }))
                })),
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
            // A value no run can produce (accuracy -5) would turn the gate silently off.
            let range = MetricNames.validRange(of: k)
            guard range.contains(d) else {
                throw BaselineError(file: file, "field 'metrics.\(k)': \(d) is outside \(MetricNames.describe(range)), the values this metric can take")
            }
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
                                            cores: Int(m?["cores"]?.double ?? 0), os: m?["os"]?.string ?? "unknown",
                                            isa: m?["isa"]?.string ?? "unknown"),
                threads: Int(r?["threads"]?.double ?? 0), calibration: r?["calibration_gflops"]?.double))
        modelSHA256 = json["model_sha256"]?.string
        if case .object(let pairs)? = r?["latency_devices"] {
            for (k, v) in pairs { latencyDevices[k] = v.string }
        }
        let evidence = json["evidence"]
        if let c = evidence?["eval_correct"], let n = c["n"]?.double, let bits = c["bits"]?.string {
            guard let decoded = CorrectnessBits.decode(bits, count: Int(n)) else {
                throw BaselineError(file: file, "field 'evidence.eval_correct': bits do not hold \(Int(n)) examples")
            }
            evalCorrect = decoded
        }
        if case .object(let pairs)? = evidence?["latency_quantiles_us"] {
            for (k, v) in pairs {
                guard k.hasPrefix("b"), let b = Int(k.dropFirst()), case .array(let items) = v else {
                    throw BaselineError(file: file, "field 'evidence.latency_quantiles_us.\(k)': expected bN: [numbers]")
                }
                latencySamples[b] = items.compactMap(\.double)
            }
        }
    }
}
