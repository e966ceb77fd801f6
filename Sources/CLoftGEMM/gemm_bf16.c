/*
 * bf16 GEMM on AVX512-BF16, written for Loft. Structure (the classic one for
 * CPU GEMMs): B is packed block by block (KC x NC) into panels of NR columns,
 * A into panels of MR rows, both rounded to bf16 and laid out the way
 * vdpbf16ps reads them, then a register-blocked micro-kernel multiplies one
 * A panel by one B panel into an MR x NR tile of C held in zmm registers.
 *
 * vdpbf16ps multiplies pairs: acc[j] += a[2q] * b[2q][j] + a[2q+1] * b[2q+1][j]
 * with fp32 accumulation, so both packings interleave k in pairs: an A panel
 * holds, for each pair q, MR 32-bit words (a[i][2q], a[i][2q+1]) that the
 * kernel broadcasts; a B panel holds, for each pair q, NR such words
 * (b[2q][j], b[2q+1][j]), two zmm loads. An odd k is padded with a zero.
 */
#include "CLoftGEMM.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#define LOFT_GEMM_X86 1
#include <immintrin.h>
#define LOFT_BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#endif

/* Register tile: NR = 32 columns are two zmm per row, MR = 12 rows, so 24
 * accumulators plus two B vectors and a broadcast A pair fit in 32 zmm.
 * A B panel for KC = 256 is 16 KiB (stays in L1 while the kernel walks the
 * A panels); an A block of MC x KC is 96 KiB and a B block of KC x NC is
 * 768 KiB, both meant for L2. */
enum { MR = 12, NR = 32, KC = 256, MC = 192, NC = 1536 };

typedef struct {
    int trans_a, trans_b;
    long m, n, k;
    float alpha, beta;
    const float *a;
    long lda;
    const float *b32;     /* B as fp32, or */
    const uint16_t *b16;  /* B as bf16 bits */
    long ldb;
    float *c;
    long ldc;
} gemm_args;

int loft_gemm_bf16_available(void) {
#ifdef LOFT_GEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

#ifdef LOFT_GEMM_X86

/* Where a packing reads from: fp32 (f) or bf16 bits (h), leading dimension
 * ld. A packed panel runs along `lines` (rows of A, columns of op(B)) and k;
 * k_contiguous says k is the memory-contiguous index (A not transposed, B
 * transposed) rather than the row index. */
typedef struct {
    const float *f;
    const uint16_t *h;
    long ld;
    int k_contiguous;
} source;

static inline __mmask32 first_bits32(long count) {
    return count >= 32 ? 0xffffffffu : (__mmask32)((1u << count) - 1);
}

/* 32 consecutive elements at offset off (those past `valid` read as 0) as
 * bf16: fp32 is rounded to nearest even by vcvtne2ps2bf16. */
LOFT_BF16_TARGET
static inline __m512i load_bf16x32(source s, long off, __mmask32 valid) {
    if (s.h) return _mm512_maskz_loadu_epi16(valid, s.h + off);
    __m512 lo = _mm512_maskz_loadu_ps((__mmask16)valid, s.f + off);
    __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(valid >> 16), s.f + off + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* r[i] holds 16 32-bit words of line i; afterwards r[t] holds word t of
 * every line (lane i from line i): unpacks of 32- and 64-bit elements, then
 * two rounds of 128-bit lane shuffles. */
LOFT_BF16_TARGET
static inline void transpose16x16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* One panel: lines line0..<line0+count (count <= width; the rest of the
 * width is zero), k p0..<p0+kc, as kp = ceil(kc/2) groups of `width` 32-bit
 * words (bf16 of k = 2q in the low half, k = 2q + 1 in the high half). */
LOFT_BF16_TARGET
static void pack_panel(source s, long line0, long count, int width, long p0, long kc, uint32_t *dst) {
    long kp = (kc + 1) / 2;
    if (s.k_contiguous) {
        /* each line's pairs are consecutive in memory: convert 32 k (16 pairs)
         * of 16 lines at a time, transpose the 16 x 16 words in registers, and
         * store each pair's 16 line words together (the scalar scatter this
         * replaced took a fifth of a bf16 training step) */
        for (long l0 = 0; l0 < width; l0 += 16) {
            long lines = width - l0 < 16 ? width - l0 : 16;
            __mmask16 store = (__mmask16)((1u << lines) - 1);
            for (long q0 = 0; q0 < kp; q0 += 16) {
                __mmask32 valid = first_bits32(kc - 2 * q0);
                __m512i r[16];
                for (int i = 0; i < 16; i++) {
                    long l = l0 + i;
                    r[i] = i < lines && l < count ? load_bf16x32(s, (line0 + l) * s.ld + p0 + 2 * q0, valid)
                                                  : _mm512_setzero_si512();
                }
                transpose16x16(r);
                long pairs = kp - q0 < 16 ? kp - q0 : 16;
                for (long t = 0; t < pairs; t++) _mm512_mask_storeu_epi32(dst + (q0 + t) * width + l0, store, r[t]);
            }
        }
        return;
    }
    /* k runs down the rows: two rows give `width` interleaved pairs */
    const __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                         39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
    __mmask32 valid = first_bits32(count);
    for (long q = 0; q < kp; q++) {
        long row = p0 + 2 * q;
        __m512i even = load_bf16x32(s, row * s.ld + line0, valid);
        __m512i odd = 2 * q + 1 < kc ? load_bf16x32(s, (row + 1) * s.ld + line0, valid) : _mm512_setzero_si512();
        __m512i w0 = _mm512_permutex2var_epi16(even, low, odd);   /* lines 0..15 */
        if (width == 32) {
            _mm512_storeu_si512((void *)dst, w0);
            _mm512_storeu_si512((void *)(dst + 16), _mm512_permutex2var_epi16(even, high, odd));
        } else {
            _mm512_mask_storeu_epi32(dst, (__mmask16)((1u << width) - 1), w0);
        }
        dst += width;
    }
}

/* Rows i0..<i0+mc, k p0..<p0+kc of op(A) into MR-row panels. */
LOFT_BF16_TARGET
static void pack_a(const gemm_args *g, long i0, long mc, long p0, long kc, uint32_t *dst) {
    source s = {g->a, NULL, g->lda, !g->trans_a};
    long kp = (kc + 1) / 2;
    for (long r = 0; r < mc; r += MR)
        pack_panel(s, i0 + r, mc - r < MR ? mc - r : MR, MR, p0, kc, dst + r * kp);
}

/* k p0..<p0+kc, columns j0..<j0+nc of op(B) into NR-column panels. */
LOFT_BF16_TARGET
static void pack_b(const gemm_args *g, long p0, long kc, long j0, long nc, uint32_t *dst) {
    source s = {g->b32, g->b16, g->ldb, g->trans_b};
    long kp = (kc + 1) / 2;
    for (long c = 0; c < nc; c += NR)
        pack_panel(s, j0 + c, nc - c < NR ? nc - c : NR, NR, p0, kc, dst + c * kp);
}

/* C tile (mr <= MR rows, nr <= NR columns) = alpha * Apanel * Bpanel + beta * C tile. */
LOFT_BF16_TARGET
static void kernel(long kp, const uint32_t *ap, const uint32_t *bp, float *c, long ldc,
                   int mr, int nr, float alpha, float beta) {
    __m512 c0[MR], c1[MR];
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    for (long q = 0; q < kp; q++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)bp);
        __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bp + 16));
