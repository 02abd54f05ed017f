import Foundation
import Testing

/// The HTML report opened in a real browser (headless Chromium from Debian's packages; `make
/// test-setup` installs it): it loads without errors, holds every model, and its screenshot is
/// not blank.
@Suite(.serialized) struct HTMLReportTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test func theReportRendersInHeadlessChromium() throws {
        let browser = try #require(Self.chromium, "headless Chromium is missing: `make test-setup` installs it")
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try WorkflowTests.config(sparsityA: "0.97").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let check = try WorkflowTests.prunecheck(["check", "--html", "r.html", "--markdown", "r.md"], in: dir)
        #expect(check.status == 1, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("HTML report: r.html"))
        let html = try String(contentsOfFile: "\(dir)/r.html", encoding: .utf8)
        for part in ["digits-a", "digits-b", "REGRESSED", "History of the gated metrics", "Confusion matrix", "Latency distributions", "What pruning bought"] {
            #expect(html.contains(part), "the report lacks '\(part)'")
        }
        #expect(!html.contains("<script") && !html.contains("http://") || html.contains("http://www.w3.org/2000/svg"), "self-contained, no network")
        let markdown = try String(contentsOfFile: "\(dir)/r.md", encoding: .utf8)
        #expect(markdown.split(separator: "\n", omittingEmptySubsequences: false).count <= 40, "\(markdown)")

        let profile = "\(dir)/chromium-profile"
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(profile)", "--enable-logging=stderr", "--v=0"]
        let dom = try run(browser, common + ["--dump-dom", "file://\(dir)/r.html"])
        #expect(dom.status == 0, "\(dom.stderr)")
        #expect(dom.stdout.contains("<section id=\"digits-a\">") && dom.stdout.contains("</svg>"), "the page did not load")
        #expect(!dom.stderr.contains("Uncaught") && !dom.stderr.contains("CONSOLE"), "errors while loading: \(dom.stderr)")
        let shot = try run(browser, common + ["--window-size=1200,1600", "--screenshot=\(dir)/shot.png", "file://\(dir)/r.html"])
        #expect(shot.status == 0, "\(shot.stderr)")
        let ink = try run("/usr/bin/env", ["python3", Repo.path("Tests/tools/png_ink.py"), "\(dir)/shot.png"])
        #expect((Double(ink.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0.005, "the screenshot is blank: \(ink.stdout)\(ink.stderr)")
    }
}

/// What a CI log shows while a check runs (issue 26 items 2 and 5): the model (i of N), each
/// phase, and a warning naming data.scale when the inputs are far outside what the model takes.
@Suite(.serialized) struct ProgressLogTests {
    @Test func phasesAndModelCountsAndTheScaleWarning() throws {
        let dir = try WorkflowTests.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try WorkflowTests.prunecheck(["check", "--no-cache"], in: dir)
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        for line in ["[1/2] digits-a (magnitude, global, sparsity 0.5)", "[2/2] digits-b", "[1/2] digits-a: loading the model and data",
                     "[1/2] digits-a: pruning (magnitude)", "[2/2] digits-b: timing latency at batch 1", "left for the run"] {
            #expect(r.stderr.contains(line), "the log lacks '\(line)': \(r.stderr)")
        }
        #expect(!r.stderr.contains("warning"), "\(r.stderr)")
        // The digits are in [0, 1]; scaled by 255 they are what a model trained on [0, 1] never saw.
        let text = WorkflowTests.config().replacingOccurrences(of: "eval: [x_test, y_test]", with: "eval: [x_test, y_test]\n      scale: 255")
        try text.write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let scaled = try WorkflowTests.prunecheck(["check", "--no-cache"], in: dir)
        #expect(scaled.stderr.contains("warning: the inputs of 'digits-a' span [0, 255] after data.scale 255.0, straight into a Gemm")
                && scaled.stderr.contains("set data.scale"), "\(scaled.stderr)")
    }
}
