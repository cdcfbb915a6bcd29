/* Run-time choice of the CPU backend's AVX2 code paths (median filters,
 * magnitude, hpss masks). Each has a portable twin giving bit-identical
 * results; the AVX2 one is compiled with __attribute__((target("avx2"))) and
 * taken only when the CPU (and OS) support it. */
#ifndef SL_CPU_SIMD_H
#define SL_CPU_SIMD_H

#include <stddef.h>

#include "../ops.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define SL_CPU_HAVE_AVX2_PATHS 1
#endif

/* enable = 1 (the default): AVX2 where the CPU has it; 0: portable paths only.
 * Process-wide; returns the previous setting. For tests and benchmarks. The
 * environment variable STEMLINE_CPU_SIMD=0 (read once) starts the process with 0. */
int sl_cpu_simd_set(int enable);
/* 1 when CPU ops called now take their AVX2 paths. */
int sl_cpu_simd_avx2(void);
/* 1 when the AMX tiles serve the tf32 / bf16 / bf16x6 GEMMs (cpu_amx.c): sl_cpu_simd_avx512(), the
 * CPU has AMX-BF16 and AVX512-BF16, the OS grants the tile state and the environment has no
 * SL_CPU_AMX=0 (so STEMLINE_CPU_AVX512=0, sl_cpu_simd_set(0) and sl_cpu_simd_set_avx512(0)
 * turn it off too). */
int sl_cpu_amx(void);

/* Element-wise loops for the CPU ops, AVX2 when sl_cpu_simd_avx2(): each
 * element gets exactly the scalar operations, in the same order (no FMA), so
 * the results are bit-identical to the plain loops. Arrays may not overlap
 * except acc/out with themselves. */
void sl_cpu_vec_muladd(float *acc, const float *a, const float *b, size_t n); /* acc[i] += a[i] * b[i] */
void sl_cpu_vec_div(float *out, const float *a, const float *b, size_t n);    /* out[i] = a[i] / b[i] */
void sl_cpu_vec_scale(float *out, const float *in, float s, size_t n);        /* out[i] = in[i] * s */
void sl_cpu_vec_add_scalar(float *y, float b, size_t n);                      /* y[i] += b */
void sl_cpu_vec_addmul(float *y, const float *x, const float *add, const float *mul, size_t n); /* y[i] = (x[i] + add[i]) * mul[i], add NULL: 0 */
/* One LSTM step's cell update for units j < H (torch gate order i, f, g, o in gates[4H]):
 * c = sigmoid(f) c + sigmoid(i) tanh(g); h = sigmoid(o) tanh(c); out[j] = h[j].
 * exp is a degree-6 polynomial with a power-of-two scaling (about 1 ulp, Cephes'
 * expf), sigmoid(x) = 1 / (1 + exp(-x)), tanh(x) = sign(x) (1 - e) / (1 + e) with
 * e = exp(-2|x|) (absolute error ~1e-7); NaN stays NaN. The AVX2 path does the same
 * operations in the same order (no FMA): bit-identical to the portable one. */
void sl_cpu_lstm_cell(const float *gates, float *cell, float *h, float *out, size_t H);

/* erf in float: a degree-7 odd polynomial below 1.25, 1 - exp(degree-10 polynomial)
 * up to 3.93, then +-1; within 2 ulp of the correctly rounded erf everywhere
 * (unit.xf_ops measures it); NaN stays NaN. sl_cpu_erf_vec: out[i] = sl_cpu_erf(in[i]),
 * the AVX2 and AVX-512 paths bit-identical (same operations, no FMA; a vector whose lanes are
 * all below 1.25 skips the second polynomial and its exp, as the scalar branch does). */
float sl_cpu_erf(float x);
/* tanh in float for the activations: an odd polynomial below |x| = 0.25, (1 - e) / (1 + e) with
 * the LSTM cell's exp above; within a few ulp (unit.xf_ops measures it), NaN stays NaN. */
