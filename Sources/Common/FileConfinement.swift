import Foundation

/// The folder whose files a check may read: the repository (or the config's folder outside
/// git). A pull request writes the config, the data folder and the symlinks in them; without
/// this, `data: {file: /proc/self/environ}` or a committed `env.csv -> /proc/self/environ` would
/// hand the runner's secrets to whatever parses and quotes the file. Every reader of a
/// configured input calls `check` before it opens the file. nil (the default, and what the
/// one-model commands keep: their paths come from the command line) reads anywhere.
public enum FileConfinement {
    nonisolated(unsafe) private static var root: String?
    /// Folders PruneCheck made itself (copies of staged or committed files).
    nonisolated(unsafe) private static var own: [String] = []
    private static let lock = NSLock()

    /// Also allows reads below `folder`, a folder PruneCheck made and filled itself.
    public static func allow(_ folder: String) {
        lock.lock(); defer { lock.unlock() }
        own.append(resolved(folder))
    }

    /// Confines reads to `folder` (resolved, symlinks included), or lifts the confinement.
    public static func confine(to folder: String?) {
        lock.lock(); defer { lock.unlock() }
        root = folder.map { resolved($0) }
    }

    public static var current: String? {
        lock.lock(); defer { lock.unlock() }
        return root
    }

    /// Throws when `path` (followed through every symlink) lies outside the confinement. A path
    /// that does not exist passes: its reader says that it is missing.
    public static func check(_ path: String) throws {
        guard let root = current else { return }
        let target = resolved(path)
        lock.lock()
        let allowed = [root] + own
        lock.unlock()
        for folder in allowed where target == folder || target.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") { return }
        throw ConfinementError(file: path, target: target, root: root)
    }

    /// `path` with every symlink followed; for a path that does not exist, its deepest existing
    /// ancestor resolved and the rest appended.
    static func resolved(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var head = (absolute as NSString).standardizingPath
        var tail: [String] = []
        while true {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            if realpath(head, &buffer) != nil {
                let base = String(cString: buffer)
                return tail.isEmpty ? base : (base as NSString).appendingPathComponent(tail.reversed().joined(separator: "/"))
            }
            guard head != "/", !head.isEmpty else { return absolute }
            tail.append((head as NSString).lastPathComponent)
            head = (head as NSString).deletingLastPathComponent
        }
    }
}

/// A configured input that resolves outside the repository (exit 2). The message names the
/// path and where it leads, never the content.
public struct ConfinementError: UserFacingError, Equatable {
    public let file: String
    public let target: String
    public let root: String

    public var description: String {
        let absolute = file.hasPrefix("/") ? file : FileManager.default.currentDirectoryPath + "/" + file
        let via = URL(fileURLWithPath: absolute).standardized.path == target ? "lies" : "resolves (through a symlink) to \(target),"
        return "\(file): \(via) outside the repository \(root); PruneCheck reads a check's inputs only from inside it, "
            + "so that a pull request cannot make it read the runner's files. "
            + "Pass --allow-outside-repository if this file is meant to be read."
    }
}
