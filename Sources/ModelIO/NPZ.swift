import Foundation
import ZIPFoundation

/// Reader for `.npz` archives (numpy.savez / savez_compressed): a ZIP of `.npy` members.
public enum NPZ {
    /// The names of the arrays in the archive (member names without `.npy`), sorted.
    public static func keys(path: String) throws -> [String] {
        try entries(of: open(path)).keys.sorted()
    }

    /// Reads the arrays named `names` (all when nil).
    public static func read(path: String, names: [String]? = nil, limits: IOLimits = .default) throws -> [String: NPYArray] {
        let archive = try open(path)
        let archiveEntries = entries(of: archive)
        var out: [String: NPYArray] = [:]
        var total = 0
        for name in names ?? archiveEntries.keys.sorted() {
            guard let entry = archiveEntries[name] else {
                throw ModelIOError(file: path, "has no array '\(name)' (it has: \(archiveEntries.keys.sorted().joined(separator: ", ")))")
            }
            let member = "\(path)[\(entry.path)]"
            // Zip bombs: the declared size is checked before inflating, the real size while inflating.
            let cap = limits.maxTensorBytes + 65_536
            guard entry.uncompressedSize <= UInt64(cap) else {
                throw ModelIOError(file: member, "member of \(entry.uncompressedSize) bytes exceeds the size limit of \(limits.maxTensorBytes) bytes")
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(entry.uncompressedSize))
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    guard bytes.count + chunk.count <= cap else { throw ModelIOError(file: member, "inflates past the size limit of \(limits.maxTensorBytes) bytes") }
                    bytes.append(contentsOf: chunk)
                }
            } catch let e as ModelIOError {
                throw e
            } catch {
                throw ModelIOError(file: member, "cannot be extracted (corrupt or truncated archive: \(error))")
            }
            let array = try NPY.parse(bytes, file: member, limits: limits)
            total += array.bytes.count
            guard total <= limits.maxTotalBytes else {
                throw ModelIOError(file: path, "arrays exceed the total size limit of \(limits.maxTotalBytes) bytes")
            }
            out[name] = array
        }
        return out
    }

    static func open(_ path: String) throws -> Archive {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ModelIOError(file: path, "cannot read the file (missing or not readable)")
        }
        do {
            return try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw ModelIOError(file: path, "is not a valid .npz (ZIP) archive: it may be truncated or corrupt")
        }
    }

    static func entries(of archive: Archive) -> [String: Entry] {
        var map: [String: Entry] = [:]
        for entry in archive where entry.type == .file {
            let name = entry.path.hasSuffix(".npy") ? String(entry.path.dropLast(4)) : entry.path
            map[name] = entry
        }
        return map
    }
}

extension NPZ {
    /// Writes arrays as an .npz (DEFLATE-compressed members `<name>.npy`, like
    /// numpy.savez_compressed), atomically: a temporary file, then rename.
    public static func write(_ arrays: [String: NPYArray], to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: tmp)
        do {
            let archive = try Archive(url: tmp, accessMode: .create)
            for name in arrays.keys.sorted() {
                let bytes = Data(NPY.serialize(arrays[name]!))
                let provider: Provider = { position, size in
                    let start = Int(position)
                    return bytes.subdata(in: start..<(start + size))
                }
                try archive.addEntry(with: "\(name).npy", type: .file, uncompressedSize: Int64(bytes.count),
                                     compressionMethod: .deflate, provider: provider)
            }
            guard rename(tmp.path, url.path) == 0 else { throw ModelIOError(file: path, "cannot be written") }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw error
        }
    }
}
