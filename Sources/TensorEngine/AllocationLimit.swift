import Common
import Foundation

/// The cap on one tensor the engine allocates while a model runs: the same as for a tensor read
/// from a file (ModelIO's `IOLimits`: 2 GiB, or PRUNECHECK_MAX_TENSOR_BYTES). A 10 KB model
/// whose Pad, Expand or input dimension asks for terabytes must cost at most the cap and stop
/// with a message, not exhaust the machine or trap.
///
/// Ops whose output size follows from their inputs and attributes (Pad, Expand, Tile, Gather,
/// Concat, ConstantOfShape, Range, Resize, the broadcasting ops, …) check it with
/// `OpContext.checkedCount` and fail like any other bad node (exit 2, reports written). The
/// tensor initializers check it too, as the backstop for every other path: there the run
/// cannot unwind, so the process stops with the message and exit code 2.
public enum AllocationLimit {
    public static let maxTensorBytes: Int = {
        if let v = ProcessInfo.processInfo.environment["PRUNECHECK_MAX_TENSOR_BYTES"].flatMap(Int.init), v > 0 { return v }
        return 1 << 31
    }()

    /// The element count of `shape`, or nil when a dimension is negative, the product
    /// overflows, or `bytesPerElement` × count exceeds the cap.
    @inlinable
    public static func count(_ shape: [Int], bytesPerElement: Int) -> Int? {
        guard let n = elementCount(shape) else { return nil }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: bytesPerElement)
        return overflow || bytes > maxTensorBytes ? nil : n
    }

    /// The element count of `shape`, or nil when a dimension is negative or the product
    /// overflows.
    @inlinable
    public static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            guard !overflow else { return nil }
            n = p
        }
        return n
    }

    /// `count`, or the end of the process with a message (exit 2) when over the cap.
    @inlinable
    public static func checkedCount(_ shape: [Int], bytesPerElement: Int) -> Int {
        if let n = count(shape, bytesPerElement: bytesPerElement) { return n }
        refuse(shape, bytesPerElement: bytesPerElement)
    }

    @usableFromInline
    static func refuse(_ shape: [Int], bytesPerElement: Int) -> Never {
        Console.err("error: the model needs a tensor of shape \(shape) (\(bytesPerElement) bytes per element), "
                    + "over the limit of \(maxTensorBytes) bytes per tensor (PRUNECHECK_MAX_TENSOR_BYTES): a broken or hostile model")
        exit(ExitStatus.inputError.rawValue)
    }

    /// The cap on the values alive at once in one run: PRUNECHECK_MAX_TOTAL_BYTES or 8 GiB, as
    /// for all the tensors of one file.
    public static let maxLiveBytes: Int = {
        if let v = ProcessInfo.processInfo.environment["PRUNECHECK_MAX_TOTAL_BYTES"].flatMap(Int.init), v > 0 { return v }
        return 1 << 33
    }()

    /// The bytes a value holds.
    @inlinable
    public static func bytes(_ v: Value) -> Int {
        switch v {
        case .float(let x): return x.value.count &* 4
        case .int64(let t), .bool(let t): return t.data.count &* 8
        }
    }

    static func liveProblem(_ bytes: Int) -> String {
        "the values alive at this node take \(bytes) bytes, over the limit of \(maxLiveBytes) (PRUNECHECK_MAX_TOTAL_BYTES): a broken or hostile model"
    }

    /// Why `shape` cannot be allocated, for an op's error.
    public static func problem(_ shape: [Int], bytesPerElement: Int) -> String {
        "would make a tensor of shape \(shape), over the limit of \(maxTensorBytes) bytes per tensor (PRUNECHECK_MAX_TENSOR_BYTES): a broken or hostile model"
    }
}
