import Common
import Foundation
import Regression

// Baselines on disk: Regression parses and renders them (pure), this reads and writes the files.

extension Baseline {
    /// Reads `path`; a missing file is a `BaselineError` naming the command that records it.
    public static func read(path: String) throws -> Baseline {
        try FileConfinement.check(path)
        guard FileManager.default.fileExists(atPath: path) else {
            throw BaselineError(file: path, "baseline is missing; record it with `prunecheck baseline update`")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw BaselineError(file: path, "baseline cannot be read")
        }
        return try Baseline(data: data, file: path)
    }

    /// Writes the baseline atomically.
    public func write(path: String) throws {
        try writeFileAtomically(json.rendered(), to: path)
    }
}
