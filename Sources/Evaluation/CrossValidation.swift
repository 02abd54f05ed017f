import Common
import TensorEngine

public enum CrossValidation {
    /// Stratified k folds of example indices: each class's examples are shuffled with a seeded
    /// permutation and dealt to the folds in turn, so every fold has nearly the same class mix.
    public static func stratifiedFolds(labels: [Int32], folds k: Int, seed: UInt64) -> [[Int]] {
        precondition(k >= 2, "cross-validation needs at least 2 folds, got \(k)")
        var byClass: [Int32: [Int]] = [:]
        for (i, y) in labels.enumerated() { byClass[y, default: []].append(i) }
        var rng = Philox(seed: seed, stream: 7)
        var folds = [[Int]](repeating: [], count: k)
        var next = 0
        for c in byClass.keys.sorted() {
            let members = byClass[c]!
            for j in rng.permutation(members.count) {
                folds[next].append(members[j])
                next = (next + 1) % k
            }
        }
        return folds.map { $0.sorted() }
    }

    /// Mean and (sample, n − 1) standard deviation.
    public static func meanAndStd(_ values: [Double]) -> (mean: Double, std: Double) {
        let mean = values.reduce(0, +) / Double(max(values.count, 1))
        guard values.count > 1 else { return (mean, 0) }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
        return (mean, variance.squareRoot())
    }
}
