import Common
import Foundation

/// Progress on standard error: on a terminal, one line redrawn in place with a bar and an
/// estimate of the time left; otherwise (CI logs) one plain line per step.
public final class Progress {
    public let interactive: Bool
    private var lineOpen = false

    public init(interactive: Bool = isatty(STDERR_FILENO) == 1) {
        self.interactive = interactive
    }

    /// Reports step `done` of `total` of `task`, `started` being the task's start time.
    public func update(_ task: String, done: Int, total: Int, detail: String, started: Date) {
        if interactive {
            let width = 24
            let filled = total > 0 ? width * done / total : width
            let elapsed = Date().timeIntervalSince(started)
            let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            write("\r\u{1B}[2K" + Console.inline("\(task) [\(bar)] \(done)/\(total) \(detail), about \(Int(eta.rounded()))s left"))
            lineOpen = true
        } else {
            write(Console.sanitize("\(task): \(done)/\(total) \(detail)") + "\n")
        }
    }

    /// A line of its own (ends an open progress line first).
    public func line(_ message: String) {
        if lineOpen {
            write("\r\u{1B}[2K")
            lineOpen = false
        }
        write(Console.sanitize(message) + "\n")
    }

    /// Writes text whose names are sanitized already (standard output is flushed first: a
    /// table stays whole when both streams go to one log, as they do on every CI runner).
    private func write(_ s: String) {
        Console.trusted(s, toStandardError: true)
    }
}
