import Foundation

// What every module below the CLI shares: the exit codes of the contract and the one protocol
// of errors a user can act on. The CLI maps any such error to its message and exit code in one
// place (`PruneCheck.main`).

/// PruneCheck's version: the one place it is set (`--version`, reports, baselines, the cache key).
public let toolVersion = "0.1.0"

/// The commit this binary was built from: the `BUILD_INFO` file that `make build` and `make
/// dist` write beside the executable; nil for a binary built another way.
public let buildCommit: String? = {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink("/proc/self/exe", &buffer, 4096)
    guard n > 0 else { return nil }
    let exe = String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let info = exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)] + "/BUILD_INFO"
    guard let f = fopen(String(info), "r") else { return nil }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 128)
    guard fgets(&line, 128, f) != nil else { return nil }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return text.isEmpty ? nil : text
}()

/// `--version`: "0.1.0 (commit 1a2b3c…)".
public var versionDescription: String {
    "\(toolVersion) (commit \(buildCommit ?? "unknown: built without `make build` or `make dist`"))"
}

/// The exit codes of every command (README, "Exit codes").
public enum ExitStatus: Int32, Sendable, Equatable {
    /// No regression (or the command did what was asked).
    case ok = 0
    /// A gated metric regressed.
    case regression = 1
    /// Usage, configuration or input error: the message names the file or option.
    case inputError = 2
    /// A baseline is missing or unreadable, or a shallow clone does not reach the merge-base.
    case baselineError = 3
}

/// An error whose message a user can act on: it names the file, field or option and what was
/// expected, and carries the exit code the command ends with (2 unless it says otherwise).
public protocol UserFacingError: Error, CustomStringConvertible {
    var exitStatus: ExitStatus { get }
}

extension UserFacingError {
    public var exitStatus: ExitStatus { .inputError }
}

/// A user input problem that is not inside one file's contents: an option, a combination of
/// options, a missing repository (exit code 2).
public struct InputError: UserFacingError, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
