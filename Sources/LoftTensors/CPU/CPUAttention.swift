import CLoftKernels
import Foundation

/// Causal attention computed a block of queries at a time: the score matrix
/// for one head is never larger than blockSize × keys, so memory stays linear
/// in the sequence length; the two GEMMs per block go through `gemm` (BLAS,
/// in the backend's compute precision: the probabilities are rounded like
/// any GEMM input, as a bf16 attention kernel on a GPU rounds them). The
/// backward recomputes the probabilities from the saved log-sum-exp, as
/// FlashAttention does, instead of keeping them.
extension CPUBackend {
    static let attentionBlock = 64

    /// One unit of parallel work: a packed segment and a KV head with its group of query heads.
    private struct AttentionTask {
        let keyStart: Int, keyEnd: Int
        let queryStart: Int, queryEnd: Int
        let kvHead: Int
    }

    private func attentionTasks(queries nq: Int, keys nk: Int, spec: AttentionSpec) -> [AttentionTask] {
        precondition(spec.heads % spec.kvHeads == 0, "attention: \(spec.heads) heads is not a multiple of \(spec.kvHeads) KV heads")
        precondition(spec.segments.first == 0, "attention: segments must start at 0")
        var tasks: [AttentionTask] = []
        let bounds = spec.segments + [nk]
        for s in 0 ..< spec.segments.count {
            let (ks, ke) = (bounds[s], bounds[s + 1])
            precondition(ks <= ke, "attention: segment starts must increase")
            // Queries whose key position falls inside this segment.
            let qs = max(0, ks - spec.queryOffset), qe = min(nq, ke - spec.queryOffset)
            if qs >= qe { continue }
            for g in 0 ..< spec.kvHeads {
                tasks.append(AttentionTask(keyStart: ks, keyEnd: ke, queryStart: qs, queryEnd: qe, kvHead: g))
            }
        }
        return tasks
    }

    /// Keys [lo, hi) that query block [q0, q1) may see, and fills `scores`
    /// ([q1−q0, hi−lo]) with softmax probabilities, writing lse when given.
    /// Returns the key range.
    @inline(__always)
    private func blockProbabilities(q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                                    head h: Int, kvHead g: Int, q0: Int, q1: Int, task t: AttentionTask,
                                    spec: AttentionSpec, scores: UnsafeMutablePointer<Float>,
                                    savedLSE: UnsafeMutablePointer<Float>?, writeLSE: Bool, nq: Int) -> (Int, Int) {
        let d = spec.headDim
        let (ldq, ldk) = (spec.heads * d, spec.kvHeads * d)
        let firstPos = spec.queryOffset + q0, lastPos = spec.queryOffset + q1 - 1
        var lo = t.keyStart
        if let w = spec.window { lo = max(lo, firstPos - w + 1) }
        let hi = min(t.keyEnd, lastPos + 1)
        let nk = hi - lo
        let bq = q1 - q0
        gemm(transA: false, transB: true, m: bq, n: nk, k: d, alpha: spec.scale,
             a: q + q0 * ldq + h * d, lda: ldq, b: k + lo * ldk + g * d, ldb: ldk,
             beta: 0, c: scores, ldc: nk, precision: computePrecision)
        for r in 0 ..< bq {
            let pos = firstPos + r
            let row = scores + r * nk
            // Visible keys of this query: [from, to] in absolute positions.
            var from = t.keyStart
            if let w = spec.window { from = max(from, pos - w + 1) }
            let to = pos
            let a = from - lo, b = to - lo  // inclusive, within the block's key range
            if writeLSE || savedLSE == nil {
                let l = loft_softmax_row(row + a, b - a + 1)
                if writeLSE, let savedLSE { savedLSE[h * nq + q0 + r] = l }
            } else if let savedLSE {
                _ = loft_exp_shifted(row + a, row + a, b - a + 1, savedLSE[h * nq + q0 + r])
            }
            if a > 0 { row.update(repeating: 0, count: a) }
            if b + 1 < nk { (row + b + 1).update(repeating: 0, count: nk - b - 1) }
        }
        return (lo, hi)
    }

