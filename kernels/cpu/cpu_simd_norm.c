/* Row normalisation (the norm op's statistics and apply passes) and GLU on the CPU, AVX2 / AVX-512
 * paths chosen at run time (cpu_simd.h), the element-wise math from cpu_simd_math.h. */
#include <math.h>
#include <stddef.h>

#include "cpu_simd_math.h"

/* ---- row normalisation ---- */

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* sum of (x[i] - c)^2 (sq) or of x[i] (!sq) in double, four lanes */
__attribute__((target("avx2"))) static size_t sum_d_avx2(const float *x, size_t n, double c, int sq, double *out)
{
    const __m256d cv = _mm256_set1_pd(c);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        if (sq) {
            lo = _mm256_sub_pd(lo, cv), hi = _mm256_sub_pd(hi, cv);
            lo = _mm256_mul_pd(lo, lo), hi = _mm256_mul_pd(hi, hi);
        }
        a0 = _mm256_add_pd(a0, lo), a1 = _mm256_add_pd(a1, hi);
    }
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(a0, a1));
    *out = (l[0] + l[1]) + (l[2] + l[3]);
    return i;
}

__attribute__((target("avx2"))) static size_t norm_apply_avx2(float *y, const float *x, size_t n, double mean,
                                                              double rstd, const float *gamma, const float *beta)
{
    const __m256d m = _mm256_set1_pd(mean), r = _mm256_set1_pd(rstd);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m), r);
        const __m256d hi = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m), r);
        __m256 o = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        if (gamma)
            o = _mm256_mul_ps(o, _mm256_loadu_ps(gamma + i));
        if (beta)
            o = _mm256_add_ps(o, _mm256_loadu_ps(beta + i));
        _mm256_storeu_ps(y + i, o);
    }
    return i;
}

/* The same on 16 lanes: (x - mean) * rstd in double, rounded to float, as the scalar loop */
EPI_512 static inline __m512 norm16_512(const float *x, __m512d m, __m512d r)
{
    const __m512 v = _mm512_loadu_ps(x);
    const __m512d lo = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), m), r);
    const __m512d hi = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), m), r);
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

EPI_512 static size_t norm_apply_512(float *y, const float *x, size_t n, double mean, double rstd,
                                     const float *gamma, const float *beta)
{
    const __m512d m = _mm512_set1_pd(mean), r = _mm512_set1_pd(rstd);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 o = norm16_512(x + i, m, r);
        if (gamma)
            o = _mm512_mul_ps(o, _mm512_loadu_ps(gamma + i));
        if (beta)
            o = _mm512_add_ps(o, _mm512_loadu_ps(beta + i));
        _mm512_storeu_ps(y + i, o);
    }
    return i;
}

/* sum_d_avx2 with 16 lanes (two vectors of 8 doubles), then a fixed tree */
EPI_512 static size_t sum_d_512(const float *x, size_t n, double c, int sq, double *out)
{
    const __m512d cv = _mm512_set1_pd(c);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v)), hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        if (sq) {
            lo = _mm512_sub_pd(lo, cv), hi = _mm512_sub_pd(hi, cv);
            lo = _mm512_mul_pd(lo, lo), hi = _mm512_mul_pd(hi, hi);
        }
        a0 = _mm512_add_pd(a0, lo), a1 = _mm512_add_pd(a1, hi);
    }
    double l[8];
    _mm512_storeu_pd(l, _mm512_add_pd(a0, a1));
    *out = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    return i;
}

/* sl_cpu_norm_apply_run's loop on 16 / 8 lanes: the scalar operations in the same order */
EPI_512 static size_t norm_run_512(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                                   const float *beta, sl_act act)
{
    const __m512d m = _mm512_set1_pd(mean), r = _mm512_set1_pd(rstd);
    const __m512 g = _mm512_set1_ps(gamma ? *gamma : 1.0f), b = _mm512_set1_ps(beta ? *beta : 0.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 o = norm16_512(x + i, m, r);
        if (gamma)
            o = _mm512_mul_ps(o, g);
        if (beta)
            o = _mm512_add_ps(o, b);
        _mm512_storeu_ps(y + i, act_512(act, o));
    }
    return i;
}

__attribute__((target("avx2"))) static size_t norm_run_avx2(float *y, const float *x, size_t n, double mean,
                                                            double rstd, const float *gamma, const float *beta,
                                                            sl_act act)
{
    const __m256d m = _mm256_set1_pd(mean), r = _mm256_set1_pd(rstd);
    const __m256 g = _mm256_set1_ps(gamma ? *gamma : 1.0f), b = _mm256_set1_ps(beta ? *beta : 0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m), r);
        const __m256d hi = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m), r);
        __m256 o = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        if (gamma)
            o = _mm256_mul_ps(o, g);
        if (beta)
            o = _mm256_add_ps(o, b);
        _mm256_storeu_ps(y + i, act_avx2(act, o));
    }
    return i;
}
#endif

double sl_cpu_row_sum(const float *x, size_t n, double c, int sq)
{
    double s = 0;
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = sum_d_512(x, n, c, sq, &s);
    else if (sl_cpu_simd_avx2())
        i = sum_d_avx2(x, n, c, sq, &s);
#endif
    for (; i < n; i++)
        s += sq ? ((double)x[i] - c) * ((double)x[i] - c) : (double)x[i];
    return s;
}

void sl_cpu_norm_apply(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                       const float *beta)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = norm_apply_512(y, x, n, mean, rstd, gamma, beta);
    if (sl_cpu_simd_avx2())
        i += norm_apply_avx2(y + i, x + i, n - i, mean, rstd, gamma ? gamma + i : NULL, beta ? beta + i : NULL);
#endif
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (gamma)
            v *= gamma[i];
        if (beta)
            v += beta[i];
        y[i] = v;
    }
}

void sl_cpu_norm_apply_run(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                           const float *beta, sl_act act)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = norm_run_512(y, x, n, mean, rstd, gamma, beta, act);
    if (sl_cpu_simd_avx2())
        i += norm_run_avx2(y + i, x + i, n - i, mean, rstd, gamma, beta, act);
#endif
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (gamma)
            v *= *gamma;
        if (beta)
            v += *beta;
        y[i] = sl_cpu_act(act, v);
    }
}

/* ---- GLU ---- */

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t glu_avx2(float *y, const float *a, const float *g, size_t n)
{
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 s = sigmoid_avx2(_mm256_loadu_ps(g + j));
        _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(a + j), s));
    }
    return j;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* glu_avx2 on 16 lanes: sigmoid_avx2's operations (so the same bits) */
EPI_512 static size_t glu_512(float *y, const float *a, const float *g, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(g + j);
        const __m512 neg_x = _mm512_xor_ps(x, _mm512_set1_ps(-0.0f));
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_512(neg_x)));
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
        _mm512_storeu_ps(y + j, _mm512_mul_ps(_mm512_loadu_ps(a + j), s));
    }
    return j;
}
#endif

void sl_cpu_glu_row(float *y, const float *a, const float *g, size_t n)
{
    size_t j = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        j = glu_512(y, a, g, n);
    if (sl_cpu_simd_avx2())
        j += glu_avx2(y + j, a + j, g + j, n - j);
#endif
    for (; j < n; j++)
        y[j] = a[j] * sigmoid_poly(g[j]);
}
