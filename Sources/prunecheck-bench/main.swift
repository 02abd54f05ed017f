// `make bench`: PruneCheck's engine on the workloads of ../shared/bench/peers.py, written in
// the same `prunecheck-bench/1` schema so `compare.py` can set them side by side.
//
//   prunecheck-bench [--threads 1,2] [--quick] [--only gemm,infer,infer_sparse90,infer_structured50,
//                    structured_resnet18,latency_spread,train_epoch] [--fixtures DIR] [--real-models DIR] [--out FILE]
//
// latency_spread: what a latency gate sees on this machine. LeNet-300-100 at 90 % sparsity,
// batch 1 and 64, measured 10 times as `check` measures it (p50 of single runs, each time after
// a pause), at 1 and 2 threads: the spread of those p50s (max / min) is what an unpaired gate
// compares against; and 10 paired measurements of the model against a copy of itself (the
// paired gate at one thread): the spread of the median ratio and the widest 95 % interval.
//
// structured_resnet18 needs torchvision's ResNet-18 export (`make real-models LARGE=1` writes it
// to .build/real-models, the default --real-models): dense and with half its channels removed
// (channel granularity, per group by L2 norm), batch 1 and 8, and their ratio.
//
// Definitions follow ../shared/bench/README.md ("Workloads"). Models whose layers the engine
// does not support yet are listed as skipped, not measured.
//
// Diagnostics (print, no JSON), with the --threads given:
//   PRUNECHECK_GEMM=m,n,k[,tA,tB]   one GEMM shape: median and best time (PRUNECHECK_GEMM_PACKED=1:
//                                   A prepacked; PRUNECHECK_GEMM_PACKEDB=1: B prepacked;
//                                   PRUNECHECK_GEMM_COLD=1: caches flushed before each call)
//   PRUNECHECK_DEPTHWISE=c,h,w,k,s  the depthwise kernel on c planes of h × w (k × k, stride s;
//                                   PRUNECHECK_DEPTHWISE_RUNS=N runs; PRUNECHECK_DEPTHWISE_BLOCKED=1:
//                                   the blocked layout's kernel; PRUNECHECK_DEPTHWISE_COLD=1: caches
//                                   flushed before each run)
//   PRUNECHECK_SILU=count[,chunk]   SiLU in place over count values, chunk at a time
//   PRUNECHECK_SOFTMAX=rows,cols    `softmaxRows` on rows of cols values
//   PRUNECHECK_PROFILE=1            per-node time of the CNN fixtures at batch 64 (a Relu fused
//                                   into the Conv or Gemm before it shows 0: its time is in that node)
//   PRUNECHECK_PROFILE=a,b          the same for the named fixture models (`a:0.9`: pruned to 90 %
//                                   by global magnitude first); PRUNECHECK_PROFILE_BATCH=N sets the batch;
//                                   PRUNECHECK_PROFILE_NOTIMES=1 runs the same calls untimed (for perf),
//                                   PRUNECHECK_PROFILE_CALLS=N that many (default 12,800 / batch)

import Dispatch
import Common
import Evaluation
import Foundation
import Kernels
import ModelIO
import Pruning
import Regression
import TensorEngine

tuneAllocatorForTensors()

struct Budget {
    var gemmSamples = 25, gemmSampleSeconds = 0.01
    var warmupRuns = 50, warmupSeconds = 0.3, minRuns = 200, minSeconds = 2.0
    var trainEpochs = 3

