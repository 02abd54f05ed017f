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

public enum CostAnalysis {
    /// The cost of `model` on one example, from the value shapes of one batch-1 run.
    /// MACs count Gemm, MatMul and Conv (the layers that hold nearly all the work);
    /// a nonzero MAC is one whose weight is nonzero.
    public static func analyze(_ model: Graph) -> CostReport {
        var total = 0, nonzero = 0, macs = 0, macsNonzero = 0, dense = 0, sparse = 0
        var activationWords = 0, peakActivations = 0
        let shapes = (try? model.valueShapes()) ?? [:]
        func count(_ name: String) -> Int { shapes[name]?.reduce(1, *) ?? 0 }
        let prunable = Set(model.prunableWeights.map(\.name))
        for (name, v) in model.parameters {
            let t = v.value
            let nnz = t.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            total += t.count
            nonzero += nnz
            dense += 4 * t.count
            if prunable.contains(name) {
                let rows = t.shape[0]
                sparse += min(4 * t.count, 8 * nnz + 4 * (rows + 1))
            } else {
                sparse += 4 * t.count
            }
        }
        for node in model.nodes {
            let outCount = node.outputs.first.map(count) ?? 0
            let inCount = node.inputs.filter { !$0.isEmpty && model.initializer($0) == nil }.reduce(0) { $0 + count($1) }
            peakActivations = max(peakActivations, inCount + outCount)
            guard ["Gemm", "MatMul", "Conv"].contains(node.opType), node.inputs.count > 1 else { continue }
            activationWords += inCount + outCount
            let wShape = shapes[node.inputs[1]] ?? []
            let wCount = wShape.reduce(1, *)
            var wNonzero = wCount
            if case .float(let w)? = model.initializer(node.inputs[1]) {
                wNonzero = w.value.scalars.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
            }
            switch node.opType {
            case "Conv":
                // Every weight is used once per output position.
                let positions = wShape.isEmpty ? 0 : outCount / max(wShape[0], 1)
                macs += wCount * positions
                macsNonzero += wNonzero * positions
            case "Gemm":
                let rows = shapes[node.inputs[0]]?.first ?? 1
                macs += wCount * rows
                macsNonzero += wNonzero * rows
            default:
                let k = wShape.count >= 2 ? wShape[wShape.count - 2] : 1
                macs += outCount * k
                macsNonzero += wCount == 0 ? 0 : outCount * k * wNonzero / wCount
            }
        }
        return CostReport(
            paramsTotal: total, paramsNonzero: nonzero, macs: macs, macsNonzero: macsNonzero, bytesDense: dense, bytesSparse: sparse,
            energyNanojoules: EnergyModel.nanojoules(macs: macsNonzero, parameterBytes: sparse, activationWords: activationWords),
            peakMemoryBytes: dense + 4 * peakActivations)
    }
}
