import LoftModels
import LoftTensors

/// Log-probabilities of next-token targets, summed over row ranges ("spans",
/// e.g. one sequence's completion), through the LM head a chunk of rows at a
/// time in fp32 with a float64 log-sum-exp: the [tokens × vocab] logits never
/// exist whole, only `chunkRows` rows of them.
///
/// Every preference objective is a function of such sums, so its gradient
/// with respect to a row's hidden state is (∂L/∂sum of the row's span) ×
/// ∂logp(row)/∂hidden. The forward keeps the second factor per row
/// (`unitGradient`, [rows × hidden], small); `hiddenGradient` scales it once
/// the objective has produced the first — one pass over the LM head, not two.
public struct SequenceLogProbs {
    /// A contiguous range of rows whose target log-probs are summed together.
    public struct Span: Sendable, Equatable {
        public var rows: Range<Int>
        public init(_ rows: Range<Int>) { self.rows = rows }
    }

    /// Σ log p(target | row) for each span.
    public var sums: [Double]
    /// −∂logp(row)/∂hidden(row) for every row in a span (zero elsewhere); nil for forward-only passes.
    public var unitGradient: Tensor?

    /// - targets: the token each row predicts (−100: none); rows outside every span are ignored.
    /// - spans: disjoint row ranges; each is chunked on its own so a chunk never mixes spans.
    public static func compute(model m: LlamaModel, hidden: Tensor, targets: [Int32], spans: [Span],
                               chunkRows: Int = 256, withGradient: Bool) -> SequenceLogProbs {
        let b = m.backend, c = m.config
        precondition(targets.count == hidden.rows, "SequenceLogProbs: \(targets.count) targets for \(hidden.rows) rows")
        let unit = withGradient ? b.zeros([hidden.rows, c.hiddenSize], dtype: .f32) : nil
        var sums = [Double](repeating: 0, count: spans.count)
        // One logits buffer for every chunk (a fresh 50 MB one per chunk faults its pages in during the GEMM).
        let longest = spans.map { min($0.rows.count, chunkRows) }.max() ?? 0
        let logitsBuffer = b.zeros([max(1, longest), c.vocabSize], dtype: .f32)
        let cappedBuffer = c.finalLogitSoftcap == nil || unit == nil ? nil : b.zeros(logitsBuffer.shape, dtype: .f32)
        for (k, span) in spans.enumerated() {
            var r0 = span.rows.lowerBound
            while r0 < span.rows.upperBound {
                let r1 = min(span.rows.upperBound, r0 + chunkRows)
                let logits = logitsBuffer.rows(0 ..< r1 - r0), capped = cappedBuffer?.rows(0 ..< r1 - r0)
                b.linear(hidden.rows(r0 ..< r1), m.lmHead, bias: nil, into: logits, accumulate: false)
                m.softcapLogits(logits, saving: capped)  // Gemma 2
                // cross-entropy = −log p; with gradScale 1 its dLogits are softmax − onehot = −∂logp/∂logits.
                sums[k] -= b.crossEntropy(logits: logits, labels: Array(targets[r0 ..< r1]),
                                          dLogits: unit == nil ? nil : logits, gradScale: 1)
                if let capped { m.softcapLogitsBackward(logits, capped: capped) }
                if let unit { b.linearBackwardInput(logits, m.lmHead, into: unit.rows(r0 ..< r1), accumulate: false) }
                r0 = r1
            }
        }
        return SequenceLogProbs(sums: sums, unitGradient: unit)
    }

    /// ∂L/∂hidden given ∂L/∂(sum of span k) for every span (`unitGradient` is consumed).
    public func hiddenGradient(_ dSums: [Double], spans: [Span], backend b: Backend) -> Tensor {
        guard let unit = unitGradient else { preconditionFailure("hiddenGradient of a forward-only pass") }
        for (k, span) in spans.enumerated() where !span.rows.isEmpty {
            // unit holds −∂logp/∂h, so the row's gradient is −dSum·unit.
            b.scale(unit.rows(span.rows), by: Float(-dSums[k]))
        }
        return unit
    }
}
