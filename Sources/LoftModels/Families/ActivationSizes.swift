/// The element counts of the buffers a training step allocates, written next
/// to the classes that allocate them so the memory planner predicts what the
/// code does (a test checks these against real instances).
extension LayerActivations {
    /// Elements a training `LayerActivations` of `n` tokens allocates, without
    /// its LoRA state.
    public static func trainingElementCount(config c: ModelConfig, tokens n: Int) -> Int {
        let (h, qDim, kvDim, ff) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim, c.intermediateSize)
        var total = 4 * n * h + 2 * n            // input, middle, normed1, normed2; rstd1, rstd2
        total += n * qDim + 2 * n * kvDim        // q, k, v
        if c.qkNorm { total += n * qDim + n * kvDim + n * c.heads + n * c.kvHeads }
        total += n * qDim + c.heads * n          // attended, lse
        total += 3 * n * ff                      // gate, up, activated
        if c.sandwichNorms { total += 3 * n * h + 2 * n }  // attention and MLP outputs, scratch; their rstd
        if c.fusedProjections { total += n * (qDim + 2 * kvDim) + 2 * n * ff }  // qkv, gate_up
        // A sparse layer keeps, per token and chosen expert, the gate and up
        // outputs and the expert's output (MixtureOfExperts.Saved).
        if c.experts > 0 { total += n * c.expertsPerToken * (2 * c.expertIntermediateSize + h) }
        return total
    }

    /// Elements one adapted projection's `LoRA.Saved` holds for `n` tokens:
    /// the scaled projection [n, r], and with dropout the mask and the
    /// dropped-out input [n, in] (without dropout the input is the layer's
    /// own buffer, referenced, not copied).
    public static func loraSavedElementCount(tokens n: Int, inFeatures: Int, rank: Int, dropout: Bool) -> Int {
        n * rank + (dropout ? 2 * n * inFeatures : 0)
    }
}

extension LayerGradients {
    /// Elements `LayerGradients` of `n` tokens allocates.
    public static func elementCount(config c: ModelConfig, tokens n: Int) -> Int {
        let (h, qDim, kvDim, ff) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim, c.intermediateSize)
        return n * h + 2 * n * qDim + 2 * n * kvDim + 3 * n * ff + (c.sandwichNorms ? n * h : 0)
            + (c.fusedProjections ? n * (qDim + 2 * kvDim) + 2 * n * ff : 0)
    }
}

extension ModelConfig {
    /// (input, output) features of each projection the model has, by its
    /// short LoRA name ("qkv" and "gate_up" instead of their parts when fused).
    public var projectionShapes: [String: (inFeatures: Int, outFeatures: Int)] {
        let (h, qDim, kvDim, ff) = (hiddenSize, heads * headDim, kvHeads * headDim, intermediateSize)
        if fusedProjections {
            return ["qkv": (h, qDim + 2 * kvDim), "o": (qDim, h), "gate_up": (h, 2 * ff), "down": (ff, h)]
        }
        return ["q": (h, qDim), "k": (h, kvDim), "v": (h, kvDim), "o": (qDim, h),
                "gate": (h, ff), "up": (h, ff), "down": (ff, h)]
    }
}