    static let quick = Budget(gemmSamples: 7, gemmSampleSeconds: 0.003, warmupRuns: 10, warmupSeconds: 0.05, minRuns: 50,
                              minSeconds: 0.3, trainEpochs: 1)
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func median(_ v: [Double]) -> Double { Quantile.of(v.sorted(), 0.5) }

func percentile(_ v: [Double], _ q: Double) -> Double { Quantile.of(v.sorted(), q) }

struct Row {
    var workload: String, threads: Int, batch: Int?, metric: String, value: Double, samples: Int
    var json: JSONValue {
        .object([("workload", .string(workload)), ("impl", .string("prunecheck")), ("threads", .number(Double(threads))),
                 ("batch", batch.map { .number(Double($0)) } ?? .null), ("metric", .string(metric)),
                 ("value", .number((value * 1000).rounded() / 1000)), ("samples", .number(Double(samples)))])
    }
}

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

// MARK: - Arguments

var threadCounts = [1]
var budget = Budget()
var groups: Set<String> = ["gemm", "infer", "infer_sparse90", "infer_structured50", "structured_resnet18", "latency_spread", "train_epoch"]
var fixtures = ProcessInfo.processInfo.environment["PRUNECHECK_FIXTURES"] ?? "../shared/fixtures"
var out = "bench-results/prunecheck.json"
var realModels = ".build/real-models"
/// The GEMM micro-kernel variant of the `gemm` rows (the CPU's widest unless --isa says).
var isa = KernelISA.detected
var args = Array(CommandLine.arguments.dropFirst())
while !args.isEmpty {
    let a = args.removeFirst()
    func value() -> String {
        guard !args.isEmpty else { log("\(a) needs a value"); exit(2) }
        return args.removeFirst()
    }
    switch a {
    case "--threads": threadCounts = value().split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
    case "--quick": budget = .quick
    case "--only": groups = Set(value().split(separator: ",").map(String.init))
    case "--isa":
        guard let v = KernelISA(rawValue: value()) else { log("--isa takes generic, avx2 or avx512"); exit(2) }
        isa = v
    case "--fixtures": fixtures = value()
    case "--real-models": realModels = value()
    case "--out": out = value()
    default: log("unknown option \(a); see the header of Sources/prunecheck-bench/main.swift"); exit(2)
    }
}
if !FileManager.default.fileExists(atPath: "\(fixtures)/models") {
    log("no fixtures at \(fixtures); using the bundled examples/ (fewer models)")
    fixtures = "examples"
}
func modelPath(_ name: String, _ ext: String) -> String {
    let shared = "\(fixtures)/models/\(name).\(ext)"
    return FileManager.default.fileExists(atPath: shared) ? shared : "examples/models/\(name).\(ext)"
}
func dataPath(_ name: String) -> String {
    let shared = "\(fixtures)/datasets/\(name).npz"
    return FileManager.default.fileExists(atPath: shared) ? shared : "examples/data/\(name).npz"
}

var rows: [Row] = []

// MARK: - GEMM

// PRUNECHECK_DEPTHWISE=c,h,w,k,stride: time the depthwise kernel on c planes (pads k/2; the median
// of PRUNECHECK_DEPTHWISE_RUNS runs, 50 unless set),
// before anything else runs.
if let spec = ProcessInfo.processInfo.environment["PRUNECHECK_DEPTHWISE"] {
    let f = spec.split(separator: ",").compactMap { Int($0) }
    let (c, h, w, k, st) = (f[0], f[1], f[2], f[3], f[4])
    let oh = (h + 2 * (k / 2) - k) / st + 1, ow = (w + 2 * (k / 2) - k) / st + 1
    let g = DepthwiseGeometry(ih: h, iw: w, kh: k, kw: k, strideH: st, strideW: st, dilationH: 1, dilationW: 1,
                              padTop: k / 2, padLeft: k / 2, oh: oh, ow: ow)
    var rng = Philox(seed: 1)
    let x = (0..<c * h * w).map { _ in rng.nextUnitFloat() - 0.5 }, wt = (0..<c * k * k).map { _ in rng.nextUnitFloat() - 0.5 }
    var y = [Float](repeating: 0, count: c * oh * ow), scratch = [Float](repeating: 0, count: depthwiseConv2dScratch(g))
    let bias = [Float](repeating: 0.5, count: c)
    var times: [Double] = []
    // PRUNECHECK_DEPTHWISE_BLOCKED=1: the blocked layout's kernel (`Blocked16.depthwise`, blocks
    // of sixteen channels, ReLU6) on the same sizes.
    let blocked = ProcessInfo.processInfo.environment["PRUNECHECK_DEPTHWISE_BLOCKED"] == "1"
    let nb = Blocked16.blocks(c)
    let bx = blocked ? (0..<nb * h * w * 16).map { _ in rng.nextUnitFloat() - 0.5 } : []
    let bw = blocked ? (0..<nb * k * k * 16).map { _ in rng.nextUnitFloat() - 0.5 } : []
    var by = [Float](repeating: 0, count: blocked ? nb * oh * ow * 16 : 0)
    let window = Blocked16.Window(kh: k, kw: k, strideH: st, strideW: st, padTop: k / 2, padLeft: k / 2, padBottom: k / 2, padRight: k / 2)
    // PRUNECHECK_DEPTHWISE_COLD=1: the caches flushed before each run (as in a model, where the
    // input was written a layer before and the output buffer was last touched a run before).
    var flush = [Float](repeating: 0, count: ProcessInfo.processInfo.environment["PRUNECHECK_DEPTHWISE_COLD"] == "1" ? 16 << 20 : 0)
    for run in 0..<(Int(ProcessInfo.processInfo.environment["PRUNECHECK_DEPTHWISE_RUNS"] ?? "") ?? 50) {
        for i in stride(from: 0, to: flush.count, by: 16) { flush[i] = Float(run) }
        let t0 = now()
        if blocked {
            by.withUnsafeMutableBufferPointer { yp in
                Blocked16.depthwise(bx, batch: 1, channels: c, ih: h, iw: w, weights: bw, bias: nil, geometry: window, oh: oh, ow: ow,
                                    yp.baseAddress!, activation: .clip(0, 6), threads: threadCounts[0])
            }
            times.append(now() - t0)
            continue
        }
        y.withUnsafeMutableBufferPointer { yp in
            scratch.withUnsafeMutableBufferPointer { sp in
                x.withUnsafeBufferPointer { xp in
                    wt.withUnsafeBufferPointer { wp in
                        bias.withUnsafeBufferPointer { bp in
                            depthwiseConv2d(xp.baseAddress!, planes: 0..<c, channels: c, weights: wp.baseAddress!, bias: bp.baseAddress!, geometry: g,
                                            y: yp.baseAddress!, scratch: sp.baseAddress!) { _, _ in }
                        }
                    }
                }
            }
        }
        times.append(now() - t0)
    }
    let t = median(times)
    print("depthwise \(spec): median \(String(format: "%.1f", t * 1e6)) us, \(String(format: "%.2f", Double(c * oh * ow * k * k) / t / 1e9)) GMAC/s")
    exit(0)
}

// PRUNECHECK_SILU=count[,chunk]: time SiLU in place over count floats, `chunk` at a time (a
// plane's worth, as a Conv's epilogue runs it), before anything else runs.
if let spec = ProcessInfo.processInfo.environment["PRUNECHECK_SILU"] {
    let f = spec.split(separator: ",").compactMap { Int($0) }
    let count = f[0], chunk = f.count > 1 ? f[1] : f[0]
    var rng = Philox(seed: 3)
    var x = (0..<count).map { _ in (rng.nextUnitFloat() - 0.5) * 8 }
    var times: [Double] = []
    for _ in 0..<200 {
        let t0 = now()
        x.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i < count { siluForward(p.baseAddress! + i, count: min(chunk, count - i)); i += chunk }
        }
        times.append(now() - t0)
        // (SiLU of SiLU drifts to small values: start again from the same data.)
        x.withUnsafeMutableBufferPointer { p in var r = Philox(seed: 3); for i in 0..<count { p[i] = (r.nextUnitFloat() - 0.5) * 8 } }
    }
    let t = median(times)
    print("silu \(spec): median \(String(format: "%.1f", t * 1e6)) us, \(String(format: "%.3f", t / Double(count) * 1e9)) ns a value")
    exit(0)
}

