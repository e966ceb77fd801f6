import CLoftKernels
import Foundation

extension CPUBackend {
    public func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float, weightOffset: Float, into y: Tensor, rstd: Tensor?) {
        let d = weight.count
        let n = x.count / d
        precondition(x.count == n * d && y.count == x.count, "rmsNorm: x \(x.shape), weight \(weight.shape), y \(y.shape)")
        let (xp, wp, yp) = (x.floats, weight.floats, y.floats)
        let rp = rstd?.floats
        parallelChunks(n, minimumPerChunk: 16) { rows in
            for r in rows {
                let xr = xp + r * d, yr = yp + r * d
                var ss = 0.0
                for j in 0 ..< d { ss += Double(xr[j] * xr[j]) }
                let inv = Float(1 / (ss / Double(d) + Double(eps)).squareRoot())
                rp?[r] = inv
                for j in 0 ..< d { yr[j] = (wp[j] + weightOffset) * (xr[j] * inv) }
            }
        }
    }

    public func rmsNormBackward(_ dy: Tensor, x: Tensor, weight: Tensor, weightOffset: Float, rstd: Tensor,
                                dx: Tensor, accumulate: Bool, dweight: Tensor?) {
        let d = weight.count
        let n = x.count / d
        let (dyp, xp, wp, rp, dxp) = (dy.floats, x.floats, weight.floats, rstd.floats, dx.floats)
        // dx = r·(w⊙dy) − r³/d · x · Σ(w⊙dy⊙x)
        parallelChunks(n, minimumPerChunk: 16) { rows in
            for r in rows {
                let xr = xp + r * d, gr = dyp + r * d, out = dxp + r * d
                let inv = rp[r]
                var dot = 0.0
                for j in 0 ..< d { dot += Double((wp[j] + weightOffset) * gr[j] * xr[j]) }
                let c = Float(dot) * inv * inv * inv / Float(d)
                for j in 0 ..< d {
                    let g = inv * (wp[j] + weightOffset) * gr[j] - c * xr[j]
                    out[j] = accumulate ? out[j] + g : g
                }
            }
        }
        if let dweight {
            let dwp = dweight.floats
            for r in 0 ..< n {
                let xr = xp + r * d, gr = dyp + r * d
                let inv = rp[r]
                for j in 0 ..< d { dwp[j] += gr[j] * xr[j] * inv }
            }
        }
    }

    public func rope(_ x: Tensor, heads: Int, headDim: Int, positions: [Int32], invFreq: [Float],
                     attentionScale: Float, inverse: Bool) {
        // Pairs (i, i + half) of each head's first 2·half dimensions: half is
        // headDim/2, or less with partial rotary (the other dimensions pass through).
        let half = invFreq.count
        let width = heads * headDim
        let n = x.count / width
        precondition(n == positions.count && half > 0 && 2 * half <= headDim,
                     "rope: x \(x.shape) with \(heads)×\(headDim), \(positions.count) positions, \(invFreq.count) frequencies")
        let xp = x.floats
        let sign: Float = inverse ? -1 : 1
        positions.withUnsafeBufferPointer { pos in
            invFreq.withUnsafeBufferPointer { freq in
                parallelChunks(n, minimumPerChunk: 8) { rows in
                    var cosv = [Float](repeating: 0, count: half), sinv = cosv
                    for r in rows {
                        // Angles in f32, as transformers computes them (position · inv_freq).
                        let p = Float(pos[r])
                        for i in 0 ..< half {
                            let angle = p * freq[i]
                            cosv[i] = Foundation.cos(angle) * attentionScale
                            sinv[i] = sign * Foundation.sin(angle) * attentionScale
                        }
                        for h in 0 ..< heads {
                            let v = xp + r * width + h * headDim
                            for i in 0 ..< half {
                                let a = v[i], b = v[i + half]
                                v[i] = a * cosv[i] - b * sinv[i]
                                v[i + half] = b * cosv[i] + a * sinv[i]
                            }
                        }
                    }
                }
            }
        }
    }

    public func crossEntropy(logits: Tensor, labels: [Int32], dLogits: Tensor?, gradScale: Float) -> Double {
        let v = logits.rowSize
        let n = logits.rows
        precondition(labels.count == n, "crossEntropy: \(labels.count) labels for \(n) rows")
        let lp = logits.floats
        let gp = dLogits?.floats
        var losses = [Double](repeating: 0, count: n)
        losses.withUnsafeMutableBufferPointer { lossp in
            labels.withUnsafeBufferPointer { lab in
                parallelChunks(n, minimumPerChunk: 4) { rows in
                    for r in rows {
                        let row = lp + r * v
                        let label = Int(lab[r])
                        if label < 0 {
                            if let gp { (gp + r * v).update(repeating: 0, count: v) }
                            continue
                        }
                        precondition(label < v, "label \(label) outside the vocabulary of \(v)")
                        let mx = loft_max(row, v)
                        // dLogits may be the logits themselves: read the label's before the exps land.
                        let labelLogit = Double(row[label])
                        // A float sum of ~50k terms drifts by 1e-4 relative and
                        // every probability inherits it: accumulate in double.
                        // With a gradient, the exps land in it and are scaled below.
                        let sum = loft_exp_sum_f64(row, gp.map { $0 + r * v }, v, mx)
                        // Keep log-sum-exp in double too: rounded to float it is off
                        // by an ulp of the largest logit, which shifts the loss and
                        // scales every probability by the same (1 + δ); the LM head's
                        // backward then turns that δ into a gradient error far larger
                        // than float rounding of each term.
                        lossp[r] = Double(mx) - labelLogit + Foundation.log(sum)
                        if let gp {
                            let g = gp + r * v
                            let scale = Double(gradScale) / sum
                            for j in 0 ..< v { g[j] = Float(Double(g[j]) * scale) }
                            g[label] -= gradScale
                        }
                    }
                }
            }
        }
        return losses.reduce(0, +)
    }
}
