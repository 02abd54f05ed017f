import Common
import Foundation
import TensorEngine

/// Reader for the safetensors format: u64 little-endian header length, a JSON header that
/// maps names to dtype, shape and byte range, then the raw little-endian data.
public enum Safetensors {
    /// Reads every tensor of the file as float32 (F32 as is, F64 converted).
    public static func read(path: String, limits: IOLimits = .default) throws -> [String: Tensor] {
        try FileConfinement.check(path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        return try parse([UInt8](data), file: path, limits: limits)
    }

    public static func parse(_ bytes: [UInt8], file: String, limits: IOLimits = .default) throws -> [String: Tensor] {
        guard bytes.count >= 8 else {
            throw ModelIOError(file: file, "truncated: \(bytes.count) bytes, a safetensors file starts with an 8-byte header length")
        }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(bytes.count - 8), n <= 100_000_000 else {
            throw ModelIOError(file: file, "header length \(n) runs past the end of the file (\(bytes.count) bytes): truncated or not safetensors")
        }
        let headerEnd = 8 + Int(n)
        let json: Any
        do {
            json = try JSONValue.parse(bytes[8..<headerEnd]).foundationObject
        } catch {
            throw ModelIOError(file: file, "header is not valid JSON")
        }
        guard let header = json as? [String: Any] else {
            throw ModelIOError(file: file, "header is not a JSON object")
        }
        let dataLength = bytes.count - headerEnd
        var ranges: [(begin: Int, end: Int, name: String)] = []
        var tensors: [String: Tensor] = [:]
        var total = 0
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any],
                  let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int],
                  let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw ModelIOError(file: file, "tensor \(name): entry needs dtype, shape and data_offsets [begin, end]")
            }
            let size: Int
            switch dtype {
            case "F32": size = 4
            case "F64": size = 8
            default: throw ModelIOError(file: file, "tensor \(name): dtype \(dtype) is not supported (F32 or F64)")
            }
            guard let count = elementCount(shape), case let (byteCount, false) = count.multipliedReportingOverflow(by: size) else {
                throw ModelIOError(file: file, "tensor \(name): shape \(shape) is invalid or too large")
            }
            guard byteCount <= limits.maxTensorBytes else {
                throw ModelIOError(file: file, "tensor \(name): \(byteCount) bytes exceed the size limit of \(limits.maxTensorBytes) bytes")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw ModelIOError(file: file, "tensor \(name): data_offsets [\(begin), \(end)] outside the \(dataLength) data bytes (truncated file?)")
            }
            guard end - begin == byteCount else {
                throw ModelIOError(file: file, "tensor \(name): data_offsets [\(begin), \(end)] hold \(end - begin) bytes, \(dtype) \(shape) needs \(byteCount)")
            }
            total += byteCount
            guard total <= limits.maxTotalBytes else {
                throw ModelIOError(file: file, "tensors exceed the total size limit of \(limits.maxTotalBytes) bytes")
            }
            ranges.append((begin, end, name))
            var scalars = [Float](repeating: 0, count: count)
            bytes.withUnsafeBytes { raw in
                let base = headerEnd + begin
                if size == 4 {
                    for i in 0..<count { scalars[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 4 * i, as: UInt32.self))) }
                } else {
                    for i in 0..<count { scalars[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8 * i, as: UInt64.self)))) }
                }
            }
            tensors[name] = Tensor(shape: shape, scalars: scalars)
        }
        // As the format's reference reader checks: the tensors' byte ranges tile the data, no
        // two sharing a byte (one write would change both) and no byte left over.
        var next = 0
        for r in ranges.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard r.begin >= next else {
                let other = ranges.first { $0.name != r.name && $0.begin < r.end && r.begin < $0.end }?.name ?? "another tensor"
                throw ModelIOError(file: file, "tensor \(r.name): data_offsets [\(r.begin), \(r.end)] overlap those of \(other)")
            }
            guard r.begin == next else { throw ModelIOError(file: file, "data bytes \(next)..<\(r.begin) belong to no tensor (the offsets must tile the data)") }
            next = r.end
        }
        guard next == dataLength else {
            throw ModelIOError(file: file, "has \(dataLength - next) data bytes after the last tensor (the offsets must tile the data)")
        }
        return tensors
    }

    /// Serializes float32 tensors (keys sorted, data packed in that order).
    public static func serialize(_ tensors: [String: Tensor], metadata: [String: String] = ["format": "pt"]) -> [UInt8] {
        var entries: [String] = []
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            let shape = t.shape.map(String.init).joined(separator: ",")
            entries.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + 4 * t.count)]}")
            offset += 4 * t.count
        }
        let meta = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
        var header = Array("{\"__metadata__\":{\(meta)}\(entries.isEmpty ? "" : ",")\(entries.joined(separator: ","))}".utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i)))) }
        out += header
        for name in names {
            for v in tensors[name]!.scalars { withUnsafeBytes(of: v.bitPattern.littleEndian) { out += $0 } }
        }
        return out
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where ch.value < 0x20: out += String(format: "\\u%04x", ch.value)
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "\""
    }
}