    public func attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, spec: AttentionSpec) {
        let d = spec.headDim
        let nq = q.count / (spec.heads * d), nk = k.count / (spec.kvHeads * d)
        precondition(out.count == q.count && v.count == k.count && (lse == nil || lse!.count == spec.heads * nq),
                     "attention: q \(q.shape), k \(k.shape), v \(v.shape), out \(out.shape)")
        precondition(spec.queryOffset + nq <= nk, "attention: queries reach position \(spec.queryOffset + nq) past \(nk) keys")
        let tasks = attentionTasks(queries: nq, keys: nk, spec: spec)
        let (qp, kp, vp, op) = (q.floats, k.floats, v.floats, out.floats)
        let lp = lse?.floats
        let group = spec.heads / spec.kvHeads
        let (ldq, ldk) = (spec.heads * d, spec.kvHeads * d)
        BLAS.withThreads(1) { parallelFor(tasks.count) { ti in
            let t = tasks[ti]
            let block = Self.attentionBlock
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: block * (t.keyEnd - t.keyStart))
            defer { scores.deallocate() }
            for h in t.kvHead * group ..< (t.kvHead + 1) * group {
                var q0 = t.queryStart
                while q0 < t.queryEnd {
                    let q1 = min(q0 + block, t.queryEnd)
                    let (lo, hi) = blockProbabilities(q: qp, k: kp, head: h, kvHead: t.kvHead, q0: q0, q1: q1, task: t,
                                                      spec: spec, scores: scores, savedLSE: lp, writeLSE: true, nq: nq)
                    gemm(transA: false, transB: false, m: q1 - q0, n: d, k: hi - lo, alpha: 1,
                         a: scores, lda: hi - lo, b: vp + lo * ldk + t.kvHead * d, ldb: ldk,
                         beta: 0, c: op + q0 * ldq + h * d, ldc: ldq, precision: computePrecision)
                    q0 = q1
                }
            }
        } }
    }

    public func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                                  dq: Tensor, dk: Tensor, dv: Tensor, spec: AttentionSpec) {
        let d = spec.headDim
        let nq = q.count / (spec.heads * d), nk = k.count / (spec.kvHeads * d)
        precondition(dq.count == q.count && dk.count == k.count && dv.count == v.count && dOut.count == out.count,
                     "attentionBackward: shapes disagree")
        let tasks = attentionTasks(queries: nq, keys: nk, spec: spec)
        let (qp, kp, vp, op, gp, lp) = (q.floats, k.floats, v.floats, out.floats, dOut.floats, lse.floats)
        let (dqp, dkp, dvp) = (dq.floats, dk.floats, dv.floats)
        dqp.update(repeating: 0, count: dq.count)
        dkp.update(repeating: 0, count: dk.count)
        dvp.update(repeating: 0, count: dv.count)
        let group = spec.heads / spec.kvHeads
        let (ldq, ldk) = (spec.heads * d, spec.kvHeads * d)
        BLAS.withThreads(1) { parallelFor(tasks.count) { ti in
            let t = tasks[ti]
            let block = Self.attentionBlock
            let width = t.keyEnd - t.keyStart
            let probs = UnsafeMutablePointer<Float>.allocate(capacity: block * width)
            let dprobs = UnsafeMutablePointer<Float>.allocate(capacity: block * width)
            defer { probs.deallocate(); dprobs.deallocate() }
            for h in t.kvHead * group ..< (t.kvHead + 1) * group {
                var q0 = t.queryStart
                while q0 < t.queryEnd {
                    let q1 = min(q0 + block, t.queryEnd)
                    let bq = q1 - q0
                    let (lo, hi) = blockProbabilities(q: qp, k: kp, head: h, kvHead: t.kvHead, q0: q0, q1: q1, task: t,
                                                      spec: spec, scores: probs, savedLSE: lp, writeLSE: false, nq: nq)
                    let nkb = hi - lo
                    let kBlock = kp + lo * ldk + t.kvHead * d, vBlock = vp + lo * ldk + t.kvHead * d
                    let dkBlock = dkp + lo * ldk + t.kvHead * d, dvBlock = dvp + lo * ldk + t.kvHead * d
                    let gBlock = gp + q0 * ldq + h * d, oBlock = op + q0 * ldq + h * d
                    // dV += Pᵀ · dO
                    gemm(transA: true, transB: false, m: nkb, n: d, k: bq, alpha: 1, a: probs, lda: nkb,
                         b: gBlock, ldb: ldq, beta: 1, c: dvBlock, ldc: ldk, precision: computePrecision)
                    // dP = dO · Vᵀ
                    gemm(transA: false, transB: true, m: bq, n: nkb, k: d, alpha: 1, a: gBlock, lda: ldq,
                         b: vBlock, ldb: ldk, beta: 0, c: dprobs, ldc: nkb, precision: computePrecision)
                    // dS = P ⊙ (dP − rowsum(dO ⊙ O))
                    for r in 0 ..< bq {
                        var s: Float = 0
                        for j in 0 ..< d { s += gBlock[r * ldq + j] * oBlock[r * ldq + j] }
                        let pr = probs + r * nkb, dr = dprobs + r * nkb
                        for j in 0 ..< nkb { dr[j] = pr[j] * (dr[j] - s) }
                    }
                    // dQ += dS · K · scale ; dK += dSᵀ · Q · scale
                    gemm(transA: false, transB: false, m: bq, n: d, k: nkb, alpha: spec.scale, a: dprobs, lda: nkb,
                         b: kBlock, ldb: ldk, beta: 1, c: dqp + q0 * ldq + h * d, ldc: ldq, precision: computePrecision)
                    gemm(transA: true, transB: false, m: nkb, n: d, k: bq, alpha: spec.scale, a: dprobs, lda: nkb,
                         b: qp + q0 * ldq + h * d, ldb: ldq, beta: 1, c: dkBlock, ldc: ldk, precision: computePrecision)
                    q0 = q1
                }
            }
        } }
    }
}
