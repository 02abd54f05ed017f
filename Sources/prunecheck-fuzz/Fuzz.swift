import Configuration
import Foundation
import ModelIO

// libFuzzer targets for every parser of untrusted input, selected by FUZZ_PARSER:
// onnx, npy, npz, safetensors, idx, csv, config. `make fuzz` builds this with
// `-sanitize=fuzzer -DFUZZING` and runs each parser for a bounded time; a crash, a trap or a
// sanitizer report is a failure, a thrown error is the expected outcome for bad input.
// Without FUZZING it is a plain program that replays files: `prunecheck-fuzz onnx FILE…`.

let parser = ProcessInfo.processInfo.environment["FUZZ_PARSER"] ?? "onnx"
let limits = IOLimits(maxTensorBytes: 1 << 26, maxTotalBytes: 1 << 28)
let scratch = NSTemporaryDirectory() + "prunecheck-fuzz-\(getpid())"

func parse(_ bytes: [UInt8], as parser: String) {
    switch parser {
    case "onnx": _ = try? ONNXModel.decode(Data(bytes), file: "fuzz.onnx", limits: limits)
    case "npy": _ = try? NPY.parse(bytes, file: "fuzz.npy", limits: limits)
    case "safetensors": _ = try? Safetensors.parse(bytes, file: "fuzz.safetensors", limits: limits)
    case "idx": _ = try? IDX.parse(bytes, file: "fuzz.idx", limits: limits)
    case "csv": if let text = String(bytes: bytes, encoding: .utf8) { _ = try? CSV.parse(text, file: "fuzz.csv") }
    case "config": if let text = String(bytes: bytes, encoding: .utf8) { _ = try? CheckConfig.parse(text, file: "fuzz.yml") }
    case "npz":
        // ZIP archives are read from files; one scratch file per process.
        let path = scratch + ".npz"
        guard (try? Data(bytes).write(to: URL(fileURLWithPath: path))) != nil else { return }
        _ = try? NPZ.read(path: path, limits: limits)
    default:
        FileHandle.standardError.write(Data("unknown FUZZ_PARSER '\(parser)'\n".utf8))
        exit(2)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    parse(Array(UnsafeBufferPointer(start: data, count: size)), as: parser)
    return 0
}

#if FUZZING
// SwiftPM links an executable with `main` defined as `<module>_main`; that entry point hands
// control to libFuzzer's driver (libFuzzer's own `main` is then not linked in).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("prunecheck_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzOne(data, size) }
}
#else
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let which = args.first, args.count >= 2 else {
            print("usage: prunecheck-fuzz PARSER FILE…  (replays inputs through one parser)")
            exit(2)
        }
        for file in args.dropFirst() {
            guard let data = FileManager.default.contents(atPath: file) else { print("cannot read \(file)"); exit(2) }
            parse([UInt8](data), as: which)
            print("\(file): parsed without crashing")
        }
    }
}
#endif
