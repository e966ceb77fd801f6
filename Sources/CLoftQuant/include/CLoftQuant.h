#ifndef CLOFT_QUANT_H
#define CLOFT_QUANT_H
/*
 * Matrix-vector products on GGUF blocks, for decoding: y = x · Wᵀ where W
 * stays in its ggml blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)
 * and x has a few rows.
 *
 * Two ways, both here so that they can be measured against each other:
 *
 *  - integer: each row of x is first quantized to 8 bits per element
 *    (loft_qdot_quantize: blocks of 32 with an f32 scale for the 32-element
 *    types, blocks of 256 with per-16 sums for the K-quants), then every
 *    weight block is multiplied with integer dot products and scaled once.
 *    The only rounding beyond f32 accumulation is that of x to 8 bits:
 *    |error| ≤ Σ_blocks (d_x / 2) · Σ|w| per output (d_x = the block's
 *    absmax / 127).
 *  - float: each weight block is expanded to f32 in registers and multiplied
 *    with x as it is (loft_qdot_rows_f32); no rounding of x at all.
 *
 * Kernels use AVX2+FMA where the CPU has them (checked at run time; the file
 * compiles them with target attributes, so the binary runs anywhere) and a
 * scalar loop with the same integer arithmetic elsewhere.
 *
 * Types use ggml's numbering (GGMLType's raw values).
 */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the integer kernels handle this ggml type. */
int loft_qdot_supported(int type);
/* 1 when the float kernel handles this ggml type. */
int loft_qdot_f32_supported(int type);
/* "avx2" or "scalar": the kernels this CPU runs. force_scalar != 0 makes
   every later call use the scalar loops (for tests and measurements). */
const char *loft_qdot_isa(void);
void loft_qdot_force_scalar(int force_scalar);

/* Bytes of one quantized row of x with k elements, for weights of `type`. */
size_t loft_qdot_row_bytes(int type, long k);

/* Quantizes n rows of x (k floats each, ldx apart) into xq (n rows of
   loft_qdot_row_bytes(type, k) bytes each, 16-byte aligned rows advised). */
void loft_qdot_quantize(int type, const float *x, long n, long k, long ldx, void *xq);

/* y[j, r] (+)= Σ_i W[map(r), i] · x[j, i] for output rows r in [r0, r1) and
   the n rows of x (quantized by loft_qdot_quantize). W's row m starts at
   w + m·row_bytes; map(r) = row_map ? row_map[r] : r. y[j, r] is at
   y + j·ldy + r. accumulate != 0 adds to y instead of writing it. */
void loft_qdot_rows(int type, const void *w, long row_bytes, const int32_t *row_map,
                    long r0, long r1, long k, const void *xq, long n, float *y, long ldy, int accumulate);

/* loft_qdot_rows that also asks for the bytes of `count` regions
   (regions[i], sizes[i] bytes) to be brought toward the core, a few cache
   lines after each output row: data a later pass will read (a LoRA
   adapter's weights), fetched from memory while the rows compute instead of
   after, when the pass would wait for it. */
void loft_qdot_rows_side(int type, const void *w, long row_bytes, const int32_t *row_map,
                         long r0, long r1, long k, const void *xq, long n, float *y, long ldy, int accumulate,
                         const void *const *regions, const long *sizes, int count);

/* The same product with x in f32 (n rows, ldx apart), weights expanded on the fly. */
void loft_qdot_rows_f32(int type, const void *w, long row_bytes, const int32_t *row_map,
                        long r0, long r1, long k, const float *x, long n, long ldx,
                        float *y, long ldy, int accumulate);

#ifdef __cplusplus
}
#endif
#endif
