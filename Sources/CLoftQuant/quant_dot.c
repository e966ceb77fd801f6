/*
 * Matrix-vector products on GGUF blocks (see CLoftQuant.h). Block layouts are
 * ggml's (ggml-common.h); the arithmetic is Loft's own: integer dot products
 * of 8-bit activations with the weights' integer codes, scaled once per block
 * (per sub-block for the K-quants' 6-bit scales).
 */
#include "CLoftQuant.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOFT_X86 1
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define LOFT_X86 0
#endif

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };

/* Activation blocks. 32-element types: f32 scale d, s = d·Σq (for formats
   with a minimum: Σ(dq + m)·x = d·Σq·x + m·s), the integer sum Σq (for
   formats with an offset: Σ(q - 8)·x = Σq·x - 8·Σq), 32 codes.
   K-quants: f32 scale, the integer sums of each 16 codes, 256 codes. */
typedef struct { float d; float s; int32_t sum; int8_t q[32]; } act32;
typedef struct { float d; int16_t bsums[16]; int8_t q[256]; } act256;

static int is_k(int type) { return type == T_Q4_K || type == T_Q5_K || type == T_Q6_K; }

int loft_qdot_supported(int type) {
    switch (type) {
    case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: case T_Q8_0:
    case T_Q4_K: case T_Q5_K: case T_Q6_K: return 1;
    default: return 0;
    }
}

int loft_qdot_f32_supported(int type) { return loft_qdot_supported(type); }

static int block_elements(int type) { return is_k(type) ? 256 : 32; }

size_t loft_qdot_row_bytes(int type, long k) {
    long blocks = k / block_elements(type);
    return (size_t)blocks * (is_k(type) ? sizeof(act256) : sizeof(act32));
}

/* ---- CPU dispatch ---- */

static int force_scalar_flag = 0;
static int have_avx2(void) {
#if LOFT_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return cached && !force_scalar_flag;
#else
    return 0;
#endif
}

void loft_qdot_force_scalar(int force_scalar) { force_scalar_flag = force_scalar; }
const char *loft_qdot_isa(void) { return have_avx2() ? "avx2" : "scalar"; }

/* ---- helpers ---- */

static inline float half_to_float(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7FFF, bits;
    float f;
    uint32_t shifted = em << 13;
    memcpy(&f, &shifted, 4);
    f *= 0x1p112f;
    memcpy(&bits, &f, 4);
    if (em >= 0x7C00) bits = (em << 13) | 0x7F800000u;
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint32_t load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* The j-th (scale, min) pair of Q4_K / Q5_K's 12-byte packed six-bit table. */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) { *sc = q[j] & 63; *mn = q[j + 4] & 63; }
    else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- activation quantization: d = absmax / 127, q = round(x / d) ---- */

static void quantize_row32(const float *x, long k, act32 *out) {
    for (long b = 0; b < k / 32; b++) {
        const float *v = x + b * 32;
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            int q = (int)nearbyintf(v[i] * id);
            q = q > 127 ? 127 : (q < -127 ? -127 : q);
            out[b].q[i] = (int8_t)q;
            sum += q;
        }
        out[b].d = d;
        out[b].s = d * (float)sum;
        out[b].sum = sum;
    }
}

static void quantize_row256(const float *x, long k, act256 *out) {
    for (long b = 0; b < k / 256; b++) {
        const float *v = x + b * 256;
        float amax = 0;
        for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int i = 16 * g; i < 16 * g + 16; i++) {
                int q = (int)nearbyintf(v[i] * id);
                q = q > 127 ? 127 : (q < -127 ? -127 : q);
                out[b].q[i] = (int8_t)q;
                s += q;
            }
            out[b].bsums[g] = (int16_t)s;
        }
        out[b].d = d;
    }
}

void loft_qdot_quantize(int type, const float *x, long n, long k, long ldx, void *xq) {
    size_t rb = loft_qdot_row_bytes(type, k);
    for (long j = 0; j < n; j++) {
        if (is_k(type)) quantize_row256(x + j * ldx, k, (act256 *)((uint8_t *)xq + j * rb));
        else quantize_row32(x + j * ldx, k, (act32 *)((uint8_t *)xq + j * rb));
    }
}

/* ---- scalar dot products of one weight row with one activation row ---- */

