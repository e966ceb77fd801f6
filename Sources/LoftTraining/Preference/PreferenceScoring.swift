import LoftData
import LoftModels

/// Implicit rewards of preference pairs, for evaluation (`loft eval`'s
/// reward_accuracy and reward_margin): r = β·(log π(y|x) − log ref(y|x)),
/// with log-probs summed over the completion's tokens through the same
/// chunked log-softmax training uses.
public enum PreferenceScoring {
    /// One pair's implicit rewards.
    public struct PairReward: Sendable, Equatable {
        public var chosen: Double
        public var rejected: Double
        public var margin: Double { chosen - rejected }
    }

    /// Σ log p(completion | prompt) for each (prompt, completion), with the model as it is (its adapters as attached).
    /// - batchSize: sequences per forward (packed, no padding).
    public static func completionLogProbs(model: LlamaModel, _ sequences: [(prompt: [Int32], completion: [Int32])],
                                          batchSize: Int = 8) -> [Double] {
        let step = PreferenceStep(step: TrainingStep(model: model), objective: DPOSigmoid(beta: 1),
                                  reference: ReferencePolicy(model: model, kind: .adapterDisabled))
        var out: [Double] = []
        var i = 0
        while i < sequences.count {
            out += step.completionLogProbs(Array(sequences[i ..< min(sequences.count, i + batchSize)]))
            i += batchSize
        }
        return out
    }

    /// β·(policy − reference) of chosen and rejected for each pair. The policy is the model with its
    /// adapters; the reference is the same model with them switched off (the base), or — with
    /// `reference: .startingAdapter` semantics — whatever `referenceLogProbs` gives (e.g. computed
    /// with another adapter attached, by `completionLogProbs`).
    public static func implicitRewards(model: LlamaModel, pairs: [PreferenceExample], beta: Double,
                                       referenceLogProbs: [Double]? = nil, batchSize: Int = 8) -> [PairReward] {
        let seqs = pairs.map { ($0.prompt, $0.chosen) } + pairs.map { ($0.prompt, $0.rejected) }
        let policy = completionLogProbs(model: model, seqs, batchSize: batchSize)
        let reference = referenceLogProbs ?? ReferencePolicy(model: model, kind: .adapterDisabled).withReference(model) {
            completionLogProbs(model: model, seqs, batchSize: batchSize)
        }
        precondition(reference.count == seqs.count, "implicitRewards: \(reference.count) reference log-probs for \(seqs.count) sequences")
        let n = pairs.count
        return (0 ..< n).map { i in
            PairReward(chosen: beta * (policy[i] - reference[i]), rejected: beta * (policy[n + i] - reference[n + i]))
        }
    }

    /// reward_accuracy (share of pairs with chosen > rejected, TRL's strict rule) and reward_margin (mean margin).
    public static func summary(_ rewards: [PairReward]) -> (accuracy: Double, margin: Double) {
        guard !rewards.isEmpty else { return (0, 0) }
        let n = Double(rewards.count)
        return (Double(rewards.filter { $0.margin > 0 }.count) / n, rewards.reduce(0) { $0 + $1.margin } / n)
    }
}
