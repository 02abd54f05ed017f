import Common
import Foundation

/// Where the arrays of a data set live: one `.npz` archive whose members the split names, or a
/// folder whose files the split names. In a folder, a name is a `.npy` file, an IDX file (the
/// raw MNIST format, e.g. `train-images-idx3-ubyte`), or a CSV file: `train.csv` is every
/// column but the label column as features, `train.csv#label` is the column named `label`.
public enum ArrayFiles {
    public static func read(path: String, names: [String], limits: IOLimits = .default) throws -> [String: NPYArray] {
        try FileConfinement.check(path)
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        guard isFolder.boolValue else { return try NPZ.read(path: path, names: names, limits: limits) }
        // A CSV named by its labels ("f.csv#y") leaves that column out of its features ("f.csv").
        var labelColumn: [String: String] = [:]
        for n in names where n.contains("#") {
            let parts = n.split(separator: "#", maxSplits: 1).map(String.init)
            labelColumn[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        var out: [String: NPYArray] = [:]
        for name in names {
            let parts = name.split(separator: "#", maxSplits: 1).map(String.init)
            let file = parts[0]
            guard !file.isEmpty, !file.contains("/"), file != "..", file != "." else {
                throw ModelIOError(file: path, "array '\(name)' must name a file inside the folder")
            }
            let full = (path as NSString).appendingPathComponent(file)
            if file.hasSuffix(".csv") {
                let table = try CSV.read(path: full, limits: limits)
                if parts.count > 1 {
                    out[name] = try table.column(parts[1], file: full)
                } else {
                    out[name] = try table.features(excluding: labelColumn[file], file: full)
                }
            } else if file.hasSuffix(".npy") {
                out[name] = try NPY.read(path: full, limits: limits)
            } else {
                out[name] = try IDX.read(path: full, limits: limits)
            }
        }
        return out
    }
}

/// The IDX format of the MNIST files: two zero bytes, a type byte, the dimension count, the
/// dimensions as big-endian uint32, then the elements big-endian.
public enum IDX {
    public static func read(path: String, limits: IOLimits = .default) throws -> NPYArray {
        try FileConfinement.check(path)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? Int else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        guard size <= limits.maxTotalBytes else { throw ModelIOError(file: path, "is \(size) bytes, over the limit of \(limits.maxTotalBytes)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw ModelIOError(file: path, "cannot read the file") }
        return try parse([UInt8](data), file: path, limits: limits)
    }

    public static func parse(_ b: [UInt8], file: String, limits: IOLimits = .default) throws -> NPYArray {
        guard b.count >= 4, b[0] == 0, b[1] == 0 else {
            throw ModelIOError(file: file, "is not an IDX file (expected two zero bytes, a type byte and a dimension count)")
        }
        let rank = Int(b[3])
        guard rank >= 1, b.count >= 4 + 4 * rank else { throw ModelIOError(file: file, "IDX header: \(rank) dimensions do not fit in \(b.count) bytes") }
        var shape: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]))
        }
        let width: Int
        let dtype: NPYDType
        switch b[2] {
        case 0x08: width = 1; dtype = .uint8
        case 0x09: width = 1; dtype = .int32
        case 0x0B: width = 2; dtype = .int32
        case 0x0C: width = 4; dtype = .int32
        case 0x0D: width = 4; dtype = .float32
        case 0x0E: width = 8; dtype = .float64
        default: throw ModelIOError(file: file, "IDX type byte 0x\(String(b[2], radix: 16)) is not one of 08, 09, 0B, 0C, 0D, 0E")
        }
        guard let count = elementCount(shape), count.multipliedReportingOverflow(by: max(width, dtype.size)).overflow == false,
              count * max(width, dtype.size) <= limits.maxTensorBytes else {
            throw ModelIOError(file: file, "IDX dimensions \(shape) are over the tensor limit of \(limits.maxTensorBytes) bytes")
        }
        let start = 4 + 4 * rank
        guard b.count - start == count * width else {
            throw ModelIOError(file: file, "IDX dimensions \(shape) need \(count * width) data bytes, the file has \(b.count - start)")
        }
        var bytes = [UInt8](repeating: 0, count: count * dtype.size)
        for i in 0..<count {
            let o = start + i * width
            switch b[2] {
            case 0x08: bytes[i] = b[o]
            case 0x09, 0x0B, 0x0C:
                var v = 0
                for k in 0..<width { v = v << 8 | Int(b[o + k]) }
                let bits = 8 * width
                if v >= 1 << (bits - 1) { v -= 1 << bits }   // two's complement
                withUnsafeBytes(of: Int32(v).littleEndian) { for k in 0..<4 { bytes[4 * i + k] = $0[k] } }
            default: // big-endian float or double: reverse into little-endian
                for k in 0..<width { bytes[i * width + k] = b[o + width - 1 - k] }
            }
        }
        return NPYArray(dtype: dtype, shape: shape, bytes: bytes)
    }
}

/// Comma-separated numbers with a header row of column names. Read as a stream (a 50 MB file
/// of one line is refused at its first megabyte, not after loading it), the values kept as
/// float32: the peak is about the size of the arrays made from it.
public struct CSV {
    public var header: [String]
    /// Row-major values, `header.count` per row.
    var values: [Float]
    /// Columns holding an integer that float32 does not represent exactly (not a usable label).
    var inexact: [Bool]
    public var rowCount: Int { header.isEmpty ? 0 : values.count / header.count }

    /// The longest line read: a data row of 4,096 numbers fits many times over.
    static let maxLineBytes = 1 << 20

