#ifndef CLOFT_KERNELS_H
#define CLOFT_KERNELS_H
/*
 * Loft's vectorized elementwise kernels: the rows of work built on exp
 * (attention's softmax, the cross-entropy's log-sum-exp, SiLU) that a
 * scalar libm call per element made the slowest part of a CPU training step
 * outside the GEMMs.
 *
 * exp is a degree-6 polynomial after range reduction (max. error about 2 ulp
 * against the correctly rounded value); arguments below -87 give 0 (true
 * values there are under 1.7e-38), above 88 give +inf, NaN stays NaN. Every
 * function is compiled three times (AVX-512, AVX2+FMA, baseline x86-64) and
 * the first call picks the one this CPU runs, so one binary runs everywhere. The
 * work is done 16 lanes at a time with the same arithmetic on every target
 * and a fixed order of partial sums, so results do not depend on how many
 * threads share the rows.
 */
#include <stdint.h>

#include "CLoftTeam.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest element of x[0..<n] (-inf for n == 0; NaN if any is NaN). */
float loft_max(const float *x, long n);

/* out[j] = exp(x[j] - shift) (out may be x); returns the sum of out, accumulated in float. */
float loft_exp_shifted(const float *x, float *out, long n, float shift);

/* Σ exp(x[j] - shift) accumulated in double; writes each term, as float, to out when it is not NULL. */
double loft_exp_sum_f64(const float *x, float *out, long n, float shift);

/* Softmax of row[0..<n] in place; returns its log-sum-exp (max + log Σ exp(x - max)). */
float loft_softmax_row(float *row, long n);

/* out = silu(gate) * up, silu(x) = x / (1 + exp(-x)). */
void loft_swiglu(const float *gate, const float *up, float *out, long n);

/* The gradients of out = silu(gate) * up given dOut: dGate and dUp. */
void loft_swiglu_backward(const float *dOut, const float *gate, const float *up, float *dGate, float *dUp, long n);

/* out = gelu_tanh(gate) * up (Gemma's GeGLU; PyTorch's gelu(approximate="tanh")). */
void loft_geglu(const float *gate, const float *up, float *out, long n);

/* The gradients of out = gelu_tanh(gate) * up given dOut: dGate and dUp. */
void loft_geglu_backward(const float *dOut, const float *gate, const float *up, float *dGate, float *dUp, long n);

/* y[0..<m] += B · (scale · A · x) for one row x[0..<k], A [r, k] and B [m, r]
   row-major: a LoRA adapter's update of one decoding row, without the two
   GEMV calls, the scratch tensor and the scaling pass (the scaled A·x is
   rounded to float before B multiplies it, as in the two-GEMV path). Each
   t[i] is A[i]·x summed 16 lanes wide and reduced in a fixed tree; each y[j]
   adds Σ_c B[j][c]·t[c] summed in c order in its own lane; so a row's
   result never depends on the others, nor on how the work is split. */
void loft_lora_row(const float *x, long k, const float *a, long r, const float *b, long m, float scale, float *y);
/* Its two halves, for splitting over threads (same numbers): t[i] = scale ·
   A[i]·x for i < rows (rows of A from `a`), and y[j] += B[j]·t for
   from ≤ j < from + count, with B packed by `loft_lora_pack` (y is the row's
   whole output; only that range changes). */
void loft_lora_down(const float *x, long k, const float *a, long rows, float scale, float *t);
void loft_lora_up(const float *t, long r, const float *packed, long from, long count, float *y);
/* B [m, r] packed for `loft_lora_up`: blocks of 16 outputs, each r vectors
   of the 16 outputs' c-th values (the last block zero-padded), so the up
   pass reads straight through and needs no horizontal sums:
   `loft_lora_packed_count(m, r)` values. The f16 copy rounds to nearest even. */
long loft_lora_packed_count(long m, long r);
void loft_lora_pack(const float *b, long m, long r, float *packed);
void loft_lora_pack_f16(const float *b, long m, long r, uint16_t *packed);
/* The halves with A and packed B stored as IEEE half bits (`loft serve
   --adapter-precision f16`: half the bytes a decoding step reads for each
   adapter). */
void loft_lora_down_f16(const float *x, long k, const uint16_t *a, long rows, float scale, float *t);
void loft_lora_up_f16(const float *t, long r, const uint16_t *packed, long from, long count, float *y);

/* Which copy runs: 2 AVX-512, 1 AVX2+FMA, 0 baseline x86-64 (or not x86). */
int loft_kernels_level(void);
/* Use a lower copy than the CPU allows (tests run every copy this way); clamped to what the CPU runs. */
void loft_kernels_set_level(int level);

/* exp of each element, for the kernels' own tests. */
void loft_exp(const float *x, float *out, long n);

#ifdef __cplusplus
}
#endif
#endif
