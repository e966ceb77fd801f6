/// Dynamic loss scaling for fp16 compute, with torch.amp.GradScaler's rules
/// and defaults. fp16 GEMM inputs flush gradients below 2⁻²⁴ to zero, so the
/// backward starts from loss · scale; before clipping the gradients are
/// multiplied by 1/scale (a power of two: exact). A step whose gradients hold
/// an inf or NaN is skipped and the scale halves; after `growthInterval`
/// clean steps in a row it doubles. bf16 (f32's exponent range) and fp32 use
/// no scaler, as with autocast.
public struct LossScaler: Codable, Sendable, Equatable {
    /// The current scale (GradScaler's init_scale: 2¹⁶).
    public var scale: Double
    /// Clean steps since the scale last changed (GradScaler's _growth_tracker).
    public var growthTracker = 0
    /// Optimizer steps skipped for non-finite gradients so far in the run.
    public var skippedSteps = 0
    public var growthFactor: Double
    public var backoffFactor: Double
    public var growthInterval: Int

    public init(initialScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5, growthInterval: Int = 2000) {
        scale = initialScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    /// After a step: back off (and count the skip) when the gradients were not
    /// finite, else count a clean step and grow once the interval is reached
    /// (torch's _amp_update_scale_, which keeps the old scale if growing would overflow).
    public mutating func update(foundNonFinite: Bool) {
        if foundNonFinite {
            scale *= backoffFactor
            growthTracker = 0
            skippedSteps += 1
            return
        }
        growthTracker += 1
        if growthTracker == growthInterval {
            let grown = scale * growthFactor
            if Float(grown).isFinite { scale = grown }
            growthTracker = 0
        }
    }
}
