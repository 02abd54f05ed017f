import Foundation

/// Where the arrays of a data set live: one `.npz` archive whose members the split names, or a
/// folder whose files the split names. In a folder, a name is a `.npy` file, an IDX file (the
/// raw MNIST format, e.g. `train-images-idx3-ubyte`), or a CSV file: `train.csv` is every
/// column but the label column as features, `train.csv#label` is the column named `label`.
public enum ArrayFiles {
    public static func read(path: String, names: [String], limits: IOLimits = .default) throws -> [String: NPYArray] {
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

/// Comma-separated numbers with a header row of column names.
public struct CSV {
    public var header: [String]
    public var rows: [[Double]]

    public static func read(path: String, limits: IOLimits = .default) throws -> CSV {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path), let size = attributes[.size] as? Int else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        guard size <= limits.maxTotalBytes else { throw ModelIOError(file: path, "is \(size) bytes, over the limit of \(limits.maxTotalBytes)") }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ModelIOError(file: path, "is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> CSV {
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        while lines.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeLast() }
        guard let first = lines.first else { throw ModelIOError(file: file, "is empty; expected a header row and data rows") }
        let header = first.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard Set(header).count == header.count, !header.contains("") else {
            throw ModelIOError(file: file, "line 1: the header needs distinct, non-empty column names")
        }
        var rows: [[Double]] = []
        for (i, line) in lines.enumerated().dropFirst() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            guard cells.count == header.count else {
                throw ModelIOError(file: file, "line \(i + 1): \(cells.count) values, the header has \(header.count) columns")
            }
            rows.append(try cells.enumerated().map { c, cell in
                guard let v = Double(cell.trimmingCharacters(in: .whitespaces)), v.isFinite else {
                    throw ModelIOError(file: file, "line \(i + 1), column '\(header[c])': '\(cell)' is not a finite number")
                }
                return v
            })
        }
        return CSV(header: header, rows: rows)
    }

    /// One column as int64 labels (each value must be an integer).
    func column(_ name: String, file: String) throws -> NPYArray {
        guard let c = header.firstIndex(of: name) else {
            throw ModelIOError(file: file, "has no column '\(name)' (columns: \(header.joined(separator: ", ")))")
        }
        let values = try rows.enumerated().map { r, row -> Int64 in
            guard row[c] == row[c].rounded(), abs(row[c]) < 1e15 else {
                throw ModelIOError(file: file, "line \(r + 2), column '\(name)': \(row[c]) is not an integer label")
            }
            return Int64(row[c])
        }
        return NPYArray(integers: values, shape: [values.count])
    }

    /// Every column but `excluding` as float32 features, one row per example.
    func features(excluding: String?, file: String) throws -> NPYArray {
        let keep = header.indices.filter { header[$0] != excluding }
        guard !keep.isEmpty else { throw ModelIOError(file: file, "has no feature columns") }
        return NPYArray(floats: rows.flatMap { row in keep.map { Float(row[$0]) } }, shape: [rows.count, keep.count])
    }
}
