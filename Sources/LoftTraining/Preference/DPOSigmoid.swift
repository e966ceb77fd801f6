/// DPO (Rafailov et al. 2023), TRL's `loss_type="sigmoid"`:
/// L = −log σ(β·((log π_c − log ref_c) − (log π_r − log ref_r))), summed log-probs.
public struct DPOSigmoid: PreferenceObjective {
    public let beta: Double
    public init(beta: Double) { self.beta = beta }
    public var name: String { "dpo/sigmoid" }
    public var usesReference: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        LogRatioObjective(beta: beta) { delta in
            let h = beta * delta
            return (-logSigmoid(h), -beta * sigmoid(-h))
        }.evaluate(s)
    }
}