    public static func read(path: String, limits: IOLimits = .default) throws -> CSV {
        try FileConfinement.check(path)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path), let size = attributes[.size] as? Int,
              let handle = FileHandle(forReadingAtPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        defer { try? handle.close() }
        guard size <= limits.maxTotalBytes else { throw ModelIOError(file: path, "is \(size) bytes, over the limit of \(limits.maxTotalBytes)") }
        var parser = Parser(file: path, limits: limits)
        var pending: [UInt8] = []
        while true {
            let chunk = [UInt8](handle.readData(ofLength: 1 << 20))
            if chunk.isEmpty { break }
            pending += chunk
            var start = 0
            while let nl = pending[start...].firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) {
                try parser.line(pending[start..<nl])
                // "\r\n" is one line end.
                start = nl + 1
                if pending[nl] == 0x0D, start < pending.count, pending[start] == 0x0A { start += 1 }
            }
            pending.removeFirst(start)
            guard pending.count <= maxLineBytes else {
                throw ModelIOError(file: path, "line \(parser.lineNumber + 1) is longer than \(maxLineBytes) bytes: not a CSV file of numbers")
            }
        }
        if !pending.isEmpty { try parser.line(pending[...]) }
        return try parser.finish()
    }

    public static func parse(_ text: String, file: String) throws -> CSV {
        var parser = Parser(file: file, limits: .default)
        for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) { try parser.line(Array(line.utf8)[...]) }
        return try parser.finish()
    }

    /// Lines in, a table out; blank lines at the end are ignored, blank lines inside are rows
    /// with the wrong number of values.
    struct Parser {
        let file: String
        let limits: IOLimits
        var header: [String]?
        var values: [Float] = []
        var inexact: [Bool] = []
        var lineNumber = 0
        var blankRun = 0

        init(file: String, limits: IOLimits) {
            self.file = file
            self.limits = limits
        }

        mutating func line(_ bytes: ArraySlice<UInt8>) throws {
            lineNumber += 1
            guard !bytes.contains(0), let text = String(validating: bytes, as: UTF8.self) else {
                throw ModelIOError(file: file, "line \(lineNumber) is not UTF-8 text: not a CSV file")
            }
            guard let header else {
                let names = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                // Column names, not whatever a misnamed file starts with: nothing of it is quoted
                // back in an error unless it reads as names.
                guard names.allSatisfy({ !$0.isEmpty && $0.count <= 128 && $0.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F } }) else {
                    throw ModelIOError(file: file, "line 1 is not a header of column names (each non-empty, at most 128 printable characters)")
                }
                guard Set(names).count == names.count else {
                    throw ModelIOError(file: file, "line 1: the header needs distinct, non-empty column names")
                }
                self.header = names
                inexact = [Bool](repeating: false, count: names.count)
                return
            }
            if text.trimmingCharacters(in: .whitespaces).isEmpty { blankRun += 1; return }
            if blankRun > 0 {
                throw ModelIOError(file: file, "line \(lineNumber - blankRun): 1 values, the header has \(header.count) columns")
            }
            var c = 0
            for cell in text.split(separator: ",", omittingEmptySubsequences: false) {
                guard c < header.count else { c += 1; continue }
                let trimmed = cell.trimmingCharacters(in: .whitespaces)
                guard let v = Double(trimmed), v.isFinite else {
                    let shown = trimmed.count <= 32 ? "'\(trimmed)'" : "a value of \(trimmed.count) characters"
                    throw ModelIOError(file: file, "line \(lineNumber), column '\(header[c])': \(shown) is not a finite number")
                }
                let f = Float(v)
                if v == v.rounded(), Double(f) != v { inexact[c] = true }
                values.append(f)
                c += 1
            }
            guard c == header.count else {
                values.removeLast(min(c, header.count))
                throw ModelIOError(file: file, "line \(lineNumber): \(c) values, the header has \(header.count) columns")
            }
            guard values.count.multipliedReportingOverflow(by: 4).partialValue <= limits.maxTensorBytes else {
                throw ModelIOError(file: file, "line \(lineNumber): the values exceed the size limit of \(limits.maxTensorBytes) bytes")
            }
        }

        func finish() throws -> CSV {
            guard let header else { throw ModelIOError(file: file, "is empty; expected a header row and data rows") }
            return CSV(header: header, values: values, inexact: inexact)
        }
    }

    /// One column as int64 labels (each value must be an integer).
    func column(_ name: String, file: String) throws -> NPYArray {
        guard let c = header.firstIndex(of: name) else {
            throw ModelIOError(file: file, "has no column '\(name)' (columns: \(header.joined(separator: ", ")))")
        }
        guard !inexact[c] else { throw ModelIOError(file: file, "column '\(name)': labels beyond 2^24 are not supported") }
        let n = header.count
        let labels = try (0..<rowCount).map { r -> Int64 in
            let v = values[r * n + c]
            guard v == v.rounded() else {
                throw ModelIOError(file: file, "line \(r + 2), column '\(name)': \(v) is not an integer label")
            }
            return Int64(v)
        }
        return NPYArray(integers: labels, shape: [labels.count])
    }

    /// Every column but `excluding` as float32 features, one row per example.
    func features(excluding: String?, file: String) throws -> NPYArray {
        let keep = header.indices.filter { header[$0] != excluding }
        guard !keep.isEmpty else { throw ModelIOError(file: file, "has no feature columns") }
        if keep.count == header.count { return NPYArray(floats: values, shape: [rowCount, keep.count]) }
        let n = header.count
        var out: [Float] = []
        out.reserveCapacity(rowCount * keep.count)
        for r in 0..<rowCount { for c in keep { out.append(values[r * n + c]) } }
        return NPYArray(floats: out, shape: [rowCount, keep.count])
    }
}
