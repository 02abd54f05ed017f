import TensorEngine

/// Accuracy and macro-averaged precision, recall and F1 of predicted classes.
///
/// Macro averages follow scikit-learn with `zero_division=0`: a class that is never
/// predicted has precision 0, a class that never occurs has recall 0, and F1 is 0 where
/// precision + recall is 0. Each class's F1 is computed first, then averaged.
public struct ClassificationMetrics: Equatable, Sendable {
    public var accuracy: Double
    public var precisionMacro: Double
    public var recallMacro: Double
    public var f1Macro: Double
    /// Row = true class, column = predicted class.
    public var confusion: [[Int]]

    public init(predictions: [Int], labels: [Int], classes: Int) {
        precondition(predictions.count == labels.count, "\(predictions.count) predictions for \(labels.count) labels")
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (p, y) in zip(predictions, labels) { confusion[y][p] += 1 }
        let correct = (0..<classes).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = labels.isEmpty ? 0 : Double(correct) / Double(labels.count)
        var precisionSum = 0.0, recallSum = 0.0, f1Sum = 0.0
        for c in 0..<classes {
            let tp = Double(confusion[c][c])
            let predicted = Double((0..<classes).reduce(0) { $0 + confusion[$1][c] })
            let actual = Double(confusion[c].reduce(0, +))
            let precision = predicted > 0 ? tp / predicted : 0
            let recall = actual > 0 ? tp / actual : 0
            precisionSum += precision
            recallSum += recall
            f1Sum += precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
        }
        let k = Double(max(classes, 1))
        precisionMacro = precisionSum / k
        recallMacro = recallSum / k
        f1Macro = f1Sum / k
        self.confusion = confusion
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

    /// Runs `model` over `data` in batches and scores its predictions.
    public static func classify(model: Sequential, data: LabeledData, classes: Int, threads: Int, batchSize: Int = 256) -> ClassificationMetrics {
        var predictions: [Int] = []
        predictions.reserveCapacity(data.count)
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            predictions += argmaxRows(model.predict(data.inputs.rows(start..<end), threads: threads))
            start = end
        }
        return ClassificationMetrics(predictions: predictions, labels: data.labels.map(Int.init), classes: classes)
    }
}