static float dot_scalar(int type, const uint8_t *w, long k, const void *xq) {
    float acc = 0;
    if (!is_k(type)) {
        const act32 *x = (const act32 *)xq;
        for (long b = 0; b < k / 32; b++) {
            const int8_t *xs = x[b].q;
            int32_t isum = 0;
            float part;
            switch (type) {
            case T_Q8_0: {
                const uint8_t *p = w + b * 34;
                const int8_t *qs = (const int8_t *)(p + 2);
                for (int i = 0; i < 32; i++) isum += qs[i] * xs[i];
                part = half_to_float(p) * x[b].d * (float)isum;
                break;
            }
            case T_Q4_0: case T_Q4_1: {
                int off = type == T_Q4_0 ? 2 : 4;
                const uint8_t *p = w + b * (type == T_Q4_0 ? 18 : 20), *qs = p + off;
                for (int i = 0; i < 16; i++) isum += (qs[i] & 15) * xs[i] + (qs[i] >> 4) * xs[i + 16];
                if (type == T_Q4_0) isum -= 8 * x[b].sum;
                part = half_to_float(p) * x[b].d * (float)isum;
                if (type == T_Q4_1) part += half_to_float(p + 2) * x[b].d * (float)x[b].sum;
                break;
            }
            default: { /* Q5_0, Q5_1 */
                int q51 = type == T_Q5_1;
                const uint8_t *p = w + b * (q51 ? 24 : 22);
                uint32_t qh = load_u32(p + (q51 ? 4 : 2));
                const uint8_t *qs = p + (q51 ? 8 : 6);
                for (int i = 0; i < 16; i++) {
                    int lo = (qs[i] & 15) | (((qh >> i) & 1) << 4), hi = (qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4);
                    isum += lo * xs[i] + hi * xs[i + 16];
                }
                if (!q51) isum -= 16 * x[b].sum;
                part = half_to_float(p) * x[b].d * (float)isum;
                if (q51) part += half_to_float(p + 2) * x[b].d * (float)x[b].sum;
                break;
            }
            }
            acc += part;
        }
        return acc;
    }
    const act256 *x = (const act256 *)xq;
    for (long b = 0; b < k / 256; b++) {
        const int8_t *xs = x[b].q;
        const int16_t *bs = x[b].bsums;
        if (type == T_Q6_K) {
            const uint8_t *p = w + b * 210, *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            int32_t isum = 0;
            for (int h = 0; h < 2; h++) for (int g = 0; g < 4; g++) for (int half = 0; half < 2; half++) {
                int e0 = 128 * h + 32 * g + 16 * half;
                const uint8_t *a = ql + 64 * h + 32 * (g % 2) + 16 * half, *c = qh + 32 * h + 16 * half;
                int s = 0;
                for (int l = 0; l < 16; l++) {
                    int q = ((a[l] >> (4 * (g / 2))) & 15) | (((c[l] >> (2 * g)) & 3) << 4);
                    s += q * xs[e0 + l];
                }
                isum += sc[e0 / 16] * (s - 32 * bs[e0 / 16]);
            }
            acc += half_to_float(p + 208) * x[b].d * (float)isum;
        } else {
            int q5 = type == T_Q5_K;
            const uint8_t *p = w + b * (q5 ? 176 : 144), *sb = p + 4;
            const uint8_t *qh = p + 16, *qs = p + (q5 ? 48 : 16);
            int32_t isum = 0, msum = 0;
            for (int j = 0; j < 8; j++) {
                int sc, mn;
                scale_min_k4(j, sb, &sc, &mn);
                const uint8_t *q = qs + 32 * (j / 2);
                int shift = 4 * (j % 2), s = 0;
                for (int l = 0; l < 32; l++) {
                    int v = (q[l] >> shift) & 15;
                    if (q5) v |= ((qh[l] >> j) & 1) << 4;
                    s += v * xs[32 * j + l];
                }
                isum += sc * s;
                msum += mn * (bs[2 * j] + bs[2 * j + 1]);
            }
            acc += half_to_float(p) * x[b].d * (float)isum - half_to_float(p + 2) * x[b].d * (float)msum;
        }
    }
    return acc;
}

/* ---- AVX2 ---- */
#if LOFT_X86

AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 static inline float h2f(const uint8_t *p) {
    uint16_t h; memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 32 nibbles of 16 bytes, low nibbles first (ggml's element order). */
AVX2 static inline __m256i nibbles32(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(15));
}

/* Byte i = 16 when bit i of qh is set, else 0. */
AVX2 static inline __m256i bits16_32(uint32_t qh) {
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303LL, 0x0202020202020202LL,
                                           0x0101010101010101LL, 0x0000000000000000LL);
    const __m256i mask = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
    return _mm256_and_si256(v, _mm256_set1_epi8(16));
}

