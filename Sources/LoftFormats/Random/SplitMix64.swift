/// A small seeded generator (SplitMix64: Steele, Lea and Flood, "Fast
/// splittable pseudorandom number generators", 2014) for dataset splits,
/// shuffles, adapter initialisation, dropout masks and tests. It lives in the
/// lowest target so that every layer draws the same stream; Codable so a
/// checkpoint can carry its state.
public struct SplitMix64: RandomNumberGenerator, Codable, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The step between successive states: 2^64 divided by the golden ratio.
    @inlinable
    public static var increment: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    public mutating func next() -> UInt64 {
        state &+= Self.increment
        return Self.mix(state)
    }

    /// The output function: a state scrambled into 64 well-mixed bits. The
    /// dropout mask calls it on (seed + index · increment) directly, so each
    /// element depends only on (seed, index) and can be replayed.
    @inlinable @inline(__always)
    public static func mix(_ state: UInt64) -> UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
