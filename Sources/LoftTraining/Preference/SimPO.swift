/// SimPO (Meng et al. 2024), TRL's `CPOTrainer` with `loss_type="simpo"`: no
/// reference; per-token average log-probs a_c, a_r and a target margin γ:
/// L = −log σ(β·(a_c − a_r) − γ), plus `cpo_alpha` × the mean NLL of the
/// chosen completions (CPO-SimPO; 0 is pure SimPO). Rewards are β·a.
public struct SimPO: PreferenceObjective {
    public let beta: Double
    public let gamma: Double
    public let cpoAlpha: Double
    public init(beta: Double, gamma: Double, cpoAlpha: Double = 0) { self.beta = beta; self.gamma = gamma; self.cpoAlpha = cpoAlpha }
    public var name: String { "simpo" }
    public var usesReference: Bool { false }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        let p = s.pairs
        var d = [Double](repeating: 0, count: 2 * p)
        var loss = 0.0
        var chosenAvg: [Double] = [], rejectedAvg: [Double] = []
        let nllTokens = max(1, s.tokens[..<p].reduce(0, +))
        var nll = 0.0
        for i in 0 ..< p {
            let nc = Double(s.tokens[i]), nr = Double(s.tokens[p + i])
            let c = s.policy[i] / nc, r = s.policy[p + i] / nr
            // TRL: logits = (a_c − a_r) − γ/β; loss = −log σ(β·logits)
            let h = beta * ((c - r) - gamma / beta)
            loss += -logSigmoid(h)
            let g = -beta * sigmoid(-h) / Double(p)
            d[i] = g / nc - cpoAlpha / Double(nllTokens)
            d[p + i] = -g / nr
            nll -= s.policy[i] / Double(nllTokens)
            chosenAvg.append(c); rejectedAvg.append(r)
        }
        var metrics = PreferenceMetrics.pairwise(chosenRewards: chosenAvg.map { beta * $0 }, rejectedRewards: rejectedAvg.map { beta * $0 },
                                                 chosenLogps: chosenAvg, rejectedLogps: rejectedAvg)
        metrics.values["nll_loss"] = cpoAlpha == 0 ? 0 : nll
        return ObjectiveResult(loss: loss / Double(p) + cpoAlpha * nll, dPolicy: d,
                               dPromptPolicy: [Double](repeating: 0, count: 2 * p), metrics: metrics)
    }
}