// PRUNECHECK_SOFTMAX=rows,cols: time `softmaxRows` (diagnostics, no JSON).
if let spec = ProcessInfo.processInfo.environment["PRUNECHECK_SOFTMAX"] {
    let f = spec.split(separator: ",").compactMap { Int($0) }
    let (rows, cols) = (f[0], f[1])
    var rng = Philox(seed: 1)
    let x = (0..<rows * cols).map { _ in rng.nextUnitFloat() * 8 - 4 }
    var y = [Float](repeating: 0, count: rows * cols)
    var perCall: [Double] = []
    for _ in 0..<25 {
        var reps = 0
        let t0 = now()
        repeat {
            y.withUnsafeMutableBufferPointer { softmaxRows(x, rows: rows, cols: cols, out: $0.baseAddress!) }
            reps += 1
        } while now() - t0 < 0.01
        perCall.append((now() - t0) / Double(reps))
    }
    print(String(format: "softmax %d x %d: median %.2f us (%.3f ns a value)", rows, cols, median(perCall) * 1e6,
                 median(perCall) * 1e9 / Double(rows * cols)))
    exit(0)
}

// PRUNECHECK_GEMM=m,n,k[,tA,tB]: time one GEMM shape (diagnostics, no JSON).
if let spec = ProcessInfo.processInfo.environment["PRUNECHECK_GEMM"] {
    let f = spec.split(separator: ",").compactMap { Int($0) }
    let (m, n, k) = (f[0], f[1], f[2])
    let ta = f.count > 3 && f[3] == 1, tb = f.count > 4 && f[4] == 1
    var rng = Philox(seed: 1)
    let a = (0..<m * k).map { _ in rng.nextUnitFloat() - 0.5 }, b = (0..<k * n).map { _ in rng.nextUnitFloat() - 0.5 }
    var c = [Float](repeating: 0, count: m * n)
    // PRUNECHECK_GEMM_PACKED=1: A prepacked once (`PackedA`), as a Conv's weights are at
    // inference. PRUNECHECK_GEMM_COLD=1: the caches flushed before each call (as a layer's
    // weights are, one inference later), one call per sample.
    let packedA = ProcessInfo.processInfo.environment["PRUNECHECK_GEMM_PACKED"] == "1" && !ta ? PackedA(a: a, lda: k, m: m, k: k) : nil
    let cold = ProcessInfo.processInfo.environment["PRUNECHECK_GEMM_COLD"] == "1"
    // PRUNECHECK_GEMM_PACKEDB=1: B prepacked once (`PackedB`), as a MatMul's weights are.
    let packedB = ProcessInfo.processInfo.environment["PRUNECHECK_GEMM_PACKEDB"] == "1"
        ? b.withUnsafeBufferPointer { PackedB(b: $0.baseAddress!, ldb: tb ? k : n, transposeB: tb, k: k, n: n) } : nil
    var flush = [Float](repeating: 0, count: cold ? 16 << 20 : 0)
    for t in threadCounts {
        let call = {
            c.withUnsafeMutableBufferPointer { cp in
                if let packedB {
                    gemm(m: m, a: a, lda: ta ? m : k, transposeA: ta, packed: packedB, c: cp.baseAddress!, ldc: n, accumulate: false,
                         threads: t, isa: isa)
                    return
                }
                gemm(m: m, n: n, k: k, a: a, lda: ta ? m : k, transposeA: ta, b: b, ldb: tb ? k : n, transposeB: tb,
                     c: cp.baseAddress!, ldc: n, accumulate: false, threads: t, isa: isa, packedA: packedA)
            }
        }
        var perCall: [Double] = []
        for sample in 0..<(cold ? 200 : 25) {
            if cold { for i in stride(from: 0, to: flush.count, by: 16) { flush[i] = Float(sample) } }
            var reps = 0
            let t0 = now()
            repeat { call(); reps += 1 } while !cold && now() - t0 < 0.01
            perCall.append((now() - t0) / Double(reps))
        }
        print(String(format: "gemm %dx%dx%d tA=%d tB=%d threads=%d: median %.2f us (%.1f GFLOP/s), best %.2f us (%.1f GFLOP/s)",
                     m, n, k, ta ? 1 : 0, tb ? 1 : 0, t, median(perCall) * 1e6, 2 * Double(m * n * k) / median(perCall) / 1e9,
                     perCall.min()! * 1e6, 2 * Double(m * n * k) / perCall.min()! / 1e9))
    }
    exit(0)
}

