import Foundation
import Testing
@testable import GitKit

@Suite struct GitTests {
    @Test func readsHeadBranchAndDirtyStateOfARealRepository() throws {
        let dir = try scratchFolder("prunecheck-git")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try git(["init", "-q"], in: dir)
        let unborn = try #require(try Repository.discover(containing: dir))
        #expect(try unborn.headCommit() == nil)
        #expect(try unborn.currentBranch() == "main")

        try "a\n".write(toFile: "\(dir)/file.txt", atomically: true, encoding: .utf8)
        try git(["add", "file.txt"], in: dir)
        try git(["commit", "-qm", "first"], in: dir)
        let repo = try #require(try Repository.discover(containing: dir))
        #expect(try repo.headCommit() == (try git(["rev-parse", "HEAD"], in: dir)))
        #expect(try repo.currentBranch() == "main")
        #expect(try repo.isDirty() == false)

        try "untracked\n".write(toFile: "\(dir)/new.txt", atomically: true, encoding: .utf8)
        #expect(try repo.isDirty() == false, "untracked files do not make the tree dirty")
        try "b\n".write(toFile: "\(dir)/file.txt", atomically: true, encoding: .utf8)
        #expect(try repo.isDirty() == true)

        try git(["checkout", "-q", "--detach"], in: dir)
        #expect(try repo.currentBranch() == nil)
        // Discovery works from a sub-folder too.
        try FileManager.default.createDirectory(atPath: "\(dir)/sub/deeper", withIntermediateDirectories: true)
        #expect(try Repository.discover(containing: "\(dir)/sub/deeper")?.workingDirectory?.hasSuffix("/") == true)
    }

    @Test func outsideGitThereIsNoRepository() throws {
        let dir = try scratchFolder("prunecheck-nogit")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // NSTemporaryDirectory is outside any repository on CI and developer machines.
        #expect(try Repository.discover(containing: dir) == nil)
    }
}