/* 8 int32 sums of u8 (0..127 or so) × s8 products, pairs then quads. */
AVX2 static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* One 32-element weight block as 32 byte codes, with its scale d and the
   coefficient c of the activation block's sum (y += d·dx·Σq·x + c·dx·Σx):
   Q4_1/Q5_1 add their minimum m; Q4_0/Q5_0 are recentred to signed codes
   here (c = 0), as Q8_0 is. `signed_codes` says which maddubs form to use. */
AVX2 ALWAYS_INLINE __m256i block32(const int type, const uint8_t *w, long b, float *d, float *c) {
    switch (type) {
    case T_Q8_0: { const uint8_t *bp = w + b * 34; *d = h2f(bp); *c = 0;
        return _mm256_loadu_si256((const __m256i *)(bp + 2)); }
    case T_Q4_0: { const uint8_t *bp = w + b * 18; *d = h2f(bp); *c = 0;
        return _mm256_sub_epi8(nibbles32(bp + 2), _mm256_set1_epi8(8)); }
    case T_Q4_1: { const uint8_t *bp = w + b * 20; *d = h2f(bp); *c = h2f(bp + 2);
        return nibbles32(bp + 4); }
    case T_Q5_0: { const uint8_t *bp = w + b * 22; *d = h2f(bp); *c = 0;
        return _mm256_sub_epi8(_mm256_or_si256(nibbles32(bp + 6), bits16_32(load_u32(bp + 2))), _mm256_set1_epi8(16)); }
    default: { const uint8_t *bp = w + b * 24; *d = h2f(bp); *c = h2f(bp + 2);
        return _mm256_or_si256(nibbles32(bp + 8), bits16_32(load_u32(bp + 4))); }
    }
}

/* One weight row against NR (1..4) activation rows; blocks two at a time so
   that no accumulator waits on the one before. */
AVX2 ALWAYS_INLINE void rows32_avx2(const int type, const int NR, const uint8_t *w, long nb, const act32 *const *x, float *out) {
    const int is_signed = type == T_Q8_0 || type == T_Q4_0 || type == T_Q5_0;
    const int has_min = type == T_Q4_1 || type == T_Q5_1;
    __m256 acc[2][4];
    float accm[2][4];
    for (int u = 0; u < 2; u++) for (int j = 0; j < 4; j++) { acc[u][j] = _mm256_setzero_ps(); accm[u][j] = 0; }
    long b = 0;
    for (; b + 2 <= nb; b += 2) {
        for (int u = 0; u < 2; u++) {
            float d, c;
            __m256i q = block32(type, w, b + u, &d, &c);
            __m256i qa = is_signed ? _mm256_sign_epi8(q, q) : q;
            for (int j = 0; j < NR; j++) {
                const act32 *xb = x[j] + b + u;
                __m256i xs = _mm256_loadu_si256((const __m256i *)xb->q);
                if (is_signed) xs = _mm256_sign_epi8(xs, q);
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xs), _mm256_set1_epi16(1));
                acc[u][j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(p), acc[u][j]);
                if (has_min) accm[u][j] += c * xb->s;
            }
        }
    }
    for (; b < nb; b++) {
        float d, c;
        __m256i q = block32(type, w, b, &d, &c);
        __m256i qa = is_signed ? _mm256_sign_epi8(q, q) : q;
        for (int j = 0; j < NR; j++) {
            const act32 *xb = x[j] + b;
            __m256i xs = _mm256_loadu_si256((const __m256i *)xb->q);
            if (is_signed) xs = _mm256_sign_epi8(xs, q);
            __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qa, xs), _mm256_set1_epi16(1));
            acc[0][j] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(p), acc[0][j]);
            if (has_min) accm[0][j] += c * xb->s;
        }
    }
    for (int j = 0; j < NR; j++) out[j] = hsum8(_mm256_add_ps(acc[0][j], acc[1][j])) + accm[0][j] + accm[1][j];
}

/* One weight row of a K-quant against NR (1..4) activation rows: the scales
   are decoded and the codes unpacked once for all rows. */
