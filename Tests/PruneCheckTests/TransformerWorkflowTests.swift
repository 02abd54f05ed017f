import Common
import Foundation
import Testing
import ModelIO

/// A decoder (`task: language-model`, Wanda) and a sentence encoder (`task: embedding`,
/// magnitude), both exported by PyTorch's dynamo exporter, gated by the built binary in a real
/// git repository.
@Suite(.serialized) struct TransformerWorkflowTests {
    static let fixtures = Repo.path("Tests/PruneCheckTests/Fixtures/real-models")

    static func config(llamaSparsity: String = "0.5") -> String {
        """
        version: 1
        defaults:
          latency: {batch_sizes: [1], warmup: 2, min_runs: 5, max_seconds: 0.1}
          tolerances: {latency_p50: 10.0}
        models:
          - name: decoder-wanda
            model: llama_markov.onnx
            task: language-model
            data:
              file: llama_markov.npz
              train: {input_ids: ids_train, labels: next_train}
              eval: {input_ids: ids_test, labels: next_test}
            prune:
              method: wanda
              sparsity: \(llamaSparsity)
            tolerances: {perplexity: 0.05, token_accuracy: 0.02, agreement: 0.05}
          - name: encoder-magnitude
            model: bert_tiny.onnx
            task: embedding
            data:
              file: text.npz
              train: {input_ids: ids_train, attention_mask: mask_train}
              eval: {input_ids: ids_test, attention_mask: mask_test}
            prune:
              method: magnitude
              sparsity: 0.3
              finetune: {epochs: 1, batch_size: 16, optimizer: adam, lr: 0.0005}
            tolerances: {cosine_to_dense: 0.01, output_rmse_to_dense: 0.05}

        """
    }

    /// Token ids with attention masks for the encoder (the decoder's data comes with it:
    /// `llama_markov.npz`, sequences of the Markov chain it was trained on).
    static func writeData(to dir: String) throws {
        var rng = Philox(seed: 42, stream: 0)
        let vocab = 256, length = 16
        func text(_ n: Int) -> (ids: [Int64], mask: [Int64]) {
            var ids: [Int64] = [], mask: [Int64] = []
            for _ in 0..<n {
                let used = 8 + rng.nextInt(below: 9)
                for p in 0..<length {
                    ids.append(p < used ? Int64(rng.nextInt(below: vocab)) : 0)
                    mask.append(p < used ? 1 : 0)
                }
            }
            return (ids, mask)
        }
        let a = text(64), b = text(24)
        try NPZ.write(["ids_train": NPYArray(integers: a.ids, shape: [64, length]), "mask_train": NPYArray(integers: a.mask, shape: [64, length]),
                       "ids_test": NPYArray(integers: b.ids, shape: [24, length]), "mask_test": NPYArray(integers: b.mask, shape: [24, length])],
                      to: "\(dir)/text.npz")
    }

    static func makeRepository() throws -> String {
        let dir = try scratchFolder("prunecheck-transformers")
        for f in ["llama_markov.onnx", "llama_markov.npz", "bert_tiny.onnx"] { try FileManager.default.copyItem(atPath: "\(fixtures)/\(f)", toPath: "\(dir)/\(f)") }
        try writeData(to: dir)
        try config().write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        try git(["init", "-q"], in: dir)
        return dir
    }

    func prunecheck(_ args: [String], in dir: String) throws -> ProcessResult { try WorkflowTests.prunecheck(args, in: dir) }

    /// Each model's metrics in a JSON report by name: (value, status).
    func metrics(_ path: String) throws -> [String: [String: (Double, String)]] {
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var out: [String: [String: (Double, String)]] = [:]
        for m in root["models"] as! [[String: Any]] {
            var byName: [String: (Double, String)] = [:]
            for x in m["metrics"] as! [[String: Any]] { byName[x["name"] as! String] = ((x["current"] as? Double) ?? .nan, x["status"] as! String) }
            out[m["name"] as! String] = byName
        }
        return out
    }

    @Test func aDecoderAndAnEncoderAreGatedOnTheirOwnMetrics() throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let update = try prunecheck(["baseline", "update"], in: dir)
        #expect(update.status == 0, "\(update.stderr)")
        try git(["add", "-A"], in: dir)
        try git(["commit", "-qm", "Add the models and their baselines"], in: dir)