if groups.contains("gemm") {
    for n in [64, 128, 256, 512, 1024] {
        var rng = Philox(seed: UInt64(n))
        let a = (0..<n * n).map { _ in rng.nextUnitFloat() - 0.5 }, b = (0..<n * n).map { _ in rng.nextUnitFloat() - 0.5 }
        var c = [Float](repeating: 0, count: n * n)
        for t in threadCounts {
            let call = {
                c.withUnsafeMutableBufferPointer { cp in
                    gemm(m: n, n: n, k: n, a: a, lda: n, transposeA: false, b: b, ldb: n, transposeB: false,
                         c: cp.baseAddress!, ldc: n, accumulate: false, threads: t, isa: isa)
                }
            }
            call()
            var perCall: [Double] = []
            for _ in 0..<budget.gemmSamples {
                var reps = 0
                let t0 = now()
                repeat { call(); reps += 1 } while now() - t0 < budget.gemmSampleSeconds
                perCall.append((now() - t0) / Double(reps))
            }
            let gflops = 2 * pow(Double(n), 3) / median(perCall) / 1e9
            rows.append(Row(workload: "gemm/n=\(n)", threads: t, batch: nil, metric: "gflops", value: gflops, samples: perCall.count))
            log(String(format: "gemm/n=%d threads=%d: %.1f GFLOP/s", n, t, gflops))
        }
    }
}

