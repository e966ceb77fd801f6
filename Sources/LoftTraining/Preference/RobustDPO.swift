/// Robust DPO (Chowdhury et al. 2024), TRL's `loss_type="robust"`: DPO made
/// unbiased under labels flipped with probability ε (`dpo_label_smoothing`):
/// L = (−(1−ε)·log σ(βΔ) + ε·log σ(−βΔ)) / (1 − 2ε).
public struct RobustDPO: PreferenceObjective {
    public let beta: Double
    public let labelSmoothing: Double
    public init(beta: Double, labelSmoothing: Double) { self.beta = beta; self.labelSmoothing = labelSmoothing }
    public var name: String { "dpo/robust" }
    public var usesReference: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        let eps = labelSmoothing
        return LogRatioObjective(beta: beta) { delta in
            let h = beta * delta
            let loss = (-(1 - eps) * logSigmoid(h) + eps * logSigmoid(-h)) / (1 - 2 * eps)
            return (loss, beta * (-(1 - eps) * sigmoid(-h) - eps * sigmoid(h)) / (1 - 2 * eps))
        }.evaluate(s)
    }
}