AVX2 ALWAYS_INLINE void rowsk_avx2(const int type, const int NR, const uint8_t *w, long nb, const act256 *const *x, float *out) {
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
    __m256 acc[4];
    float extra[4];
    for (int j = 0; j < 4; j++) { acc[j] = _mm256_setzero_ps(); extra[j] = 0; }
    for (long b = 0; b < nb; b++) {
        __m256i isum[4];
        for (int j = 0; j < 4; j++) isum[j] = _mm256_setzero_si256();
        if (type == T_Q6_K) {
            const uint8_t *p = w + b * 210, *ql = p, *qh = p + 128;
            const int8_t *sc = (const int8_t *)(p + 192);
            for (int h = 0; h < 2; h++) {
                __m256i l0 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h));
                __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 64 * h + 32));
                __m256i hq = _mm256_loadu_si256((const __m256i *)(qh + 32 * h));
                for (int g = 0; g < 4; g++) {
                    __m256i lo = g == 0 ? _mm256_and_si256(l0, m4) : g == 1 ? _mm256_and_si256(l1, m4)
                               : g == 2 ? _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4) : _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4);
                    __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hq, 2 * g), m3), 4));
                    __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)sc[8 * h + 2 * g + 1]), _mm_set1_epi16((short)sc[8 * h + 2 * g]));
                    for (int j = 0; j < NR; j++) {
                        __m256i pr = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(x[j][b].q + 128 * h + 32 * g)));
                        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(pr, scv));
                    }
                }
            }
            /* codes are q + 32: Σ sc·(q - 32)·x = Σ sc·q·x - 32·Σ sc·bsum */
            const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
            float d = h2f(p + 208);
            for (int j = 0; j < NR; j++) {
                __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)x[j][b].bsums));
                isum[j] = _mm256_sub_epi32(isum[j], _mm256_slli_epi32(off, 5));
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][b].d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
            }
        } else {
            const int q5 = type == T_Q5_K;
            const uint8_t *p = w + b * (q5 ? 176 : 144), *sb = p + 4;
            const uint8_t *qs = p + (q5 ? 48 : 16);
            __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
            int sc[8], mn[8];
            for (int j = 0; j < 8; j++) scale_min_k4(j, sb, &sc[j], &mn[j]);
            for (int i = 0; i < 4; i++) {
                __m256i q32 = _mm256_loadu_si256((const __m256i *)(qs + 32 * i));
                __m256i lo = _mm256_and_si256(q32, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q32, 4), m4);
                if (q5) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * i), m1), 4));
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * i + 1), m1), 4));
                }
                const __m256i s0 = _mm256_set1_epi16((short)sc[2 * i]), s1 = _mm256_set1_epi16((short)sc[2 * i + 1]);
                for (int j = 0; j < NR; j++) {
                    const int8_t *xs = x[j][b].q + 64 * i;
                    __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xs)), s0);
                    __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xs + 32))), s1);
                    isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(plo, phi));
                }
            }
            float d = h2f(p), dmin = h2f(p + 2);
            for (int j = 0; j < NR; j++) {
                const int16_t *bs = x[j][b].bsums;
                int32_t msum = 0;
                for (int s2 = 0; s2 < 8; s2++) msum += mn[s2] * (bs[2 * s2] + bs[2 * s2 + 1]);
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[j][b].d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
                extra[j] -= dmin * x[j][b].d * (float)msum;
            }
        }
    }
    for (int j = 0; j < NR; j++) out[j] = hsum8(acc[j]) + extra[j];
}

/* Dispatch with the type and row count as constants, so each combination
   compiles to its own loop. */
#define ROWS_NR(FN, TYPE, ...) \
    switch (nr) { case 1: FN(TYPE, 1, __VA_ARGS__); break; case 2: FN(TYPE, 2, __VA_ARGS__); break; \
                  case 3: FN(TYPE, 3, __VA_ARGS__); break; default: FN(TYPE, 4, __VA_ARGS__); break; }