#pragma clang loop unroll(full)
        for (int i = 0; i < MR; i++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
        ap += MR;
        bp += NR;
    }
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
        if (i < mr) {
            float *row = c + (long)i * ldc;
            __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
            if (beta != 0) {  /* beta == 0 must not read C (it may hold NaN) */
                r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), r0);
                r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), r1);
            }
            _mm512_mask_storeu_ps(row, m0, r0);
            _mm512_mask_storeu_ps(row + 16, m1, r1);
        }
    }
}

/* Packing buffers (an A block then a B block, 864 KiB) are kept for the next
 * GEMM: a fresh allocation this large is an mmap whose pages the kernel
 * zeroes on every call. A few stay cached, one per thread that used them. */
enum { A_WORDS = MC * (KC / 2), B_WORDS = NC * (KC / 2), POOL = 8 };
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t *pool[POOL];
static int pool_count;

static uint32_t *buffers_get(void) {
    uint32_t *p = NULL;
    pthread_mutex_lock(&pool_lock);
    if (pool_count > 0) p = pool[--pool_count];
    pthread_mutex_unlock(&pool_lock);
    return p ? p : aligned_alloc(64, sizeof(uint32_t) * (A_WORDS + B_WORDS));
}

static void buffers_put(uint32_t *p) {
    pthread_mutex_lock(&pool_lock);
    if (pool_count < POOL) { pool[pool_count++] = p; p = NULL; }
    pthread_mutex_unlock(&pool_lock);
    free(p);
}

static void gemm_serial(const gemm_args *g) {
    long m = g->m, n = g->n, k = g->k;
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  /* no products: C = beta * C */
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) g->c[i * g->ldc + j] = g->beta == 0 ? 0 : g->beta * g->c[i * g->ldc + j];
        return;
    }
    uint32_t *abuf = buffers_get(), *bbuf = abuf + A_WORDS;
    for (long jc = 0; jc < n; jc += NC) {
        long nc = n - jc < NC ? n - jc : NC;
        for (long pc = 0; pc < k; pc += KC) {
            long kc = k - pc < KC ? k - pc : KC, kp = (kc + 1) / 2;
            float beta = pc == 0 ? g->beta : 1.0f;  /* later k blocks add to the first */
            pack_b(g, pc, kc, jc, nc, bbuf);
            for (long ic = 0; ic < m; ic += MC) {
                long mc = m - ic < MC ? m - ic : MC;
                pack_a(g, ic, mc, pc, kc, abuf);
                for (long jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    for (long ir = 0; ir < mc; ir += MR) {
                        int mr = (int)(mc - ir < MR ? mc - ir : MR);
                        kernel(kp, abuf + ir * kp, bbuf + jr * kp,
                               g->c + (ic + ir) * g->ldc + jc + jr, g->ldc, mr, nr, g->alpha, beta);
                    }
                }
            }
        }
    }
    buffers_put(abuf);
}

