/// KTO (Ethayarajh et al. 2024), TRL's `KTOTrainer` with `loss_type="kto"`:
/// unpaired examples, each desirable or not. With ρ = log π − log ref of the
/// completion and z the batch's KL estimate (mean policy − reference
/// log-ratio of mismatched prompt/completion pairs, detached, clamped ≥ 0):
/// desirable: w_d·(1 − σ(β(ρ − z))), undesirable: w_u·(1 − σ(β(z − ρ))),
/// averaged over the examples. Rewards β·ρ.
public struct KTO: PreferenceObjective {
    public let beta: Double
    public let desirableWeight: Double
    public let undesirableWeight: Double
    public init(beta: Double, desirableWeight: Double = 1, undesirableWeight: Double = 1) {
        self.beta = beta; self.desirableWeight = desirableWeight; self.undesirableWeight = undesirableWeight
    }
    public var name: String { "kto" }
    public var usesReference: Bool { true }
    public var unpaired: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        let n = s.policy.count
        let klTerms = zip(s.klPolicy, s.klReference).map { $0 - $1 }
        let kl = klTerms.isEmpty ? 0 : max(0, klTerms.reduce(0, +) / Double(klTerms.count))
        var d = [Double](repeating: 0, count: n)
        var loss = 0.0
        var chosenRewards: [Double] = [], rejectedRewards: [Double] = [], chosenLogps: [Double] = [], rejectedLogps: [Double] = []
        for i in 0 ..< n {
            let rho = s.policy[i] - s.reference[i]
            if s.labels[i] {
                let sg = sigmoid(beta * (rho - kl))
                loss += desirableWeight * (1 - sg)
                d[i] = -desirableWeight * beta * sg * (1 - sg) / Double(n)
                chosenRewards.append(beta * rho); chosenLogps.append(s.policy[i])
            } else {
                let sg = sigmoid(beta * (kl - rho))
                loss += undesirableWeight * (1 - sg)
                d[i] = undesirableWeight * beta * sg * (1 - sg) / Double(n)
                rejectedRewards.append(beta * rho); rejectedLogps.append(s.policy[i])
            }
        }
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(x.count) }
        var m: [String: Double] = ["kl": kl]
        if !chosenRewards.isEmpty { m["rewards/chosen"] = mean(chosenRewards); m["logps/chosen"] = mean(chosenLogps) }
        if !rejectedRewards.isEmpty { m["rewards/rejected"] = mean(rejectedRewards); m["logps/rejected"] = mean(rejectedLogps) }
        if let c = m["rewards/chosen"], let r = m["rewards/rejected"] { m["rewards/margins"] = c - r }
        return ObjectiveResult(loss: loss / Double(n), dPolicy: d, dPromptPolicy: [Double](repeating: 0, count: n),
                               metrics: PreferenceMetrics(m))
    }
}
