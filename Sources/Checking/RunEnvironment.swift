import Common
import Foundation
import GitKit
import Regression
import Reports
import Evaluation

/// Git state and machine facts gathered once per run.
public struct RunEnvironment {
    public var commit: String?
    public var branch: String?
    public var dirty = false
    public var inGit = false
    public var machine: MachineDescription
    public var timestamp: String
    public var hostname: String

    /// Reads git state through libgit2 for the repository containing `folder`; outside git
    /// it says so once on standard error and records no commit.
    public static func gather(folder: String, repository: Repository?) throws -> RunEnvironment {
        var env = RunEnvironment(machine: machineDescription(), timestamp: utcTimestamp(), hostname: ProcessInfo.processInfo.hostName)
        if let repo = repository {
            env.inGit = true
            env.commit = try repo.headCommit()
            env.branch = try repo.currentBranch()
            env.dirty = try repo.isDirty()
        } else {
            note("note: \(folder) is not in a git repository; results record no commit")
        }
        return env
    }

    public var context: RunContext {
        RunContext(commit: commit, branch: branch, dirty: dirty, toolVersion: toolVersion, timestamp: timestamp,
                   hostname: hostname, machine: machine)
    }

    /// The machine's calibration score (GFLOP/s of the reference workload), measured once.
    lazy var calibration: Double = Calibration.score()

    public mutating func recording(threads: Int) -> RecordingContext {
        RecordingContext(commit: commit, branch: branch, dirty: dirty, toolVersion: toolVersion, machine: machine, threads: threads,
                         calibration: calibration)
    }

    public static func utcTimestamp() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss"
        return f.string(from: Date())
    }

    public static func machineDescription() -> MachineDescription {
        var u = utsname()
        uname(&u)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { raw in String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return MachineDescription(cpu: CPUInfo.modelName, arch: field(u.machine), cores: ProcessInfo.processInfo.activeProcessorCount,
                                  os: field(u.sysname), isa: CPUInfo.isa)
    }
}
