import Foundation

/// Rotary inverse frequencies for a config and sequence length, as
/// transformers' rope initialisers compute them (default, linear, dynamic NTK,
/// Llama 3 and LongRoPE scaling).
public enum RoPEFrequencies {
    /// The frequencies to rotate positions [0, sequenceLength) with, and the
    /// factor that scales cos and sin (1 for these scalings).
    /// `local`: the frequencies of sliding-window layers with a base of their
    /// own (`ModelConfig.localRopeTheta`), which Gemma 3 never scales.
    public static func compute(_ c: ModelConfig, sequenceLength: Int, local: Bool = false) -> (invFreq: [Float], attentionScale: Float) {
        let dim = c.rotaryDimensions
        if local, let theta = c.localRopeTheta {
            var plain = c
            plain.ropeTheta = theta
            plain.ropeScaling = .none
            plain.localRopeTheta = nil
            return compute(plain, sequenceLength: sequenceLength)
        }
        var base = c.ropeTheta
        if case .dynamic(let factor, let original) = c.ropeScaling, sequenceLength > original {
            // NTK-aware: grow the base so the longest wavelength covers the sequence.
            base *= Foundation.pow(factor * Double(sequenceLength) / Double(original) - (factor - 1),
                                   Double(dim) / Double(dim - 2))
        }
        var inv = stride(from: 0, to: dim, by: 2).map { 1 / Foundation.pow(base, Double($0) / Double(dim)) }
        switch c.ropeScaling {
        case .none, .dynamic: break
        case .longRoPE(let short, let long, let original, let attentionFactor):
            let factors = sequenceLength > original ? long : short
            inv = zip(inv, factors).map { $0 / $1 }
            return (inv.map(Float.init), Float(attentionFactor))
        case .linear(let factor):
            inv = inv.map { $0 / factor }
        case .llama3(let factor, let low, let high, let original):
            let lowWavelen = Double(original) / low, highWavelen = Double(original) / high
            inv = inv.map { f in
                let wavelen = 2 * Double.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Double(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return (inv.map(Float.init), 1)
    }
}
