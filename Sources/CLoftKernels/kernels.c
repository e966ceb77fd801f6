/*
 * Vectorized exp-based row kernels, written for Loft (see CLoftKernels.h).
 *
 * The arithmetic is written once, in kernels_body.inc, on 16-lane clang
 * vectors, and compiled here three times: for AVX-512, for AVX2+FMA and for
 * baseline x86-64 (the vectors become one zmm, two ymm or four xmm
 * registers). The first call picks the copy this CPU runs. A partial vector
 * at the end of a row is copied into a padded vector so the tail gets the
 * same arithmetic as the rest.
 */
#include "CLoftKernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

long loft_lora_packed_count(long m, long r) { return (m + 15) / 16 * 16 * r; }

void loft_lora_pack(const float *b, long m, long r, float *packed) {
    long blocks = (m + 15) / 16;
    for (long blk = 0; blk < blocks; blk++)
        for (long c = 0; c < r; c++)
            for (long l = 0; l < 16; l++) {
                long j = blk * 16 + l;
                packed[(blk * r + c) * 16 + l] = j < m ? b[j * r + c] : 0.0f;
            }
}

void loft_lora_pack_f16(const float *b, long m, long r, uint16_t *packed) {
    long count = loft_lora_packed_count(m, r);
    float *values = malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
    loft_lora_pack(b, m, r, values);
    for (long i = 0; i < count; i++) {
        _Float16 h = (_Float16)values[i];
        memcpy(&packed[i], &h, sizeof h);
    }
    free(values);
}

/* The 16-lane helpers are always inlined, so no vector crosses a call boundary on AVX2. */
#pragma clang diagnostic ignored "-Wpsabi"

typedef float vf __attribute__((ext_vector_type(16)));
typedef int vi __attribute__((ext_vector_type(16)));
typedef double vd __attribute__((ext_vector_type(16)));
typedef _Float16 vh __attribute__((ext_vector_type(16)));
enum { W = 16 };
#define LOFT_INLINE static inline __attribute__((always_inline))
#define K_(name, suffix) name##_##suffix
#define K2(name, suffix) K_(name, suffix)
#define K(name) K2(name, LOFT_SUFFIX)

#if defined(__x86_64__)
#define LOFT_SUFFIX avx512
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,fma,f16c"))), apply_to = function)
#include "kernels_body.inc"
#pragma clang attribute pop
#undef LOFT_SUFFIX

#define LOFT_SUFFIX avx2
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#include "kernels_body.inc"
#pragma clang attribute pop
#undef LOFT_SUFFIX
#endif

#define LOFT_SUFFIX base
#include "kernels_body.inc"
#undef LOFT_SUFFIX

/* 2: AVX-512, 1: AVX2+FMA, 0: baseline; -1 until the first call. */
static int level = -1;

static int pick(void) {
    int l = level;
    if (l >= 0) return l;
    l = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) l = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) l = 1;
#endif
    __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    return l;
}

#if defined(__x86_64__)
#define DISPATCH(name, ...)                                   \
    switch (pick()) {                                         \
    case 2: return name##_avx512(__VA_ARGS__);                \
    case 1: return name##_avx2(__VA_ARGS__);                  \
    default: return name##_base(__VA_ARGS__);                 \
    }
#else
#define DISPATCH(name, ...) return name##_base(__VA_ARGS__);
#endif

int loft_kernels_level(void) { return pick(); }
void loft_kernels_set_level(int l) {
    int best = pick();
    __atomic_store_n(&level, l < 0 ? 0 : (l > best ? best : l), __ATOMIC_RELAXED);
}

float loft_max(const float *x, long n) { DISPATCH(loft_max, x, n) }
float loft_exp_shifted(const float *x, float *out, long n, float shift) { DISPATCH(loft_exp_shifted, x, out, n, shift) }
double loft_exp_sum_f64(const float *x, float *out, long n, float shift) { DISPATCH(loft_exp_sum_f64, x, out, n, shift) }
float loft_softmax_row(float *row, long n) { DISPATCH(loft_softmax_row, row, n) }
void loft_swiglu(const float *gate, const float *up, float *out, long n) { DISPATCH(loft_swiglu, gate, up, out, n) }
void loft_swiglu_backward(const float *dOut, const float *gate, const float *up, float *dGate, float *dUp, long n) {
    DISPATCH(loft_swiglu_backward, dOut, gate, up, dGate, dUp, n)
}
void loft_geglu(const float *gate, const float *up, float *out, long n) { DISPATCH(loft_geglu, gate, up, out, n) }
void loft_geglu_backward(const float *dOut, const float *gate, const float *up, float *dGate, float *dUp, long n) {
    DISPATCH(loft_geglu_backward, dOut, gate, up, dGate, dUp, n)
}
void loft_exp(const float *x, float *out, long n) { DISPATCH(loft_exp, x, out, n) }
void loft_lora_row(const float *x, long k, const float *a, long r, const float *b, long m, float scale, float *y) {
    DISPATCH(loft_lora_row, x, k, a, r, b, m, scale, y)
}
void loft_lora_down(const float *x, long k, const float *a, long rows, float scale, float *t) {
    DISPATCH(loft_lora_down, x, k, a, rows, scale, t)
}
void loft_lora_up(const float *t, long r, const float *packed, long from, long count, float *y) {
    DISPATCH(loft_lora_up, t, r, packed, from, count, y)
}
void loft_lora_down_f16(const float *x, long k, const uint16_t *a, long rows, float scale, float *t) {
    DISPATCH(loft_lora_down_f16, x, k, a, rows, scale, t)
}
void loft_lora_up_f16(const float *t, long r, const uint16_t *packed, long from, long count, float *y) {
    DISPATCH(loft_lora_up_f16, t, r, packed, from, count, y)
}