// MARK: - Inference

/// (p50, p90, runs) of single calls in microseconds, after a warm-up, as peers.py measures.
func latency(_ fn: () -> Void) -> (Double, Double, Int) {
    var start = now(), runs = 0
    while runs < budget.warmupRuns || now() - start < budget.warmupSeconds { fn(); runs += 1 }
    var times: [Double] = []
    start = now()
    while times.count < budget.minRuns || now() - start < budget.minSeconds {
        let t0 = DispatchTime.now().uptimeNanoseconds
        fn()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
    }
    return (percentile(times, 0.5), percentile(times, 0.9), times.count)
}

let datasets = ["lenet300100_mnist5k": "mnist5k", "lenet5_mnist5k": "mnist5k", "mlp_digits": "digits",
                "mlp_mnist1d": "mnist1d", "cnn_mnist1d": "mnist1d"]

/// The model and its preprocessed x_test, or nil (with the reason logged) when unsupported.
func load(_ name: String) -> (Graph, Tensor)? {
    do {
        let model = try LayerList.load(architecture: modelPath(name, "json"), weights: modelPath(name, "safetensors"))
        let x = try NPZ.read(path: dataPath(datasets[name]!), names: ["x_test"])["x_test"]!
        var values = x.floats()
        if x.dtype == .uint8 { for i in values.indices { values[i] /= 255 } }
        return (model, Tensor(shape: [x.shape[0]] + model.inputShape, scalars: values))
    } catch {
        log("skipped \(name): \(error)")
        return nil
    }
}

func benchInfer(_ workload: String, _ model: Graph, _ x: Tensor) {
    for t in threadCounts {
        for b in [1, 64] {
            let input = x.rows(0..<b)
            let (p50, p90, runs) = latency { _ = model.predict(input, threads: t) }
            rows.append(Row(workload: workload, threads: t, batch: b, metric: "latency_us_p50", value: p50, samples: runs))
            rows.append(Row(workload: workload, threads: t, batch: b, metric: "latency_us_p90", value: p90, samples: runs))
            log(String(format: "%@ threads=%d batch=%d: p50 %.1f us, p90 %.1f us", workload, t, b, p50, p90))
        }
    }
}


// PRUNECHECK_PROFILE=1 (or =model,model): time every node of the convolutional models (or
// of those named) at batch 64 (diagnostics, no JSON).
if let profile = ProcessInfo.processInfo.environment["PRUNECHECK_PROFILE"] {
    let batch = Int(ProcessInfo.processInfo.environment["PRUNECHECK_PROFILE_BATCH"] ?? "") ?? 64
    for spec in profile == "1" ? ["lenet5_mnist5k", "cnn_mnist1d"] : profile.split(separator: ",").map(String.init) {
        // `model:0.9`: pruned first, by global magnitude, to that sparsity.
        let parts = spec.split(separator: ":").map(String.init)
        let name = parts[0]
        guard let (model, x) = load(name) else { continue }
        if parts.count > 1, let sparsity = Double(parts[1]) {
            let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
            applyMasks(MagnitudePruning.masks(for: weights, sparsity: sparsity, scope: .global), to: model)
        }
        let input = x.rows(0..<batch)
        // About 0.2 s of calls, so a batch of 1 is not one descheduling away from its mean.
        let calls = Int(ProcessInfo.processInfo.environment["PRUNECHECK_PROFILE_CALLS"] ?? "") ?? max(20, 12_800 / batch)
        for _ in 0..<5 { _ = model.predict(input, threads: threadCounts[0]) }
        let profile = NodeProfile()
        model.nodeProfile = ProcessInfo.processInfo.environment["PRUNECHECK_PROFILE_NOTIMES"] == nil ? profile : nil
        for _ in 0..<calls { _ = model.predict(input, threads: threadCounts[0]) }
        model.nodeProfile = nil
        for n in model.nodes {
            print(String(format: "%@ %@ %@: %.1f us", spec, n.opType, n.name, Double(profile.totals[n.name] ?? 0) / Double(calls * 1000)))
        }
    }
    exit(0)
}

