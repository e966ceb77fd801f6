import LoftFormats

extension CPUBackend {
    public func dropoutMask(_ mask: Tensor, probability p: Float, seed: UInt64) {
        let m = mask.floats
        let keep = 1 / (1 - p)
        // SplitMix64 per element index: the mask depends only on (seed, index),
        // so it can be replayed for the backward or a checkpoint recompute.
        parallelChunks(mask.count, minimumPerChunk: 1 << 14) { r in
            for i in r {
                let z = SplitMix64.mix(seed &+ UInt64(i) &* SplitMix64.increment)
                let u = Float(z >> 40) / Float(1 << 24)
                m[i] = u < p ? 0 : keep
            }
        }
    }

    public func multiply(_ a: Tensor, _ b: Tensor, into y: Tensor) {
        precondition(a.count == b.count && a.count == y.count, "multiply: \(a.shape) ⊙ \(b.shape) into \(y.shape)")
        let (ap, bp, yp) = (a.floats, b.floats, y.floats)
        parallelChunks(y.count, minimumPerChunk: 1 << 15) { r in
            for i in r { yp[i] = ap[i] * bp[i] }
        }
    }
}
