import Foundation

/// A seeded generator (SplitMix64) so a failing case can be replayed: every
/// test draws a fresh seed and prints it on failure.
public struct SeededRandom: RandomNumberGenerator {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func normal() -> Double {
        let u1 = Double.random(in: Double.ulpOfOne ..< 1, using: &self), u2 = Double.random(in: 0 ..< 1, using: &self)
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
    }
    public mutating func normals(_ n: Int, scale: Double = 1) -> [Double] { (0 ..< n).map { _ in normal() * scale } }
}
