import Common
import CLibGit2
#if canImport(Glibc)
import Glibc
#endif

/// An error from libgit2, with its message and the operation that failed.
public struct GitError: UserFacingError, Equatable {
    public let code: Int32
    public let operation: String
    public let message: String
    public var description: String { "git: \(operation) failed: \(message)" }
}

/// Initializes libgit2 once per process (its own reference count makes repeats harmless).
let libgit2Ready: Bool = {
    git_libgit2_init()
    return true
}()

/// Turns a libgit2 return code into a thrown `GitError` (message copied before it is reused).
@discardableResult
func check(_ code: Int32, _ operation: String) throws -> Int32 {
    guard code < 0 else { return code }
    let message = git_error_last().flatMap { e in e.pointee.message.map { String(cString: $0) } } ?? "error \(code)"
    throw GitError(code: code, operation: operation, message: message)
}

/// A git repository opened through libgit2.
public final class Repository {
    let handle: OpaquePointer

    /// Opens the repository that contains `path` (searching parent folders), or returns nil
    /// when `path` is not inside a git repository.
    public static func discover(containing path: String) throws -> Repository? {
        _ = libgit2Ready
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        let rc = git_repository_discover(&buf, path, 0, nil)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check(rc, "discover repository at \(path)")
        let gitDir = String(cString: buf.ptr)
        var repo: OpaquePointer?
        try check(git_repository_open(&repo, gitDir), "open repository \(gitDir)")
        return Repository(handle: repo!)
    }

    private init(handle: OpaquePointer) { self.handle = handle }

    deinit { git_repository_free(handle) }

    /// The working tree's root folder (with a trailing slash), nil for a bare repository.
    public var workingDirectory: String? {
        git_repository_workdir(handle).map { String(cString: $0) }
    }

    /// Whether this is a shallow clone.
    public var isShallow: Bool { git_repository_is_shallow(handle) == 1 }

    /// The full SHA of the commit HEAD points at; nil before the first commit.
    public func headCommit() throws -> String? {
        var oid = git_oid()
        let rc = git_reference_name_to_id(&oid, handle, "HEAD")
        if rc == GIT_ENOTFOUND.rawValue || rc == GIT_EUNBORNBRANCH.rawValue { return nil }
        try check(rc, "resolve HEAD")
        return Repository.hex(oid)
    }

    /// The short name of the checked-out branch; nil for a detached HEAD.
    public func currentBranch() throws -> String? {
        guard git_repository_head_detached(handle) != 1 else { return nil }
        var ref: OpaquePointer?
        let rc = git_repository_head(&ref, handle)
        if rc == GIT_EUNBORNBRANCH.rawValue || rc == GIT_ENOTFOUND.rawValue {
            // Before the first commit HEAD names a branch that does not exist yet.
            var head: OpaquePointer?
            guard git_reference_lookup(&head, handle, "HEAD") == 0, let head else { return nil }
            defer { git_reference_free(head) }
            guard let target = git_reference_symbolic_target(head) else { return nil }
            let name = String(cString: target)
            return name.hasPrefix("refs/heads/") ? String(name.dropFirst("refs/heads/".count)) : name
        }
        try check(rc, "read HEAD")
        defer { git_reference_free(ref) }
        return git_reference_shorthand(ref).map { String(cString: $0) }
    }

    /// Whether any tracked file differs from HEAD, staged or not (untracked files do not count).
    public func isDirty() throws -> Bool {
        var options = git_status_options()
        try check(git_status_options_init(&options, UInt32(GIT_STATUS_OPTIONS_VERSION)), "init status options")
        options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR
        options.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES.rawValue
        var list: OpaquePointer?
        try check(git_status_list_new(&list, handle, &options), "read status")
        defer { git_status_list_free(list) }
        return git_status_list_entrycount(list) > 0
    }

    static func hex(_ oid: git_oid) -> String {
        let digits = Array("0123456789abcdef")
        return withUnsafeBytes(of: oid.id) { raw in
            String(raw.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
        }
    }
}
