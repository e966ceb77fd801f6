import Foundation

/// What an objective sees of one micro-batch: per-sequence log-prob sums of
/// the policy (and of the reference, where it has one). Paired objectives
/// read sequences 0..<pairs as the chosen completions and pairs..<2·pairs as
/// the rejected ones, in the same order (TRL's `chunk(2)`); KTO reads one
/// sequence per example with its label.
public struct SequenceScores: Sendable {
    /// Σ log p of each sequence's completion tokens under the policy.
    public var policy: [Double]
    /// The same under the reference (zeros when the objective has none).
    public var reference: [Double]
    /// Completion tokens per sequence (the denominators of per-token averages).
    public var tokens: [Int]
    /// Σ log p of each sequence's prompt tokens after the first (ORPO's and CPO's NLL covers prompt and completion).
    public var promptPolicy: [Double]
    public var promptTokens: [Int]
    /// KTO: whether each example is desirable.
    public var labels: [Bool]
    /// KTO: policy and reference log-probs of mismatched (prompt, completion) pairs, for the KL estimate.
    public var klPolicy: [Double]
    public var klReference: [Double]

    public init(policy: [Double], reference: [Double], tokens: [Int], promptPolicy: [Double] = [], promptTokens: [Int] = [],
                labels: [Bool] = [], klPolicy: [Double] = [], klReference: [Double] = []) {
        self.policy = policy; self.reference = reference; self.tokens = tokens
        self.promptPolicy = promptPolicy; self.promptTokens = promptTokens
        self.labels = labels; self.klPolicy = klPolicy; self.klReference = klReference
    }

    public var pairs: Int { policy.count / 2 }
    public var chosen: ArraySlice<Double> { policy[..<pairs] }
    public var rejected: ArraySlice<Double> { policy[pairs...] }
}

/// The metrics TRL logs, with its names: per micro-batch, averaged over a step.
public struct PreferenceMetrics: Sendable, Equatable, Codable {
    public var values: [String: Double] = [:]
    public init(_ values: [String: Double] = [:]) { self.values = values }

    /// rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies, logps/chosen, logps/rejected
    /// from per-pair rewards and log-probs (TRL: means over the batch; accuracy is chosen > rejected, strictly).
    public static func pairwise(chosenRewards: [Double], rejectedRewards: [Double],
                                chosenLogps: [Double], rejectedLogps: [Double]) -> PreferenceMetrics {
        func mean(_ x: [Double]) -> Double { x.isEmpty ? 0 : x.reduce(0, +) / Double(x.count) }
        let margins = zip(chosenRewards, rejectedRewards).map { $0 - $1 }
        return PreferenceMetrics([
            "rewards/chosen": mean(chosenRewards), "rewards/rejected": mean(rejectedRewards),
            "rewards/margins": mean(margins),
            "rewards/accuracies": mean(margins.map { $0 > 0 ? 1 : 0 }),
            "logps/chosen": mean(chosenLogps), "logps/rejected": mean(rejectedLogps),
        ])
    }

    /// The mean of several micro-batches' metrics, key by key.
    public static func mean(_ all: [PreferenceMetrics]) -> PreferenceMetrics {
        var sums: [String: Double] = [:], counts: [String: Int] = [:]
        for m in all { for (k, v) in m.values { sums[k, default: 0] += v; counts[k, default: 0] += 1 } }
        return PreferenceMetrics(Dictionary(uniqueKeysWithValues: sums.map { ($0.key, $0.value / Double(counts[$0.key]!)) }))
    }
}

/// An objective's loss for one micro-batch, its gradient with respect to
/// every log-prob sum it read, and its metrics.
public struct ObjectiveResult: Sendable {
    public var loss: Double
    /// ∂loss/∂policy[i] (completion sums).
    public var dPolicy: [Double]
    /// ∂loss/∂promptPolicy[i] (zero unless the objective has an NLL term over the prompt).
    public var dPromptPolicy: [Double]
    public var metrics: PreferenceMetrics
}

/// A preference objective: TRL's definition, one file each.
public protocol PreferenceObjective: Sendable {
    /// Config name (`rl:` / `dpo_loss_type:`), e.g. "dpo/sigmoid".
    var name: String { get }
    /// Whether a reference pass (or cache) is needed.
    var usesReference: Bool { get }
    /// Whether the prompt tokens' log-probs are needed (an NLL term over the whole chosen sequence).
    var usesPromptLogProbs: Bool { get }
    /// One sequence per example with a label (KTO) instead of chosen/rejected pairs.
    var unpaired: Bool { get }
    func evaluate(_ s: SequenceScores) -> ObjectiveResult
}

extension PreferenceObjective {
    public var usesPromptLogProbs: Bool { false }
    public var unpaired: Bool { false }
}

/// log σ(x), stable on both sides.
@inline(__always) func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }
@inline(__always) func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

/// The DPO family: a loss of each pair's log-ratios ρ = log π − log ref
/// (chosen and rejected) and its two derivatives, averaged over the pairs
/// (TRL's `per_sequence_loss.mean()`); rewards are β·ρ.
struct LogRatioObjective {
    let beta: Double
    /// (ρ_c, ρ_r, completion tokens of each) → (loss, ∂loss/∂ρ_c, ∂loss/∂ρ_r) for one pair.
    let pairLoss: (_ chosen: Double, _ rejected: Double, _ chosenTokens: Int, _ rejectedTokens: Int)
        -> (loss: Double, dChosen: Double, dRejected: Double)

    /// A loss of Δ = ρ_c − ρ_r alone: f(Δ) and f′(Δ).
    init(beta: Double, difference: @escaping (_ delta: Double) -> (loss: Double, dDelta: Double)) {
        self.beta = beta
        pairLoss = { c, r, _, _ in let (l, d) = difference(c - r); return (l, d, -d) }
    }

    init(beta: Double, pairLoss: @escaping (Double, Double, Int, Int) -> (loss: Double, dChosen: Double, dRejected: Double)) {
        self.beta = beta
        self.pairLoss = pairLoss
    }

    func evaluate(_ s: SequenceScores) -> ObjectiveResult {
        let p = s.pairs
        var loss = 0.0
        var d = [Double](repeating: 0, count: 2 * p)
        var chosenRewards: [Double] = [], rejectedRewards: [Double] = []
        for i in 0 ..< p {
            let c = s.policy[i] - s.reference[i], r = s.policy[p + i] - s.reference[p + i]
            let out = pairLoss(c, r, s.tokens[i], s.tokens[p + i])
            loss += out.loss
            d[i] = out.dChosen / Double(p)
            d[p + i] = out.dRejected / Double(p)
            chosenRewards.append(beta * c)
            rejectedRewards.append(beta * r)
        }
        return ObjectiveResult(loss: loss / Double(p), dPolicy: d, dPromptPolicy: [Double](repeating: 0, count: 2 * p),
                               metrics: .pairwise(chosenRewards: chosenRewards, rejectedRewards: rejectedRewards,
                                                  chosenLogps: Array(s.chosen), rejectedLogps: Array(s.rejected)))
    }
}
