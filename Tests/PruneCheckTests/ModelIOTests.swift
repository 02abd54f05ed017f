import Foundation
import Testing
@testable import ModelIO
@testable import TensorEngine

/// Builds an NPY v1.0 document.
func npyBytes(descr: String, fortran: Bool = false, shape: [Int], data: [UInt8]) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
    while (10 + header.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    return NPY.magic + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)] + Array(header.utf8) + data
}

func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
}

@Suite struct NPYTests {
    @Test func readsEveryDtype() throws {
        let f32 = try NPY.parse(npyBytes(descr: "<f4", shape: [2], data: littleEndianBytes([Float(1.5).bitPattern, Float(-2).bitPattern])), file: "t.npy")
        #expect(f32.floats() == [1.5, -2])
        let f64 = try NPY.parse(npyBytes(descr: "<f8", shape: [1], data: littleEndianBytes([Double(0.25).bitPattern])), file: "t.npy")
        #expect(f64.floats() == [0.25])
        let u8 = try NPY.parse(npyBytes(descr: "|u1", shape: [3], data: [0, 7, 255]), file: "t.npy")
        #expect(u8.integers() == [0, 7, 255])
        let i32 = try NPY.parse(npyBytes(descr: "<i4", shape: [2], data: littleEndianBytes([Int32(-3), 9])), file: "t.npy")
        #expect(i32.integers() == [-3, 9])
        let i64 = try NPY.parse(npyBytes(descr: "<i8", shape: [2], data: littleEndianBytes([Int64(1) << 40, -1])), file: "t.npy")
        #expect(i64.integers() == [1 << 40, -1])
        let b = try NPY.parse(npyBytes(descr: "|b1", shape: [2], data: [1, 0]), file: "t.npy")
        #expect(b.integers() == [1, 0])
        let big = try NPY.parse(npyBytes(descr: ">i4", shape: [1], data: [0, 0, 1, 2]), file: "t.npy")
        #expect(big.integers() == [258])
    }

    @Test func fortranOrderBecomesCOrder() throws {
        // 2×3 matrix [[1,2,3],[4,5,6]] stored column-major: 1 4 2 5 3 6.
        let a = try NPY.parse(npyBytes(descr: "|u1", fortran: true, shape: [2, 3], data: [1, 4, 2, 5, 3, 6]), file: "t.npy")
        #expect(a.integers() == [1, 2, 3, 4, 5, 6])
    }

    @Test func truncatedDataIsAnErrorNamingTheFile() {
        let bytes = npyBytes(descr: "<f4", shape: [4], data: [0, 0, 0, 0])
        #expect(throws: ModelIOError(file: "x.npy", "truncated: shape [4] of <f4 needs 16 bytes of data, the file has 4")) {
            try NPY.parse(bytes, file: "x.npy")
        }
    }

    @Test func hostileHeadersAreRejected() {
        #expect(throws: ModelIOError.self) { try NPY.parse([1, 2, 3], file: "x.npy") }
        #expect(throws: ModelIOError.self) { try NPY.parse(npyBytes(descr: "<c8", shape: [1], data: []), file: "x.npy") }
        // A shape whose byte count overflows must fail before any allocation.
        #expect(throws: ModelIOError.self) {
            try NPY.parse(npyBytes(descr: "<f8", shape: [Int.max / 2, 4], data: []), file: "x.npy")
        }
        var header = npyBytes(descr: "<f4", shape: [1], data: [0, 0, 0, 0])
        header[8] = 0xff; header[9] = 0xff  // header length past the end
        #expect(throws: ModelIOError.self) { try NPY.parse(header, file: "x.npy") }
    }
}