static void *gemm_thread(void *arg) {
    gemm_serial(arg);
    return NULL;
}

/* Splits C into `threads` slabs along its longer side (columns in multiples
 * of NR, rows in multiples of MR), each a separate GEMM on its own thread
 * with its own packing buffers. */
static void gemm_parallel(const gemm_args *g, int threads) {
    enum { MAX_THREADS = 64 };
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    int by_cols = g->n >= g->m;
    long unit = by_cols ? NR : MR, extent = by_cols ? g->n : g->m;
    long units = (extent + unit - 1) / unit;
    if (threads > units) threads = (int)units;
    if (threads <= 1) { gemm_serial(g); return; }
    gemm_args parts[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        long lo = units * t / threads * unit, hi = units * (t + 1) / threads * unit;
        if (hi > extent) hi = extent;
        gemm_args p = *g;
        if (by_cols) {
            p.n = hi - lo;
            long off = g->trans_b ? lo * g->ldb : lo;
            if (p.b32) p.b32 += off; else p.b16 += off;
            p.c += lo;
        } else {
            p.m = hi - lo;
            p.a += g->trans_a ? lo : lo * g->lda;
            p.c += lo * g->ldc;
        }
        parts[t] = p;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, gemm_thread, &parts[t]) == 0;
    gemm_serial(&parts[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        else gemm_serial(&parts[t]);  /* no thread to be had: do its share here */
    }
}


/* The rate of vdpbf16ps against vfmadd231ps on this core: 24 independent zmm
 * accumulators per iteration and no memory traffic, so each loop is bound by
 * how many of its instruction the core retires. Where a bf16 dot product of
 * pairs retires at the FMA's rate it does twice the flops (Zen 4); where it
 * retires at half (Emerald Rapids) the bf16 GEMM cannot beat sgemm. */
enum { RATE_ACCUMULATORS = 24 };

LOFT_BF16_TARGET
static float rate_dot_bf16(long iterations) {
    __m512 acc[RATE_ACCUMULATORS];
    for (int i = 0; i < RATE_ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3f803f81);
    for (long n = 0; n < iterations; n++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < RATE_ACCUMULATORS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a)); /* keeps the loop from being folded */
    }
    __m512 sum = acc[0];
    for (int i = 1; i < RATE_ACCUMULATORS; i++) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}

LOFT_BF16_TARGET
static float rate_fma_f32(long iterations) {
    __m512 acc[RATE_ACCUMULATORS];
    for (int i = 0; i < RATE_ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    for (long n = 0; n < iterations; n++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < RATE_ACCUMULATORS; i++) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
        __asm__ volatile("" : "+v"(a));
    }
    __m512 sum = acc[0];
    for (int i = 1; i < RATE_ACCUMULATORS; i++) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}

static double rate_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

double loft_gemm_bf16_flops_ratio(long iterations) {
    if (!loft_gemm_bf16_available()) return 0;
    double best_bf16 = 1e30, best_fma = 1e30;
    volatile float sink = 0;
    for (int round = 0; round < 3; round++) { /* alternate, so a busy moment hits both alike */
        double t = rate_now();
        sink += rate_dot_bf16(iterations);
        double s = rate_now() - t;
        if (s < best_bf16) best_bf16 = s;
        t = rate_now();
        sink += rate_fma_f32(iterations);
        s = rate_now() - t;
        if (s < best_fma) best_fma = s;
    }
    (void)sink;
    /* per instruction: vdpbf16ps 16 lanes x 2 products x 2 flops, vfmadd231ps 16 x 2 */
    return (64.0 / best_bf16) / (32.0 / best_fma);
}

#else

double loft_gemm_bf16_flops_ratio(long iterations) { (void)iterations; return 0; }

#endif /* LOFT_GEMM_X86 */

void loft_gemm_bf16_f32(int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc, int threads) {
#ifdef LOFT_GEMM_X86
    gemm_args g = {trans_a, trans_b, m, n, k, alpha, beta, a, lda, b, NULL, ldb, c, ldc};
    gemm_parallel(&g, threads);
#endif
}

void loft_gemm_bf16_b16(int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const uint16_t *b, long ldb,
                        float beta, float *c, long ldc, int threads) {
#ifdef LOFT_GEMM_X86
    gemm_args g = {trans_a, trans_b, m, n, k, alpha, beta, a, lda, NULL, b, ldb, c, ldc};
    gemm_parallel(&g, threads);
#endif
}
