import ArgumentParser
import Checking
import Common
import Evaluation
import Foundation
import ModelIO
import TensorEngine

struct Latency: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time one model on this machine with the harness `check` uses.",
        discussion: """
            Inference p50/p90/p99 and MAD in microseconds at each batch size: examples from --data \
            (cycled to fill a batch; each graph input from the array of its name or --input), or zeros \
            when the model's inputs have fixed sizes. --train-step also times a training step of a \
            classifier (forward, cross-entropy on the `labels` array or class 0, backward, SGD update).
            """)

    @OptionGroup var modelOptions: ModelOptions
    var model: String { modelOptions.model }

    @Option(help: "Arrays to time on (.npz); default: zeros of the inputs' sizes.")
    var data: String?

    @OptionGroup var inputs: InputMappingOptions

    @Option(help: "Batch sizes, comma-separated.")
    var batchSizes = "1"

    @OptionGroup var threadOptions: ThreadOptions

    @Flag(help: "Also time a training step (single float input classifiers).")
    var trainStep = false

    @Option(help: "Untimed runs before measuring.")
    var warmup = 10

    @Option(help: "Timed runs at least.")
    var minRuns = 30

    @Option(help: "Seconds at most per batch size.")
    var maxSeconds = 2.0

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Option(help: "Also time this model (ONNX) against --model, alternately in this process (paired timing, as `check` gates): the ratio of their times and its 95 % interval per batch size.")
    var pairedWith: String?

    @Flag(help: "Also print where inference spends its time: per op type and the slowest nodes, at the first batch size.")
    var profile = false

    func validate() throws {
        guard !parsedBatchSizes.isEmpty, parsedBatchSizes.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--batch-sizes takes positive integers, comma-separated (e.g. 1,8)")
        }
        guard warmup >= 0, minRuns >= 1, maxSeconds > 0 else { throw ValidationError("--warmup ≥ 0, --min-runs ≥ 1 and --max-seconds > 0") }
    }

    var parsedBatchSizes: [Int] { batchSizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        let graph = try ModelLoading.loadGraph(path: model, architecture: modelOptions.architecture)
        let examples = try exampleFeeds(graph)
        let settings = LatencySettings(batchSizes: parsedBatchSizes, warmup: warmup, minRuns: minRuns, maxSeconds: maxSeconds)
        let threads = threadOptions.threads
        var rows: [(mode: String, result: LatencyResult)] = []
        for b in parsedBatchSizes {
            let feeds = examples.map { batch(of: $0, size: b) }
            if graph.inputs.count == 1, case .float(let x) = feeds[0] {
                rows.append(("inference", LatencyHarness.measure(model: graph, input: x.value, settings: settings, threads: threads)))
            } else {
                do { _ = try graph.run(feeds, threads: threads) } catch let e as GraphError {
                    throw ModelIOError(file: model, "does not run on a batch of \(b): \(e)")
                }
                rows.append(("inference", LatencyHarness.measure(batchSize: b, settings: settings) { _ = try? graph.run(feeds, threads: threads) }))
            }
            if trainStep {
                guard graph.inputs.count == 1, case .float(let x) = feeds[0] else {
                    throw InputError("--train-step: \(model) is not a classifier of one float input")
                }
                let labels = try trainingLabels(count: b)
                rows.append(("train_step", LatencyHarness.measureTrainingStep(model: graph.copy(), input: x.value, labels: labels,
                                                                             settings: settings, threads: threads)))
            }
        }
        var paired: [PairedLatencyResult] = []
        if let pairedWith {
            let base = try ModelLoading.loadGraph(path: pairedWith, architecture: nil)
            guard base.inputs.map(\.name) == graph.inputs.map(\.name) else {
                throw InputError("--paired-with \(pairedWith): its inputs (\(base.inputs.map(\.name).joined(separator: ", "))) are not --model's")
            }
            for b in parsedBatchSizes {
                let feeds = examples.map { batch(of: $0, size: b) }
                do { _ = try base.run(feeds, threads: threads) } catch let e as GraphError {
                    throw ModelIOError(file: pairedWith, "does not run on a batch of \(b): \(e)")
                }
                paired.append(PairedLatency.measure(batchSize: b, settings: settings,
                                                    base: { _ = try? base.run(feeds, threads: threads) },
                                                    current: { _ = try? graph.run(feeds, threads: threads) }))
            }
        }
        if profile { try printProfile(graph, feeds: examples.map { batch(of: $0, size: parsedBatchSizes[0]) }, threads: threads) }
        let machine = RunEnvironment.machineDescription()
        if json {
            Console.out(JSONValue.object([
                ("schema", .string("prunecheck-latency/1")), ("model", .string(model)), ("threads", .number(Double(threads))),
                ("version", .string(toolVersion)),
                ("machine", .object([("host", .string(ProcessInfo.processInfo.hostName)),
                                     ("cpu", .string(machine.cpu)), ("arch", .string(machine.arch)), ("cores", .number(Double(machine.cores))),
                                     ("isa", .string(machine.isa)), ("os", .string(machine.os))])),
                ("paired", .array(paired.map { p in
                    .object([("batch", .number(Double(p.batchSize))), ("base_p50_us", .number(p.baseP50)), ("current_p50_us", .number(p.currentP50)),
                             ("ratio", .number(p.ratio)), ("low", .number(p.low)), ("high", .number(p.high)), ("pairs", .number(Double(p.pairs)))])
                })),
                ("results", .array(rows.map { r in
                    .object([("mode", .string(r.mode)), ("batch", .number(Double(r.result.batchSize))),
                             ("p50_us", .number(r.result.p50)), ("p90_us", .number(r.result.p90)), ("p99_us", .number(r.result.p99)),
                             ("mad_us", .number(r.result.mad)), ("runs", .number(Double(r.result.runs)))])
                })),
            ]).rendered(), terminator: "")
        } else {
            Console.out("\(model) on \(machine.cpu) (\(machine.isa), \(machine.cores) cores), \(threads) thread(s)")
            TextColumns.render([["mode", "batch", "p50 µs", "p90 µs", "p99 µs", "MAD µs", "runs"]] + rows.map { r in
                [r.mode, String(r.result.batchSize)] + [r.result.p50, r.result.p90, r.result.p99, r.result.mad].map { String(format: "%.1f", $0) }
                    + [String(r.result.runs)]
            }, rightAligned: [1, 2, 3, 4, 5, 6], indent: "  ").forEach { Console.out($0) }
            for p in paired {
                Console.out(String(format: "  paired with %@ at batch %d: ×%.3f [%.3f, %.3f] over %d pairs (base p50 %.1f µs, this %.1f µs)",
                                   pairedWith ?? "", p.batchSize, p.ratio, p.low, p.high, p.pairs, p.baseP50, p.currentP50))
            }
        }
    }

    /// One example per graph input, from --data, or zeros where every non-batch size is fixed.
    func exampleFeeds(_ graph: Graph) throws -> [Value] {
        if let data { return try inputs.feeds(for: graph, data: data) }
        return try graph.inputs.map { input in
            guard input.shape.count >= 1, input.shape.dropFirst().allSatisfy({ $0 != nil }) else {
                throw InputError("\(model): input '\(input.name)' has sizes only data can give (\(input.shape.map { $0.map(String.init) ?? "?" })); pass --data")
            }
            let shape = [1] + input.shape.dropFirst().map { $0! }
            switch input.dtype {
            case .float32: return .float(Variable(Tensor(zeros: shape)))
            case .int64: return .int64(IntTensor(shape: shape, data: [Int64](repeating: 0, count: shape.reduce(1, *))))
            case .bool: return .bool(IntTensor(shape: shape, data: [Int64](repeating: 0, count: shape.reduce(1, *))))
            }
        }
    }

    /// `size` examples of `v` along its first axis, cycling when it has fewer.
    func batch(of v: Value, size: Int) -> Value {
        let n = v.shape.first ?? 1
        let rows = (0..<size).map { $0 % max(n, 1) }
        switch v {
        case .float(let x): return .float(Variable(x.value.gatherRows(rows)))
        case .int64(let t), .bool(let t):
            let per = t.shape.dropFirst().reduce(1, *)
            let data = rows.flatMap { t.data[($0 * per)..<(($0 + 1) * per)] }
            let out = IntTensor(shape: [size] + t.shape.dropFirst(), data: data)
            if case .bool = v { return .bool(out) }
            return .int64(out)
        }
    }

    /// The `labels` array of --data (cycled), or class 0.
    func trainingLabels(count: Int) throws -> [Int32] {
        if let data, (try? NPZ.keys(path: data))?.contains("labels") == true,
           let all = try ArrayFiles.read(path: data, names: ["labels"])["labels"]?.integers(), !all.isEmpty {
            return (0..<count).map { Int32(clamping: all[$0 % all.count]) }
        }
        return [Int32](repeating: 0, count: count)
    }

    /// Per-node wall time over repeated inference runs (`Graph.nodeProfile`), summed by op type
    /// and listed for the ten slowest nodes, on standard error.
    func printProfile(_ graph: Graph, feeds: [Value], threads: Int) throws {
        for _ in 0..<max(warmup, 1) { _ = try graph.run(feeds, threads: threads) }
        let profile = NodeProfile()
        graph.nodeProfile = profile
        defer { graph.nodeProfile = nil }
        let runs = max(minRuns, 1)
        for _ in 0..<runs { _ = try graph.run(feeds, threads: threads) }
        var byOp: [String: UInt64] = [:]
        for node in graph.nodes { byOp[node.opType, default: 0] += profile.totals[node.name] ?? 0 }
        // Nodes of the graph inference runs in its place (the blocked layout's reorders).
        let names = Set(graph.nodes.map(\.name))
        for (name, ns) in profile.totals where !names.contains(name) { byOp["(layout reorders)", default: 0] += ns }
        let total = max(byOp.values.reduce(0, +), 1)
        func row(_ name: String, _ ns: UInt64) -> [String] {
            [name, String(format: "%.1f", Double(ns) / Double(runs) / 1000), String(format: "%.1f%%", 100 * Double(ns) / Double(total))]
        }
        note("time per run by op type (µs), \(runs) runs:")
        TextColumns.render([["op", "µs", "share"]] + byOp.sorted { $0.value > $1.value }.map { row($0.key, $0.value) },
                           rightAligned: [1, 2], indent: "  ").forEach { note($0) }
        note("slowest nodes:")
        let nodes = graph.nodes.map { ($0, profile.totals[$0.name] ?? 0) }.sorted { $0.1 > $1.1 }.prefix(Int(ProcessInfo.processInfo.environment["PRUNECHECK_PROFILE_NODES"] ?? "") ?? 10)
        TextColumns.render([["node", "op", "µs", "share"]] + nodes.map { n, ns in [n.name, n.opType] + Array(row("", ns).dropFirst()) },
                           rightAligned: [2, 3], indent: "  ").forEach { note($0) }
    }
}