@Suite struct NPZTests {
    @Test func readsTheBundledDigits() throws {
        let arrays = try NPZ.read(path: Repo.path("examples/data/digits.npz"))
        #expect(arrays["x_train"]?.shape == [1437, 64])
        #expect(arrays["x_train"]?.dtype == .float32)
        #expect(arrays["y_test"]?.shape == [360])
        #expect(arrays["y_test"]?.dtype == .int64)
        let x = arrays["x_train"]!.floats()
        #expect(x.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    @Test func missingArrayAndTruncatedArchiveAreErrors() throws {
        let path = Repo.path("examples/data/digits.npz")
        #expect(throws: ModelIOError.self) { try NPZ.read(path: path, names: ["nope"]) }
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let cut = (dir as NSString).appendingPathComponent("cut.npz")
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: cut))
        let error = #expect(throws: ModelIOError.self) { try NPZ.read(path: cut) }
        #expect(error?.file.hasPrefix(cut) == true)
    }

    @Test func sizeCapStopsLargeMembers() {
        let limits = IOLimits(maxTensorBytes: 1000, maxTotalBytes: 10_000)
        #expect(throws: ModelIOError.self) { try NPZ.read(path: Repo.path("examples/data/digits.npz"), names: ["x_train"], limits: limits) }
    }
}

@Suite struct SafetensorsTests {
    @Test func roundTrip() throws {
        let tensors = ["a.weight": Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, -6]), "b": Tensor(shape: [1], scalars: [0.5])]
        let back = try Safetensors.parse(Safetensors.serialize(tensors), file: "t.safetensors")
        #expect(back == tensors)
    }

    @Test func truncatedAndCorruptFilesAreErrors() throws {
        let bytes = Safetensors.serialize(["w": Tensor(shape: [4], scalars: [1, 2, 3, 4])])
        let e1 = #expect(throws: ModelIOError.self) { try Safetensors.parse(Array(bytes.dropLast(3)), file: "m.safetensors") }
        #expect(e1?.description.contains("m.safetensors") == true)
        #expect(e1?.problem.contains("data_offsets") == true)
        #expect(throws: ModelIOError.self) { try Safetensors.parse(Array(bytes.prefix(5)), file: "m.safetensors") }
        var bad = bytes
        bad[8] = UInt8(ascii: "[")  // header no longer an object
        #expect(throws: ModelIOError.self) { try Safetensors.parse(bad, file: "m.safetensors") }
    }
}

@Suite struct ParityTests {
    /// The bundled models reproduce PyTorch's logits on its 16 reference inputs within 1e-4.
    @Test(arguments: ["lenet300100_mnist5k", "mlp_digits"])
    func logitsMatchPyTorch(model name: String) throws {
        let model = try LayerList.load(architecture: Repo.path("examples/models/\(name).json"),
                                       weights: Repo.path("examples/models/\(name).safetensors"))
        let ref = try NPZ.read(path: "\(Repo.fixtures)/reference/\(name).npz")
        let input = ref["input"]!, logits = ref["logits"]!
        for threads in [1, 2] {
            let out = model.predict(Tensor(shape: input.shape, scalars: input.floats()), threads: threads)
            #expect(out.shape == logits.shape)
            let diffs = zip(out.scalars, logits.floats()).map { abs($0 - $1) }
            let worst = diffs.enumerated().max { $0.element < $1.element }!
            #expect(worst.element < 1e-4, "\(name), \(threads) threads: max |diff| \(worst.element) at \(worst.offset)")
        }
    }

    @Test func layerListErrorsNameTheLayer() throws {
        let dir = try scratchFolder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let arch = (dir as NSString).appendingPathComponent("a.json")
        try #"{"format": "layer-list/v1", "input": {"shape": ["N", 4]}, "layers": [{"name": "c1", "type": "conv3d"}]}"#
            .write(toFile: arch, atomically: true, encoding: .utf8)
        let e = #expect(throws: ModelIOError.self) {
            try LayerList.load(architecture: arch, weights: Repo.path("examples/models/mlp_digits.safetensors"))
        }
        #expect(e?.problem.contains("layer c1") == true)
        #expect(e?.problem.contains("conv3d") == true)
    }
}
