/// IPO (Azar et al. 2023), TRL's `loss_type="ipo"`: the log-ratios averaged
/// per completion token (TRL's normalisation, confirmed with the authors),
/// L = ((ρ_c/n_c − ρ_r/n_r) − 1/(2β))², β being the paper's τ.
public struct IPO: PreferenceObjective {
    public let beta: Double
    public init(beta: Double) { self.beta = beta }
    public var name: String { "dpo/ipo" }
    public var usesReference: Bool { true }

    public func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        LogRatioObjective(beta: beta) { c, r, chosenTokens, rejectedTokens in
            let nc = Double(max(1, chosenTokens)), nr = Double(max(1, rejectedTokens))
            let e = (c / nc - r / nr) - 1 / (2 * beta)
            return (e * e, 2 * e / nc, -2 * e / nr)
        }.evaluate(s)
    }
}
