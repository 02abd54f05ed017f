import Common
import CLibGit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a revision could not be used.
public enum RevisionError: UserFacingError, Equatable {
    /// A shallow clone cannot tell the base: that is a baseline problem (3), not bad input.
    public var exitStatus: ExitStatus {
        if case .shallowHistory = self { return .baselineError }
        return .inputError
    }

    /// The name resolves to nothing.
    case unknown(String)
    /// The name resolves to an object that is not a commit (a tree, a blob).
    case notACommit(String)
    /// The history does not reach a merge-base because the clone is shallow.
    case shallowHistory(head: String, base: String)
    /// The two commits share no history.
    case noMergeBase(head: String, base: String)

    public var description: String {
        switch self {
        case .unknown(let r): return "unknown revision '\(r)' (fetch it first, e.g. `git fetch origin \(r)`)"
        case .notACommit(let r): return "revision '\(r)' is not a commit"
        case .shallowHistory(let h, let b):
            return "this is a shallow clone and its history does not reach the merge-base of \(h) and \(b); "
                + "fetch more history (actions/checkout: `fetch-depth: 0`; GitLab: `GIT_DEPTH: 0`; or `git fetch --unshallow` / `git fetch --deepen=200`)"
        case .noMergeBase(let h, let b): return "\(h) and \(b) have no common history"
        }
    }
}

/// A commit that changed a file, with the file's content there (nil where it was deleted).
public struct FileRevision: Equatable, Sendable {
    public var commit: String
    public var summary: String
    /// Seconds since 1970 (committer time).
    public var time: Int64
    public var content: [UInt8]?
}

extension Repository {
    /// The full SHA of the commit `revision` names (`main`, `origin/main`, `HEAD~2`, a SHA).
    public func resolveCommit(_ revision: String) throws -> String {
        var object: OpaquePointer?
        let rc = git_revparse_single(&object, handle, revision)
        if rc == GIT_ENOTFOUND.rawValue || rc == GIT_EAMBIGUOUS.rawValue || rc == GIT_EINVALIDSPEC.rawValue {
            throw RevisionError.unknown(revision)
        }
        try check(rc, "resolve \(revision)")
        defer { git_object_free(object) }
        var commit: OpaquePointer?
        guard git_object_peel(&commit, object, GIT_OBJECT_COMMIT) == 0 else { throw RevisionError.notACommit(revision) }
        defer { git_object_free(commit) }
        return Repository.hex(git_object_id(commit).pointee)
    }

    /// The merge-base of two commits. A shallow clone whose history stops short of it is a
    /// `RevisionError.shallowHistory`, never a wrong base.
    public func mergeBase(_ a: String, _ b: String) throws -> String {
        var oa = try oid(a), ob = try oid(b), out = git_oid()
        let rc = git_merge_base(&out, handle, &oa, &ob)
        // In a shallow clone the walk fails on a missing parent ("object not found") or finds
        // nothing: either way the history does not reach the base.
        if rc < 0 && isShallow { throw RevisionError.shallowHistory(head: String(a.prefix(12)), base: String(b.prefix(12))) }
        if rc == GIT_ENOTFOUND.rawValue {
            if isShallow { throw RevisionError.shallowHistory(head: String(a.prefix(12)), base: String(b.prefix(12))) }
            throw RevisionError.noMergeBase(head: String(a.prefix(12)), base: String(b.prefix(12)))
        }
        try check(rc, "find the merge-base of \(a) and \(b)")
        // In a shallow clone libgit2 may stop at a grafted root and call it the base: accept it
        // only when it is not such a boundary commit.
        let base = Repository.hex(out)
        if isShallow, shallowRoots.contains(base) {
            throw RevisionError.shallowHistory(head: String(a.prefix(12)), base: String(b.prefix(12)))
        }
        return base
    }

    /// The commits at which the shallow history is cut (from `.git/shallow`).
    var shallowRoots: Set<String> {
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        guard git_repository_item_path(&buf, handle, GIT_REPOSITORY_ITEM_GITDIR) == 0, let p = buf.ptr else { return [] }
        let path = String(cString: p) + "shallow"
        guard let f = fopen(path, "r") else { return [] }
        defer { fclose(f) }
        var roots: Set<String> = []
        var line = [CChar](repeating: 0, count: 128)
        while fgets(&line, Int32(line.count), f) != nil {
            let sha = String(cString: line).trimmingCharacters(in: .whitespacesAndNewlines)
            if !sha.isEmpty { roots.insert(sha) }
        }
        return roots
    }

    /// The content of `path` (relative to the repository root) at `commit`, nil when absent.
    public func file(_ path: String, at commit: String) throws -> [UInt8]? {
        guard let id = try blobID(path, at: commit) else { return nil }
        return try blob(id)
    }

    /// The blob id (SHA) of `path` at `commit`, nil when the path is absent there.
    public func blobID(_ path: String, at commit: String) throws -> String? {
        var c = try oid(commit)
        var commitObject: OpaquePointer?
        try check(git_commit_lookup(&commitObject, handle, &c), "look up commit \(commit)")
        defer { git_commit_free(commitObject) }
        var tree: OpaquePointer?
        try check(git_commit_tree(&tree, commitObject), "read the tree of \(commit)")
        defer { git_tree_free(tree) }
        var entry: OpaquePointer?
        let rc = git_tree_entry_bypath(&entry, tree, path)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check(rc, "find \(path) at \(commit)")
        defer { git_tree_entry_free(entry) }
        guard git_tree_entry_type(entry) == GIT_OBJECT_BLOB else { return nil }
        return Repository.hex(git_tree_entry_id(entry).pointee)
    }

