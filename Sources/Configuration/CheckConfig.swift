import Common
import Evaluation
import Foundation
import ModelIO
import Pruning
import Regression

/// A problem in `prunecheck.yml`: names the file, the line and the key.
public struct ConfigError: UserFacingError, Equatable {
    public let file: String
    public let line: Int?
    /// Dotted path of the key, e.g. `models[0].prune.sparsity`.
    public let key: String?
    public let problem: String

    public init(file: String, line: Int?, key: String?, _ problem: String) {
        self.file = file
        self.line = line
        self.key = key
        self.problem = problem
    }

    public var description: String {
        var s = file
        if let line { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + problem
    }
}

/// Where a model's data is and how to feed it.
public struct DataSpec: Equatable, Sendable {
    /// Path of the `.npz`, as resolved against the config file's folder.
    public var file: String
    public var train: SplitSource
    public var eval: SplitSource
    /// Inputs are multiplied by this before the model.
    public var scale: Double
    /// Further named eval sets in the same file, each gated under `<name>/<metric>`.
    public var evalSets: [String: SplitSource]

    public init(file: String, train: SplitSource, eval: SplitSource, scale: Double, evalSets: [String: SplitSource] = [:]) {
        self.evalSets = evalSets
        self.file = file
        self.train = train
        self.eval = eval
        self.scale = scale
    }
}

/// One entry of `models:`, with the defaults applied.
public struct ModelSpec: Equatable, Sendable {
    public var name: String
    /// Resolved paths.
    public var model: String
    public var architecture: String?
    public var data: DataSpec
    public var recipe: PruneRecipe
    public var seed: UInt64
    public var threads: Int
    public var latency: LatencySettings
    public var tolerances: Tolerances
    /// How latency is gated across machines.
    public var latencyGate: LatencyGate
    /// Stratified k-fold cross-validation of the recipe on the training data, nil for none.
    public var cvFolds: Int?
    /// What the model predicts.
    public var task: Task
    /// The line of the entry in the config, for messages.
    public var line: Int?

    /// SHA-256 of everything that decides the numbers besides the input files' contents:
    /// recipe, seed, thread count is not included (results do not depend on it).
    public var recipeSHA256: String {
        SHA256.hex(Array("\(recipe.canonicalDescription);seed=\(seed)\(task == .classification ? "" : ";task=\(task.rawValue)")".utf8))
    }
}

/// `task`: what the model predicts and what fine-tuning minimises.
public enum Task: String, CaseIterable, Sendable {
    /// Class labels, cross-entropy.
    case classification
    /// Values, squared error.
    case regression
    /// Next-token ids per position (-100: none), token cross-entropy.
    case languageModel = "language-model"
    /// No labels: the output vectors are the product; fine-tuning keeps them close to the
    /// dense model's (squared error).
    case embedding
}

/// `latency_gate`: when timings are compared. The default is `paired`.
public enum LatencyGate: String, CaseIterable, Sendable {
    /// The base revision's pruned model (rebuilt from git, or known identical by its hash)
    /// timed against the current one in the same process; where it cannot be, `normalized`.
    case paired
    /// Only against a baseline from the same machine fingerprint; otherwise reported as skipped.
    case sameMachine = "same-machine"
    /// On another machine, compared after scaling by the ratio of calibration scores.
    case normalized
    /// Never gated, only reported.
    case off
}

/// A parsed `prunecheck.yml` (version 1).
public struct CheckConfig: Equatable, Sendable {
    /// The config file's path.
    public var file: String
    /// Folder of baselines, resolved against the config file's folder.
    public var baselines: String
    public var models: [ModelSpec]

    /// The baseline file of `model`.
    public func baselinePath(for model: String) -> String {
        (baselines as NSString).appendingPathComponent("\(model).json")
    }
}
