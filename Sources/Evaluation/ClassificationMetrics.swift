import Kernels
import TensorEngine

/// Accuracy and precision, recall and F1 (macro, weighted and per class) of predicted classes.
///
/// Averages follow scikit-learn with `zero_division=0`: a class that is never predicted has
/// precision 0, a class that never occurs has recall 0, and F1 is 0 where precision + recall
/// is 0. Each class's F1 is computed first, then averaged; weighted averages weight each class
/// by its support (true count).
public struct ClassificationMetrics: Equatable, Sendable {
    public var accuracy: Double
    public var precisionMacro: Double
    public var recallMacro: Double
    public var f1Macro: Double
    public var precisionWeighted: Double
    public var recallWeighted: Double
    public var f1Weighted: Double
    public var precision: [Double]
    public var recall: [Double]
    public var f1: [Double]
    public var support: [Int]
    /// Row = true class, column = predicted class.
    public var confusion: [[Int]]

    public init(predictions: [Int], labels: [Int], classes: Int) {
        precondition(predictions.count == labels.count, "\(predictions.count) predictions for \(labels.count) labels")
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, y) in zip(predictions, labels) { confusion[y][p] += 1 }
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = labels.isEmpty ? 0 : Double(correct) / Double(labels.count)
        precision = []; recall = []; f1 = []; support = []
        for c in 0..<classes {
            let tp = Double(confusion[c][c])
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][c] })
            let actual = confusion[c].reduce(0, +)
            let p = predicted > 0 ? tp / predicted : 0
            let r = actual > 0 ? tp / Double(actual) : 0
            precision.append(p)
            recall.append(r)
            f1.append(p + r > 0 ? 2 * p * r / (p + r) : 0)
            support.append(actual)
        }
        let k = Double(max(classes, 1)), total = Double(max(labels.count, 1))
        precisionMacro = precision.reduce(0, +) / k
        recallMacro = recall.reduce(0, +) / k
        f1Macro = f1.reduce(0, +) / k
        let sup = support
        func weighted(_ v: [Double]) -> Double { zip(v, sup).reduce(0) { $0 + $1.0 * Double($1.1) } / total }
        let (p, r, f) = (precision, recall, f1)
        precisionWeighted = weighted(p)
        recallWeighted = weighted(r)
        f1Weighted = weighted(f)
        self.confusion = confusion
    }
}

/// Everything measured on one eval set.
public struct ClassificationReport: Equatable, Sendable {
    public var scores: ClassificationMetrics
    /// Top-k accuracy for k = 3 and 5 where there are more than k classes.
    public var topK: [Int: Double]
    /// Mean negative log-likelihood of the true class, probabilities clipped to [1e-15, 1].
    public var logLoss: Double
    /// Expected calibration error over 15 equal-width confidence bins.
    public var ece: Double
    /// Whether each example was classified correctly (for McNemar's test).
    public var correct: [Bool]

    /// The metrics under their contract names, `prefix` (e.g. `edge/`) before each.
    public func values(prefix: String = "") -> [String: Double] {
        var v: [String: Double] = [
            "accuracy": scores.accuracy, "precision_macro": scores.precisionMacro, "recall_macro": scores.recallMacro,
            "f1_macro": scores.f1Macro, "precision_weighted": scores.precisionWeighted, "recall_weighted": scores.recallWeighted,
            "f1_weighted": scores.f1Weighted, "log_loss": logLoss, "ece": ece,
        ]
        for c in scores.precision.indices {
            v["precision_class_\(c)"] = scores.precision[c]
            v["recall_class_\(c)"] = scores.recall[c]
            v["f1_class_\(c)"] = scores.f1[c]
        }
        for (k, a) in topK { v["top\(k)_accuracy"] = a }
        return Dictionary(uniqueKeysWithValues: v.map { (prefix + $0.key, $0.value) })
    }
}

public enum Evaluator {
    /// The arg-max class of each row of logits `(B, C)`; ties go to the lower class.
    public static func argmaxRows(_ logits: Tensor) -> [Int] {
        let rows = logits.shape[0], cols = logits.shape[1]
        return logits.withUnsafeBufferPointer { p in
            (0..<rows).map { r in
                var best = 0
                for j in 1..<cols where p[r * cols + j] > p[r * cols + best] { best = j }
                return best
            }
        }
    }

    /// Runs `model` over `data` in batches and scores its predictions and probabilities.
    public static func evaluate(model: Graph, data: LabeledData, classes: Int, threads: Int, batchSize: Int = 256) -> ClassificationReport {
        var predictions: [Int] = []
        predictions.reserveCapacity(data.count)
        var topHits: [Int: Int] = [3: 0, 5: 0].filter { $0.key < classes }
        var nll = 0.0
        let bins = 15
        var binCount = [Int](repeating: 0, count: bins), binConfidence = [Double](repeating: 0, count: bins)
        var binCorrect = [Int](repeating: 0, count: bins)
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            let logits = model.predict(data.feeds(start..<end), threads: threads)
            var probs = Tensor(zeros: logits.shape)
            logits.withUnsafeBufferPointer { lp in
                probs.withUnsafeMutableBufferPointer { pp in softmaxRows(lp.baseAddress!, rows: end - start, cols: classes, out: pp.baseAddress!) }
            }
            let predicted = argmaxRows(logits)
            probs.withUnsafeBufferPointer { p in
                for r in 0..<(end - start) {
                    let label = Int(data.labels[start + r])
                    let row = p.baseAddress! + r * classes
                    nll -= Double(min(max(row[label], 1e-15), 1)).logNatural
                    for k in topHits.keys {
                        // Rank of the true class: how many classes score strictly higher.
                        let higher = (0..<classes).reduce(0) { $0 + (row[$1] > row[label] ? 1 : 0) }
                        if higher < k { topHits[k]! += 1 }
                    }
                    let confidence = Double(row[predicted[r]])
                    let bin = min(bins - 1, Int(confidence * Double(bins)))
                    binCount[bin] += 1
                    binConfidence[bin] += confidence
                    binCorrect[bin] += predicted[r] == label ? 1 : 0
                }
            }
            predictions += predicted
            start = end
        }
        let n = Double(max(data.count, 1))
        var ece = 0.0
        for b in 0..<bins where binCount[b] > 0 {
            ece += abs(Double(binCorrect[b]) - binConfidence[b]) / n
        }
        let labels = data.labels.map(Int.init)
        return ClassificationReport(
            scores: ClassificationMetrics(predictions: predictions, labels: labels, classes: classes),
            topK: topHits.mapValues { Double($0) / n }, logLoss: nll / n, ece: ece,
            correct: zip(predictions, labels).map { $0 == $1 })
    }

    /// Scores only (no probabilities), for dense before/after summaries.
    public static func classify(model: Graph, data: LabeledData, classes: Int, threads: Int, batchSize: Int = 256) -> ClassificationMetrics {
        evaluate(model: model, data: data, classes: classes, threads: threads, batchSize: batchSize).scores
    }
}