AVX2 static void rows_avx2(int type, int nr, const uint8_t *w, long k, const void *const *x, float *out) {
    const act32 *const *x32 = (const act32 *const *)x;
    const act256 *const *xk = (const act256 *const *)x;
    switch (type) {
    case T_Q8_0: ROWS_NR(rows32_avx2, T_Q8_0, w, k / 32, x32, out) break;
    case T_Q4_0: ROWS_NR(rows32_avx2, T_Q4_0, w, k / 32, x32, out) break;
    case T_Q4_1: ROWS_NR(rows32_avx2, T_Q4_1, w, k / 32, x32, out) break;
    case T_Q5_0: ROWS_NR(rows32_avx2, T_Q5_0, w, k / 32, x32, out) break;
    case T_Q5_1: ROWS_NR(rows32_avx2, T_Q5_1, w, k / 32, x32, out) break;
    case T_Q4_K: ROWS_NR(rowsk_avx2, T_Q4_K, w, k / 256, xk, out) break;
    case T_Q5_K: ROWS_NR(rowsk_avx2, T_Q5_K, w, k / 256, xk, out) break;
    default: ROWS_NR(rowsk_avx2, T_Q6_K, w, k / 256, xk, out) break;
    }
}

AVX2 static float dot_f32_avx2(const float *a, const float *b, long k) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= k; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= k; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < k; i++) s += a[i] * b[i];
    return s;
}

/* Q4_1 expanded to f32 in registers, 32 elements at a time, for up to 4 rows of x. */
AVX2 static void rows_f32_q4_1_avx2(const uint8_t *w, long k, const float *x, long n, long ldx, float *out) {
    for (long j0 = 0; j0 < n; j0 += 4) {
        long nj = n - j0 < 4 ? n - j0 : 4;
        __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (long b = 0; b < k / 32; b++) {
            const uint8_t *bp = w + b * 20;
            __m256 d = _mm256_set1_ps(h2f(bp)), m = _mm256_set1_ps(h2f(bp + 2));
            __m128i t = _mm_loadu_si128((const __m128i *)(bp + 4));
            __m128i lo = _mm_and_si128(t, _mm_set1_epi8(15)), hi = _mm_and_si128(_mm_srli_epi16(t, 4), _mm_set1_epi8(15));
            __m256 wv[4] = {
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), m),
                _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), m) };
            for (long j = 0; j < nj; j++) {
                const float *xv = x + (j0 + j) * ldx + b * 32;
                __m256 a = acc[j];
                for (int q = 0; q < 4; q++) a = _mm256_fmadd_ps(wv[q], _mm256_loadu_ps(xv + 8 * q), a);
                acc[j] = a;
            }
        }
        for (long j = 0; j < nj; j++) out[j0 + j] = hsum8(acc[j]);
    }
}
#endif

/* ---- scalar dequantization of one row (the float path's generic case) ---- */

static void dequant_row(int type, const uint8_t *w, long k, float *dst) {
    long nb = k / block_elements(type);
    for (long b = 0; b < nb; b++) {
        switch (type) {
        case T_Q8_0: { const uint8_t *p = w + b * 34; float d = half_to_float(p);
            for (int i = 0; i < 32; i++) dst[32 * b + i] = (float)((const int8_t *)(p + 2))[i] * d;
            break; }
        case T_Q4_0: { const uint8_t *p = w + b * 18; float d = half_to_float(p);
            for (int i = 0; i < 16; i++) { dst[32 * b + i] = d * (float)((p[2 + i] & 15) - 8); dst[32 * b + 16 + i] = d * (float)((p[2 + i] >> 4) - 8); } break; }
        case T_Q4_1: { const uint8_t *p = w + b * 20; float d = half_to_float(p), m = half_to_float(p + 2);
            for (int i = 0; i < 16; i++) { dst[32 * b + i] = d * (float)(p[4 + i] & 15) + m; dst[32 * b + 16 + i] = d * (float)(p[4 + i] >> 4) + m; } break; }
        case T_Q5_0: case T_Q5_1: { int q51 = type == T_Q5_1; const uint8_t *p = w + b * (q51 ? 24 : 22);
            float d = half_to_float(p), m = q51 ? half_to_float(p + 2) : 0; uint32_t qh = load_u32(p + (q51 ? 4 : 2));
            const uint8_t *qs = p + (q51 ? 8 : 6); int off = q51 ? 0 : 16;
            for (int i = 0; i < 16; i++) {
                dst[32 * b + i] = d * (float)((int)((qs[i] & 15) | (((qh >> i) & 1) << 4)) - off) + m;
                dst[32 * b + 16 + i] = d * (float)((int)((qs[i] >> 4) | (((qh >> (i + 16)) & 1) << 4)) - off) + m;
            } break; }
        case T_Q6_K: { const uint8_t *p = w + b * 210; const int8_t *sc = (const int8_t *)(p + 192); float d = half_to_float(p + 208);
            for (int h = 0; h < 2; h++) for (int g = 0; g < 4; g++) for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * g + l;
                int q = ((p[64 * h + 32 * (g % 2) + l] >> (4 * (g / 2))) & 15) | (((p[128 + 32 * h + l] >> (2 * g)) & 3) << 4);
                dst[256 * b + e] = d * (float)sc[e / 16] * (float)(q - 32);
            } break; }
        default: { int q5 = type == T_Q5_K; const uint8_t *p = w + b * (q5 ? 176 : 144), *sb = p + 4, *qh = p + 16, *qs = p + (q5 ? 48 : 16);
            float d = half_to_float(p), dmin = half_to_float(p + 2);
            for (int j = 0; j < 8; j++) { int sc, mn; scale_min_k4(j, sb, &sc, &mn);
                float d1 = d * (float)sc, m1 = dmin * (float)mn;
                for (int l = 0; l < 32; l++) {
                    int v = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
                    if (q5) v |= ((qh[l] >> j) & 1) << 4;
                    dst[256 * b + 32 * j + l] = d1 * (float)v - m1;
                } } break; }
        }
    }
}

