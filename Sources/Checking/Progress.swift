import Common
import Foundation

/// Progress on standard error: on a terminal, one line redrawn in place (at most ten times a
/// second) with the model (i of N), the phase, a bar and the time left for the whole run;
/// otherwise (CI logs) one plain line per phase and per fine-tuning epoch.
public final class Progress {
    public let interactive: Bool
    private var lineOpen = false
    private var lastDraw = Date.distantPast
    /// The model being run (1-based), of how many, and when it started.
    private var model: (index: Int, count: Int, name: String, started: Date)?
    private var runStarted = Date()
    private var finishedSeconds: [Double] = []

    public init(interactive: Bool = isatty(STDERR_FILENO) == 1) {
        self.interactive = interactive
    }

    /// Starts model `index` (1-based) of `count`; its line names it and what it runs.
    public func startModel(_ index: Int, of count: Int, name: String, detail: String) {
        if let m = model, m.index != index { finishedSeconds.append(Date().timeIntervalSince(m.started)) }
        if index == 1 { runStarted = Date() }
        model = (index, count, name, Date())
        line("[\(index)/\(count)] \(name) (\(detail))" + (remainingText().map { ", \($0) left for the run" } ?? ""))
    }

    /// Ends the last model (its time counts toward the estimate of the rest).
    public func finishModel() {
        if let m = model { finishedSeconds.append(Date().timeIntervalSince(m.started)) }
        model = nil
        if lineOpen {
            write("\r\u{1B}[2K")
            lineOpen = false
        }
    }

    /// A phase of the current model: loading, pruning, calibration, evaluating, timing.
    public func phase(_ text: String) {
        let prefix = model.map { "[\($0.index)/\($0.count)] \($0.name): " } ?? ""
        if interactive {
            draw(prefix + text, force: true)
        } else {
            line("  " + prefix + text)
        }
    }

    /// "about 1 min" for the models not finished yet, from the mean time of those that are.
    func remainingText() -> String? {
        guard let m = model, !finishedSeconds.isEmpty else { return nil }
        let mean = finishedSeconds.reduce(0, +) / Double(finishedSeconds.count)
        let left = max(0, mean * Double(m.count - m.index + 1) - Date().timeIntervalSince(m.started))
        return left < 90 ? "about \(Int(left.rounded())) s" : "about \(Int((left / 60).rounded())) min"
    }

    /// Reports step `done` of `total` of `task` (epochs, or batches within an epoch: `within`
    /// of `withinTotal`), `started` being the task's start time. Off a terminal, only whole
    /// steps are printed.
    public func update(_ task: String, done: Int, total: Int, detail: String, started: Date, within: Int? = nil, withinTotal: Int? = nil) {
        if interactive {
            let width = 24
            let fraction = total > 0 ? (Double(done - (within == nil ? 0 : 1)) + Double(within ?? 0) / Double(max(withinTotal ?? 1, 1))) / Double(total) : 1
            let filled = min(width, max(0, Int(Double(width) * fraction)))
            let elapsed = Date().timeIntervalSince(started)
            let eta = fraction > 0 ? elapsed / fraction * (1 - fraction) : 0
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            let step = within.map { "epoch \(done)/\(total), batch \($0)/\(withinTotal ?? 0)," } ?? "\(done)/\(total)"
            let run = remainingText().map { "; run: \($0)" } ?? ""
            let prefix = model.map { "[\($0.index)/\($0.count)] " } ?? ""
            draw("\(prefix)\(task.trimmingCharacters(in: .whitespaces)) [\(bar)] \(step) \(detail), about \(Int(eta.rounded())) s left\(run)", force: within == nil)
        } else if within == nil {
            write(Console.sanitize("\(task): \(done)/\(total) \(detail)") + "\n")
        }
    }

    /// Redraws the status line (at most ten times a second unless `force`).
    private func draw(_ text: String, force: Bool) {
        guard force || Date().timeIntervalSince(lastDraw) >= 0.1 else { return }
        lastDraw = Date()
        write("\r\u{1B}[2K" + Console.inline(text))
        lineOpen = true
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
