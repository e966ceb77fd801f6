/// SLiC's hinge loss on the DPO log-ratio difference, TRL's `loss_type="hinge"`:
/// L = max(0, 1 − β·Δ) (β is the reciprocal margin).
public struct DPOHinge: PreferenceObjective {
    public let beta: Double
    public init(beta: Double) { self.beta = beta }
    public var name: String { "dpo/hinge" }
    public var usesReference: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        LogRatioObjective(beta: beta) { delta in
            let z = 1 - beta * delta
            // torch.relu's gradient at 0 is 0.
            return (max(0, z), z > 0 ? -beta : 0)
        }.evaluate(s)
    }
}
