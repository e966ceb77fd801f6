import Foundation

/// ORPO (Hong et al. 2024), TRL's `ORPOTrainer`: no reference model; the
/// completions' per-token average log-probs a_c, a_r give the log odds ratio
/// ℓ = (a_c − a_r) − (log(1 − e^{a_c}) − log(1 − e^{a_r})), and
/// L = NLL(chosen) − mean(λ·log σ(ℓ)), where TRL's NLL is the mean
/// cross-entropy over every token of the chosen sequences, prompt included.
/// λ is `orpo_alpha` (TRL's ORPOConfig.beta); rewards are λ·a.
public struct ORPO: PreferenceObjective {
    public let alpha: Double
    public init(alpha: Double) { self.alpha = alpha }
    public var name: String { "orpo" }
    public var usesReference: Bool { false }
    public var usesPromptLogProbs: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        let p = s.pairs
        var d = [Double](repeating: 0, count: 2 * p), dPrompt = d
        var ratioSum = 0.0, logOddsSum = 0.0
        var chosenAvg: [Double] = [], rejectedAvg: [Double] = []
        for i in 0 ..< p {
            let nc = Double(s.tokens[i]), nr = Double(s.tokens[p + i])
            let c = s.policy[i] / nc, r = s.policy[p + i] / nr
            let logOdds = (c - r) - (log1mexp(c) - log1mexp(r))
            ratioSum += logSigmoid(logOdds)
            logOddsSum += logOdds
            // ∂ℓ/∂a_c = 1/(1 − e^{a_c}) = −1/expm1(a_c); ∂ℓ/∂a_r = 1/expm1(a_r).
            let g = -alpha * sigmoid(-logOdds) / Double(p)
            d[i] = g * (-1 / expm1(c)) / nc
            d[p + i] = g * (1 / expm1(r)) / nr
            chosenAvg.append(c); rejectedAvg.append(r)
        }
        // NLL over the chosen sequences' tokens (prompt after the first, and completion), one mean over all of them.
        let nllTokens = (0 ..< p).reduce(0) { $0 + s.tokens[$1] + s.promptTokens[$1] }
        let nll = -(0 ..< p).reduce(0.0) { $0 + s.policy[$1] + s.promptPolicy[$1] } / Double(max(1, nllTokens))
        for i in 0 ..< p {
            d[i] -= 1 / Double(max(1, nllTokens))
            dPrompt[i] = -1 / Double(max(1, nllTokens))
        }
        var metrics = PreferenceMetrics.pairwise(chosenRewards: chosenAvg.map { alpha * $0 }, rejectedRewards: rejectedAvg.map { alpha * $0 },
                                                 chosenLogps: chosenAvg, rejectedLogps: rejectedAvg)
        metrics.values["nll_loss"] = nll
        metrics.values["log_odds_ratio"] = ratioSum / Double(p)
        metrics.values["log_odds_chosen"] = logOddsSum / Double(p)
        return ObjectiveResult(loss: nll - alpha * ratioSum / Double(p), dPolicy: d, dPromptPolicy: dPrompt, metrics: metrics)
    }
}

/// log(1 − eˣ) for x < 0, branching at −ln 2 as TRL's `log1mexp` does.
func log1mexp(_ x: Double) -> Double { x < -0.6931471805599453 ? log1p(-exp(x)) : log(-expm1(x)) }
