/* Run-time choice of the CPU backend's AVX2 code paths (median filters,
 * magnitude, hpss masks). Each has a portable twin giving bit-identical
 * results; the AVX2 one is compiled with __attribute__((target("avx2"))) and
 * taken only when the CPU (and OS) support it. */
#ifndef SL_CPU_SIMD_H
#define SL_CPU_SIMD_H

#include <stddef.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define SL_CPU_HAVE_AVX2_PATHS 1
#endif

/* enable = 1 (the default): AVX2 where the CPU has it; 0: portable paths only.
 * Process-wide; returns the previous setting. For tests and benchmarks. */
int sl_cpu_simd_set(int enable);
/* 1 when CPU ops called now take their AVX2 paths. */
int sl_cpu_simd_avx2(void);

/* Element-wise loops for the CPU ops, AVX2 when sl_cpu_simd_avx2(): each
 * element gets exactly the scalar operations, in the same order (no FMA), so
 * the results are bit-identical to the plain loops. Arrays may not overlap
 * except acc/out with themselves. */
void sl_cpu_vec_muladd(float *acc, const float *a, const float *b, size_t n); /* acc[i] += a[i] * b[i] */
void sl_cpu_vec_div(float *out, const float *a, const float *b, size_t n);    /* out[i] = a[i] / b[i] */
void sl_cpu_vec_scale(float *out, const float *in, float s, size_t n);        /* out[i] = in[i] * s */
/* One LSTM step's cell update for units j < H (torch gate order i, f, g, o in gates[4H]):
 * c = sigmoid(f) c + sigmoid(i) tanh(g); h = sigmoid(o) tanh(c); out[j] = h[j].
 * exp is a degree-6 polynomial with a power-of-two scaling (about 1 ulp, Cephes'
 * expf), sigmoid(x) = 1 / (1 + exp(-x)), tanh(x) = sign(x) (1 - e) / (1 + e) with
 * e = exp(-2|x|) (absolute error ~1e-7); NaN stays NaN. The AVX2 path does the same
 * operations in the same order (no FMA): bit-identical to the portable one. */
void sl_cpu_lstm_cell(const float *gates, float *cell, float *h, float *out, size_t H);

#endif
