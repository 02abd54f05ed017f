import Common
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
        var archiveBytes: [UInt8]? = nil
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
            let bytes = try inflate(entry, archiveBytes: &archiveBytes, path: path, member: member, cap: cap)
            let array = try NPY.parse(bytes, file: member, limits: limits)
            total += array.bytes.count
            guard total <= limits.maxTotalBytes else {
                throw ModelIOError(file: path, "arrays exceed the total size limit of \(limits.maxTotalBytes) bytes")
            }
            out[name] = array
        }
        return out
    }

    /// The member's bytes. ZIPFoundation 0.9.20's own extraction never returns on a deflate
    /// stream that ends without its final block (found by `make fuzz`): its inflate loop keeps
    /// asking for input past the member's end. So the compressed bytes are located here (the
    /// local header whose name matches, its data right after), and inflated with a provider
    /// that fails at the end of the member's data. The declared sizes, the inflated size cap
    /// and the CRC are all checked.
    static func inflate(_ entry: Entry, archiveBytes: inout [UInt8]?, path: String, member: String, cap: Int) throws -> [UInt8] {
        if archiveBytes == nil {
            guard let data = FileManager.default.contents(atPath: path) else { throw ModelIOError(file: path, "cannot read the file") }
            archiveBytes = [UInt8](data)
        }
        let file = archiveBytes!
        let name = Array(entry.path.utf8)
        func u16(_ o: Int) -> Int { Int(file[o]) | Int(file[o + 1]) << 8 }
        var start: Int?
        var o = 0
        while o + 30 <= file.count {
            if file[o] == 0x50, file[o + 1] == 0x4B, file[o + 2] == 3, file[o + 3] == 4 {
                let n = u16(o + 26), m = u16(o + 28)
                if o + 30 + n + m <= file.count, Array(file[(o + 30)..<(o + 30 + n)]) == name {
                    start = o + 30 + n + m
                    break
                }
            }
            o += 1
        }
        guard let start, entry.compressedSize <= UInt64(file.count - start) else {
            throw ModelIOError(file: member, "its data is missing or runs past the end of the archive (truncated file?)")
        }
        let compressed = Int(entry.compressedSize)
        var out: [UInt8] = []
        out.reserveCapacity(min(Int(entry.uncompressedSize), cap))
        if !entry.isCompressed {
            guard compressed <= cap else { throw ModelIOError(file: member, "inflates past the size limit of \(cap - 65_536) bytes") }
            out = Array(file[start..<(start + compressed)])
        } else {
            let crc: CRC32
            do {
                crc = try Data.decompress(size: Int64(compressed), bufferSize: 65_536, skipCRC32: false, provider: { position, size in
                    let from = start + Int(position)
                    let to = min(start + compressed, from + size)
                    guard from < to else { throw ModelIOError(file: member, "the compressed stream ends before its last block (corrupt or truncated)") }
                    // ZIPFoundation tells zlib every chunk holds `size` bytes (avail_in), so a
                    // short last chunk would let inflate read past it (found by `make fuzz`):
                    // pad it with zeros. A stream that needs the padding fails the size and
                    // CRC checks below.
                    var chunk = Data(file[from..<to])
                    if chunk.count < size { chunk.append(Data(count: size - chunk.count)) }
                    return chunk
                }, consumer: { chunk in
                    // Inflation stops at the declared size: a member that declares 368 KB
                    // must not cost 3 GiB before the size check below.
                    guard out.count + chunk.count <= Int(entry.uncompressedSize) else {
                        throw ModelIOError(file: member, "inflates past its declared size of \(entry.uncompressedSize) bytes (a zip bomb or a corrupt archive)")
                    }
                    guard out.count + chunk.count <= cap else { throw ModelIOError(file: member, "inflates past the size limit of \(cap - 65_536) bytes") }
                    out.append(contentsOf: chunk)
                })
            } catch let e as ModelIOError {
                throw e
            } catch {
                throw ModelIOError(file: member, "cannot be extracted (corrupt or truncated archive: \(error))")
            }
            guard crc == entry.checksum else { throw ModelIOError(file: member, "fails its CRC-32 check (corrupt archive)") }
        }
        guard out.count == Int(entry.uncompressedSize) else {
            throw ModelIOError(file: member, "inflates to \(out.count) bytes, the archive declares \(entry.uncompressedSize)")
        }
        return out
    }

    static func open(_ path: String) throws -> Archive {
        try FileConfinement.check(path)
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
    /// numpy.savez_compressed), atomically.
    public static func write(_ arrays: [String: NPYArray], to path: String) throws {
        // Built in memory, then written by the one atomic writer.
        let archive: Archive
        do {
            archive = try Archive(data: Data(), accessMode: .create)
            for name in arrays.keys.sorted() {
                let bytes = Data(NPY.serialize(arrays[name]!))
                let provider: Provider = { position, size in
                    let start = Int(position)
                    return bytes.subdata(in: start..<(start + size))
                }
                try archive.addEntry(with: "\(name).npy", type: .file, uncompressedSize: Int64(bytes.count),
                                     compressionMethod: .deflate, provider: provider)
            }
        } catch {
            throw ModelIOError(file: path, "cannot be built: \(error)")
        }
        guard let data = archive.data else { throw ModelIOError(file: path, "cannot be built") }
        try writeFileAtomically(bytes: [UInt8](data), to: path)
    }
}