    /// The staged (index) blob id of `path`, nil when it is not in the index.
    public func stagedBlobID(_ path: String) throws -> String? {
        var index: OpaquePointer?
        try check(git_repository_index(&index, handle), "open the index")
        defer { git_index_free(index) }
        guard let entry = git_index_get_bypath(index, path, 0) else { return nil }
        return Repository.hex(entry.pointee.id)
    }

    /// The bytes of blob `id`.
    public func blob(_ id: String) throws -> [UInt8] {
        var o = try oid(id)
        var blob: OpaquePointer?
        try check(git_blob_lookup(&blob, handle, &o), "read blob \(id)")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard size > 0, let raw = git_blob_rawcontent(blob) else { return [] }
        return Array(UnsafeRawBufferPointer(start: raw, count: size))
    }

    /// The commits reachable from `from` (first parents) that changed `path`, newest first.
    public func history(of path: String, from: String = "HEAD", limit: Int = 1000) throws -> [FileRevision] {
        var walk: OpaquePointer?
        try check(git_revwalk_new(&walk, handle), "start a history walk")
        defer { git_revwalk_free(walk) }
        git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL.rawValue | GIT_SORT_TIME.rawValue)
        git_revwalk_simplify_first_parent(walk)
        var start = try oid(try resolveCommit(from))
        try check(git_revwalk_push(walk, &start), "walk from \(from)")
        var out: [FileRevision] = []
        var id = git_oid()
        while out.count < limit, git_revwalk_next(&id, walk) == 0 {
            let sha = Repository.hex(id)
            var commit: OpaquePointer?
            try check(git_commit_lookup(&commit, handle, &id), "look up commit \(sha)")
            defer { git_commit_free(commit) }
            let here = try blobID(path, at: sha)
            var parentBlob: String?
            if git_commit_parentcount(commit) > 0 {
                var parent: OpaquePointer?
                if git_commit_parent(&parent, commit, 0) == 0 {
                    parentBlob = try blobID(path, at: Repository.hex(git_commit_id(parent).pointee))
                    git_commit_free(parent)
                } else {
                    break  // the parent is cut off (shallow): history ends here
                }
            }
            guard here != parentBlob else { continue }
            out.append(FileRevision(
                commit: sha, summary: git_commit_summary(commit).map { String(cString: $0) } ?? "",
                time: Int64(git_commit_time(commit)), content: try here.map(blob)))
        }
        return out
    }

    /// A string value of the repository's configuration (`core.hooksPath`), nil when unset.
    public func configValue(_ name: String) throws -> String? {
        var config: OpaquePointer?
        try check(git_repository_config_snapshot(&config, handle), "read the configuration")
        defer { git_config_free(config) }
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        let rc = git_config_get_string_buf(&buf, config, name)
        if rc == GIT_ENOTFOUND.rawValue { return nil }
        try check(rc, "read \(name)")
        return String(cString: buf.ptr)
    }

    /// The folder git runs hooks from: `core.hooksPath` (relative to the working tree) or
    /// `.git/hooks`.
    public func hooksDirectory() throws -> String {
        if let configured = try configValue("core.hooksPath") {
            if configured.hasPrefix("/") { return configured }
            return (workingDirectory ?? "") + configured
        }
        var buf = git_buf()
        defer { git_buf_dispose(&buf) }
        try check(git_repository_item_path(&buf, handle, GIT_REPOSITORY_ITEM_HOOKS), "find the hooks folder")
        var path = String(cString: buf.ptr)
        if path.hasSuffix("/") { path.removeLast() }
        return path
    }

    /// `path` (absolute or relative to the current folder) relative to the working tree root,
    /// nil when it lies outside.
    public func relativePath(_ path: String) -> String? {
        guard let root = workingDirectory else { return nil }
        let absolute = path.hasPrefix("/") ? path : (currentDirectory() + "/" + path)
        let normalized = normalize(absolute)
        let rootNormalized = normalize(root) + "/"
        guard normalized.hasPrefix(rootNormalized) else { return nil }
        return String(normalized.dropFirst(rootNormalized.count))
    }

    func oid(_ hex: String) throws -> git_oid {
        var o = git_oid()
        guard git_oid_fromstr(&o, hex) == 0 else {
            // Not a full SHA: resolve it as a revision.
            return try oid(try resolveCommit(hex))
        }
        return o
    }
}

/// The git blob id of a file's content (what `git hash-object` prints), nil when unreadable.
public func gitBlobID(ofFile path: String) -> String? {
    _ = libgit2Ready
    var o = git_oid()
    guard git_odb_hashfile(&o, path, GIT_OBJECT_BLOB) == 0 else { return nil }
    return Repository.hex(o)
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    return getcwd(&buf, buf.count).map { String(cString: $0) } ?? "."
}

/// Removes `.` and `..` components and repeated slashes; resolves symlinks of existing parents.
func normalize(_ path: String) -> String {
    var resolved = [CChar](repeating: 0, count: 4096)
    if realpath(path, &resolved) != nil { return String(cString: resolved) }
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
        if part == "." || part.isEmpty { continue }
        if part == ".." { _ = parts.popLast() } else { parts.append(part) }
    }
    // Resolve the existing prefix so that /tmp vs /private/tmp style links agree.
    var prefix = parts
    var suffix: [Substring] = []
    while !prefix.isEmpty {
        let candidate = "/" + prefix.joined(separator: "/")
        if realpath(candidate, &resolved) != nil {
            return ([String(cString: resolved)] + suffix.map(String.init)).joined(separator: "/")
        }
        suffix.insert(prefix.removeLast(), at: 0)
    }
    return "/" + parts.joined(separator: "/")
}
