import LoftData

/// The order in which examples are visited: micro-batches of example
/// indices, reshuffled each epoch from (seed, epoch) alone, so a resumed run
/// rebuilds exactly the plan it was following.
public struct BatchPlan: Sendable {
    public let microBatches: [[Int]]

    /// - packing: best-fit-decreasing bins of up to `tokensPerMicroBatch`
    ///   tokens, in a seeded order per epoch; otherwise `microBatchSize`
    ///   shuffled examples per micro-batch.
    public init(lengths: [Int], epoch: Int, seed: UInt64, microBatchSize: Int, packing: Bool, tokensPerMicroBatch: Int) {
        if packing {
            microBatches = Packing.packedMicroBatches(lengths: lengths, capacity: tokensPerMicroBatch, seed: seed, epoch: epoch)
            return
        }
        var rng = TrainingRandom(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(lengths.indices)
        order.shuffle(using: &rng)
        var batches: [[Int]] = []
        var i = 0
        while i < order.count {
            batches.append(Array(order[i ..< min(order.count, i + microBatchSize)]))
            i += microBatchSize
        }
        microBatches = batches
    }

    public static func microBatch(_ indices: [Int], from examples: ExampleSet) throws -> MicroBatch {
        MicroBatch(sequences: try indices.map { let e = try examples.example($0); return (e.ids, e.labels) })
    }

    public static func microBatch(_ indices: [Int], from examples: [TokenizedExample]) -> MicroBatch {
        MicroBatch(sequences: indices.map { (examples[$0].ids, examples[$0].labels) })
    }
}