if groups.contains("infer") {
    for name in ["lenet300100_mnist5k", "lenet5_mnist5k", "mlp_digits", "mlp_mnist1d", "cnn_mnist1d"] {
        if let (model, x) = load(name) { benchInfer("infer/\(name)", model, x) }
    }
}

if groups.contains("infer_sparse90"), let (model, x) = load("lenet300100_mnist5k") {
    let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
    applyMasks(MagnitudePruning.masks(for: weights, sparsity: 0.9, scope: .global), to: model)
    benchInfer("infer_sparse90/lenet300100_mnist5k", model, x)
}

// Structured pruning really shrinks the model: half the hidden neurons (LeNet-300-100) or
// half the channels of every hidden layer (LeNet-5) removed, per layer by L2 norm, compared
// with the dense rows of `infer` (PruneCheck's own; peers have no such workload).
if groups.contains("infer_structured50") {
    for (name, granularity) in [("lenet300100_mnist5k", PruneRecipe.Granularity.neuron), ("lenet5_mnist5k", .channel)] {
        guard let (model, x) = load(name) else { continue }
        let (small, _) = try! prune(model, recipe: PruneRecipe(scope: .layer, granularity: granularity, sparsity: 0.5))
        benchInfer("infer_structured50/\(name)", small, x)
    }
}

// Channel pruning on a real topology: torchvision's ResNet-18 (residual Adds, BatchNorm, the
// global pool, downsample branches) with half the channels of every group removed.
if groups.contains("structured_resnet18") {
    let path = "\(realModels)/resnet18.onnx"
    if let dense = try? ModelLoading.loadGraph(path: path, architecture: nil) {
        let small = try! prune(dense.copy(), recipe: PruneRecipe(scope: .layer, granularity: .channel, sparsity: 0.5)).graph
        var rng = Philox(seed: 3)
        let x = Tensor(shape: [8, 3, 224, 224], scalars: (0..<(8 * 3 * 224 * 224)).map { _ in rng.nextUnitFloat() })
        for t in threadCounts {
            for b in [1, 8] {
                let input = [Value.float(Variable(x.rows(0..<b)))]
                var p50: [Double] = []
                for (label, model) in [("dense", dense), ("channel50", small)] {
                    let (median, p90, runs) = latency { _ = model.predict(input, threads: t) }
                    rows.append(Row(workload: "structured_resnet18/\(label)", threads: t, batch: b, metric: "latency_us_p50", value: median, samples: runs))
                    rows.append(Row(workload: "structured_resnet18/\(label)", threads: t, batch: b, metric: "latency_us_p90", value: p90, samples: runs))
                    p50.append(median)
                }
                log(String(format: "structured_resnet18 threads=%d batch=%d: dense %.0f us, channel50 %.0f us, %.2fx faster", t, b, p50[0], p50[1], p50[0] / p50[1]))
            }
        }
    } else {
        log("skipped structured_resnet18: no \(path) (make real-models LARGE=1 writes it)")
    }
}

