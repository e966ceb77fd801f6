extension KernelSources {
    /// Flash-attention style causal attention: scores never exist whole.
    /// Queries go a warp each, keys stream through shared memory 16 at a time,
    /// and the softmax is kept online (running max m and sum l per query).
    ///
    /// Visibility is passed in one array: lo[i] is the first key query i sees
    /// (its packed segment's start, raised by the sliding window), and it sees
    /// keys lo[i] … queryOffset + i. lo never decreases with i, which is what
    /// lets a block of consecutive queries share one key range.
    ///
    /// A warp scores 16 keys at once: lanes l and l+16 each take half of the
    /// head dimension for key l and add their halves with one shuffle. Each
    /// lane then owns output dimensions lane, lane+32, … (up to 8 of them, so
    /// head sizes up to 256). Shared memory stays under 48 KB for D ≤ 256.
    static let attention = Module(name: "attention", source: prelude + "\n" + #"""
    #define LOFT_ATT_KEYS 16
    #define LOFT_ATT_MAXT 8

    // Half of a dot product of length d between a and b (lanes 0–15 take the
    // first half, 16–31 the second), completed across the half-warps.
    __device__ __forceinline__ float loft_split_dot(const float *a, const float *b, int d, int lane) {
        int halfLen = d >> 1, from = (lane >> 4) * halfLen;
        float s = 0.0f;
        for (int t = 0; t < halfLen; t++) s += a[from + t] * b[from + t];
        return s + __shfl_xor_sync(LOFT_FULL_MASK, s, 16);
    }

    // grid (ceil(nq / 8), H), block 256: warp w takes query blockIdx.x·8 + w of head blockIdx.y.
    extern "C" __global__ void loft_attention_forward(const float *q, const float *k, const float *v, float *out, float *lse,
                                                      const int *lo, int nq, int nk, int H, int KV, int D, int qoff, float scale) {
        extern __shared__ float smem[];
        const int warps = 8;
        float *qs = smem;                                  // [8][D], pre-scaled
        float *ks = qs + warps * D;                        // [16][D+1]
        float *vs = ks + LOFT_ATT_KEYS * (D + 1);          // [16][D]
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        int h = blockIdx.y, g = h / (H / KV);
        int ldq = H * D, ldk = KV * D;
        int i0 = blockIdx.x * warps, i = i0 + warp;
        bool active = i < nq;
        for (int idx = threadIdx.x; idx < warps * D; idx += blockDim.x) {
            int r = idx / D, c = idx - r * D;
            qs[idx] = (i0 + r < nq) ? q[(long long)(i0 + r) * ldq + h * D + c] * scale : 0.0f;
        }
        int lastQuery = min(i0 + warps, nq) - 1;
        int keyFrom = lo[i0], keyTo = qoff + lastQuery + 1;
        int myLo = active ? lo[i] : 0, myPos = qoff + i;
        float m = -LOFT_INF, l = 0.0f, acc[LOFT_ATT_MAXT];
        for (int t = 0; t < LOFT_ATT_MAXT; t++) acc[t] = 0.0f;
        for (int kt = keyFrom; kt < keyTo; kt += LOFT_ATT_KEYS) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < LOFT_ATT_KEYS * D; idx += blockDim.x) {
                int r = idx / D, c = idx - r * D, key = kt + r;
                bool in = key < nk;
                ks[r * (D + 1) + c] = in ? k[(long long)key * ldk + g * D + c] : 0.0f;
                vs[r * D + c] = in ? v[(long long)key * ldk + g * D + c] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            int j = lane & 15, key = kt + j;
            float s = loft_split_dot(qs + warp * D, ks + j * (D + 1), D, lane);
            bool visible = key >= myLo && key <= myPos;
            s = visible ? s : -LOFT_INF;
            float tileMax = loft_warp_max(s);
            if (tileMax == -LOFT_INF) continue;
            float mNew = fmaxf(m, tileMax);
            float p = visible ? expf(s - mNew) : 0.0f;
            float tileSum = loft_warp_sum(lane < 16 ? p : 0.0f);
            float alpha = expf(m - mNew);
            l = l * alpha + tileSum;
            for (int t = 0; t < LOFT_ATT_MAXT; t++) acc[t] *= alpha;
            for (int jj = 0; jj < LOFT_ATT_KEYS; jj++) {
                float pj = __shfl_sync(LOFT_FULL_MASK, p, jj);
                if (pj == 0.0f) continue;
                for (int t = 0; t < LOFT_ATT_MAXT; t++) {
                    int c = lane + 32 * t;
                    if (c < D) acc[t] += pj * vs[jj * D + c];
                }
            }
            m = mNew;
        }
        if (!active) return;
        float invL = 1.0f / l;
        for (int t = 0; t < LOFT_ATT_MAXT; t++) {
            int c = lane + 32 * t;
            if (c < D) out[(long long)i * ldq + h * D + c] = acc[t] * invL;
        }
        if (lse != 0 && lane == 0) lse[(long long)h * nq + i] = m + logf(l);
    }

    // delta[h, i] = Σ_d dOut·Out (the softmax backward's row term); one warp per (i, h).
    extern "C" __global__ void loft_attention_delta(const float *dout, const float *out, float *delta, int nq, int H, int D) {
        long long w = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5;
        int lane = threadIdx.x & 31;
        if (w >= (long long)nq * H) return;
        int i = (int)(w / H), h = (int)(w % H);
        const float *a = dout + (long long)i * H * D + h * D, *b = out + (long long)i * H * D + h * D;
        float s = 0.0f;
        for (int c = lane; c < D; c += 32) s += a[c] * b[c];
        s = loft_warp_sum(s);
        if (lane == 0) delta[(long long)h * nq + i] = s;
    }

    // dQ: grid (ceil(nq / 4), H), block 128. P is recomputed from the saved lse;
    // dS = P ⊙ (dO·Vᵀ − delta); dQ = scale · dS · K.
    extern "C" __global__ void loft_attention_backward_dq(const float *q, const float *k, const float *v, const float *dout,
                                                          const float *lse, const float *delta, const int *lo, float *dq,
                                                          int nq, int nk, int H, int KV, int D, int qoff, float scale) {
        extern __shared__ float smem[];
        const int warps = 4;
        float *qs = smem;                                  // [4][D], pre-scaled
        float *gs = qs + warps * D;                        // [4][D], dOut
        float *ks = gs + warps * D;                        // [16][D+1]
        float *vs = ks + LOFT_ATT_KEYS * (D + 1);          // [16][D+1]
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        int h = blockIdx.y, g = h / (H / KV);
        int ldq = H * D, ldk = KV * D;
        int i0 = blockIdx.x * warps, i = i0 + warp;
        bool active = i < nq;
        for (int idx = threadIdx.x; idx < warps * D; idx += blockDim.x) {
            int r = idx / D, c = idx - r * D;
            bool in = i0 + r < nq;
            qs[idx] = in ? q[(long long)(i0 + r) * ldq + h * D + c] * scale : 0.0f;
            gs[idx] = in ? dout[(long long)(i0 + r) * ldq + h * D + c] : 0.0f;
        }
        int lastQuery = min(i0 + warps, nq) - 1;
        int keyFrom = lo[i0], keyTo = qoff + lastQuery + 1;
        int myLo = active ? lo[i] : 0, myPos = qoff + i;
        float myLse = active ? lse[(long long)h * nq + i] : 0.0f, myDelta = active ? delta[(long long)h * nq + i] : 0.0f;
        float acc[LOFT_ATT_MAXT];
        for (int t = 0; t < LOFT_ATT_MAXT; t++) acc[t] = 0.0f;
        for (int kt = keyFrom; kt < keyTo; kt += LOFT_ATT_KEYS) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < LOFT_ATT_KEYS * D; idx += blockDim.x) {
                int r = idx / D, c = idx - r * D, key = kt + r;
                bool in = key < nk;
                ks[r * (D + 1) + c] = in ? k[(long long)key * ldk + g * D + c] : 0.0f;
                vs[r * (D + 1) + c] = in ? v[(long long)key * ldk + g * D + c] : 0.0f;
            }
            __syncthreads();
            if (!active) continue;
            int j = lane & 15, key = kt + j;
            float s = loft_split_dot(qs + warp * D, ks + j * (D + 1), D, lane);
            float dp = loft_split_dot(gs + warp * D, vs + j * (D + 1), D, lane);
            bool visible = key >= myLo && key <= myPos;
            float p = visible ? expf(s - myLse) : 0.0f;
            float ds = p * (dp - myDelta);
            for (int jj = 0; jj < LOFT_ATT_KEYS; jj++) {
                float dsj = __shfl_sync(LOFT_FULL_MASK, ds, jj);
                if (dsj == 0.0f) continue;
                for (int t = 0; t < LOFT_ATT_MAXT; t++) {
                    int c = lane + 32 * t;
                    if (c < D) acc[t] += dsj * ks[jj * (D + 1) + c];
                }
            }
        }
        if (!active) return;
        for (int t = 0; t < LOFT_ATT_MAXT; t++) {
            int c = lane + 32 * t;
            if (c < D) dq[(long long)i * ldq + h * D + c] = acc[t] * scale;
        }
    }

    // dK, dV: grid (ceil(nk / 4), KV), block 128; warp w takes key blockIdx.x·4 + w
    // of KV head blockIdx.y and walks every query head of its group and every
    // query that sees it (queries qStart … qEnd[key]), 16 queries at a time.
    // Each key's gradient is summed by one warp in a fixed order: no atomics.
    extern "C" __global__ void loft_attention_backward_dkdv(const float *q, const float *k, const float *v, const float *dout,
                                                            const float *lse, const float *delta, const int *lo, const int *qEnd,
                                                            float *dk, float *dv, int nq, int nk, int H, int KV, int D,
                                                            int qoff, float scale) {
        extern __shared__ float smem[];
        const int warps = 4;
        float *kj = smem;                                  // [4][D]
        float *vj = kj + warps * D;                        // [4][D]
        float *qt = vj + warps * D;                        // [16][D+1], pre-scaled
        float *gt = qt + LOFT_ATT_KEYS * (D + 1);          // [16][D+1], dOut
        float *lseT = gt + LOFT_ATT_KEYS * (D + 1);        // [16]
        float *deltaT = lseT + LOFT_ATT_KEYS;              // [16]
        int *loT = (int *)(deltaT + LOFT_ATT_KEYS);        // [16]
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        int g = blockIdx.y, group = H / KV;
        int ldq = H * D, ldk = KV * D;
        int j0 = blockIdx.x * warps, j = j0 + warp;
        bool active = j < nk;
        for (int idx = threadIdx.x; idx < warps * D; idx += blockDim.x) {
            int r = idx / D, c = idx - r * D;
            bool in = j0 + r < nk;
            kj[idx] = in ? k[(long long)(j0 + r) * ldk + g * D + c] : 0.0f;
            vj[idx] = in ? v[(long long)(j0 + r) * ldk + g * D + c] : 0.0f;
        }
        int lastKey = min(j0 + warps, nk) - 1;
        int queryFrom = max(0, j0 - qoff), queryTo = qEnd[lastKey];
        float dkAcc[LOFT_ATT_MAXT], dvAcc[LOFT_ATT_MAXT];
        for (int t = 0; t < LOFT_ATT_MAXT; t++) { dkAcc[t] = 0.0f; dvAcc[t] = 0.0f; }
        for (int hh = 0; hh < group; hh++) {
            int h = g * group + hh;
            for (int it = queryFrom; it < queryTo; it += LOFT_ATT_KEYS) {
                __syncthreads();
                for (int idx = threadIdx.x; idx < LOFT_ATT_KEYS * D; idx += blockDim.x) {
                    int r = idx / D, c = idx - r * D, qi = it + r;
                    bool in = qi < nq;
                    qt[r * (D + 1) + c] = in ? q[(long long)qi * ldq + h * D + c] * scale : 0.0f;
                    gt[r * (D + 1) + c] = in ? dout[(long long)qi * ldq + h * D + c] : 0.0f;
                }
                if (threadIdx.x < LOFT_ATT_KEYS) {
                    int qi = it + threadIdx.x;
                    bool in = qi < nq;
                    lseT[threadIdx.x] = in ? lse[(long long)h * nq + qi] : 0.0f;
                    deltaT[threadIdx.x] = in ? delta[(long long)h * nq + qi] : 0.0f;
                    loT[threadIdx.x] = in ? lo[qi] : 0x7fffffff;
                }
                __syncthreads();
                if (!active) continue;
                int r = lane & 15, qi = it + r;
                float s = loft_split_dot(qt + r * (D + 1), kj + warp * D, D, lane);
                float dp = loft_split_dot(gt + r * (D + 1), vj + warp * D, D, lane);
                bool visible = qi < nq && loT[r] <= j && j <= qoff + qi;
                float p = visible ? expf(s - lseT[r]) : 0.0f;
                float ds = p * (dp - deltaT[r]);
                for (int rr = 0; rr < LOFT_ATT_KEYS; rr++) {
                    float pr = __shfl_sync(LOFT_FULL_MASK, p, rr);
                    float dsr = __shfl_sync(LOFT_FULL_MASK, ds, rr);
                    if (pr == 0.0f) continue;
                    for (int t = 0; t < LOFT_ATT_MAXT; t++) {
                        int c = lane + 32 * t;
                        if (c < D) {
                            dvAcc[t] += pr * gt[rr * (D + 1) + c];
                            dkAcc[t] += dsr * qt[rr * (D + 1) + c];
                        }
                    }
                }
            }
        }
        if (!active) return;
        for (int t = 0; t < LOFT_ATT_MAXT; t++) {
            int c = lane + 32 * t;
            if (c < D) {
                dk[(long long)j * ldk + g * D + c] = dkAcc[t];
                dv[(long long)j * ldk + g * D + c] = dvAcc[t];
            }
        }
    }
    """#, kernels: ["loft_attention_forward", "loft_attention_delta", "loft_attention_backward_dq",
                    "loft_attention_backward_dkdv"])
}
