import Common
import Foundation

/// Element types of NumPy arrays that PruneCheck reads.
public enum NPYDType: String, Sendable {
    case float32 = "f4", float64 = "f8", uint8 = "u1", int32 = "i4", int64 = "i8", bool = "b1"

    public var size: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        case .uint8, .bool: return 1
        }
    }
}

/// A NumPy array as read from a `.npy` file or an `.npz` member: C order, native byte order.
public struct NPYArray: Sendable {
    public let dtype: NPYDType
    public let shape: [Int]
    /// The elements, C order, little-endian, `count * dtype.size` bytes.
    public let bytes: [UInt8]

    public var count: Int { shape.reduce(1, *) }

    /// The elements converted to Float (integers and booleans exactly where representable).
    public func floats() -> [Float] {
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            switch dtype {
            case .float32: for i in 0..<count { out[i] = raw.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
            case .float64: for i in 0..<count { out[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .uint8, .bool: for i in 0..<count { out[i] = Float(raw[i]) }
            case .int32: for i in 0..<count { out[i] = Float(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .int64: for i in 0..<count { out[i] = Float(raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            }
        }
        return out
    }

    /// The elements as integers, or nil for floating-point arrays.
    public func integers() -> [Int64]? {
        var out = [Int64](repeating: 0, count: count)
        return bytes.withUnsafeBytes { raw -> [Int64]? in
            switch dtype {
            case .float32, .float64: return nil
            case .uint8, .bool: for i in 0..<count { out[i] = Int64(raw[i]) }
            case .int32: for i in 0..<count { out[i] = Int64(raw.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            case .int64: for i in 0..<count { out[i] = raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self) }
            }
            return out
        }
    }
}

/// Reader for the NPY format (versions 1.0, 2.0 and 3.0).
public enum NPY {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// Parses one `.npy` document; `file` names it in errors (e.g. "data.npz[x_train.npy]").
    public static func parse(_ data: [UInt8], file: String, limits: IOLimits = .default) throws -> NPYArray {
        guard data.count >= 10, Array(data[0..<6]) == magic else {
            throw ModelIOError(file: file, "not an NPY array (missing the \\x93NUMPY magic)")
        }
        let major = data[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(data[8]) | Int(data[9]) << 8
            headerStart = 10
        case 2, 3:
            guard data.count >= 12 else { throw ModelIOError(file: file, "truncated NPY header") }
            headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
            headerStart = 12
        default:
            throw ModelIOError(file: file, "NPY format version \(major).\(data[7]) is not supported (1, 2 or 3)")
        }
        guard headerLength <= data.count - headerStart else {
            throw ModelIOError(file: file, "NPY header of \(headerLength) bytes runs past the end of the file (\(data.count) bytes)")
        }
        guard let header = String(bytes: data[headerStart..<(headerStart + headerLength)], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw ModelIOError(file: file, "NPY header is not text")
        }
        let (descr, fortran, shape) = try parseHeader(header, file: file)
        let byteOrder = descr.first ?? "?"
        let code = String(descr.dropFirst())
        guard let dtype = NPYDType(rawValue: code), "<|>=".contains(byteOrder) else {
            throw ModelIOError(file: file, "dtype '\(descr)' is not supported (expected float32, float64, uint8, int32, int64 or bool)")
        }
        guard let count = elementCount(shape) else {
            throw ModelIOError(file: file, "shape \(shape) is invalid or too large")
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, byteCount <= limits.maxTensorBytes else {
            throw ModelIOError(file: file, "array of shape \(shape) exceeds the size limit of \(limits.maxTensorBytes) bytes")
        }
        let dataStart = headerStart + headerLength
        guard data.count - dataStart >= byteCount else {
            throw ModelIOError(file: file, "truncated: shape \(shape) of \(descr) needs \(byteCount) bytes of data, the file has \(data.count - dataStart)")
        }
        guard data.count - dataStart == byteCount else {
            throw ModelIOError(file: file, "has \(data.count - dataStart - byteCount) bytes after the data of its array (shape \(shape) of \(descr) needs \(byteCount)): a corrupt or tampered file")
        }
        var bytes = Array(data[dataStart..<(dataStart + byteCount)])
        if byteOrder == ">" && dtype.size > 1 {
            for i in stride(from: 0, to: byteCount, by: dtype.size) { bytes[i..<(i + dtype.size)].reverse() }
        }
        if fortran && shape.count > 1 { bytes = fortranToC(bytes, shape: shape, size: dtype.size) }
        return NPYArray(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Reads a `.npy` file.
    public static func read(path: String, limits: IOLimits = .default) throws -> NPYArray {
        try FileConfinement.check(path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        return try parse([UInt8](data), file: path, limits: limits)
    }

    /// Parses the header dictionary: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
    static func parseHeader(_ header: String, file: String) throws -> (String, Bool, [Int]) {
        func value(of key: String) -> Substring? {
            guard let k = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else { return nil }
            guard let colon = header[k.upperBound...].firstIndex(of: ":") else { return nil }
            return header[header.index(after: colon)...].drop(while: { $0 == " " })
        }
        guard let d = value(of: "descr"), let q = d.first, q == "'" || q == "\"",
              let end = d.dropFirst().firstIndex(of: q) else {
            throw ModelIOError(file: file, "NPY header has no 'descr'")
        }
        let descr = String(d[d.index(after: d.startIndex)..<end])
        guard let f = value(of: "fortran_order") else {
            throw ModelIOError(file: file, "NPY header has no 'fortran_order'")
        }
        let fortran = f.hasPrefix("True")
        guard let s = value(of: "shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw ModelIOError(file: file, "NPY header has no 'shape'")
        }
        var shape: [Int] = []
        for part in s[s.index(after: s.startIndex)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t.hasSuffix("L") ? String(t.dropLast()) : t), v >= 0 else {
                throw ModelIOError(file: file, "NPY shape has an invalid dimension '\(t)'")
            }
            shape.append(v)
        }
        return (descr, fortran, shape)
    }

    /// Reorders column-major bytes into row-major.
    static func fortranToC(_ src: [UInt8], shape: [Int], size: Int) -> [UInt8] {
        let n = shape.reduce(1, *)
        var dst = [UInt8](repeating: 0, count: src.count)
        var index = [Int](repeating: 0, count: shape.count)
        // Row-major walk; the Fortran offset of each index is Σ index[d] · Π_{e<d} shape[e].
        for c in 0..<n {
            var f = 0, stride = 1
            for d in 0..<shape.count { f += index[d] * stride; stride *= shape[d] }
            for b in 0..<size { dst[c * size + b] = src[f * size + b] }
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return dst
    }
}

extension NPYArray {
    /// An array from values (little-endian bytes are produced for each dtype).
    public init(floats: [Float], shape: [Int]) {
        precondition(shape.reduce(1, *) == floats.count, "shape \(shape) for \(floats.count) values")
        self.init(dtype: .float32, shape: shape, bytes: floats.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } })
    }

    /// An array of any supported dtype from its little-endian C-order bytes.
    public init(dtype: NPYDType, shape: [Int], littleEndianBytes bytes: [UInt8]) {
        precondition(shape.reduce(1, *) * dtype.size == bytes.count, "shape \(shape) of \(dtype) needs \(shape.reduce(1, *) * dtype.size) bytes, got \(bytes.count)")
        self.init(dtype: dtype, shape: shape, bytes: bytes)
    }

    /// Integers stored as `dtype` (uint8, int32, int64 or bool), each checked to fit.
    public init(integers: [Int64], shape: [Int], dtype: NPYDType) {
        precondition(shape.reduce(1, *) == integers.count, "shape \(shape) for \(integers.count) values")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(integers.count * dtype.size)
        for v in integers {
            switch dtype {
            case .uint8: precondition((0...255).contains(v), "\(v) does not fit uint8"); bytes.append(UInt8(v))
            case .bool: precondition(v == 0 || v == 1, "\(v) is not a bool"); bytes.append(UInt8(v))
            case .int32: withUnsafeBytes(of: Int32(v).littleEndian) { bytes += $0 }
            case .int64: withUnsafeBytes(of: v.littleEndian) { bytes += $0 }
            case .float32: withUnsafeBytes(of: Float(v).bitPattern.littleEndian) { bytes += $0 }
            case .float64: withUnsafeBytes(of: Double(v).bitPattern.littleEndian) { bytes += $0 }
            }
        }
        self.init(dtype: dtype, shape: shape, bytes: bytes)
    }

    public init(doubles: [Double], shape: [Int]) {
        precondition(shape.reduce(1, *) == doubles.count, "shape \(shape) for \(doubles.count) values")
        self.init(dtype: .float64, shape: shape, bytes: doubles.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } })
    }

    public init(integers: [Int64], shape: [Int]) {
        precondition(shape.reduce(1, *) == integers.count, "shape \(shape) for \(integers.count) values")
        self.init(dtype: .int64, shape: shape, bytes: integers.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } })
    }
}

extension NPY {
    /// The array as an NPY 1.0 document (C order, little-endian), as numpy.save writes it.
    public static func serialize(_ a: NPYArray) -> [UInt8] {
        let code: String
        switch a.dtype {
        case .uint8, .bool: code = "|\(a.dtype.rawValue)"
        default: code = "<\(a.dtype.rawValue)"
        }
        let shape = a.shape.count == 1 ? "(\(a.shape[0]),)" : "(" + a.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(code)', 'fortran_order': False, 'shape': \(shape), }"
        // Pad with spaces and a newline so the data starts at a multiple of 64 bytes.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let n = header.utf8.count
        return magic + [1, 0, UInt8(n & 0xff), UInt8(n >> 8)] + Array(header.utf8) + a.bytes
    }
}
