import Common
import Evaluation
import Foundation
import ModelIO
import TensorEngine

// Latency on the device a model ships to (`latency.target: ssh://user@host`): the pruned model
// (and, for paired timing, the base revision's) goes to a temporary folder on the device with
// the examples it is timed on, the device's own `prunecheck latency --json` times it, and the
// folder is removed whatever happened. The system's OpenSSH client does the transport; host keys
// are always checked (StrictHostKeyChecking=yes, against `known_hosts` or the user's file).

/// What a remote target measured.
public struct RemoteMeasurement: Sendable {
    /// "pi@edge-7 (Cortex-A76, 4 cores)": the device, for reports and baselines.
    public var device: String
    public var results: [LatencyResult]
    public var paired: [PairedLatencyResult]
}

/// A remote target that could not be measured (exit 2): names the target and what failed.
public struct RemoteLatencyError: UserFacingError, Equatable {
    public enum Kind: Equatable, Sendable { case unreachable, authentication, hostKey, missingTool, olderTool, timeout, failed }
    public let target: String
    public let kind: Kind
    public let problem: String
    public var description: String { "latency target \(target): \(problem)" }
}

public enum RemoteLatency {
    /// Times `model` (and `base` alongside it, paired) on `target` at every batch size of
    /// `settings`, on the first examples of `feeds` (one per graph input, the largest batch).
    public static func measure(model: Graph, base: Graph?, feeds: [Value], target: LatencyTarget, settings: LatencySettings,
                               threads: Int) throws -> RemoteMeasurement {
        let local = try makeScratch()
        defer { try? FileManager.default.removeItem(atPath: local) }
        try ONNXModel.save(model, to: "\(local)/model.onnx")
        if let base { try ONNXModel.save(base, to: "\(local)/base.onnx") }
        var arrays: [String: NPYArray] = [:]
        for (input, value) in zip(model.inputs, feeds) { arrays[input.name] = array(value) }
        try NPZ.write(arrays, to: "\(local)/examples.npz")

        let session = Session(target: target, remote: settings.remote)
        let deadline = Date().addingTimeInterval(settings.remote.timeoutSeconds)
        // The folder first: it is also the check that the device answers and lets us in.
        let made = try session.ssh("mktemp -d \"${TMPDIR:-/tmp}/prunecheck.XXXXXX\"", until: deadline)
        let folder = made.trimmingCharacters(in: .whitespacesAndNewlines)
        guard folder.hasPrefix("/"), !folder.contains("\n"), !folder.contains("'") else {
            throw RemoteLatencyError(target: "\(target)", kind: .failed, problem: "mktemp -d on the device printed '\(Console.inline(folder))', not a folder")
        }
        defer { _ = try? session.ssh("rm -rf -- \(shellQuote(folder))", until: Date().addingTimeInterval(30)) }
        try session.copy(["\(local)/model.onnx", "\(local)/examples.npz"] + (base == nil ? [] : ["\(local)/base.onnx"]), to: folder, until: deadline)
        let version = try session.ssh("\(settings.remote.remoteCommand) --version", until: deadline, tool: true)
        if let theirs = version.split(whereSeparator: \.isWhitespace).first.map(String.init), olderVersion(theirs, than: toolVersion) {
            throw RemoteLatencyError(target: "\(target)", kind: .olderTool,
                                     problem: "the device's PruneCheck is \(theirs), older than this one (\(toolVersion)); install \(toolVersion) or later there")
        }
        var command = "\(settings.remote.remoteCommand) latency --model \(shellQuote(folder + "/model.onnx")) --data \(shellQuote(folder + "/examples.npz"))"
            + " --batch-sizes \(settings.batchSizes.map(String.init).joined(separator: ",")) --threads \(threads)"
            + " --warmup \(settings.warmup) --min-runs \(settings.minRuns) --max-seconds \(settings.maxSeconds) --json"
        if base != nil { command += " --paired-with \(shellQuote(folder + "/base.onnx"))" }
        let output = try session.ssh(command, until: deadline, tool: true)
        return try parse(output, target: target)
    }

