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
        picojoules(macs: Double(macs), parameterWords: Double(parameterBytes / 4), activationWords: Double(activationWords)) / 1000
    }

    /// The same estimate in picojoules, for fractional counts: what the `energy` pruning
    /// method ranks layers by (as `Pruning.EnergyEstimate`, without activations).
    public static func picojoules(macs: Double, parameterWords: Double, activationWords: Double = 0) -> Double {
        macs * (floatMultiplyPJ + floatAddPJ) + parameterWords * dramWordPJ + activationWords * sramWordPJ
    }
}
