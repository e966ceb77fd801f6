/// The CUDA C source of every kernel the CUDA backend launches, one NVRTC
/// program per module. They are compiled at run time for the device's compute
/// capability (see `KernelCompiler`), so Loft builds without nvcc or CUDA
/// headers: the source uses only what NVRTC provides built in (no includes).
///
/// Conventions: every kernel is `extern "C"` (unmangled names), f32 unless a
/// name says otherwise, element counts are `long long`, and elementwise
/// kernels use grid-stride loops so any launch size covers any length.
public enum KernelSources {
    public struct Module: Sendable {
        public let name: String
        public let source: String
        /// The kernels a loaded module must provide.
        public let kernels: [String]
    }

    public static var all: [Module] { [common, elementwise, normalization, loss, quantization, attention] }

    /// Shared helpers, prepended to every module.
    static let prelude = #"""
    #define LOFT_FULL_MASK 0xffffffffu
    #define LOFT_INF __int_as_float(0x7f800000)

    __device__ __forceinline__ float loft_warp_sum(float v) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(LOFT_FULL_MASK, v, o);
        return v;
    }
    __device__ __forceinline__ float loft_warp_max(float v) {
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(LOFT_FULL_MASK, v, o));
        return v;
    }
    // Sum over the block (blockDim.x a multiple of 32, at most 1024); every
    // thread gets the result. `scratch` holds 32 floats.
    __device__ float loft_block_sum(float v, float *scratch) {
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        v = loft_warp_sum(v);
        __syncthreads();
        if (lane == 0) scratch[warp] = v;
        __syncthreads();
        float total = lane < warps ? scratch[lane] : 0.0f;
        return loft_warp_sum(total);
    }
    __device__ float loft_block_max(float v, float *scratch) {
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        v = loft_warp_max(v);
        __syncthreads();
        if (lane == 0) scratch[warp] = v;
        __syncthreads();
        float m = lane < warps ? scratch[lane] : -LOFT_INF;
        return loft_warp_max(m);
    }
    // bfloat16 as raw bits, rounded to nearest even as PyTorch (and Loft's
    // BFloat16.fromFloat) does; NaN stays NaN.
    __device__ __forceinline__ unsigned short loft_f32_to_bf16_bits(float x) {
        unsigned int bits = __float_as_uint(x);
        if (x != x) return (unsigned short)((bits >> 16) | 0x40);
        unsigned int rounding = 0x7fffu + ((bits >> 16) & 1u);
        return (unsigned short)((bits + rounding) >> 16);
    }
    __device__ __forceinline__ float loft_bf16_bits_to_f32(unsigned short h) {
        return __uint_as_float(((unsigned int)h) << 16);
    }
    // IEEE half (as in GGUF blocks) to float, subnormals and infinities included.
    __device__ __forceinline__ float loft_half_bits_to_f32(unsigned short h) {
        unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
        unsigned int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
        if (exponent == 0) {
            float v = (float)mantissa * 5.9604644775390625e-8f; // 2^-24
            return sign ? -v : v;
        }
        if (exponent == 31) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
        return __uint_as_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
    }
    """#

    static let common = Module(name: "common", source: prelude + "\n" + #"""
    extern "C" __global__ void loft_f32_to_bf16(const float *x, unsigned short *y, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
            y[i] = loft_f32_to_bf16_bits(x[i]);
    }
    extern "C" __global__ void loft_bf16_to_f32(const unsigned short *x, float *y, long long n) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
            y[i] = loft_bf16_bits_to_f32(x[i]);
    }
    // y[r, :] = bias (+ y[r, :] when accumulating): the bias of a linear layer,
    // written before the GEMM adds x·Wᵀ with beta = 1.
    extern "C" __global__ void loft_bias_rows(float *y, const float *bias, long long rows, int cols, int accumulate) {
        long long n = rows * cols;
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            float b = bias[i % cols];
            y[i] = accumulate ? y[i] + b : b;
        }
    }
    // The GEMM used where cuBLASLt offers no algorithm for a shape: column-major
    // D[m×n] (ld ldc) = op(A)·op(B) + beta·D, 16×16 tiles through shared memory,
    // f32 accumulation. op(A)[i][p] is A[i + p·lda], or A[p + i·lda] transposed.
    #define LOFT_GEMM_FALLBACK(NAME, T, LOAD)                                                          \
    extern "C" __global__ void NAME(int transA, int transB, int m, int n, int k, const T *A, int lda,   \
                                    const T *B, int ldb, float *C, int ldc, float beta) {             \
        __shared__ float as[16][17], bs[16][17];                                                       \
        int tx = threadIdx.x, ty = threadIdx.y;                                                        \
        int row = blockIdx.x * 16 + tx, col = blockIdx.y * 16 + ty;                                    \
        float acc = 0.0f;                                                                              \
        for (int t0 = 0; t0 < k; t0 += 16) {                                                           \
            int ak = t0 + ty, bk = t0 + tx;                                                            \
            as[ty][tx] = (row < m && ak < k)                                                           \
                ? LOAD(transA ? A[(long long)row * lda + ak] : A[(long long)ak * lda + row]) : 0.0f;   \
            bs[ty][tx] = (bk < k && col < n)                                                           \
                ? LOAD(transB ? B[(long long)bk * ldb + col] : B[(long long)col * ldb + bk]) : 0.0f;   \
            __syncthreads();                                                                           \
            for (int p = 0; p < 16; p++) acc += as[p][tx] * bs[ty][p];                                 \
            __syncthreads();                                                                           \
        }                                                                                              \
        if (row < m && col < n) {                                                                      \
            float *c = C + (long long)col * ldc + row;                                                 \
            *c = beta == 0.0f ? acc : acc + beta * *c;                                                 \
        }                                                                                              \
    }
    #define LOFT_LOAD_F32(x) (x)
    #define LOFT_LOAD_BF16(x) loft_bf16_bits_to_f32(x)
    LOFT_GEMM_FALLBACK(loft_gemm_fallback_f32, float, LOFT_LOAD_F32)
    LOFT_GEMM_FALLBACK(loft_gemm_fallback_bf16, unsigned short, LOFT_LOAD_BF16)
    """#, kernels: ["loft_f32_to_bf16", "loft_bf16_to_f32", "loft_bias_rows", "loft_gemm_fallback_f32", "loft_gemm_fallback_bf16"])

    static let elementwise = Module(name: "elementwise", source: prelude + "\n" + #"""
    #define LOFT_GRID_STRIDE(i, n) for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

    extern "C" __global__ void loft_add(const float *a, const float *b, float *y, long long n) {
        LOFT_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
    }
    extern "C" __global__ void loft_axpy(float alpha, const float *x, float *y, long long n) {
        LOFT_GRID_STRIDE(i, n) y[i] += alpha * x[i];
    }
    extern "C" __global__ void loft_scale(float *x, float alpha, long long n) {
        LOFT_GRID_STRIDE(i, n) x[i] *= alpha;
    }
    extern "C" __global__ void loft_multiply(const float *a, const float *b, float *y, long long n) {
        LOFT_GRID_STRIDE(i, n) y[i] = a[i] * b[i];
    }
    extern "C" __global__ void loft_swiglu(const float *gate, const float *up, float *out, long long n) {
        LOFT_GRID_STRIDE(i, n) {
            float x = gate[i];
            out[i] = x / (1.0f + expf(-x)) * up[i];
        }
    }
    extern "C" __global__ void loft_swiglu_backward(const float *dout, const float *gate, const float *up,
                                                    float *dgate, float *dup, long long n) {
        LOFT_GRID_STRIDE(i, n) {
            float x = gate[i];
            float s = 1.0f / (1.0f + expf(-x));
            float dy = dout[i], u = up[i];
            dup[i] = dy * x * s;
            dgate[i] = dy * u * s * (1.0f + x * (1.0f - s));
        }
    }
    // dst[r, at + c] = src[r, from + c] for c < count (a fused projection's columns).
    extern "C" __global__ void loft_copy_columns(const float *src, long long src_width, long long from,
                                                 float *dst, long long dst_width, long long at, long long count, long long n) {
        LOFT_GRID_STRIDE(i, n) {
            long long r = i / count, c = i % count;
            dst[r * dst_width + at + c] = src[r * src_width + from + c];
        }
    }
    // dst[i] = scale[i]·src[rows[i]] (gather) or dst[rows[i]] += scale[i]·src[i]
    // (scatter-add; rows distinct, so no two threads add to one element).
    extern "C" __global__ void loft_gather_rows(const float *src, const int *rows, const float *scales, float *dst,
                                                long long width, long long n) {
        LOFT_GRID_STRIDE(t, n) {
            long long i = t / width, j = t % width;
            float v = src[(long long)rows[i] * width + j];
            dst[t] = scales ? scales[i] * v : v;
        }
    }
    extern "C" __global__ void loft_scatter_add_rows(const float *src, const int *rows, const float *scales, float *dst,
                                                     long long width, long long n) {
        LOFT_GRID_STRIDE(t, n) {
            long long i = t / width, j = t % width;
            dst[(long long)rows[i] * width + j] += scales ? scales[i] * src[t] : src[t];
        }
    }
    extern "C" __global__ void loft_softcap(float *x, float cap, long long n) {
        LOFT_GRID_STRIDE(i, n) x[i] = cap * tanhf(x[i] / cap);
    }
    extern "C" __global__ void loft_softcap_backward(float *dy, const float *capped, float cap, long long n) {
        LOFT_GRID_STRIDE(i, n) { float u = capped[i] / cap; dy[i] *= 1.0f - u * u; }
    }
    // gelu_tanh(x) = x·sigmoid(2u), u = √(2/π)(x + 0.044715x³): the CPU kernel's form.
    extern "C" __global__ void loft_geglu(const float *gate, const float *up, float *out, long long n) {
        LOFT_GRID_STRIDE(i, n) {
            float x = gate[i];
            float s = 1.0f / (1.0f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
            out[i] = x * s * up[i];
        }
    }
    extern "C" __global__ void loft_geglu_backward(const float *dout, const float *gate, const float *up,
                                                   float *dgate, float *dup, long long n) {
        LOFT_GRID_STRIDE(i, n) {
            float x = gate[i];
            float s = 1.0f / (1.0f + expf(-1.5957691216057308f * (x + 0.044715f * x * x * x)));
            float dy = dout[i], u = up[i];
            dup[i] = dy * x * s;
            dgate[i] = dy * u * (s + x * s * (1.0f - s) * (1.5957691216057308f * (1.0f + 0.134145f * x * x)));
        }
    }
    // The CPU backend's stream exactly: SplitMix64 of (seed + index · golden
    // ratio), top 24 bits as a uniform in [0, 1); the same seed gives the same
    // mask on either backend.
    extern "C" __global__ void loft_dropout_mask(float *mask, long long n, float p, float keep, unsigned long long seed) {
        LOFT_GRID_STRIDE(i, n) {
            unsigned long long z = seed + (unsigned long long)i * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            float u = (float)(z >> 40) / 16777216.0f;
            mask[i] = u < p ? 0.0f : keep;
        }
    }
    // PyTorch's AdamW term for term (decay, moments, bias-corrected step); the
    // step's scalars are computed once on the host.
    extern "C" __global__ void loft_adamw(float *param, const float *grad, float *m, float *v, long long n,
                                          float decay, float beta1, float beta2, float eps, float stepSize, float bc2Sqrt) {
        LOFT_GRID_STRIDE(i, n) {
            float g = grad[i];
            float p = param[i] * decay;
            float mi = beta1 * m[i] + (1.0f - beta1) * g;
            float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            float denom = sqrtf(vi) / bc2Sqrt + eps;
            param[i] = p - stepSize * mi / denom;
        }
    }
    // One partial sum of squares per block, in double (a gradient norm over
    // millions of elements); the host adds the partials.
    extern "C" __global__ void loft_sum_of_squares(const float *x, long long n, double *partials) {
        __shared__ double scratch[32];
        double acc = 0.0;
        LOFT_GRID_STRIDE(i, n) { double v = x[i]; acc += v * v; }
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(LOFT_FULL_MASK, acc, o);
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        if (lane == 0) scratch[warp] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            double total = 0.0;
            for (int w = 0; w < (int)(blockDim.x >> 5); w++) total += scratch[w];
            partials[blockIdx.x] = total;
        }
    }
    extern "C" __global__ void loft_embedding(const int *ids, const float *table, float *out, long long n, int d) {
        LOFT_GRID_STRIDE(i, n * d) {
            long long row = i / d;
            out[i] = table[(long long)ids[row] * d + (i - row * d)];
        }
    }
    // Rows repeat when a token does, so the scatter adds atomically.
    extern "C" __global__ void loft_embedding_backward(const int *ids, const float *dout, float *dtable, long long n, int d) {
        LOFT_GRID_STRIDE(i, n * d) {
            long long row = i / d;
            atomicAdd(&dtable[(long long)ids[row] * d + (i - row * d)], dout[i]);
        }
    }
    // DoRA's per-output-column scaling and column dot products. One thread
    // per column walks the rows in order (neighbouring threads read
    // neighbouring columns), so the double sum is deterministic.
    extern "C" __global__ void loft_scale_columns(const float *x, const float *scales, float *y,
                                                  long long rows, int cols, int accumulate) {
        LOFT_GRID_STRIDE(i, rows * cols) {
            float v = x[i] * scales[i % cols];
            y[i] = accumulate ? y[i] + v : v;
        }
    }
    extern "C" __global__ void loft_column_dots(const float *a, const float *b, float *out,
                                                long long rows, int cols, int accumulate) {
        int j = blockIdx.x * blockDim.x + threadIdx.x;
        if (j >= cols) return;
        double acc = accumulate ? (double)out[j] : 0.0;
        for (long long r = 0; r < rows; r++) acc += (double)a[r * cols + j] * (double)b[r * cols + j];
        out[j] = (float)acc;
    }
    """#, kernels: ["loft_add", "loft_axpy", "loft_scale", "loft_multiply", "loft_swiglu", "loft_swiglu_backward",
                    "loft_geglu", "loft_geglu_backward", "loft_softcap", "loft_softcap_backward", "loft_copy_columns",
                    "loft_gather_rows", "loft_scatter_add_rows",
                    "loft_dropout_mask", "loft_adamw", "loft_sum_of_squares", "loft_embedding", "loft_embedding_backward",
                    "loft_scale_columns", "loft_column_dots"])

    static let normalization = Module(name: "normalization", source: prelude + "\n" + #"""
    // One block per row: y = x · rsqrt(mean(x²) + eps) · (w + offset).
    extern "C" __global__ void loft_rms_norm(const float *x, const float *w, float *y, float *rstd,
                                             long long rows, int d, float eps, float offset) {
        __shared__ float scratch[32];
        long long r = blockIdx.x;
        if (r >= rows) return;
        const float *xr = x + r * d;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < d; j += blockDim.x) ss += xr[j] * xr[j];
        ss = loft_block_sum(ss, scratch);
        float inv = rsqrtf(ss / (float)d + eps);
        if (rstd != 0 && threadIdx.x == 0) rstd[r] = inv;
        for (int j = threadIdx.x; j < d; j += blockDim.x) y[r * d + j] = (w[j] + offset) * (xr[j] * inv);
    }
    // dx = r·(w⊙dy) − r³/d · x · Σ(w⊙dy⊙x), one block per row.
    extern "C" __global__ void loft_rms_norm_backward(const float *dy, const float *x, const float *w, const float *rstd,
                                                      float *dx, long long rows, int d, float offset, int accumulate) {
        __shared__ float scratch[32];
        long long r = blockIdx.x;
        if (r >= rows) return;
        const float *xr = x + r * d, *gr = dy + r * d;
        float inv = rstd[r];
        float dot = 0.0f;
        for (int j = threadIdx.x; j < d; j += blockDim.x) dot += (w[j] + offset) * gr[j] * xr[j];
        dot = loft_block_sum(dot, scratch);
        float c = dot * inv * inv * inv / (float)d;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            float g = inv * (w[j] + offset) * gr[j] - c * xr[j];
            dx[r * d + j] = accumulate ? dx[r * d + j] + g : g;
        }
    }
    // dw[j] += Σ_rows dy·x·rstd: one thread per column, rows in order, so the
    // sum is deterministic.
    extern "C" __global__ void loft_rms_norm_weight_grad(const float *dy, const float *x, const float *rstd, float *dw,
                                                         long long rows, int d) {
        int j = blockIdx.x * blockDim.x + threadIdx.x;
        if (j >= d) return;
        float acc = 0.0f;
        for (long long r = 0; r < rows; r++) acc += dy[r * d + j] * x[r * d + j] * rstd[r];
        dw[j] += acc;
    }
    // Rotate-half RoPE in place: one thread per (row, head, i < D/2). Angles in
    // f32 as transformers computes them; sign = −1 applies the inverse rotation.
    // Rotates pairs (i, i + half) of each head's first 2·half dimensions (half
    // = headDim/2, or less with partial rotary); the rest pass through.
    extern "C" __global__ void loft_rope(float *x, const int *positions, const float *invFreq, long long rows,
                                         int heads, int headDim, int half, float scale, float sign) {
        long long n = rows * heads * half;
        for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
            int i = (int)(t % half);
            long long rh = t / half;
            int h = (int)(rh % heads);
            long long r = rh / heads;
            float angle = (float)positions[r] * invFreq[i];
            float c = cosf(angle) * scale, s = sign * sinf(angle) * scale;
            float *v = x + r * (long long)heads * headDim + (long long)h * headDim;
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = b * c + a * s;
        }
    }
    """#, kernels: ["loft_rms_norm", "loft_rms_norm_backward", "loft_rms_norm_weight_grad", "loft_rope"])

    static let loss = Module(name: "loss", source: prelude + "\n" + #"""
    // Softmax cross-entropy, one block per row of logits [rows, V]. rowLoss[r]
    // = lse − logit[label] (0 for label < 0); when dlogits is given it gets
    // (softmax − onehot)·gradScale. dlogits may alias logits: every read of a
    // row happens before the barrier that precedes its writes, and the write
    // pass reads each element just before overwriting it.
    extern "C" __global__ void loft_cross_entropy(const float *logits, const int *labels, float *dlogits, float *rowLoss,
                                                  long long rows, int V, float gradScale) {
        __shared__ float scratch[32];
        long long r = blockIdx.x;
        if (r >= rows) return;
        const float *row = logits + r * V;
        int label = labels[r];
        if (label < 0) {
            if (threadIdx.x == 0) rowLoss[r] = 0.0f;
            if (dlogits != 0) for (int j = threadIdx.x; j < V; j += blockDim.x) dlogits[r * V + j] = 0.0f;
            return;
        }
        float mx = -LOFT_INF;
        for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
        mx = loft_block_max(mx, scratch);
        float sum = 0.0f;
        for (int j = threadIdx.x; j < V; j += blockDim.x) sum += expf(row[j] - mx);
        sum = loft_block_sum(sum, scratch);
        float lse = mx + logf(sum);
        float target = row[label];
        __syncthreads();
        if (threadIdx.x == 0) rowLoss[r] = lse - target;
        if (dlogits != 0) {
            for (int j = threadIdx.x; j < V; j += blockDim.x) {
                float g = expf(row[j] - lse) * gradScale;
                if (j == label) g -= gradScale;
                dlogits[r * V + j] = g;
            }
        }
    }
    """#, kernels: ["loft_cross_entropy"])

    static let quantization = Module(name: "quantization", source: prelude + "\n" + #"""
    // bitsandbytes NF4: blocks of `blocksize` values share one absmax; each
    // byte packs two 4-bit codes, the first value in the high nibble.
    __constant__ float loft_nf4_codebook[16] = {
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f };

    extern "C" __global__ void loft_dequant_nf4(const unsigned char *packed, const float *absmax, float *out,
                                                long long n, int blocksize) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
            unsigned char byte = packed[i >> 1];
            int code = (i & 1) ? (byte & 0x0f) : (byte >> 4);
            out[i] = loft_nf4_codebook[code] * absmax[i / blocksize];
        }
    }
    // GGUF Q4_0: 18-byte blocks of 32 values, a half scale d then 16 bytes;
    // value j < 16 is (low nibble of byte j) − 8, value j + 16 the high nibble.
    extern "C" __global__ void loft_dequant_q4_0(const unsigned char *blocks, float *out, long long nblocks) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nblocks * 32; i += (long long)gridDim.x * blockDim.x) {
            const unsigned char *b = blocks + (i / 32) * 18;
            int j = (int)(i % 32);
            float d = loft_half_bits_to_f32((unsigned short)(b[0] | (b[1] << 8)));
            unsigned char q = b[2 + (j & 15)];
            int code = j < 16 ? (q & 0x0f) : (q >> 4);
            out[i] = (float)(code - 8) * d;
        }
    }
    // GGUF Q8_0: 34-byte blocks of 32 values, a half scale d then 32 int8.
    extern "C" __global__ void loft_dequant_q8_0(const unsigned char *blocks, float *out, long long nblocks) {
        for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < nblocks * 32; i += (long long)gridDim.x * blockDim.x) {
            const unsigned char *b = blocks + (i / 32) * 34;
            float d = loft_half_bits_to_f32((unsigned short)(b[0] | (b[1] << 8)));
            out[i] = (float)(signed char)b[2 + (i % 32)] * d;
        }
    }
    """#, kernels: ["loft_dequant_nf4", "loft_dequant_q4_0", "loft_dequant_q8_0"])
}
