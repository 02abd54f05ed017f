import Foundation

// Every file PruneCheck writes (reports, baselines, the cache, exported models) goes through
// here: a reader never sees a half-written file, an error leaves the old file as it was, and a
// path that is not a regular file is never replaced by one.
//
// Temporaries live in a `.prunecheck-tmp` folder beside the target whose `.gitignore` says `*`,
// so that one left by a killed run is ignored by git; the next write to that folder removes
// those of processes that are gone, and the folder itself once it is empty.

/// A write that the system refused, or a target that cannot be written safely (exit 2): the
/// file and what happened, in words.
public struct FileWriteError: UserFacingError, Equatable {
    public let file: String
    public let problem: String
    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }
    public var description: String { "\(file): \(problem)" }

    /// The system's words for `errno` (strerror), after `what` ("cannot write").
    static func system(_ file: String, _ what: String, _ code: Int32 = errno) -> FileWriteError {
        FileWriteError(file: file, "\(what): \(String(cString: strerror(code)))")
    }
}

/// Writes `contents` to `path` atomically (see `writeFilesAtomically`).
public func writeFileAtomically(_ contents: String, to path: String) throws {
    try writeFilesAtomically([(path, Array(contents.utf8))])
}

/// Writes `bytes` to `path` atomically (see `writeFilesAtomically`).
public func writeFileAtomically(bytes: [UInt8], to path: String) throws {
    try writeFilesAtomically([(path, bytes)])
}

/// Writes every file to its temporary first and renames them into place only when all are
/// written, so an error (a full disk, a refused target) changes none of them. A device or a
/// FIFO (`/dev/null`, `/dev/stdout`) is written in place; a symbolic link or a folder is
/// refused. Missing folders are created.
public func writeFilesAtomically(_ files: [(path: String, bytes: [UInt8])], mode: mode_t = 0o644) throws {
    var staged: [(temporary: String, path: String, folder: String)] = []
    var inPlace: [(path: String, bytes: [UInt8])] = []
    do {
        for (path, bytes) in files {
            switch try targetKind(path) {
            case .special:
                inPlace.append((path, bytes))
            case .regular:
                let folder = try temporaryFolder(for: path)
                let temporary = (folder as NSString).appendingPathComponent("\((path as NSString).lastPathComponent).\(getpid())")
                try writeAll(bytes, to: temporary, create: true, mode: mode, reportAs: path)
                staged.append((temporary, path, folder))
            }
        }
        for (path, bytes) in inPlace { try writeAll(bytes, to: path, create: false, reportAs: path) }
    } catch {
        for s in staged { unlink(s.temporary) }
        for folder in Set(staged.map(\.folder)) { removeIfEmpty(folder) }
        throw error
    }
    var failure: Error?
    for s in staged where failure == nil {
        if rename(s.temporary, s.path) != 0 { failure = FileWriteError.system(s.path, "cannot replace the file") }
    }
    for s in staged { unlink(s.temporary) }
    for folder in Set(staged.map(\.folder)) { removeIfEmpty(folder) }
    if let failure { throw failure }
}

private enum TargetKind { case regular, special }

/// What `path` is: absent or a regular file (replaced atomically), a device, FIFO or socket
/// (written in place); a symlink or a folder is an error.
private func targetKind(_ path: String) throws -> TargetKind {
    var info = stat()
    guard lstat(path, &info) == 0 else {
        if errno == ENOENT { return .regular }
        throw FileWriteError.system(path, "cannot inspect the path")
    }
    switch info.st_mode & S_IFMT {
    case S_IFREG: return .regular
    case S_IFLNK:
        throw FileWriteError(file: path, "is a symbolic link; PruneCheck neither writes through it nor replaces it: give the path of a regular file")
    case S_IFDIR: throw FileWriteError(file: path, "is a folder; give a file name")
    default: return .special
    }
}

/// The `.prunecheck-tmp` folder beside `path`, created with its `.gitignore`, after removing
/// the temporaries of processes that no longer run.
private func temporaryFolder(for path: String) throws -> String {
    let parent = (path as NSString).deletingLastPathComponent
    let dir = parent.isEmpty ? "." : parent
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw FileWriteError(file: path, "cannot create its folder \(dir): \((error as NSError).localizedFailureReason ?? "permission denied or not a folder")")
    }
    let folder = (dir as NSString).appendingPathComponent(".prunecheck-tmp")
    if mkdir(folder, 0o755) != 0 && errno != EEXIST { throw FileWriteError.system(path, "cannot create \(folder)") }
    removeStaleTemporaries(in: folder)
    let ignore = (folder as NSString).appendingPathComponent(".gitignore")
    if access(ignore, F_OK) != 0 { try writeAll(Array("*\n".utf8), to: ignore, create: true, reportAs: ignore) }
    return folder
}

/// Removes `NAME.PID` files whose process is gone (killed in the middle of a write).
public func removeStaleTemporaries(in folder: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
    for name in names where name != ".gitignore" {
        guard let dot = name.lastIndex(of: "."), let pid = Int32(name[name.index(after: dot)...]) else { continue }
        if pid != getpid(), kill(pid, 0) != 0, errno == ESRCH { unlink((folder as NSString).appendingPathComponent(name)) }
    }
}

/// Removes the temporaries' folder when only its `.gitignore` is left.
private func removeIfEmpty(_ folder: String) {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder), names.allSatisfy({ $0 == ".gitignore" }) else { return }
    let ignore = (folder as NSString).appendingPathComponent(".gitignore")
    unlink(ignore)
    // Another run may have put a temporary in it meanwhile: then the folder stays, ignored again.
    if rmdir(folder) != 0 { _ = try? writeAll(Array("*\n".utf8), to: ignore, create: true, reportAs: ignore) }
}

/// Writes every byte (retrying short writes), then fsyncs regular files.
private func writeAll(_ bytes: [UInt8], to path: String, create: Bool, mode: mode_t = 0o644, reportAs: String) throws {
    let fd = create ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode) : open(path, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FileWriteError.system(reportAs, "cannot open for writing") }
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FileWriteError.system(reportAs, "cannot write")
        }
        done += n
    }
    if create, fsync(fd) != 0, errno != EINVAL { throw FileWriteError.system(reportAs, "cannot write") }
    // The umask may have narrowed the mode (a hook must be executable).
    if create && mode != 0o644 { fchmod(fd, mode) }
}
