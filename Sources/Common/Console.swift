import Foundation

// Everything PruneCheck prints goes through `Console`. Names come from files a pull request
// writes (ONNX node names, model names, tolerance keys, commit messages), and a CI runner reads
// its log as commands: a line `::error file=…::`, `::add-mask::` or `##[group]` is executed by
// GitHub Actions, ANSI control sequences move the cursor or erase lines on a terminal. So the
// text is made inert on the way out: control characters are shown escaped, and a line a runner
// would take for a command is prefixed with a backslash. PruneCheck's own commands
// (`::group::`, annotations, GitLab sections) and terminal controls go through `trusted`.

public enum Console {
    /// The SGR colour codes PruneCheck itself writes; any other escape sequence is shown
    /// escaped.
    static let ownColors: Set<String> = ["0", "1", "31", "32", "33", "36", "90"]

    /// `text` made inert for a terminal and a CI log: control characters but newline and tab
    /// (and PruneCheck's own colours) escaped as `\xNN`, bidirectional overrides as `\u{…}`, and
    /// every line that starts (after blanks) like a workflow command (`::`, `##[`) prefixed
    /// with `\`.
    public static func sanitize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        let scalars = Array(text.unicodeScalars)
        var i = 0
        while i < scalars.count {
            let c = scalars[i], v = c.value
            if v == 0x1B, let end = ownColorEnd(scalars, i) {
                out.append(contentsOf: scalars[i...end])
                i = end + 1
                continue
            }
            if v == 0x0A || v == 0x09 {
                out.append(c)
            } else if v < 0x20 || (0x7F...0x9F).contains(v) {
                out.append(contentsOf: "\\x\(String(format: "%02X", v))".unicodeScalars)
            } else if (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v) || v == 0x200E || v == 0x200F {
                out.append(contentsOf: "\\u{\(String(v, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(c)
            }
            i += 1
        }
        return defuseCommands(String(out))
    }

    /// The index of the `m` that ends one of PruneCheck's own colour sequences starting at `i`.
    static func ownColorEnd(_ s: [Unicode.Scalar], _ i: Int) -> Int? {
        guard i + 2 < s.count, s[i + 1] == "[" else { return nil }
        var j = i + 2, code = ""
        while j < s.count, j - i < 6, ("0"..."9").contains(s[j]) { code.unicodeScalars.append(s[j]); j += 1 }
        guard j < s.count, s[j] == "m", ownColors.contains(code) else { return nil }
        return j
    }

    /// Lines that a CI runner would execute, prefixed with a backslash.
    static func defuseCommands(_ text: String) -> String {
        guard text.contains("::") || text.contains("##[") else { return text }
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let body = line.drop { $0 == " " || $0 == "\t" }
            return body.hasPrefix("::") || body.hasPrefix("##[") ? "\\" + line : String(line)
        }.joined(separator: "\n")
    }

    /// A name from a file in one line: `sanitize`, with newlines shown as `\n` too (for report
    /// headings and the like, where a name must not start a line of its own).
    public static func inline(_ name: String) -> String {
        sanitize(name.replacingOccurrences(of: "\r\n", with: "\\n").replacingOccurrences(of: "\n", with: "\\n"))
    }

    /// Writes sanitized `text` to standard output.
    public static func out(_ text: String, terminator: String = "\n") {
        write(sanitize(text) + terminator, to: stdout)
    }

    /// Writes sanitized `text` to standard error, after flushing standard output: a note must
    /// not land inside a table row when both streams go to one CI log.
    public static func err(_ text: String, terminator: String = "\n") {
        fflush(stdout)
        write(sanitize(text) + terminator, to: stderr)
    }

    /// Writes text PruneCheck composed itself, with its own control sequences and CI commands,
    /// as it is. Any name in it must have been sanitized already.
    public static func trusted(_ text: String, toStandardError: Bool = false) {
        if toStandardError { fflush(stdout) }
        write(text, to: toStandardError ? stderr : stdout)
    }

    private static func write(_ text: String, to stream: UnsafeMutablePointer<FILE>) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { fwrite($0.baseAddress, 1, $0.count, stream) }
        if stream == stderr { fflush(stderr) }
    }
}

/// `s` as one word for a POSIX shell (single quotes; a quote inside as '\'').
public func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
