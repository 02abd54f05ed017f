import Testing
@testable import Evaluation

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
    }

    @Test func percentileInterpolatesLikeNumPy() {
        #expect(LatencyHarness.percentile([1, 2, 3, 4], 0.5) == 2.5)
        #expect(abs(LatencyHarness.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) - 9.1) < 1e-12)
        #expect(LatencyHarness.percentile([7], 0.9) == 7)
    }
}
