import Kernels
import TensorEngine

/// Exact, deterministic cost of one inference of one example (batch 1).
public struct CostReport: Equatable, Sendable {
    public var paramsTotal: Int
    public var paramsNonzero: Int
    /// Multiply-accumulates of the dense layers, and of their nonzero weights only.
    public var macs: Int
    public var macsNonzero: Int
    /// Parameter bytes as dense float32.
    public var bytesDense: Int
    /// Parameter bytes with each weight matrix in the cheaper of dense float32 and CSR
    /// (float32 value + int32 column per nonzero, int32 row starts); biases dense.
    public var bytesSparse: Int
    /// Estimated energy per inference, nanojoules (see `EnergyModel`).
    public var energyNanojoules: Double
    /// Peak bytes live during inference: all parameters plus the largest input + output
    /// activation pair of any layer (the engine holds one layer's input and output at a time).
    public var peakMemoryBytes: Int

    public var values: [String: Double] {
        ["params_total": Double(paramsTotal), "params_nonzero": Double(paramsNonzero), "macs": Double(macs),
         "macs_nonzero": Double(macsNonzero), "bytes_dense": Double(bytesDense), "bytes_sparse": Double(bytesSparse),
         "energy_nj": energyNanojoules, "peak_memory_bytes": Double(peakMemoryBytes)]
    }
}

/// Energy per operation, 45 nm CMOS at 0.9 V, from M. Horowitz, "Computing's energy problem
/// (and what we can do about it)", ISSCC 2014: 32-bit float multiply 3.7 pJ, 32-bit float add
/// 0.9 pJ, 32-bit SRAM read (8 KB) 5 pJ, 32-bit DRAM read 640 pJ.
///
/// Inference energy = MACs on nonzero weights × (multiply + add) + parameter words read from
/// DRAM once (in the sparse encoding) + activation words read and written in SRAM.
/// The same model is what the `energy` pruning method minimizes.
public enum EnergyModel {
    public static let floatMultiplyPJ = 3.7
    public static let floatAddPJ = 0.9
    public static let sramWordPJ = 5.0
    public static let dramWordPJ = 640.0

    public static func nanojoules(macs: Int, parameterBytes: Int, activationWords: Int) -> Double {
        (Double(macs) * (floatMultiplyPJ + floatAddPJ) + Double(parameterBytes / 4) * dramWordPJ
            + Double(activationWords) * sramWordPJ) / 1000
    }
}

public enum CostAnalysis {
    public static func analyze(_ model: Sequential) -> CostReport {
        var total = 0, nonzero = 0, macs = 0, macsNonzero = 0, dense = 0, sparse = 0
        var activationWords = 0, peakActivations = 0
        var width = model.inputShape.reduce(1, *)
        for layer in model.layers {
            guard case .linear(let l) = layer else { continue }
            let w = l.weight.value
            let nnz = w.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            let biasCount = l.bias?.value.count ?? 0
            let biasNonzero = l.bias?.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } ?? 0
            total += w.count + biasCount
            nonzero += nnz + biasNonzero
            macs += w.count
            macsNonzero += nnz
            dense += 4 * (w.count + biasCount)
            sparse += min(4 * w.count, 8 * nnz + 4 * (l.outFeatures + 1)) + 4 * biasCount
            activationWords += l.inFeatures + l.outFeatures
            peakActivations = max(peakActivations, width + l.outFeatures)
            width = l.outFeatures
        }
        return CostReport(
            paramsTotal: total, paramsNonzero: nonzero, macs: macs, macsNonzero: macsNonzero, bytesDense: dense, bytesSparse: sparse,
            energyNanojoules: EnergyModel.nanojoules(macs: macsNonzero, parameterBytes: sparse, activationWords: activationWords),
            peakMemoryBytes: dense + 4 * peakActivations)
    }
}
