import Regression

/// What a report needs to know about the run besides the verdicts.
public struct RunContext: Sendable {
    /// HEAD of the repository the check ran in, nil outside git.
    public var commit: String?
    public var branch: String?
    public var dirty: Bool
    public var toolVersion: String
    /// UTC start time as `YYYY-MM-DDThh:mm:ss` (no zone suffix: the Ant schema forbids one).
    public var timestamp: String
    public var hostname: String
    public var machine: MachineDescription
    /// The revision given with `--base`, and the merge-base the baselines were read at.
    public var baseRevision: String?
    public var mergeBase: String?
    /// `i/n` when this run is one shard of a suite.
    public var shard: String?
    /// GFLOP/s of the reference workload in this process (nil when not measured).
    public var calibration: Double?
    /// Whether the CPU's energy counters (RAPL) could be read, so measured energy is reported.
    public var energyCounters: Bool = false
    /// Whether instructions per inference could be counted (perf_event_open).
    public var instructionCounter: Bool = false

    public init(commit: String?, branch: String?, dirty: Bool, toolVersion: String, timestamp: String, hostname: String,
                machine: MachineDescription, baseRevision: String? = nil, mergeBase: String? = nil, shard: String? = nil) {
        self.baseRevision = baseRevision
        self.mergeBase = mergeBase
        self.shard = shard
        self.commit = commit
        self.branch = branch
        self.dirty = dirty
        self.toolVersion = toolVersion
        self.timestamp = timestamp
        self.hostname = hostname
        self.machine = machine
    }
}

/// Cleans text for XML 1.0: strips ANSI escape sequences, then replaces code points XML 1.0
/// forbids (C0 controls but tab, LF and CR; U+FFFE, U+FFFF; lone surrogates cannot occur in
/// a Swift String) with a visible `#xNN`. libxml2's writer passes them through unchecked.
public func xmlSafe(_ text: String) -> String {
    var out = String.UnicodeScalarView()
    var scalars = text.unicodeScalars.makeIterator()
    while let c = scalars.next() {
        if c == "\u{1B}" {
            // CSI sequence: ESC [ parameters final-byte (0x40–0x7E).
            var probe = scalars
            if probe.next() == "[" {
                scalars = probe
                while let n = scalars.next(), !(0x40...0x7E).contains(n.value) {}
                continue
            }
        }
        let v = c.value
        let allowed = v == 0x9 || v == 0xA || v == 0xD || (0x20...0xD7FF).contains(v)
            || (0xE000...0xFFFD).contains(v) || (0x10000...0x10FFFF).contains(v)
        if allowed {
            out.append(c)
        } else {
            out.append(contentsOf: "#x\(String(v, radix: 16, uppercase: true))".unicodeScalars)
        }
    }
    return String(out)
}

/// Seconds as a fixed decimal with three places (never scientific notation).
public func formatSeconds(_ s: Double) -> String {
    let ms = Int64((max(s, 0) * 1000).rounded())
    let frac = String(ms % 1000)
    return "\(ms / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
}

/// Orders checks worst first: regressions, missing baselines, accepted changes, skipped,
/// improvements, passes; within a status, the larger change relative to its tolerance first.
public func worstFirst(_ items: [(model: String, check: MetricCheck)]) -> [(model: String, check: MetricCheck)] {
    func rank(_ s: MetricCheck.Status) -> Int {
        switch s {
        case .regressed: return 0
        case .missingBaseline: return 1
        case .accepted: return 2
        case .skipped: return 3
        case .improved: return 4
        case .pass: return 5
        case .info: return 6
        }
    }
    func severity(_ c: MetricCheck) -> Double {
        guard let d = c.delta, let b = c.baseline else { return 0 }
        let scale = MetricRule.of(c.metric).tolerance == .relative ? max(abs(b), 1e-12) : 1
        return abs(d) / scale / max(c.tolerance ?? 0, 1e-9)
    }
    return items.enumerated().sorted { x, y in
        let (a, b) = (x.element.check, y.element.check)
        if rank(a.status) != rank(b.status) { return rank(a.status) < rank(b.status) }
        if severity(a) != severity(b) { return severity(a) > severity(b) }
        return x.offset < y.offset
    }.map(\.element)
}
