import TensorEngine
import Common
import Foundation

/// A problem with a model or data file: names the file, the part of it and what was expected.
public struct ModelIOError: UserFacingError, Equatable {
    /// The file the problem is in.
    public let file: String
    /// What is wrong, e.g. "tensor fc1.weight: data_offsets [0, 12] need 16 bytes for F32 [2, 2]".
    public let problem: String

    public init(file: String, _ problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}

/// Caps applied while reading untrusted files, checked before memory is allocated.
public struct IOLimits: Sendable {
    /// The largest single tensor or array, in bytes.
    public var maxTensorBytes: Int
    /// The largest total of all tensors in one file, in bytes.
    public var maxTotalBytes: Int

    public init(maxTensorBytes: Int = 1 << 31, maxTotalBytes: Int = 1 << 33) {
        self.maxTensorBytes = maxTensorBytes
        self.maxTotalBytes = maxTotalBytes
    }

    /// The caps every reader uses unless given others: 2 GiB per tensor and 8 GiB per file,
    /// or the byte counts in PRUNECHECK_MAX_TENSOR_BYTES and PRUNECHECK_MAX_TOTAL_BYTES.
    public static let `default`: IOLimits = {
        let env = ProcessInfo.processInfo.environment
        var limits = IOLimits()
        if let v = env["PRUNECHECK_MAX_TENSOR_BYTES"].flatMap(Int.init), v > 0 { limits.maxTensorBytes = v }
        if let v = env["PRUNECHECK_MAX_TOTAL_BYTES"].flatMap(Int.init), v > 0 { limits.maxTotalBytes = v }
        return limits
    }()
}

/// The element count of `shape`, or nil when a dimension is negative or the product overflows.
func elementCount(_ shape: [Int]) -> Int? { AllocationLimit.elementCount(shape) }
