import LoftData

/// The order in which examples are visited: micro-batches of example
/// indices, reshuffled each epoch from (seed, epoch) alone, so a resumed run
/// rebuilds exactly the plan it was following.
public struct BatchPlan: Sendable {
    public let microBatches: [[Int]]

    /// - packing: fill each micro-batch with examples up to `tokensPerMicroBatch`
    ///   tokens (first-fit over the shuffled order); otherwise take
    ///   `microBatchSize` examples per micro-batch.
    public init(lengths: [Int], epoch: Int, seed: UInt64, microBatchSize: Int, packing: Bool, tokensPerMicroBatch: Int) {
        var rng = TrainingRandom(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(lengths.indices)
        order.shuffle(using: &rng)
        var batches: [[Int]] = []
        if packing {
            var bins: [(used: Int, items: [Int])] = []
            for i in order {
                if let b = bins.firstIndex(where: { $0.used + lengths[i] <= tokensPerMicroBatch }) {
                    bins[b].used += lengths[i]
                    bins[b].items.append(i)
                } else {
                    bins.append((lengths[i], [i]))
                }
            }
            batches = bins.map(\.items)
        } else {
            var i = 0
            while i < order.count {
                batches.append(Array(order[i ..< min(order.count, i + microBatchSize)]))
                i += microBatchSize
            }
        }
        microBatches = batches
    }

    public static func microBatch(_ indices: [Int], from examples: [TokenizedExample]) -> MicroBatch {
        MicroBatch(sequences: indices.map { (examples[$0].ids, examples[$0].labels) })
    }
}
