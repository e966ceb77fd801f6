import CLoftKernels
import Foundation

/// Causal attention computed a block of queries at a time: the score matrix
/// for one block is never larger than its rows × keys, so memory stays linear
/// in the sequence length; the two GEMMs per block go through `gemm` (BLAS,
/// in the backend's compute precision: the probabilities are rounded like
/// any GEMM input, as a bf16 attention kernel on a GPU rounds them). The
/// backward recomputes the probabilities from the saved log-sum-exp, as
/// FlashAttention does, instead of keeping them.
///
/// The query heads that share a KV head (grouped-query attention) are
/// stacked into one block: their rows are gathered into one matrix, so each
/// block is one GEMM against the shared keys and one against the shared
/// values (SmolLM2: 3 heads × 64 queries = 192 rows), not one per head.
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

    /// A block of queries [q0, q1) of every head in one KV head's group,
    /// stacked: stacked row i·n + r is query q0 + r of head `firstHead + i`.
    private struct StackedBlock {
        let q0: Int, n: Int, group: Int, firstHead: Int
        var rows: Int { group * n }

        /// Copies the block's rows of `src` (ld columns, head width d) into `dst` (rows × d).
        func gather(_ src: UnsafePointer<Float>, ld: Int, d: Int, into dst: UnsafeMutablePointer<Float>) {
            for i in 0 ..< group {
                for r in 0 ..< n {
                    (dst + (i * n + r) * d).update(from: src + (q0 + r) * ld + (firstHead + i) * d, count: d)
                }
            }
        }

        /// Writes `src` (rows × d) back to the block's rows of `dst`.
        func scatter(_ src: UnsafePointer<Float>, d: Int, into dst: UnsafeMutablePointer<Float>, ld: Int) {
            for i in 0 ..< group {
                for r in 0 ..< n {
                    (dst + (q0 + r) * ld + (firstHead + i) * d).update(from: src + (i * n + r) * d, count: d)
                }
            }
        }
    }

    /// The keys [lo, hi) the block may see; fills `scores` (rows × (hi − lo))
    /// with softmax probabilities of the stacked queries `qs` (rows × d),
    /// writing each row's log-sum-exp when `writeLSE`, or recomputing the
    /// probabilities from the saved one otherwise. With a soft-cap the capped
    /// scores are copied to `capped` when given (the backward's tanh′).
    @inline(__always)
    private func blockProbabilities(qs: UnsafePointer<Float>, k: UnsafePointer<Float>, block b: StackedBlock, task t: AttentionTask,
                                    spec: AttentionSpec, scores: UnsafeMutablePointer<Float>,
                                    lse: UnsafeMutablePointer<Float>?, writeLSE: Bool, nq: Int,
                                    capped: UnsafeMutablePointer<Float>? = nil) -> (Int, Int) {
        let d = spec.headDim
        let ldk = spec.kvHeads * d
        let firstPos = spec.queryOffset + b.q0, lastPos = firstPos + b.n - 1
        var lo = t.keyStart
        if let w = spec.window { lo = max(lo, firstPos - w + 1) }
        let hi = min(t.keyEnd, lastPos + 1)
        let nk = hi - lo
        gemm(transA: false, transB: true, m: b.rows, n: nk, k: d, alpha: spec.scale,
             a: qs, lda: d, b: k + lo * ldk + t.kvHead * d, ldb: ldk,
             beta: 0, c: scores, ldc: nk, precision: computePrecision)
        for row in 0 ..< b.rows {
            let r = row % b.n, head = b.firstHead + row / b.n
            let pos = firstPos + r
            let p = scores + row * nk
            // Visible keys of this query: [from, pos] in absolute positions.
            var from = t.keyStart
            if let w = spec.window { from = max(from, pos - w + 1) }
            let a = from - lo, last = pos - lo  // inclusive, within the block's key range
            if let cap = spec.softcap {
                let inverse = 1 / cap
                for j in a ... last { p[j] = cap * tanh(p[j] * inverse) }
                if let capped { (capped + row * nk).update(from: p, count: nk) }
            }
            if writeLSE || lse == nil {
                let l = loft_softmax_row(p + a, last - a + 1)
                if writeLSE, let lse { lse[head * nq + b.q0 + r] = l }
            } else if let lse {
                _ = loft_exp_shifted(p + a, p + a, last - a + 1, lse[head * nq + b.q0 + r])
            }
            if a > 0 { p.update(repeating: 0, count: a) }
            if last + 1 < nk { (p + last + 1).update(repeating: 0, count: nk - last - 1) }
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
            let maxRows = group * Self.attentionBlock
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * (t.keyEnd - t.keyStart))
            let qs = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * d)
            let os = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * d)
            defer { scores.deallocate(); qs.deallocate(); os.deallocate() }
            var q0 = t.queryStart
            while q0 < t.queryEnd {
                let b = StackedBlock(q0: q0, n: min(Self.attentionBlock, t.queryEnd - q0), group: group, firstHead: t.kvHead * group)
                b.gather(qp, ld: ldq, d: d, into: qs)
                let (lo, hi) = blockProbabilities(qs: qs, k: kp, block: b, task: t, spec: spec, scores: scores,
                                                  lse: lp, writeLSE: true, nq: nq)
                gemm(transA: false, transB: false, m: b.rows, n: d, k: hi - lo, alpha: 1,
                     a: scores, lda: hi - lo, b: vp + lo * ldk + t.kvHead * d, ldb: ldk,
                     beta: 0, c: os, ldc: d, precision: computePrecision)
                b.scatter(os, d: d, into: op, ld: ldq)
                q0 += b.n
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
        // Every query row of dq belongs to one block of one task and is written
        // whole there; dk and dv accumulate over the blocks of a task.
        dqp.update(repeating: 0, count: dq.count)
        dkp.update(repeating: 0, count: dk.count)
        dvp.update(repeating: 0, count: dv.count)
        let group = spec.heads / spec.kvHeads
        let (ldq, ldk) = (spec.heads * d, spec.kvHeads * d)
        BLAS.withThreads(1) { parallelFor(tasks.count) { ti in
            let t = tasks[ti]
            let maxRows = group * Self.attentionBlock
            let width = t.keyEnd - t.keyStart
            let probs = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * width)
            let dprobs = UnsafeMutablePointer<Float>.allocate(capacity: maxRows * width)
            // Stacked q, dO, O and dQ of one block.
            let stacked = UnsafeMutablePointer<Float>.allocate(capacity: 4 * maxRows * d)
            let capped: UnsafeMutablePointer<Float>? = spec.softcap == nil ? nil : .allocate(capacity: maxRows * width)
            defer { probs.deallocate(); dprobs.deallocate(); stacked.deallocate(); capped?.deallocate() }
            let (qs, gs, os, dqs) = (stacked, stacked + maxRows * d, stacked + 2 * maxRows * d, stacked + 3 * maxRows * d)
            var q0 = t.queryStart
            while q0 < t.queryEnd {
                let b = StackedBlock(q0: q0, n: min(Self.attentionBlock, t.queryEnd - q0), group: group, firstHead: t.kvHead * group)
                b.gather(qp, ld: ldq, d: d, into: qs)
                b.gather(gp, ld: ldq, d: d, into: gs)
                b.gather(op, ld: ldq, d: d, into: os)
                let (lo, hi) = blockProbabilities(qs: qs, k: kp, block: b, task: t, spec: spec, scores: probs,
                                                  lse: lp, writeLSE: false, nq: nq, capped: capped)
                let nkb = hi - lo, rows = b.rows
                let kBlock = kp + lo * ldk + t.kvHead * d, vBlock = vp + lo * ldk + t.kvHead * d
                let dkBlock = dkp + lo * ldk + t.kvHead * d, dvBlock = dvp + lo * ldk + t.kvHead * d
                // dV += Pᵀ · dO
                gemm(transA: true, transB: false, m: nkb, n: d, k: rows, alpha: 1, a: probs, lda: nkb,
                     b: gs, ldb: d, beta: 1, c: dvBlock, ldc: ldk, precision: computePrecision)
                // dP = dO · Vᵀ
                gemm(transA: false, transB: true, m: rows, n: nkb, k: d, alpha: 1, a: gs, lda: d,
                     b: vBlock, ldb: ldk, beta: 0, c: dprobs, ldc: nkb, precision: computePrecision)
                // dS = P ⊙ (dP − rowsum(dO ⊙ O))
                for r in 0 ..< rows {
                    var s: Float = 0
                    for j in 0 ..< d { s += gs[r * d + j] * os[r * d + j] }
                    let pr = probs + r * nkb, dr = dprobs + r * nkb
                    for j in 0 ..< nkb { dr[j] = pr[j] * (dr[j] - s) }
                    // Through the soft-cap: d(cap·tanh(x/cap))/dx = 1 − (capped/cap)².
                    if let cap = spec.softcap, let cr = capped.map({ $0 + r * nkb }) {
                        let inverse = 1 / cap
                        for j in 0 ..< nkb { let u = cr[j] * inverse; dr[j] *= 1 - u * u }
                    }
                }
                // dQ = dS · K · scale ; dK += dSᵀ · Q · scale
                gemm(transA: false, transB: false, m: rows, n: d, k: nkb, alpha: spec.scale, a: dprobs, lda: nkb,
                     b: kBlock, ldb: ldk, beta: 0, c: dqs, ldc: d, precision: computePrecision)
                b.scatter(dqs, d: d, into: dqp, ld: ldq)
                gemm(transA: true, transB: false, m: nkb, n: d, k: rows, alpha: spec.scale, a: dprobs, lda: nkb,
                     b: qs, ldb: d, beta: 1, c: dkBlock, ldc: ldk, precision: computePrecision)
                q0 += b.n
            }
        } }
    }
}
