import TensorEngine

/// Error of predicted values, as scikit-learn computes it for several outputs with
/// `"uniform_average"`: MAE, RMSE and R² per output, then averaged. R² = 1 − SS_res/SS_tot;
/// for a constant target it is 1 when predicted exactly and 0 otherwise (scikit-learn's
/// `force_finite`).
public struct RegressionMetrics: Equatable, Sendable {
    public var mae: Double
    public var rmse: Double
    public var r2: Double

    public init(predictions: Tensor, targets: Tensor) {
        precondition(predictions.shape == targets.shape && targets.shape.count == 2,
                     "regression metrics: predictions \(predictions.shape) vs targets \(targets.shape)")
        let n = targets.shape[0], k = targets.shape[1]
        let p = predictions.scalars, t = targets.scalars
        var maeSum = 0.0, rmseSum = 0.0, r2Sum = 0.0
        for j in 0..<k {
            var absErr = 0.0, sqErr = 0.0, mean = 0.0
            for i in 0..<n { mean += Double(t[i * k + j]) }
            mean /= Double(max(n, 1))
            var total = 0.0
            for i in 0..<n {
                let e = Double(p[i * k + j]) - Double(t[i * k + j])
                absErr += abs(e)
                sqErr += e * e
                let d = Double(t[i * k + j]) - mean
                total += d * d
            }
            maeSum += absErr / Double(max(n, 1))
            rmseSum += (sqErr / Double(max(n, 1))).squareRoot()
            r2Sum += total > 0 ? 1 - sqErr / total : (sqErr == 0 ? 1 : 0)
        }
        mae = maeSum / Double(max(k, 1))
        rmse = rmseSum / Double(max(k, 1))
        r2 = r2Sum / Double(max(k, 1))
    }

    public func values(prefix: String = "") -> [String: Double] {
        [prefix + "mae": mae, prefix + "rmse": rmse, prefix + "r2": r2]
    }
}

extension Evaluator {
    /// Predicts every example (in batches) and scores the values.
    public static func regress(model: Graph, data: LabeledData, threads: Int, batchSize: Int = 256) -> RegressionMetrics {
        guard let targets = data.targets else { preconditionFailure("regression metrics need targets") }
        var out: [Float] = []
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            out += model.predict(data.feeds(start..<end), threads: threads).scalars
            start = end
        }
        return RegressionMetrics(predictions: Tensor(shape: targets.shape, scalars: out), targets: targets)
    }
}
