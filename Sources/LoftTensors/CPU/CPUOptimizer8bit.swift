import Foundation
import LoftFormats

extension CPUBackend: BackendOptimizer8bit {
    public func adamW8bit(param: Tensor, grad: Tensor, m: BlockwiseQuantizedVector, v: BlockwiseQuantizedVector,
                          hyper h: AdamWHyper) {
        precondition(param.count == grad.count && param.count == m.count && param.count == v.count,
                     "adamW8bit: param \(param.shape), grad \(grad.shape), moments \(m.count)/\(v.count)")
        let (p, g) = (param.floats, grad.floats)
        let (mCodes, vCodes, mAbsmax, vAbsmax) = (m.codeBytes, v.codeBytes, m.absmax.floats, v.absmax.floats)
        // As bitsandbytes' CPU kernel: the corrections in double, the update in f32.
        let bc1 = 1 - Foundation.pow(Double(h.beta1), Double(h.step))
        let bc2Sqrt = Float((1 - Foundation.pow(Double(h.beta2), Double(h.step))).squareRoot())
        let stepSize = Float(Double(h.lr) / bc1)
        let decay = 1 - h.lr * h.weightDecay
        let (b1, b2, eps) = (h.beta1, h.beta2, h.eps)
        let (oneMinusB1, oneMinusB2) = (1 - b1, 1 - b2)
        let n = param.count, block = BlockwiseQuantization.optimizerBlockSize
        let blocks = BlockwiseQuantization.blockCount(n)
        m.map.withUnsafeBufferPointer { mMap in
            v.map.withUnsafeBufferPointer { vMap in
                let (mm, vm) = (mMap.baseAddress!, vMap.baseAddress!)
                parallelChunks(blocks, minimumPerChunk: 16) { range in
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * block) { scratch in
                        let mf = scratch.baseAddress!, vf = mf + block
                        for b in range {
                            let start = b * block, count = min(block, n - start)
                            let (oldM, oldV) = (mAbsmax[b], vAbsmax[b])
                            for j in 0 ..< count {
                                let i = start + j
                                let gi = g[i]
                                var mi = mm[Int(mCodes[i])] * oldM
                                var vi = vm[Int(vCodes[i])] * oldV
                                mi = mi * b1 + oneMinusB1 * gi
                                vi = vi * b2 + oneMinusB2 * gi * gi
                                if h.weightDecay != 0 { p[i] *= decay }
                                p[i] -= stepSize * (mi / (vi.squareRoot() / bc2Sqrt + eps))
                                mf[j] = mi
                                vf[j] = vi
                            }
                            BlockwiseQuantization.quantizeBlock(mf, count: count, blockSize: block, map: mm, rules: .optimizer,
                                                                codes: mCodes + start, absmax: &mAbsmax[b])
                            BlockwiseQuantization.quantizeBlock(vf, count: count, blockSize: block, map: vm, rules: .optimizer,
                                                                codes: vCodes + start, absmax: &vAbsmax[b])
                        }
                    }
                }
            }
        }
    }
}
