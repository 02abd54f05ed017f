import CCPUFeatures

/// Instructions the calling thread retires in user space, from the kernel's performance
/// counters. Unlike time, the count of a single-threaded computation does not depend on what
/// else the machine is doing: a cost a gate can hold to a tight tolerance.
public enum InstructionCounter {
    /// Whether the kernel lets this process count (checked once).
    public static let isAvailable: Bool = {
        let fd = prunecheck_instructions_open()
        guard fd >= 0 else { return false }
        defer { prunecheck_instructions_close(fd) }
        return prunecheck_instructions_read(fd) >= 0
    }()

    /// The instructions `body` retires on the calling thread, nil where counting is denied.
    public static func count(_ body: () -> Void) -> Int? {
        let fd = prunecheck_instructions_open()
        guard fd >= 0 else { return nil }
        defer { prunecheck_instructions_close(fd) }
        let before = prunecheck_instructions_read(fd)
        body()
        let after = prunecheck_instructions_read(fd)
        guard before >= 0, after >= before else { return nil }
        return Int(after - before)
    }
}
