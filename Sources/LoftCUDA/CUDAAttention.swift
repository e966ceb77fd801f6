import Foundation
import LoftTensors

extension CUDABackend {
    /// Head sizes the attention kernels hold in registers (8 per lane).
    public static let maxHeadDim = 256

    /// lo[i]: the first key query i sees (its segment's start, raised by the
    /// window); it sees keys lo[i] … queryOffset + i.
    static func firstVisibleKeys(queries nq: Int, keys nk: Int, spec: AttentionSpec) -> [Int32] {
        precondition(spec.segments.first == 0, "attention: segments must start at 0")
        var lo = [Int32](repeating: 0, count: nq)
        var s = 0
        for i in 0 ..< nq {
            let pos = spec.queryOffset + i
            while s + 1 < spec.segments.count && spec.segments[s + 1] <= pos { s += 1 }
            var first = spec.segments[s]
            if let w = spec.window { first = max(first, pos - w + 1) }
            lo[i] = Int32(first)
        }
        return lo
    }

    /// qEnd[j]: one past the last query that sees key j (lo never decreases,
    /// so those queries are the ones before the first with lo > j).
    static func lastSeeingQueries(lo: [Int32], keys nk: Int) -> [Int32] {
        var end = [Int32](repeating: Int32(lo.count), count: nk)
        var i = 0
        for j in 0 ..< nk {
            while i < lo.count && Int(lo[i]) <= j { i += 1 }
            end[j] = Int32(i)
        }
        return end
    }

    private func checkAttention(q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec) -> (Int, Int) {
        let d = spec.headDim
        precondition(spec.heads % spec.kvHeads == 0, "attention: \(spec.heads) heads is not a multiple of \(spec.kvHeads) KV heads")
        precondition(d % 2 == 0 && d <= Self.maxHeadDim, "attention: head size \(d) on CUDA must be even and at most \(Self.maxHeadDim)")
        let nq = q.count / (spec.heads * d), nk = k.count / (spec.kvHeads * d)
        precondition(v.count == k.count, "attention: k \(k.shape) and v \(v.shape) differ")
        precondition(spec.queryOffset + nq <= nk, "attention: queries reach position \(spec.queryOffset + nq) past \(nk) keys")
        // Models that soft-cap scores (Gemma 2) are refused on CUDA at load (LlamaModel.init).
        precondition(spec.softcap == nil, "attention: soft-capped scores (Gemma 2) are computed on the CPU backend only")
        return (nq, nk)
    }

    public func attention(q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor?, spec: AttentionSpec) {
        let (nq, nk) = checkAttention(q: q, k: k, v: v, spec: spec)
        let d = spec.headDim
        precondition(out.count == q.count && (lse == nil || lse!.count == spec.heads * nq),
                     "attention: q \(q.shape), out \(out.shape), lse \(lse?.shape ?? [])")
        if nq == 0 { return }
        let lo = gpu.temporary(Self.firstVisibleKeys(queries: nq, keys: nk, spec: spec))
        let shared = (8 * d + 16 * (d + 1) + 16 * d) * 4
        gpu.launch("loft_attention_forward", grid: ((nq + 7) / 8, spec.heads, 1), block: 256, sharedBytes: shared,
                   [.pointer(f32(q, "attention")), .pointer(f32(k, "attention")), .pointer(f32(v, "attention")),
                    .pointer(f32(out, "attention")), .pointer(lse.map { f32($0, "attention lse") } ?? 0),
                    .pointer(UInt64(UInt(bitPattern: lo.pointer))), .int(nq), .int(nk), .int(spec.heads), .int(spec.kvHeads),
                    .int(d), .int(spec.queryOffset), .float(spec.scale)])
        withExtendedLifetime(lo) {}
    }

    public func attentionBackward(dOut: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                                  dq: Tensor, dk: Tensor, dv: Tensor, spec: AttentionSpec) {
        let (nq, nk) = checkAttention(q: q, k: k, v: v, spec: spec)
        let d = spec.headDim
        precondition(dq.count == q.count && dk.count == k.count && dv.count == v.count && dOut.count == out.count
                     && lse.count == spec.heads * nq, "attentionBackward: shapes disagree")
        if nk == 0 { return }
        let loValues = Self.firstVisibleKeys(queries: nq, keys: nk, spec: spec)
        let lo = gpu.temporary(loValues)
        let qEnd = gpu.temporary(Self.lastSeeingQueries(lo: loValues, keys: nk))
        let delta = uninitialized([spec.heads * max(nq, 1)])
        let common: [KernelArgument] = [.int(nq), .int(nk), .int(spec.heads), .int(spec.kvHeads), .int(d),
                                        .int(spec.queryOffset), .float(spec.scale)]
        if nq > 0 {
            let warps = nq * spec.heads
            gpu.launch("loft_attention_delta", grid: ((warps + 7) / 8, 1, 1), block: 256,
                       [.pointer(f32(dOut, "attentionBackward")), .pointer(f32(out, "attentionBackward")), .pointer(ptr(delta)),
                        .int(nq), .int(spec.heads), .int(d)])
            gpu.launch("loft_attention_backward_dq", grid: ((nq + 3) / 4, spec.heads, 1), block: 128,
                       sharedBytes: (8 * d + 32 * (d + 1)) * 4,
                       [.pointer(ptr(q)), .pointer(ptr(k)), .pointer(ptr(v)), .pointer(ptr(dOut)), .pointer(f32(lse, "attention lse")),
                        .pointer(ptr(delta)), .pointer(UInt64(UInt(bitPattern: lo.pointer))), .pointer(f32(dq, "attentionBackward dq"))] + common)
        }
        gpu.launch("loft_attention_backward_dkdv", grid: ((nk + 3) / 4, spec.kvHeads, 1), block: 128,
                   sharedBytes: (8 * d + 32 * (d + 1) + 48) * 4,
                   [.pointer(ptr(q)), .pointer(ptr(k)), .pointer(ptr(v)), .pointer(ptr(dOut)), .pointer(ptr(lse)),
                    .pointer(ptr(delta)), .pointer(UInt64(UInt(bitPattern: lo.pointer))), .pointer(UInt64(UInt(bitPattern: qEnd.pointer))),
                    .pointer(f32(dk, "attentionBackward dk")), .pointer(f32(dv, "attentionBackward dv"))] + common)
        withExtendedLifetime((lo, qEnd, delta)) {}
    }
}

/// The attention kernels' host-side bookkeeping, public for tests.
public enum CUDABackendHostHelpers {
    public static func firstVisibleKeys(queries: Int, keys: Int, spec: AttentionSpec) -> [Int32] {
        CUDABackend.firstVisibleKeys(queries: queries, keys: keys, spec: spec)
    }
    public static func lastSeeingQueries(lo: [Int32], keys: Int) -> [Int32] {
        CUDABackend.lastSeeingQueries(lo: lo, keys: keys)
    }
}