float sl_cpu_tanh(float x);
void sl_cpu_erf_vec(float *out, const float *in, size_t n);
/* The linear layers' epilogue on one row of n: y[j] = act(p[j] + bias[j]) * mul[j] + add[j]
 * (act as sl_cpu_act; bias, mul, add may be NULL; y may be p or add). AVX2 for every activation,
 * bit-identical to the portable loop. */
void sl_cpu_epilogue_row(sl_act act, size_t n, const float *p, const float *bias, const float *mul, const float *add,
                         float *y);
/* sl_cpu_epilogue_row over rows rows of p, mul, add, y (row strides ldp, ldmul, ldadd, ldy; bias
 * the same for every row), the same bits, the vector path chosen once. */
void sl_cpu_epilogue_rows(sl_act act, size_t rows, size_t n, const float *p, size_t ldp, const float *bias,
                          const float *mul, size_t ldmul, const float *add, size_t ldadd, float *y, size_t ldy);

/* 1 when sl_cpu_simd_avx2() and the CPU has FMA (kernels whose results need not
 * match a portable twin bit for bit, e.g. cpu_attn.c). */
int sl_cpu_simd_fma(void);
/* x[i] = exp(x[i] - m) by the LSTM cell's polynomial exp (about 1 ulp), AVX2 bit-identical. */
void sl_cpu_vec_exp_sub(float *x, float m, size_t n);
/* The same and the sum of the results in double (AVX-512: 16 lanes, the last n % 16 as one
 * vector with its missing lanes 0, the sum in another order than a plain loop's). */
double sl_cpu_vec_exp_sub_sum(float *x, float m, size_t n);
/* Rows r < rows of x (row stride ld): bias row r (row stride ld_bias; NULL: none) added, then
 * x = exp(x - the row's maximum) over its first n in place and inv[r] = 1 / the sum, each row
 * exactly as the bias add, the maximum and sl_cpu_vec_exp_sub_sum compute it, with no call per
 * row. AVX-512 only (sl_cpu_simd_avx512()): returns 1 when done, 0 when not. */
int sl_cpu_softmax_rows_unnorm(float *x, size_t ld, size_t rows, size_t n, const float *bias, size_t ld_bias,
                               float *inv);

/* 1 when sl_cpu_simd_fma() and the CPU has AVX-512 (F, DQ, VL), unless the environment
 * sets STEMLINE_CPU_AVX512=0 (read once) or sl_cpu_simd_set_avx512(0) turned the
 * AVX-512 paths off (tests and benchmarks; returns the previous setting). */
int sl_cpu_simd_avx512(void);
int sl_cpu_simd_set_avx512(int enable);

/* Row statistics in double: sum of x[i] (sq 0) or of (x[i] - c)^2 (sq 1); the AVX2
 * path adds in four lanes (another order than the portable loop, same precision). */
double sl_cpu_row_sum(const float *x, size_t n, double c, int sq);
/* y[i] = (float)((x[i] - mean) * rstd) [* gamma[i]] [+ beta[i]] (y may be x);
 * the AVX2 path bit-identical. */
void sl_cpu_norm_apply(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                       const float *beta);

/* One channel's run of a GroupNorm: y[i] = act((float)((x[i] - mean) * rstd) [* *gamma] [+ *beta])
 * (gamma / beta: one value or NULL; act as sl_cpu_act) in one pass (y may be x); the AVX2 /
 * AVX-512 paths bit-identical. */
void sl_cpu_norm_apply_run(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                           const float *beta, sl_act act);

/* y[j] = a[j] * sigmoid(g[j]) (the LSTM cell's sigmoid), j < n; y may be a or lie
 * before it in memory by at most the row offset (GLU in place); AVX2 bit-identical. */
void sl_cpu_glu_row(float *y, const float *a, const float *g, size_t n);

#endif
