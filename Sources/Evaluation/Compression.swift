import Foundation
import TensorEngine
import ZIPFoundation

public enum ParameterCompression {
    /// Bytes of the model's float32 parameters (layer order, little-endian) after DEFLATE,
    /// the size a zipped model file would need.
    public static func deflatedSize(_ model: Graph) throws -> Int {
        var raw = Data()
        for (_, v) in model.parameters {
            v.value.withUnsafeBufferPointer { p in raw.append(UnsafeBufferPointer(start: UnsafeRawPointer(p.baseAddress!).assumingMemoryBound(to: UInt8.self), count: p.count * 4)) }
        }
        var size = 0
        _ = try Data.compress(size: Int64(raw.count), bufferSize: 65_536, provider: { position, chunk in
            raw.subdata(in: Int(position)..<(Int(position) + chunk))
        }, consumer: { size += $0.count })
        return size
    }
}
