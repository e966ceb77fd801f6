extension CPUBackend {
    public func dropoutMask(_ mask: Tensor, probability p: Float, seed: UInt64) {
        let m = mask.floats
        let keep = 1 / (1 - p)
        // SplitMix64 per element index: the mask depends only on (seed, index),
        // so it can be replayed for the backward or a checkpoint recompute.
        parallelChunks(mask.count, minimumPerChunk: 1 << 14) { r in
            for i in r {
                var z = seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
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
