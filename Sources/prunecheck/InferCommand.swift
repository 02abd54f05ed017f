import ArgumentParser
import Checking
import Common
import Foundation
import ModelIO
import TensorEngine

struct Infer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on arrays and write every output it produces.",
        discussion: """
            Each graph input reads the array of its own name in --data (an .npz), or the one given with \
            --input NAME=ARRAY; token ids and masks (int64) work like pixels (float32). Every graph output \
            is written to --out under its own name, in its own element type. For parity with your framework: \
            run both on the same arrays and compare.
            """)

    @OptionGroup var modelOptions: ModelOptions
    var model: String { modelOptions.model }
    var architecture: String? { modelOptions.architecture }

    @Option(help: "The data file (.npz) with one array per graph input.")
    var data: String

    @OptionGroup var inputs: InputMappingOptions

    @Option(help: "Run at most this many examples at a time (0: all at once).")
    var batchSize = 0

    @OptionGroup var threadOptions: ThreadOptions
    var threads: Int { threadOptions.threads }

    @Option(help: "Write the outputs here (.npz).")
    var out: String

    func validate() throws {
        guard batchSize >= 0 else { throw ValidationError("--batch-size must be 0 or more") }
    }

    func run() throws {
        let graph = try ModelLoading.loadGraph(path: model, architecture: architecture)
        let feeds = try inputs.feeds(for: graph, data: data)
        let outputs: [Value]
        do {
            outputs = try GraphFeeds.run(graph, feeds: feeds, batchSize: batchSize, threads: threads)
        } catch let e as GraphError {
            throw ModelIOError(file: model, "does not run on \(data): \(e)")
        }
        var written: [String: NPYArray] = [:]
        for (name, value) in zip(graph.outputs, outputs) { written[name] = GraphFeeds.array(value) }
        try NPZ.write(written, to: out)
        for (name, value) in zip(graph.outputs, outputs) {
            Console.out("\(name): \(value.dtype.rawValue) \(value.shape)")
        }
        note("wrote \(out)")
    }
}
