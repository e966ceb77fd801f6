import LoftData
import LoftModels
import LoftTensors

/// Sequences (prompt + completion) packed one after another into one row of
/// tokens, with the rows whose targets are completion tokens (and, where an
/// objective needs them, prompt tokens) as spans for `SequenceLogProbs`.
struct PackedSequences {
    var ids: [Int32] = []
    var positions: [Int32] = []
    var segments: [Int] = []
    var targets: [Int32] = []
    /// One per sequence: rows predicting its completion tokens.
    var completionSpans: [SequenceLogProbs.Span] = []
    /// One per sequence (when asked for): rows predicting its prompt tokens after the first.
    var promptSpans: [SequenceLogProbs.Span] = []

    init(_ sequences: [(prompt: [Int32], completion: [Int32])], promptTargets: Bool) {
        for (prompt, completion) in sequences {
            let o = ids.count, p = prompt.count, l = prompt.count + completion.count
            segments.append(o)
            ids += prompt + completion
            positions += (0 ..< l).map(Int32.init)
            var t = [Int32](repeating: -100, count: l)
            // Row r predicts token r + 1; the completion's first token is predicted by the prompt's last row.
            let firstCompletionRow = max(0, p - 1)
            for r in firstCompletionRow ..< max(firstCompletionRow, l - 1) { t[r] = ids[o + r + 1] }
            if promptTargets { for r in 0 ..< max(0, p - 1) { t[r] = ids[o + r + 1] } }
            targets += t
            completionSpans.append(.init(o + firstCompletionRow ..< o + max(firstCompletionRow, l - 1)))
            if promptTargets { promptSpans.append(.init(o ..< o + max(0, p - 1))) }
        }
        if segments.isEmpty { segments = [0] }
    }

    var spans: [SequenceLogProbs.Span] { completionSpans + promptSpans }
    var completionTokens: [Int] { completionSpans.map(\.rows.count) }
    var promptTokens: [Int] { promptSpans.map(\.rows.count) }
}

/// One preference micro-batch: the reference pass (or its cached values),
/// the policy's forward, the objective, and the backward of its gradient;
/// the adapters' gradients accumulate across calls as in `TrainingStep`.
///
/// Pairs are packed as chosen sequences then rejected ones, in one forward
/// (no padding; attention never crosses a sequence).
public final class PreferenceStep {
    public let step: TrainingStep
    public let objective: PreferenceObjective
    public let reference: ReferencePolicy
    public var model: LlamaModel { step.model }

    public init(step: TrainingStep, objective: PreferenceObjective, reference: ReferencePolicy) {
        self.step = step
        self.objective = objective
        self.reference = reference
    }

    /// The sequences an example batch trains, in objective order.
    static func sequences(_ examples: [PreferenceExample], unpaired: Bool) -> [(prompt: [Int32], completion: [Int32])] {
        if unpaired { return examples.map { ($0.prompt, $0.chosen) } }
        return examples.map { ($0.prompt, $0.chosen) } + examples.map { ($0.prompt, $0.rejected) }
    }

    /// KTO's mismatched pairs: example i's prompt with example i−1's completion (TRL rotates by one).
    static func klSequences(_ examples: [PreferenceExample]) -> [(prompt: [Int32], completion: [Int32])] {
        let n = examples.count
        return (0 ..< n).map { (examples[$0].prompt, examples[($0 + n - 1) % n].chosen) }
    }

    /// Σ log p of each sequence's completion, forward only, with the model as it is now.
    public func completionLogProbs(_ sequences: [(prompt: [Int32], completion: [Int32])]) -> [Double] {
        guard !sequences.isEmpty else { return [] }
        let packed = PackedSequences(sequences, promptTargets: false)
        let hidden = Self.forwardHidden(model, packed)
        return SequenceLogProbs.compute(model: model, hidden: hidden, targets: packed.targets, spans: packed.completionSpans,
                                        chunkRows: step.lossChunkRows, withGradient: false).sums
    }

    /// The reference's completion log-probs of the examples' sequences (and, for KTO, of the mismatched pairs).
    public func referenceLogProbs(_ examples: [PreferenceExample]) -> (sequences: [Double], kl: [Double]) {
        reference.withReference(model) {
            (completionLogProbs(Self.sequences(examples, unpaired: objective.unpaired)),
             needsKL(examples) ? completionLogProbs(Self.klSequences(examples)) : [])
        }
    }