/* ---- the row loops ---- */

void loft_qdot_rows(int type, const void *w, long row_bytes, const int32_t *row_map,
                    long r0, long r1, long k, const void *xq, long n, float *y, long ldy, int accumulate) {
    loft_qdot_rows_side(type, w, row_bytes, row_map, r0, r1, k, xq, n, y, ldy, accumulate, NULL, NULL, 0);
}

void loft_qdot_rows_side(int type, const void *w, long row_bytes, const int32_t *row_map,
                         long r0, long r1, long k, const void *xq, long n, float *y, long ldy, int accumulate,
                         const void *const *regions, const long *sizes, int count) {
    size_t xb = loft_qdot_row_bytes(type, k);
    int avx2 = have_avx2();
    long lines = 0, asked = 0, offset = 0;   /* offset: the next line's byte in region `region` */
    int region = 0;
    for (int i = 0; i < count; i++) lines += (sizes[i] + 63) / 64;
    for (long r = r0; r < r1; r++) {
        /* the side lines due by the end of this row (spread evenly) */
        long due = lines * (r - r0 + 1) / (r1 - r0);
        for (; asked < due; asked++) {
            while (offset >= sizes[region]) { region++; offset = 0; }
            __builtin_prefetch((const char *)regions[region] + offset, 0, 2);
            offset += 64;
        }
        const uint8_t *wr = (const uint8_t *)w + (row_map ? row_map[r] : r) * row_bytes;
        for (long j0 = 0; j0 < n; j0 += 4) {
            int nr = n - j0 < 4 ? (int)(n - j0) : 4;
            const void *xs[4];
            float v[4];
            for (int j = 0; j < nr; j++) xs[j] = (const uint8_t *)xq + (j0 + j) * xb;
#if LOFT_X86
            if (avx2) rows_avx2(type, nr, wr, k, xs, v);
            else
#endif
            for (int j = 0; j < nr; j++) v[j] = dot_scalar(type, wr, k, xs[j]);
            for (int j = 0; j < nr; j++) {
                if (accumulate) y[(j0 + j) * ldy + r] += v[j]; else y[(j0 + j) * ldy + r] = v[j];
            }
        }
    }
    (void)avx2;
}

void loft_qdot_rows_f32(int type, const void *w, long row_bytes, const int32_t *row_map,
                        long r0, long r1, long k, const float *x, long n, long ldx,
                        float *y, long ldy, int accumulate) {
    float row[k > 0 ? k : 1];
    float out[n > 0 ? n : 1];
    int avx2 = have_avx2();
    for (long r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (row_map ? row_map[r] : r) * row_bytes;
#if LOFT_X86
        if (avx2 && type == T_Q4_1) {
            rows_f32_q4_1_avx2(wr, k, x, n, ldx, out);
        } else
#endif
        {
            dequant_row(type, wr, k, row);
            for (long j = 0; j < n; j++) {
#if LOFT_X86
                if (avx2) { out[j] = dot_f32_avx2(row, x + j * ldx, k); continue; }
#endif
                float s = 0;
                for (long i = 0; i < k; i++) s += row[i] * x[j * ldx + i];
                out[j] = s;
            }
        }
        for (long j = 0; j < n; j++) {
            if (accumulate) y[j * ldy + r] += out[j]; else y[j * ldy + r] = out[j];
        }
    }
    (void)avx2;
}
