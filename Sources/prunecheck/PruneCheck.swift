import ArgumentParser
import Configuration
import Foundation
import GitKit
import ModelIO
import Regression
import Reports

let toolVersion = "0.1.0"

/// Exit codes, part of the contract (README, "Exit codes").
enum Exit {
    static let ok: Int32 = 0
    static let regression: Int32 = 1
    static let inputError: Int32 = 2
    static let baselineError: Int32 = 3
}

@main
struct PruneCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prunecheck",
        abstract: "Re-prunes, fine-tunes and evaluates models, and fails CI when they regress against their baselines.",
        discussion: "Exit codes: 0 no regression, 1 regression found, 2 usage, configuration or input error, 3 baseline missing or unreadable.",
        version: toolVersion,
        subcommands: [Check.self, BaselineGroup.self, Eval.self, Prune.self, Inspect.self, Merge.self, History.self, HookGroup.self, Init.self])

    /// Runs the command and maps every error to a documented exit code with one clear message.
    static func main() {
        let code: Int32
        do {
            var command = try parseAsRoot()
            try command.run()
            code = Exit.ok
        } catch let exit as ExitCode {
            code = exit.rawValue
        } catch let e as ConfigError {
            code = report(e.description, Exit.inputError)
        } catch let e as ModelIOError {
            code = report(e.description, Exit.inputError)
        } catch let e as InputError {
            code = report(e.description, Exit.inputError)
        } catch let e as BaselineError {
            code = report(e.description, Exit.baselineError)
        } catch let e as RevisionError {
            // A shallow clone cannot tell the base: that is a baseline problem (3), not bad input.
            if case .shallowHistory = e { code = report(e.description, Exit.baselineError) } else { code = report(e.description, Exit.inputError) }
        } catch let e as JSONReport.ParseError {
            code = report(e.description, Exit.inputError)
        } catch let e as GitError {
            code = report(e.description, Exit.inputError)
        } catch {
            // Help and --version are clean exits; anything else from the parser is a usage error.
            if PruneCheck.exitCode(for: error) == .success {
                print(PruneCheck.fullMessage(for: error))
                code = Exit.ok
            } else {
                // The parser's message starts with its own "Error: ".
                FileHandle.standardError.write(Data((PruneCheck.fullMessage(for: error) + "\n").utf8))
                code = Exit.inputError
            }
        }
        Foundation.exit(code)
    }

    static func report(_ message: String, _ code: Int32) -> Int32 {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return code
    }
}

/// A user input problem that is not inside one file's contents (exit code 2).
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Lines for the user that are not results: progress and notes, on standard error.
func note(_ message: String) {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
}
