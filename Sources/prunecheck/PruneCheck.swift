import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import GitKit
import Kernels
import ModelIO
import Regression
import Reports

@main
struct PruneCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prunecheck",
        abstract: "Re-prunes, fine-tunes and evaluates models, and fails CI when they regress against their baselines.",
        discussion: "Exit codes: 0 no regression, 1 regression found, 2 usage, configuration or input error, 3 baseline missing or unreadable.",
        version: versionDescription,
        subcommands: [Check.self, BaselineGroup.self, Eval.self, Prune.self, Infer.self, Latency.self, Inspect.self, Merge.self, History.self, HookGroup.self, Init.self])

    /// Runs the command and maps every error to a documented exit code with one clear message.
    static func main() {
        tuneAllocatorForTensors()
        let code: Int32
        do {
            var command = try parseAsRoot()
            try command.run()
            code = ExitStatus.ok.rawValue
        } catch let exit as ExitCode {
            code = exit.rawValue
        } catch let e as UserFacingError {
            code = report(e.description, e.exitStatus.rawValue)
        } catch let e as NSError where e.domain == NSCocoaErrorDomain || e.domain == NSPOSIXErrorDomain {
            // Errors from the system (a full disk, a missing folder, no permission): the file and
            // what happened, not Foundation's dump of the error object.
            code = report(systemErrorText(e), ExitStatus.inputError.rawValue)
        } catch {
            // Help and --version are clean exits; anything else from the parser is a usage error.
            if PruneCheck.exitCode(for: error) == .success {
                print(PruneCheck.fullMessage(for: error))
                code = ExitStatus.ok.rawValue
            } else {
                // The parser's message starts with its own "Error: ".
                Console.err(PruneCheck.fullMessage(for: error))
                code = ExitStatus.inputError.rawValue
            }
        }
        Foundation.exit(code)
    }

    /// "FILE: what happened" for a Foundation or POSIX error.
    static func systemErrorText(_ e: NSError) -> String {
        let file = (e.userInfo[NSFilePathErrorKey] as? String) ?? (e.userInfo[NSURLErrorKey] as? URL)?.path
        var what: String
        if let underlying = e.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            what = String(cString: strerror(Int32(underlying.code)))
        } else if e.domain == NSPOSIXErrorDomain {
            what = String(cString: strerror(Int32(e.code)))
        } else {
            what = e.localizedFailureReason ?? e.localizedDescription
        }
        if what.isEmpty { what = "the operation failed (error \(e.code))" }
        return file.map { "\($0): \(what)" } ?? what
    }

    static func report(_ message: String, _ code: Int32) -> Int32 {
        Console.err("error: \(message)")
        return code
    }
}
