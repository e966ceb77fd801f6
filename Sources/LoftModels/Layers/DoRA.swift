import LoftTensors

/// DoRA (Liu et al. 2024, "Weight-Decomposed Low-Rank Adaptation") as
/// peft 0.21 computes it for a Linear layer:
///
///     n   = ‖W + s·B·A‖ per output row, detached (the paper's section 4.3:
///           it follows the update but receives no gradient)
///     c   = m / n                                   (m: the magnitude vector)
///     y   = W·x + bias + (c − 1)⊙(W·x̃) + c⊙(s·B·A·x̃)
///
/// where x̃ is the adapter's dropped-out input (x itself without dropout, and
/// then y = c⊙(W·x + s·B·A·x) + bias). m starts as ‖W + s·B·A‖, which is ‖W‖
/// for a fresh adapter (B = 0).
///
/// The frozen weight is only reached through `frozenProduct`,
/// `frozenProductBackward` and `frozenRowSquaredNorms`, so the norm is computed
/// without forming W + s·B·A:
///
///     n_o² = ‖W_o‖² + 2s·Σ_k B[o,k]·(A·Wᵀ)[k,o] + s²·B_o·(A·Aᵀ)·B_oᵀ
extension Linear {
    /// Makes the attached LoRA a DoRA adapter, with m = ‖W + s·B·A‖ as PEFT initialises it.
    public func initializeDoRAMagnitude(backend b: Backend) {
        guard let lora else { return }
        lora.magnitude = b.upload(doraWeightNorm(lora, backend: b), shape: [outFeatures])
        lora.parametersChanged()
    }

    /// ‖W + s·B·A‖ for each output row, in double, rounded to float.
    public func doraWeightNorm(_ lora: LoRA, backend b: Backend) -> [Float] {
        let r = lora.rank, out = outFeatures
        let projected = b.zeros([r, out], dtype: .f32)   // A·Wᵀ, row k = W·A[k]
        frozenProduct(lora.a, into: projected, accumulate: false, backend: b)
        let gram = b.zeros([r, r], dtype: .f32)           // A·Aᵀ
        b.linear(lora.a, lora.a, bias: nil, into: gram, accumulate: false)
        let p = b.download(projected), g = b.download(gram), bw = b.download(lora.b)
        if lora.baseRowSquaredNorms == nil { lora.baseRowSquaredNorms = frozenRowSquaredNorms(backend: b) }
        let w2 = lora.baseRowSquaredNorms!
        let s = Double(lora.scale)
        var norms = [Float](repeating: 0, count: out)
        for o in 0 ..< out {
            var cross = 0.0, quadratic = 0.0
            for k in 0 ..< r {
                let bk = Double(bw[o * r + k])
                cross += bk * Double(p[k * out + o])
                var gb = 0.0
                for l in 0 ..< r { gb += Double(g[k * r + l]) * Double(bw[o * r + l]) }
                quadratic += bk * gb
            }
            norms[o] = Float(max(0, w2[o] + 2 * s * cross + s * s * quadratic).squareRoot())
        }
        return norms
    }

    /// The norm for this forward: recomputed when training (A and B move
    /// between steps), cached for inference.
    func doraCurrentNorm(_ lora: LoRA, training: Bool, backend b: Backend) -> [Float] {
        if !training, let cached = lora.cachedWeightNorm { return b.download(cached) }
        let norm = doraWeightNorm(lora, backend: b)
        lora.cachedWeightNorm = b.upload(norm, shape: [outFeatures])
        return norm
    }

    func doraForward(_ x: Tensor, lora: LoRA, into y: Tensor, backend b: Backend, accumulate: Bool, saved: LoRA.Saved?) {
        guard let magnitudeTensor = lora.magnitude else { preconditionFailure("DoRA forward without a magnitude") }
        let n = x.count / inFeatures, out = outFeatures
        let norm = doraCurrentNorm(lora, training: saved != nil, backend: b)
        let magnitude = b.download(magnitudeTensor)
        let columnScale = b.upload(zip(magnitude, norm).map { $0 / $1 }, shape: [out])
        let inverseNorm = b.upload(norm.map { 1 / $0 }, shape: [out])

        // combined = W·x̃ + s·B·A·x̃; the LoRA forward applies (and saves) the dropout.
        let combined = b.zeros([n, out], dtype: .f32)
        lora.forward(x, into: combined, backend: b, saved: saved)
        if let saved, saved.dropoutMask != nil, let dropped = saved.input {
            // Dropout: the base output keeps the clean input, DoRA's correction the dropped one.
            let droppedBase = b.zeros([n, out], dtype: .f32)
            frozenProduct(dropped, into: droppedBase, accumulate: false, backend: b)
            b.axpy(1, droppedBase, combined)
            frozenProduct(x, into: y, accumulate: accumulate, backend: b)
            b.axpy(-1, droppedBase, y)
            b.scaleColumns(combined, by: columnScale, into: y, accumulate: true)
        } else {
            frozenProduct(x, into: combined, accumulate: true, backend: b)
            b.scaleColumns(combined, by: columnScale, into: y, accumulate: accumulate)
        }
        if let bias {
            // y += bias on every row, as the rank-1 product ones[n, 1]·biasᵀ.
            let ones = b.upload([Float](repeating: 1, count: n), shape: [n, 1])
            b.linear(ones, bias.reshaped([out, 1]), bias: nil, into: y, accumulate: true)
        }
        if let saved {
            saved.doraCombined = combined
            saved.doraColumnScale = columnScale
            saved.doraInverseNorm = inverseNorm
        }
    }

    func doraBackward(_ dy: Tensor, lora: LoRA, saved: LoRA.Saved, dx: Tensor, accumulate: Bool, backend b: Backend) {
        guard let combined = saved.doraCombined, let columnScale = saved.doraColumnScale,
              let inverseNorm = saved.doraInverseNorm, let magnitude = lora.magnitude else {
            preconditionFailure("DoRA backward without a saved forward")
        }
        let n = dy.count / outFeatures, out = outFeatures
        // ∂L/∂m_o = Σ_t dy[t, o]·combined[t, o] / n_o (n is detached).
        let gM = lora.gradMagnitude ?? b.zeros(magnitude.shape, dtype: .f32)
        lora.gradMagnitude = gM
        let dm = b.zeros([out], dtype: .f32)
        b.columnDots(dy, combined, into: dm, accumulate: false)
        b.multiply(dm, inverseNorm, into: dm)
        b.axpy(1, dm, gM)

        // The adapter's and the dropped base path's output both enter as c⊙(·).
        let scaled = b.zeros([n, out], dtype: .f32)
        b.scaleColumns(dy, by: columnScale, into: scaled, accumulate: false)
        if let mask = saved.dropoutMask {
            // dx (+)= dy·W + mask ⊙ ((c⊙dy − dy)·W)
            frozenProductBackward(dy, into: dx, accumulate: accumulate, backend: b)
            let difference = b.zeros([n, out], dtype: .f32)
            b.copy(scaled, into: difference)
            b.axpy(-1, dy, difference)
            let dDropped = b.zeros([n, inFeatures], dtype: .f32)
            frozenProductBackward(difference, into: dDropped, accumulate: false, backend: b)
            b.multiply(dDropped, mask, into: dDropped)
            b.axpy(1, dDropped, dx)
        } else {
            frozenProductBackward(scaled, into: dx, accumulate: accumulate, backend: b)
        }
        lora.backward(scaled, saved: saved, dx: dx, backend: b)
    }
}
