/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
/// a counter-based generator. Output block `i` depends only on the key and `i`, so the stream
/// is the same on every platform and can be split without shared state.
public struct Philox: Sendable {
    private let key: (UInt32, UInt32)
    private var counter: UInt64 = 0
    private var block: (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
    private var used = 4

    /// A generator for `seed`; `stream` selects an independent sequence for the same seed.
    public init(seed: UInt64, stream: UInt64 = 0) {
        key = (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
        self.stream = stream
    }
    private let stream: UInt64

    /// The four 32-bit words of block `counter` (the reference function, stateless).
    public static func block(key: (UInt32, UInt32), counter: (UInt32, UInt32, UInt32, UInt32))
        -> (UInt32, UInt32, UInt32, UInt32)
    {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n1 = UInt32(truncatingIfNeeded: p1)
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            let n3 = UInt32(truncatingIfNeeded: p0)
            (c0, c1, c2, c3) = (n0, n1, n2, n3)
            k0 &+= 0x9E37_79B9
            k1 &+= 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// The next 32 random bits.
    public mutating func next32() -> UInt32 {
        if used == 4 {
            block = Philox.block(
                key: key,
                counter: (UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32),
                          UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)))
            counter &+= 1
            used = 0
        }
        defer { used += 1 }
        switch used {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }

    /// A uniform integer in `0..<bound` (Lemire's multiply-shift on 64 bits; bias < 2⁻³²).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive, got \(bound)")
        let r = UInt64(next32()) << 32 | UInt64(next32())
        return Int(r.multipliedFullWidth(by: UInt64(bound)).high)
    }

    /// A uniform float in [0, 1) with 24 random bits.
    public mutating func nextUnitFloat() -> Float {
        Float(next32() >> 8) * (1.0 / 16_777_216)
    }

    /// A random permutation of `0..<n` (Fisher–Yates, from the last position down).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        var i = n - 1
        while i > 0 {
            p.swapAt(i, nextInt(below: i + 1))
            i -= 1
        }
        return p
    }
}
