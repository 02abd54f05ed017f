import Foundation
import Testing
import Common
@testable import Evaluation
@testable import TensorEngine

@Suite struct MetricsTests {
    /// Values computed with scikit-learn 1.x for this example:
    /// y_true = [0,0,1,1,2,2,2,3], y_pred = [0,1,1,1,2,0,2,2]; class 3 is never predicted
    /// (precision 0 under zero_division=0).
    @Test func macroMetricsMatchScikitLearn() {
        let m = ClassificationMetrics(predictions: [0, 1, 1, 1, 2, 0, 2, 2], labels: [0, 0, 1, 1, 2, 2, 2, 3], classes: 4)
        #expect(m.accuracy == 5.0 / 8)
        // precision per class: 1/2, 2/3, 2/3, 0 -> macro 0.458333...
        #expect(abs(m.precisionMacro - (0.5 + 2.0 / 3 + 2.0 / 3 + 0) / 4) < 1e-12)
        // recall per class: 1/2, 1, 2/3, 0 -> macro 0.541666...
        #expect(abs(m.recallMacro - (0.5 + 1 + 2.0 / 3 + 0) / 4) < 1e-12)
        // f1 per class: 0.5, 0.8, 2/3, 0 -> macro 0.491666...
        #expect(abs(m.f1Macro - (0.5 + 0.8 + 2.0 / 3 + 0) / 4) < 1e-12)
        #expect(m.confusion[2] == [1, 0, 2, 0])
        // Weighted by support 2, 2, 3, 1: sklearn's f1_score(average="weighted") = 0.5958333…
        #expect(abs(m.f1Weighted - (0.5 * 2 + 0.8 * 2 + 2.0 / 3 * 3 + 0) / 8) < 1e-12)
        #expect(m.recall == [0.5, 1, 2.0 / 3, 0] && m.support == [2, 2, 3, 1])
    }

    @Test func probabilisticMetricsOnAHandMadeModel() {
        // One linear layer whose logits are the inputs: probabilities are softmax(x).
        let identity = Tensor(shape: [3, 3], scalars: [1, 0, 0, 0, 1, 0, 0, 0, 1])
        var b = GraphBuilder(inputShape: [3])
        b.linear("id", weight: identity, bias: nil)
        let model = b.build()
        let x = Tensor(shape: [4, 3], scalars: [2, 0, 0, 0, 3, 0, 0, 0, 1, 1, 1, 1])
        let data = LabeledData(inputs: x, labels: [0, 1, 0, 2])
        let r = Evaluator.evaluate(model: model, data: data, classes: 3, threads: 1)
        func softmax(_ v: [Double]) -> [Double] { let e = v.map { _exp($0) }; let s = e.reduce(0, +); return e.map { $0 / s } }
        let p = [softmax([2, 0, 0]), softmax([0, 3, 0]), softmax([0, 0, 1]), softmax([1, 1, 1])]
        let nll = -[p[0][0], p[1][1], p[2][0], p[3][2]].map { Foundation.log($0) }.reduce(0, +) / 4
        #expect(abs(r.logLoss - nll) < 1e-6)
        #expect(r.correct == [true, true, false, false])  // ties go to the lower class: row 4 predicts 0
        #expect(r.topK.isEmpty)  // 3 classes: no top-3 or top-5
        // ECE: confidences p00, p11, p22, 1/3 in 15 bins; accuracy per bin 1, 1, 0, 0.
        let ece = (abs(1 - p[0][0]) + abs(1 - p[1][1]) + abs(0 - p[2][2]) + abs(0 - 1.0 / 3)) / 4
        #expect(abs(r.ece - ece) < 1e-6)
    }

    @Test func costOfAPrunedMLP() {
        let w1 = Tensor(shape: [2, 3], scalars: [1, 0, 0, 0, 2, 0]), w2 = Tensor(shape: [1, 2], scalars: [0, 3])
        var builder = GraphBuilder(inputShape: [3])
        builder.linear("a", weight: w1, bias: Tensor(shape: [2], scalars: [0, 1]))
        builder.relu("r")
        builder.linear("b", weight: w2, bias: nil)
        let model = builder.build()
        let c = CostAnalysis.analyze(model)
        #expect(c.paramsTotal == 10 && c.paramsNonzero == 4)
        #expect(c.macs == 8 && c.macsNonzero == 3)
        #expect(c.bytesDense == 40)
        // a: min(24 dense, 8·2 + 4·3 = 28) = 24, + 8 bias; b: min(8, 8 + 8) = 8.
        #expect(c.bytesSparse == 40)
        #expect(c.peakMemoryBytes == 40 + 4 * 5)
        #expect(abs(c.energyNanojoules - (3 * 4.6 + 10 * 640 + (5 + 3) * 5) / 1000) < 1e-12)
    }

    @Test func stratifiedFoldsPartitionAndBalance() {
        let labels: [Int32] = (0..<103).map { Int32($0 % 3) }
        let folds = CrossValidation.stratifiedFolds(labels: labels, folds: 5, seed: 1)
        #expect(folds.flatMap { $0 }.sorted() == Array(0..<103))
        for f in folds {
            let counts = (0..<3).map { c in f.filter { labels[$0] == Int32(c) }.count }
            #expect(counts.max()! - counts.min()! <= 1, "\(counts)")
        }
        #expect(folds == CrossValidation.stratifiedFolds(labels: labels, folds: 5, seed: 1))
        let (mean, std) = CrossValidation.meanAndStd([1, 2, 3, 4])
        #expect(mean == 2.5 && abs(std - 1.2909944487358056) < 1e-12)
    }

    /// scikit-learn's documented example: mean_absolute_error 0.5, mean_squared_error 0.375,
    /// r2_score 0.948608137…
    @Test func regressionMetricsMatchScikitLearn() {
        let m = RegressionMetrics(predictions: Tensor(shape: [4, 1], scalars: [2.5, 0, 2, 8]),
                                  targets: Tensor(shape: [4, 1], scalars: [3, -0.5, 2, 7]))
        #expect(abs(m.mae - 0.5) < 1e-12)
        #expect(abs(m.rmse - 0.375.squareRoot()) < 1e-12)
        #expect(abs(m.r2 - 0.9486081370449679) < 1e-12)
    }

    @Test func latencySummaryStatistics() {
        let r = LatencyHarness.summarize([5, 1, 4, 2, 3, 100], batchSize: 1)
        #expect(r.p50 == 3.5 && r.runs == 6)
        #expect(abs(r.p99 - 95.25) < 1e-9)
        #expect(r.mad == 1.5)
    }

    @Test func percentileInterpolatesLikeNumPy() {
        #expect(Quantile.of([1, 2, 3, 4], 0.5) == 2.5)
        #expect(abs(Quantile.of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) - 9.1) < 1e-12)
        #expect(Quantile.of([7], 0.9) == 7)
    }
}
