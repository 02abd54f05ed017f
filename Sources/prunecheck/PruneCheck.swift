import ArgumentParser
import Checking
import Common
import Configuration
import Foundation
import GitKit
import ModelIO
import Regression
import Reports

@main
struct PruneCheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prunecheck",
        abstract: "Re-prunes, fine-tunes and evaluates models, and fails CI when they regress against their baselines.",
        discussion: "Exit codes: 0 no regression, 1 regression found, 2 usage, configuration or input error, 3 baseline missing or unreadable.",
        version: toolVersion,
        subcommands: [Check.self, BaselineGroup.self, Eval.self, Prune.self, Infer.self, Latency.self, Inspect.self, Merge.self, History.self, HookGroup.self, Init.self])

    /// Runs the command and maps every error to a documented exit code with one clear message.
    static func main() {
        let code: Int32
        do {
            var command = try parseAsRoot()
            try command.run()
            code = ExitStatus.ok.rawValue
        } catch let exit as ExitCode {
            code = exit.rawValue
        } catch let e as UserFacingError {
            code = report(e.description, e.exitStatus.rawValue)
        } catch {
            // Help and --version are clean exits; anything else from the parser is a usage error.
            if PruneCheck.exitCode(for: error) == .success {
                print(PruneCheck.fullMessage(for: error))
                code = ExitStatus.ok.rawValue
            } else {
                // The parser's message starts with its own "Error: ".
                FileHandle.standardError.write(Data((PruneCheck.fullMessage(for: error) + "\n").utf8))
                code = ExitStatus.inputError.rawValue
            }
        }
        Foundation.exit(code)
    }

    static func report(_ message: String, _ code: Int32) -> Int32 {
        fflush(stdout)
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        return code
    }
}
