import Foundation
import LoftFormats

/// Tests draw from Loft's own generator (SplitMix64) so a failing case can be
/// replayed: every test draws a fresh seed and prints it on failure.
public typealias SeededRandom = SplitMix64

extension SplitMix64 {
    public mutating func normal() -> Double {
        let u1 = Double.random(in: Double.ulpOfOne ..< 1, using: &self), u2 = Double.random(in: 0 ..< 1, using: &self)
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * .pi * u2)
    }
    public mutating func normals(_ n: Int, scale: Double = 1) -> [Double] { (0 ..< n).map { _ in normal() * scale } }
}