if groups.contains("latency_spread"), let (model, x) = load("lenet300100_mnist5k") {
    let weights = model.prunableWeights.map { (name: $0.name, tensor: $0.variable.value) }
    applyMasks(MagnitudePruning.masks(for: weights, sparsity: 0.9, scope: .global), to: model)
    let twin = model.copy()
    let settings = LatencySettings(batchSizes: [1, 64], warmup: 10, minRuns: 30, maxSeconds: 1)
    for b in [1, 64] {
        let input = x.rows(0..<b)
        for t in [1, 2] {
            let p50s = (0..<10).map { _ -> Double in
                usleep(50_000)
                return LatencyHarness.measure(model: model, input: input, settings: settings, threads: t).p50
            }
            rows.append(Row(workload: "latency_spread/unpaired_p50_max_over_min", threads: t, batch: b, metric: "ratio",
                            value: p50s.max()! / p50s.min()!, samples: 10))
            log(String(format: "latency_spread unpaired threads=%d batch=%d: p50 %.1f-%.1f us over 10 runs (max/min %.2f)",
                       t, b, p50s.min()!, p50s.max()!, p50s.max()! / p50s.min()!))
        }
        let paired = (0..<10).map { _ -> PairedLatencyResult in
            usleep(50_000)
            return PairedLatency.measure(batchSize: b, settings: settings, base: { _ = model.predict(input, threads: 1) },
                                         current: { _ = twin.predict(input, threads: 1) })
        }
        let ratios = paired.map(\.ratio)
        let widest = paired.map { $0.high - $0.low }.max()!
        rows.append(Row(workload: "latency_spread/paired_ratio_max_over_min", threads: 1, batch: b, metric: "ratio",
                        value: ratios.max()! / ratios.min()!, samples: 10))
        log(String(format: "latency_spread paired threads=1 batch=%d: ratio to itself %.3f-%.3f over 10 runs, widest 95%% interval %.3f",
                   b, ratios.min()!, ratios.max()!, widest))
    }
}

// MARK: - Training

if groups.contains("train_epoch") {
    do {
        let name = "lenet300100_mnist5k"
        let arrays = try NPZ.read(path: dataPath("mnist5k"), names: ["x_train", "y_train"])
        let x = arrays["x_train"]!, y = arrays["y_train"]!.integers()!
        let pixels = x.floats().map { $0 / 255 }
        let data = LabeledData(inputs: Tensor(shape: [x.shape[0], 1, 28, 28], scalars: pixels), labels: y.map { Int32($0) })
        for t in threadCounts {
            let model = try LayerList.load(architecture: modelPath(name, "json"), weights: modelPath(name, "safetensors"))
            let settings = FineTuneSettings(epochs: 1, batchSize: 64, learningRate: 0.01, momentum: 0.9)
            _ = FineTuning.run(model: model, masks: [:], data: data, settings: settings, seed: 0, threads: t)  // warm-up epoch
            var seconds: [Double] = []
            for e in 0..<budget.trainEpochs {
                let t0 = now()
                _ = FineTuning.run(model: model, masks: [:], data: data, settings: settings, seed: UInt64(e + 1), threads: t)
                seconds.append(now() - t0)
            }
            rows.append(Row(workload: "train_epoch/\(name)", threads: t, batch: 64, metric: "seconds", value: median(seconds), samples: seconds.count))
            log(String(format: "train_epoch/%@ threads=%d: %.3f s/epoch", name, t, median(seconds)))
        }
    } catch {
        log("skipped train_epoch: \(error)")
    }
}

// MARK: - Output

let formatter = ISO8601DateFormatter()
let document = JSONValue.object([
    ("schema", .string("prunecheck-bench/1")),
    ("created", .string(formatter.string(from: Date()))),
    ("tool", .string("prunecheck-bench")),
    ("machine", .object([("cpu", .object([("model", .string(CPUInfo.modelName)),
                                          ("logical_cpus", .number(Double(ProcessInfo.processInfo.activeProcessorCount)))]))])),
    ("quick", .bool(budget.minRuns < 200)),
    ("results", .array(rows.map(\.json))),
])
try writeFileAtomically(document.rendered(), to: out)
TextColumns.render([["workload", "threads", "batch", "metric", "value"]]
                   + rows.map { [$0.workload, String($0.threads), $0.batch.map(String.init) ?? "-", $0.metric, String(format: "%.2f", $0.value)] },
                   rightAligned: [4]).forEach { print($0) }
print("wrote \(out)")
