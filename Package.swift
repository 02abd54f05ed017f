// swift-tools-version:6.0
import PackageDescription

// NOTE: the numeric modules are built for x86-64-v3 (AVX2 + FMA), a baseline every CI
// runner has. Without it Swift's SIMD `addingProduct` lowers to one libm call per lane
// (measured: 1.2 GFLOP/s for a naive SIMD16 GEMM against 112 with an FMA target).
// `haswell` is the LLVM name for that feature level (x86-64-v3 itself is not accepted here).
// On other architectures (aarch64, arm64 macOS) the same Swift SIMD code builds for the target's
// own vectors, without these flags, and the AVX-512 module is never called (`KernelISA`).
#if arch(x86_64)
let numericFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"], .when(platforms: [.linux])),
]
#else
let numericFlags: [SwiftSetting] = []
#endif
let v5: SwiftSetting = .swiftLanguageMode(.v5)
// The wide GEMM micro-kernel alone is built for AVX-512; `Kernels` calls it only when the CPU
// has it (checked at run time), so the package still runs on every x86-64-v3 machine.
#if arch(x86_64)
let avx512Flags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "skylake-avx512"], .when(platforms: [.linux])),
]
#else
let avx512Flags: [SwiftSetting] = []
#endif

let package = Package(
    name: "PruneCheck",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "prunecheck", targets: ["prunecheck"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // Data flows one way: files -> model -> pruning -> evaluation -> comparison -> reports.
        .target(name: "CCPUFeatures"),
        // Exit codes and the error protocol every module shares.
        .target(name: "Common", swiftSettings: [v5]),
        .target(name: "KernelsAVX512", dependencies: ["CCPUFeatures"], swiftSettings: avx512Flags + [v5]),
        .target(name: "Kernels", dependencies: ["CCPUFeatures", "KernelsAVX512"], swiftSettings: numericFlags + [v5]),
        .target(name: "TensorEngine", dependencies: ["Common", "Kernels"], swiftSettings: numericFlags + [v5]),
        .target(
            name: "ModelIO",
            dependencies: [
                "Common", "TensorEngine", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: [v5]),
        .target(name: "Pruning", dependencies: ["Common", "Kernels", "TensorEngine"], swiftSettings: numericFlags + [v5]),
        .target(name: "Evaluation", dependencies: ["Common", "Kernels", "TensorEngine", .product(name: "ZIPFoundation", package: "ZIPFoundation")], swiftSettings: numericFlags + [v5]),
        .target(name: "Regression", dependencies: ["Common"], swiftSettings: [v5]),
        .systemLibrary(
            name: "CLibGit2", pkgConfig: "libgit2",
            providers: [.apt(["libgit2-dev"]), .brew(["libgit2"])]),
        .target(name: "GitKit", dependencies: ["Common", "CLibGit2"], swiftSettings: [v5]),
        .systemLibrary(
            name: "CLibXML2", pkgConfig: "libxml-2.0",
            providers: [.apt(["libxml2-dev"]), .brew(["libxml2"])]),
        .target(name: "Reports", dependencies: ["Common", "Regression", "CLibXML2"], swiftSettings: [v5]),
        .target(
            name: "Configuration",
            dependencies: ["Common", "ModelIO", "TensorEngine", "Pruning", "Evaluation", "Regression", .product(name: "Yams", package: "Yams")],
            swiftSettings: [v5]),
        // A check as a library: load, prune, evaluate, compare, cache, resolve baselines and bases.
        .target(
            name: "Checking",
            dependencies: ["Common", "Configuration", "ModelIO", "TensorEngine", "Pruning", "Evaluation", "Regression", "GitKit", "Reports"],
            swiftSettings: [v5]),
        .executableTarget(
            name: "prunecheck",
            dependencies: [
                "Checking", "Common", "Configuration", "ModelIO", "Pruning", "Evaluation", "Regression", "GitKit", "Reports", "Kernels",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: [v5]),
        .executableTarget(
            name: "prunecheck-bench",
            dependencies: ["Common", "Evaluation", "Kernels", "TensorEngine", "ModelIO", "Pruning", "Regression"],
            swiftSettings: numericFlags + [v5]),
        // ONNX's backend node tests through the importer and the engine (make conformance, tests).
        .target(
            name: "Conformance",
            dependencies: ["ModelIO", "TensorEngine", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: [v5]),
        .executableTarget(
            name: "prunecheck-conformance", dependencies: ["Conformance", "TensorEngine"], swiftSettings: [v5]),
        .executableTarget(
            name: "prunecheck-fuzz", dependencies: ["ModelIO", "Configuration"], swiftSettings: [v5]),
        .testTarget(
            name: "PruneCheckTests",
            dependencies: [
                "Common", "Kernels", "TensorEngine", "ModelIO", "Pruning", "Evaluation", "Regression", "GitKit",
                "Reports", "Configuration", "Checking", "Conformance", "prunecheck",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: numericFlags + [v5]),
    ]
)
