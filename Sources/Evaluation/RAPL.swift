import Foundation

/// The CPU's energy counters through Linux's powercap interface (Intel RAPL, also AMD's
/// since kernel 5.8): the sum of the package domains' `energy_uj`. Unavailable on machines and
/// VMs that do not expose them, or without permission to read them.
public enum RAPL {
    static let root = "/sys/class/powercap"

    /// The package domains' counter files and their wrap-around ranges.
    static var domains: [(energy: String, range: UInt64)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        return names.filter { $0.hasPrefix("intel-rapl:") && $0.split(separator: ":").count == 2 }.sorted().compactMap { name in
            let dir = "\(root)/\(name)"
            guard FileManager.default.isReadableFile(atPath: "\(dir)/energy_uj"),
                  let range = (try? String(contentsOfFile: "\(dir)/max_energy_range_uj", encoding: .utf8))
                    .flatMap({ UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else { return nil }
            return ("\(dir)/energy_uj", range)
        }
    }

    /// Whether this machine exposes readable energy counters.
    public static var isAvailable: Bool { !domains.isEmpty && read() != nil }

    /// The counters' current values, nil when unreadable.
    static func read() -> [UInt64]? {
        let values = domains.map { d in
            (try? String(contentsOfFile: d.energy, encoding: .utf8)).flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        return values.contains(nil) || values.isEmpty ? nil : values.map { $0! }
    }

    /// Microjoules used while `body` ran (all packages), nil where the counters are unavailable.
    public static func measure(_ body: () -> Void) -> Double? {
        let ranges = domains.map(\.range)
        guard let before = read() else { body(); return nil }
        body()
        guard let after = read(), after.count == before.count else { return nil }
        return zip(zip(before, after), ranges).reduce(0.0) { sum, x in
            let ((b, a), range) = x
            return sum + Double(a >= b ? a - b : range - b + a)  // the counter wraps at its range
        }
    }
}
