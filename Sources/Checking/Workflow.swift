import Common
import Configuration
import Foundation
import GitKit
import Regression

/// Where the baselines of a check come from, and the merge-base when checking against one.
public struct BaseSelection {
    /// The revision as the user (or the CI environment) named it.
    public var revision: String
    /// The merge-base of HEAD and that revision.
    public var mergeBase: String
}

/// CI variables that name the branch a change merges into, in the order they are tried.
public let baseEnvironmentVariables = ["GITHUB_BASE_REF", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "CHANGE_TARGET"]

/// Resolves `--base REV` (or `--base auto`, from the CI environment) to a merge-base with HEAD.
/// Returns nil when there is nothing to resolve (no --base, `auto` outside a pull request or
/// outside git, which is noted). A named revision outside a git repository is an input error.
public func resolveBase(_ option: String?, repository: Repository?, environment: [String: String]) throws -> BaseSelection? {
    guard var revision = option else { return nil }
    if revision != "auto" && repository == nil {
        throw InputError("--base \(revision): not in a git repository (the baselines to compare with are read from git); run inside the repository or leave --base out")
    }
    if revision == "auto" {
        if let name = baseEnvironmentVariables.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) {
            revision = name
        } else if environment["GITHUB_EVENT_NAME"] == "push", let repository, let parent = try? repository.resolveCommit("HEAD~1") {
            // A push (to the default branch, say) is checked against the commit before it:
            // compared with itself, `--changed-only` would check nothing.
            note("note: --base auto: a push; comparing with the previous commit \(parent.prefix(12))")
            revision = parent
        } else {
            note("note: --base auto: none of \(baseEnvironmentVariables.joined(separator: ", ")) is set; using the working tree's baselines")
            return nil
        }
    }
    guard let repository else {
        note("note: --base auto (\(revision)): not a git repository; using the working tree's baselines")
        return nil
    }
    guard let head = try repository.headCommit() else { throw RevisionError.unknown("HEAD") }
    // A branch name from CI usually exists only as a remote-tracking branch.
    let commit: String
    do {
        commit = try repository.resolveCommit("origin/\(revision)")
    } catch RevisionError.unknown {
        commit = try repository.resolveCommit(revision)
    } catch RevisionError.notACommit {
        commit = try repository.resolveCommit(revision)
    }
    return BaseSelection(revision: revision, mergeBase: try repository.mergeBase(head, commit))
}

/// The files a check reads: the working tree, the index (staged content) for pre-commit, or
/// a commit (the base revision whose pruned model paired timing rebuilds).
public final class InputView {
    public enum Kind { case workingTree, index, commit(String) }
    public let kind: Kind
    public let repository: Repository?
    private var scratch: String?

    public init(kind: Kind, repository: Repository?) {
        self.kind = kind
        self.repository = repository
    }

    deinit {
        if let scratch { try? FileManager.default.removeItem(atPath: scratch) }
    }

    /// The blob id of `path` as this view sees it (nil when absent).
    public func blobID(_ path: String) throws -> String? {
        switch kind {
        case .workingTree:
            return gitBlobID(ofFile: path)
        case .index:
            guard let repository, let rel = repository.relativePath(path) else { return gitBlobID(ofFile: path) }
            return try repository.stagedBlobID(rel)
        case .commit(let commit):
            guard let repository, let rel = repository.relativePath(path) else { return gitBlobID(ofFile: path) }
            return try repository.blobID(rel, at: commit)
        }
    }

    /// The blob this view has for `path` when it differs from the working tree's file.
    private func otherBlob(_ path: String) throws -> String? {
        guard let repository, let rel = repository.relativePath(path) else { return nil }
        switch kind {
        case .workingTree: return nil
        case .index:
            guard let staged = try repository.stagedBlobID(rel), staged != gitBlobID(ofFile: path) else { return nil }
            return staged
        case .commit(let commit):
            guard let id = try repository.blobID(rel, at: commit) else {
                throw InputError("\(rel) does not exist at \(commit.prefix(12))")
            }
            return id == gitBlobID(ofFile: path) ? nil : id
        }
    }

    /// A local file with the content this view has for `path`: the path itself, or a copy of
    /// the staged blob when the index differs from the working tree.
    public func localPath(_ path: String) throws -> String {
        guard let repository, let rel = repository.relativePath(path), let staged = try otherBlob(path) else { return path }
        if scratch == nil {
            let dir = (NSTemporaryDirectory() as NSString).appendingPathComponent("prunecheck-view-\(UUID().uuidString)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            FileConfinement.allow(dir)
            scratch = dir
        }
        let copy = (scratch! as NSString).appendingPathComponent(rel.replacingOccurrences(of: "/", with: "__"))
        try Data(try repository.blob(staged)).write(to: URL(fileURLWithPath: copy))
        return copy
    }

    /// The bytes of `path` in this view, nil when absent.
    public func contents(_ path: String) throws -> [UInt8]? {
        let local = try localPath(path)
        if local == path { try FileConfinement.check(path) }
        return FileManager.default.contents(atPath: local).map { [UInt8]($0) }
    }
}

/// The files a model's result depends on.
public func inputFiles(of spec: ModelSpec) -> [String] {
    [spec.model] + (spec.architecture.map { [$0] } ?? []) + [spec.data.file]
        + [spec.recipe.distill?.teacher, spec.recipe.distill?.teacherArchitecture].compactMap { $0 }
}

/// Why `spec` must run again compared with commit `base`, or nil when its inputs, recipe and
/// settings are the same there.
public func changeReason(_ spec: ModelSpec, baseConfig: CheckConfig?, base: String, repository: Repository, view: InputView) throws -> String? {
    guard let baseConfig else { return "the configuration is new since \(base.prefix(12))" }
    guard let old = baseConfig.models.first(where: { $0.name == spec.name }) else {
        return "the model is new since \(base.prefix(12))"
    }
    var a = spec, b = old
    a.line = nil
    b.line = nil
    if a != b { return "its recipe or settings changed since \(base.prefix(12))" }
    for file in inputFiles(of: spec) {
        guard let rel = repository.relativePath(file) else { return "\(file) is outside the repository" }
        if try repository.blobID(rel, at: base) != view.blobID(file) { return "\(rel) changed since \(base.prefix(12))" }
    }
    return nil
}

/// The configuration as it is at `commit`, nil when the file does not exist there.
public func configurationAt(_ commit: String, path: String, repository: Repository) throws -> CheckConfig? {
    guard let rel = repository.relativePath(path), let bytes = try repository.file(rel, at: commit) else { return nil }
    return try CheckConfig.parse(String(decoding: bytes, as: UTF8.self), file: path)
}

/// Parses `i/n` (1 ≤ i ≤ n).
public func parseShard(_ text: String) throws -> (index: Int, count: Int) {
    let parts = text.split(separator: "/")
    guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n >= 1, i >= 1, i <= n else {
        throw InputError("--shard \(text): expected i/n with 1 ≤ i ≤ n, e.g. 1/4")
    }
    return (i, n)
}

/// Confines the files a check reads to the repository holding `configPath` (or the config's
/// folder outside git), the config included, unless `allowOutside` (see `FileConfinement`).
public func confineReads(configPath: String, allowOutside: Bool) throws {
    guard !allowOutside else { FileConfinement.confine(to: nil); return }
    let configFolder = folder(of: configPath)
    let root = try Repository.discover(containing: configFolder)?.workingDirectory ?? configFolder
    FileConfinement.confine(to: root)
    try FileConfinement.check(configPath)
}