    func needsKL(_ examples: [PreferenceExample]) -> Bool { objective is KTO && examples.count > 1 }

    static func forwardHidden(_ m: LlamaModel, _ packed: PackedSequences) -> Tensor {
        let batch = m.batch(ids: packed.ids, positions: packed.positions, segments: packed.segments)
        let x = m.embed(batch)
        let scratch = LayerActivations(config: m.config, tokens: batch.count, backend: m.backend)
        for i in m.layers.indices { m.forwardLayer(i, x: x, batch: batch, saved: scratch) }
        return m.finalHidden(x)
    }

    /// Adds this micro-batch's gradients, the objective's scaled by `gradScale`
    /// (1 / micro-batches per step, × the fp16 loss scale). `cachedReference`
    /// replaces the reference pass (precomputed log-probs, see ReferenceCache).
    public func accumulate(_ examples: [PreferenceExample], gradScale: Double, dropoutSeed: UInt64 = 0,
                           cachedReference: (sequences: [Double], kl: [Double])? = nil) -> (loss: Double, metrics: PreferenceMetrics) {
        let seqs = Self.sequences(examples, unpaired: objective.unpaired)
        let ref = objective.usesReference ? (cachedReference ?? referenceLogProbs(examples)) : (sequences: [Double](repeating: 0, count: seqs.count), kl: [Double]())
        let klPolicy = needsKL(examples) ? completionLogProbs(Self.klSequences(examples)) : []
        let packed = PackedSequences(seqs, promptTargets: objective.usesPromptLogProbs)
        let pass = step.forwardForTraining(ids: packed.ids, positions: packed.positions, segments: packed.segments, dropoutSeed: dropoutSeed)
        let spans = packed.spans
        let logProbs = SequenceLogProbs.compute(model: model, hidden: pass.hidden, targets: packed.targets, spans: spans,
                                                chunkRows: step.lossChunkRows, withGradient: true)
        let n = seqs.count
        let scores = SequenceScores(policy: Array(logProbs.sums[..<n]), reference: ref.sequences, tokens: packed.completionTokens,
                                    promptPolicy: Array(logProbs.sums[n...]), promptTokens: packed.promptTokens,
                                    labels: examples.map { $0.label ?? true }, klPolicy: klPolicy, klReference: ref.kl)
        let result = objective.evaluate(scores)
        let dSums = (result.dPolicy + (objective.usesPromptLogProbs ? result.dPromptPolicy : [])).map { $0 * gradScale }
        step.backward(pass, dHidden: logProbs.hiddenGradient(dSums, spans: spans, backend: model.backend))
        return (result.loss, result.metrics)
    }

    /// The objective's loss and metrics, forward only (validation).
    public func evaluate(_ examples: [PreferenceExample], cachedReference: (sequences: [Double], kl: [Double])? = nil)
        -> (loss: Double, metrics: PreferenceMetrics) {
        let seqs = Self.sequences(examples, unpaired: objective.unpaired)
        let ref = objective.usesReference ? (cachedReference ?? referenceLogProbs(examples)) : (sequences: [Double](repeating: 0, count: seqs.count), kl: [Double]())
        let klPolicy = needsKL(examples) ? completionLogProbs(Self.klSequences(examples)) : []
        let packed = PackedSequences(seqs, promptTargets: objective.usesPromptLogProbs)
        let hidden = Self.forwardHidden(model, packed)
        let sums = SequenceLogProbs.compute(model: model, hidden: hidden, targets: packed.targets, spans: packed.spans,
                                            chunkRows: step.lossChunkRows, withGradient: false).sums
        let n = seqs.count
        let result = objective.evaluate(SequenceScores(policy: Array(sums[..<n]), reference: ref.sequences, tokens: packed.completionTokens,
                                                       promptPolicy: Array(sums[n...]), promptTokens: packed.promptTokens,
                                                       labels: examples.map { $0.label ?? true }, klPolicy: klPolicy, klReference: ref.kl))
        return (result.loss, result.metrics)
    }
}
