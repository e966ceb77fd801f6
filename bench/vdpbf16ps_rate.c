/*
 * Peak rate of vdpbf16ps against vfmadd231ps on this CPU, one thread, no
 * memory traffic: 24 independent zmm accumulators per loop iteration, so
 * the loop is bound by how many of each instruction the core retires, not
 * by latency. BENCHMARKS.md quotes it ("bf16 GEMM ... not faster here").
 *
 *   clang -O2 bench/vdpbf16ps_rate.c -o /tmp/vdpbf16ps_rate && /tmp/vdpbf16ps_rate
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { ACCUMULATORS = 24 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,avx512bf16"))) static float dot_bf16(long iterations) {
    __m512 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3f803f81);
    for (long n = 0; n < iterations; n++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a));  /* keeps the loop from being folded */
    }
    __m512 sum = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx512f"))) static float fma_f32(long iterations) {
    __m512 acc[ACCUMULATORS];
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_set1_ps((float)i);
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    for (long n = 0; n < iterations; n++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < ACCUMULATORS; i++) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
        __asm__ volatile("" : "+v"(a));
    }
    __m512 sum = acc[0];
    for (int i = 1; i < ACCUMULATORS; i++) sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}

int main(void) {
    const long iterations = 50000000;
    for (int round = 0; round < 3; round++) {  /* alternate, so load hits both alike */
        double t = now();
        float x = dot_bf16(iterations);
        double bf16_s = now() - t;
        t = now();
        float y = fma_f32(iterations);
        double fma_s = now() - t;
        /* vdpbf16ps zmm: 16 lanes x 2 products x 2 flops; vfmadd zmm: 16 x 2 */
        printf("vdpbf16ps %.1f GFLOP/s   vfmadd231ps %.1f GFLOP/s   (%g %g)\n",
               iterations * ACCUMULATORS * 64.0 / bf16_s / 1e9, iterations * ACCUMULATORS * 32.0 / fma_s / 1e9, x, y);
    }
    return 0;
}
