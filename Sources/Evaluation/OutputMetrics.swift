import Kernels
import TensorEngine

/// Metrics computed from a model's outputs: a language model's token scores, and how close a
/// pruned model's outputs stay to the dense model's on the same examples.
public enum OutputMetrics {
    /// The first output of `model` for every example of `data`, run in batches and joined
    /// along the first axis.
    public static func outputs(model: Graph, data: LabeledData, threads: Int, batchSize: Int = 64) -> Tensor {
        var scalars: [Float] = []
        var shape: [Int] = []
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            let y = model.predict(data.feeds(start..<end), threads: threads)
            precondition(y.shape.first == end - start, "the model's output \(y.shape) does not have the batch (\(end - start)) first")
            if shape.isEmpty { shape = y.shape }
            scalars += y.scalars
            start = end
        }
        shape = shape.isEmpty ? [0] : [data.count] + shape.dropFirst()
        return Tensor(shape: shape, scalars: scalars)
    }

    /// A language model's scores against next-token `labels` (one per row of the last axis of
    /// `logits`; `ignored` rows count for nothing): `perplexity`, exp of the mean token
    /// cross-entropy (natural log), and `token_accuracy`, the share of positions whose top
    /// token is the label. Sums in Double, in position order.
    public static func languageModel(logits: Tensor, labels: [Int32], ignored: Int32 = LabeledData.ignoredLabel) -> (perplexity: Double, tokenAccuracy: Double) {
        let vocab = logits.shape.last ?? 1, rows = logits.count / max(vocab, 1)
        precondition(rows == labels.count, "logits \(logits.shape) do not fit \(labels.count) labels")
        var loss = 0.0, correct = 0, counted = 0
        logits.withUnsafeBufferPointer { p in
            for r in 0..<rows where labels[r] != ignored {
                let row = p.baseAddress! + r * vocab
                var best = 0, top = row[0]
                for j in 1..<max(vocab, 1) where row[j] > top { best = j; top = row[j] }
                var sum = 0.0
                for j in 0..<vocab { sum += exp64(Double(row[j]) - Double(top)) }
                loss += log64(sum) + Double(top) - Double(row[Int(labels[r])])
                if best == Int(labels[r]) { correct += 1 }
                counted += 1
            }
        }
        let n = Double(max(counted, 1))
        return (exp64(loss / n), Double(correct) / n)
    }

    /// Fidelity of outputs `y` to the dense model's `dense` (same shape), row by row along the
    /// last axis (an example's scores or embedding, a position's logits): `cosine_to_dense`
    /// (mean cosine similarity of the rows; 1 for a pair of zero rows, 0 for one zero row) and
    /// `output_rmse_to_dense` (over every element); where the outputs are scores (logits),
    /// also `agreement` (share of rows with the same top-1) and `kl_to_dense`
    /// (mean KL(softmax(dense) ‖ softmax(y)) in nats).
    public static func fidelity(_ y: Tensor, dense: Tensor, scores: Bool) -> [String: Double] {
        precondition(y.shape == dense.shape, "outputs \(y.shape) vs dense outputs \(dense.shape)")
        let width = max(y.shape.last ?? 1, 1), rows = y.count / width
        var cosine = 0.0, squares = 0.0, agree = 0, kl = 0.0
        y.withUnsafeBufferPointer { yp in
            dense.withUnsafeBufferPointer { dp in
                for r in 0..<rows {
                    let a = yp.baseAddress! + r * width, b = dp.baseAddress! + r * width
                    var dot = 0.0, na = 0.0, nb = 0.0
                    for j in 0..<width {
                        let x = Double(a[j]), z = Double(b[j])
                        dot += x * z
                        na += x * x
                        nb += z * z
                        squares += (x - z) * (x - z)
                    }
                    cosine += na == 0 && nb == 0 ? 1 : na == 0 || nb == 0 ? 0 : dot / (na.squareRoot() * nb.squareRoot())
                    guard scores else { continue }
                    var ba = 0, bb = 0
                    for j in 1..<width {
                        if a[j] > a[ba] { ba = j }
                        if b[j] > b[bb] { bb = j }
                    }
                    if ba == bb { agree += 1 }
                    // KL(p‖q) = Σ p·(log p − log q) with log-softmax in Double.
                    var sa = 0.0, sb = 0.0
                    for j in 0..<width {
                        sa += exp64(Double(a[j]) - Double(a[ba]))
                        sb += exp64(Double(b[j]) - Double(b[bb]))
                    }
                    let la = log64(sa) + Double(a[ba]), lb = log64(sb) + Double(b[bb])
                    var k = 0.0
                    for j in 0..<width {
                        let lp = Double(b[j]) - lb, lq = Double(a[j]) - la
                        k += exp64(lp) * (lp - lq)
                    }
                    kl += max(k, 0)
                }
            }
        }
        let n = Double(max(rows, 1))
        var out = ["cosine_to_dense": cosine / n, "output_rmse_to_dense": (squares / Double(max(y.count, 1))).squareRoot()]
        if scores {
            out["agreement"] = Double(agree) / n
            out["kl_to_dense"] = kl / n
        }
        return out
    }
}
