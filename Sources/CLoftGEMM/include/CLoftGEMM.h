#ifndef CLOFT_GEMM_H
#define CLOFT_GEMM_H
/*
 * Loft's bf16 GEMM for x86 CPUs with AVX512-BF16 (vdpbf16ps): inputs are
 * rounded to bf16 (round to nearest even) while they are packed, products are
 * accumulated in fp32, the output is fp32.
 *
 *   C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C     (row-major)
 *
 * op(X) is X or its transpose, as in cblas_sgemm. beta == 0 writes C without
 * reading it. B is either fp32 (rounded here) or already bf16 bits (uint16),
 * as frozen weights may be stored.
 *
 * The kernels are compiled for AVX512-BF16 only inside this file, so the
 * binary runs anywhere; call loft_gemm_bf16_available() before the GEMMs
 * (they do nothing on a CPU or build without the instructions).
 */
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this CPU (and OS) runs AVX512F, AVX512BW, AVX512VL and AVX512-BF16. */
int loft_gemm_bf16_available(void);

/* vdpbf16ps flops per vfmadd231ps flop on this core (about 2 where bf16
 * dot products retire at the FMA's rate, 1 where at half), from
 * `iterations` register-only loops of each (2e6: about 50 ms); 0 without
 * AVX512-BF16. */
double loft_gemm_bf16_flops_ratio(long iterations);

/* B given as fp32. threads: how many threads to split the work over (1 or more). */
void loft_gemm_bf16_f32(int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const float *b, long ldb,
                        float beta, float *c, long ldc, int threads);

/* B given as bf16 bits (the upper 16 bits of an fp32). */
void loft_gemm_bf16_b16(int trans_a, int trans_b, long m, long n, long k, float alpha,
                        const float *a, long lda, const uint16_t *b, long ldb,
                        float beta, float *c, long ldc, int threads);

#ifdef __cplusplus
}
#endif
#endif