    /// The device's JSON (`prunecheck-latency/1`).
    static func parse(_ output: String, target: LatencyTarget) throws -> RemoteMeasurement {
        func bad(_ why: String) -> RemoteLatencyError {
            RemoteLatencyError(target: "\(target)", kind: .failed, problem: "the device's `prunecheck latency --json` output \(why)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(Array(output.utf8)) } catch { throw bad("is not JSON (\(error))") }
        guard json["schema"]?.string == "prunecheck-latency/1", case .array(let rows)? = json["results"] else { throw bad("is not prunecheck-latency/1") }
        var results: [LatencyResult] = []
        for row in rows where row["mode"]?.string == "inference" {
            guard let b = row["batch"]?.double, let p50 = row["p50_us"]?.double, let p90 = row["p90_us"]?.double,
                  let p99 = row["p99_us"]?.double, let mad = row["mad_us"]?.double, let runs = row["runs"]?.double,
                  [p50, p90, p99, mad].allSatisfy({ $0 >= 0 }) else { throw bad("has a result without its numbers") }
            results.append(LatencyResult(batchSize: Int(b), p50: p50, p90: p90, p99: p99, mad: mad, runs: Int(runs), samples: []))
        }
        var paired: [PairedLatencyResult] = []
        if case .array(let items)? = json["paired"] {
            for p in items {
                guard let b = p["batch"]?.double, let bp = p["base_p50_us"]?.double, let cp = p["current_p50_us"]?.double,
                      let r = p["ratio"]?.double, let lo = p["low"]?.double, let hi = p["high"]?.double, let n = p["pairs"]?.double,
                      r > 0, lo > 0, hi >= lo else { throw bad("has a paired result without its numbers") }
                paired.append(PairedLatencyResult(batchSize: Int(b), baseP50: bp, currentP50: cp, ratio: r, low: lo, high: hi, pairs: Int(n)))
            }
        }
        let m = json["machine"]
        let cpu = m?["cpu"]?.string ?? "unknown CPU", cores = Int(m?["cores"]?.double ?? 0), host = m?["host"]?.string ?? target.host ?? "?"
        let who = (target.user.map { "\($0)@" } ?? "") + host
        return RemoteMeasurement(device: Console.inline("\(who) (\(cpu), \(cores) cores)"), results: results, paired: paired)
    }

    /// Whether dotted version `a` is older than `b`.
    static func olderVersion(_ a: String, than b: String) -> Bool {
        let x = a.split(separator: ".").map { Int($0) ?? 0 }, y = b.split(separator: ".").map { Int($0) ?? 0 }
        for i in 0..<max(x.count, y.count) where (i < x.count ? x[i] : 0) != (i < y.count ? y[i] : 0) {
            return (i < x.count ? x[i] : 0) < (i < y.count ? y[i] : 0)
        }
        return false
    }

    static func array(_ v: Value) -> NPYArray {
        switch v {
        case .float(let x): return NPYArray(floats: x.value.scalars, shape: x.value.shape)
        case .int64(let t): return NPYArray(integers: t.data, shape: t.shape)
        case .bool(let t): return NPYArray(integers: t.data, shape: t.shape, dtype: .bool)
        }
    }

    static func makeScratch() throws -> String {
        let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("prunecheck-remote-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// One target's ssh and scp invocations.
    struct Session {
        let target: LatencyTarget
        let remote: RemoteSettings

        var destination: String { (target.user.map { "\($0)@" } ?? "") + target.host! }

        /// Options both tools take: batch mode (never a prompt), host keys checked.
        func options(portFlag: String) -> [String] {
            var o = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=\(Int(min(max(remote.timeoutSeconds, 1), 30)))",
                     "-o", "LogLevel=ERROR"]
            if let k = remote.knownHosts { o += ["-o", "UserKnownHostsFile=\(k)", "-o", "GlobalKnownHostsFile=/dev/null"] }
            if let i = remote.identityFile { o += ["-i", i, "-o", "IdentitiesOnly=yes"] }
            if let p = target.port { o += [portFlag, String(p)] }
            return o
        }

        @discardableResult
        func ssh(_ command: String, until deadline: Date, tool: Bool = false) throws -> String {
            let r = try run("/usr/bin/env", ["ssh"] + options(portFlag: "-p") + ["--", destination, command], until: deadline)
            if r.status == 127 && tool {
                throw RemoteLatencyError(target: "\(target)", kind: .missingTool,
                                         problem: "'\(remote.remoteCommand)' is not found on the device; install PruneCheck there or set latency.remote_command")
            }
            guard r.status == 0 else { throw failure(r) }
            return r.stdout
        }

        func copy(_ files: [String], to folder: String, until deadline: Date) throws {
            let r = try run("/usr/bin/env", ["scp", "-q"] + options(portFlag: "-P") + ["--"] + files + ["\(destination):\(folder)/"], until: deadline)
            guard r.status == 0 else { throw failure(r) }
        }

        /// ssh's own failures (exit 255) by what its message says; a remote command's by its
        /// exit code and last line.
        func failure(_ r: (status: Int32, stdout: String, stderr: String)) -> RemoteLatencyError {
            let said = Console.inline(r.stderr.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.suffix(2).joined(separator: " / "))
            let name = "\(target)"
            if r.status == 255 || r.stderr.contains("lost connection") {
                if said.contains("Host key verification failed") || said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || said.contains("No ED25519 host key") || said.contains("host key") {
                    return RemoteLatencyError(target: name, kind: .hostKey, problem: "its host key is not known or does not match (\(said)); add it to latency.known_hosts (or ~/.ssh/known_hosts) after checking it")
                }
                if said.contains("Permission denied") || said.contains("Too many authentication failures") {
                    return RemoteLatencyError(target: name, kind: .authentication, problem: "authentication failed (\(said)); check latency.identity_file and the device's authorized_keys")
                }
                return RemoteLatencyError(target: name, kind: .unreachable, problem: "unreachable (\(said.isEmpty ? "ssh exit 255" : said))")
            }
            return RemoteLatencyError(target: name, kind: .failed, problem: "the device's command failed with exit \(r.status): \(said)")
        }

        /// Runs a process, killing it at the deadline.
        func run(_ executable: String, _ arguments: [String], until deadline: Date) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: executable)
            p.arguments = arguments
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            try p.run()
            final class Box: @unchecked Sendable { var data = Data() }
            let outBox = Box(), errBox = Box()
            let group = DispatchGroup()
            group.enter()
            DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
            group.enter()
            DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
            let seconds = max(deadline.timeIntervalSinceNow, 0.1)
            if group.wait(timeout: .now() + seconds) == .timedOut {
                p.terminate()
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                throw RemoteLatencyError(target: "\(target)", kind: .timeout,
                                         problem: "no result within \(Int(remote.timeoutSeconds)) s (latency.target_timeout_s)")
            }
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: outBox.data, as: UTF8.self), String(decoding: errBox.data, as: UTF8.self))
        }
    }
}