        let check = try prunecheck(["check", "--json", "r.json"], in: dir)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let m = try metrics("\(dir)/r.json")
        let decoder = try #require(m["decoder-wanda"]), encoder = try #require(m["encoder-magnitude"])
        #expect(decoder["perplexity"]?.1 == "pass" && decoder["token_accuracy"]?.1 == "pass" && decoder["agreement"]?.1 == "pass")
        #expect((decoder["perplexity"]?.0 ?? 0) > 1 && (decoder["perplexity"]?.0 ?? .infinity) < 2)
        #expect(decoder["kl_to_dense"] != nil && decoder["cosine_to_dense"] != nil)
        #expect(abs((decoder["sparsity"]?.0 ?? 0) - 0.5) < 0.01)
        #expect(encoder["cosine_to_dense"]?.1 == "pass" && encoder["output_rmse_to_dense"]?.1 == "pass")
        let cosine = encoder["cosine_to_dense"]?.0 ?? 0
        #expect(cosine > 0.9 && cosine < 1)
        #expect(encoder["agreement"] == nil && encoder["perplexity"] == nil)
        // Layers are named after their modules, not the exporter's value names.
        #expect(decoder.keys.contains("sparsity_layer_lm.model.layers.0.self_attn.q_proj"))

        // A harsher recipe: the decoder's perplexity rises past its tolerance.
        try Self.config(llamaSparsity: "0.9").write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let worse = try prunecheck(["check", "--json", "w.json"], in: dir)
        #expect(worse.status == 1, "\(worse.stdout)")
        let w = try metrics("\(dir)/w.json")
        #expect(w["decoder-wanda"]?["perplexity"]?.1 == "regressed")
        #expect(w["encoder-magnitude"]?["cosine_to_dense"]?.1 == "pass")
    }

    @Test(arguments: [
        ("train: {input_ids: ids_train, labels: next_train}", "train: {input_idz: ids_train, labels: next_train}",
         "data.train.input_idz: ARRAY: the model has no input 'input_idz'"),
        ("train: {input_ids: ids_train, attention_mask: mask_train}", "train: {attention_mask: mask_train}",
         "text.npz: has no array 'input_ids' for the model's input 'input_ids' (arrays: ids_test, ids_train, mask_test, mask_train); map another with data.train.input_ids: ARRAY"),
        ("train: {input_ids: ids_train, labels: next_train}", "train: {input_ids: ids_train}",
         "data.train.labels: is missing; task language-model needs labels"),
        ("train: {input_ids: ids_train, labels: next_train}", "train: {input_ids: ids_train, labels: next_test}",
         "array 'next_test' has 128 rows, the inputs have 256 examples"),
        ("eval: {input_ids: ids_test, labels: next_test}", "eval: [ids_test, next_train]",
         "array 'next_train' has 256 rows, the inputs have 128 examples"),
    ])
    func badDataExitsTwoNamingTheFileAndTheInput(_ replace: (String, String, String)) throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = Self.config().replacingOccurrences(of: replace.0, with: replace.1)
        try text.write(toFile: "\(dir)/prunecheck.yml", atomically: true, encoding: .utf8)
        let r = try prunecheck(["check"], in: dir)
        #expect(r.status == 2, "\(r.stdout)\(r.stderr)")
        #expect(r.stderr.contains(replace.2), "\(r.stderr)")
    }

    @Test func aFloatArrayForTokenIdsIsRefused() throws {
        let dir = try Self.makeRepository()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var arrays = try NPZ.read(path: "\(dir)/llama_markov.npz")
        arrays["ids_train"] = NPYArray(floats: arrays["ids_train"]!.floats(), shape: arrays["ids_train"]!.shape)
        try NPZ.write(arrays, to: "\(dir)/llama_markov.npz")
        let r = try prunecheck(["check"], in: dir)
        #expect(r.status == 2)
        #expect(r.stderr.contains("llama_markov.npz") && r.stderr.contains("array 'ids_train' for input 'input_ids' is float32, the input takes int64"), "\(r.stderr)")
    }
}
