import ArgumentParser
import Checking
import Common
import Foundation
import GitKit

/// `prunecheck hook install|uninstall`: a git pre-commit hook that checks the models touched
/// by the staged changes.
struct HookGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hook", abstract: "Install or remove the git pre-commit hook.", subcommands: [Install.self, Uninstall.self])

    static let marker = "# prunecheck-hook v1"
    static let previousSuffix = ".prunecheck-previous"

    /// The hooks folder and the pre-commit hook path of the repository containing the cwd.
    static func locate() throws -> (repository: Repository, hooks: String, hook: String) {
        guard let repository = try Repository.discover(containing: FileManager.default.currentDirectoryPath) else {
            throw InputError("not a git repository: run `prunecheck hook` inside the repository to protect")
        }
        let hooks = try repository.hooksDirectory()
        return (repository, hooks, (hooks as NSString).appendingPathComponent("pre-commit"))
    }

    static func isOurs(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
        return text.contains(marker)
    }

    struct Install: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install a pre-commit hook that runs `prunecheck check --staged`.",
            discussion: "Respects core.hooksPath. An existing pre-commit hook is kept and run first (renamed to pre-commit.prunecheck-previous); `hook uninstall` puts it back.")

        @Option(name: .shortAndLong, help: "The configuration file, relative to the repository root.")
        var config = "prunecheck.yml"

        func run() throws {
            let (_, hooks, hook) = try HookGroup.locate()
            let fm = FileManager.default
            try fm.createDirectory(atPath: hooks, withIntermediateDirectories: true)
            let previous = hook + HookGroup.previousSuffix
            if fm.fileExists(atPath: hook) && !HookGroup.isOurs(hook) {
                guard !fm.fileExists(atPath: previous) else {
                    throw InputError("\(previous) already exists; move it or \(hook) away first (nothing was changed)")
                }
                try fm.moveItem(atPath: hook, toPath: previous)
                Console.out("kept the existing hook as \(previous); it runs before PruneCheck")
            }
            let binary = executablePath()
            let script = """
                #!/bin/sh
                \(HookGroup.marker): installed by `prunecheck hook install`; remove with `prunecheck hook uninstall`.
                # Runs the hook that was here before, then checks the models whose staged inputs changed.
                previous="$(dirname "$0")/pre-commit\(HookGroup.previousSuffix)"
                if [ -x "$previous" ]; then
                  "$previous" "$@" || exit $?
                fi
                exec \(shellQuote(binary)) check --staged --config \(shellQuote(config))

                """
            try writeExecutable(script, to: hook)
            Console.out("installed \(hook)")
        }
    }

    struct Uninstall: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove PruneCheck's pre-commit hook and restore the one it replaced.")

        func run() throws {
            let (_, _, hook) = try HookGroup.locate()
            let fm = FileManager.default
            guard fm.fileExists(atPath: hook) else {
                Console.out("no pre-commit hook installed; nothing to do")
                return
            }
            guard HookGroup.isOurs(hook) else {
                throw InputError("\(hook) was not installed by PruneCheck; it was left as it is")
            }
            try fm.removeItem(atPath: hook)
            let previous = hook + HookGroup.previousSuffix
            if fm.fileExists(atPath: previous) {
                try fm.moveItem(atPath: previous, toPath: hook)
                Console.out("removed PruneCheck's hook and restored the previous \(hook)")
            } else {
                Console.out("removed \(hook)")
            }
        }
    }
}

/// The absolute path of the running binary.
func executablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        ?? URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
}


/// Writes a script atomically with mode 755.
func writeExecutable(_ text: String, to path: String) throws {
    try writeFilesAtomically([(path, Array(text.utf8))], mode: 0o755)
}
